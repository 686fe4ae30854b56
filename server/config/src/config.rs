//! `Config`: every setting etcd 3.4.23 takes, with etcd's defaults, plus ketch's own
//! (`--shards`, `--io-memory-bytes`). Parsing lives in `flags` (command line and
//! environment) and `file` (YAML); the checks etcd makes before starting live here.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::ConfigError;
use crate::goparse;
use crate::url::{EtcdUrl, check_bind_urls, check_host_urls, join_urls, parse_url_list};

/// etcd's `DefaultName`.
pub const DEFAULT_NAME: &str = "default";
pub const DEFAULT_LISTEN_PEER_URLS: &str = "http://localhost:2380";
pub const DEFAULT_LISTEN_CLIENT_URLS: &str = "http://localhost:2379";
pub const DEFAULT_INITIAL_ADVERTISE_PEER_URLS: &str = "http://localhost:2380";
pub const DEFAULT_ADVERTISE_CLIENT_URLS: &str = "http://localhost:2379";
pub const DEFAULT_INITIAL_CLUSTER_TOKEN: &str = "etcd-cluster";
/// etcd 3.4's `etcdserver.DefaultSnapshotCount` (3.5 lowered nothing; 3.2 and older used
/// 10000, which is where DESIGN.md's figure comes from).
pub const DEFAULT_SNAPSHOT_COUNT: u64 = 100_000;
/// etcd's `etcdserver.DefaultSnapshotCatchUpEntries` (no flag; shown in the startup log).
pub const SNAPSHOT_CATCH_UP_ENTRIES: u64 = 5_000;
pub const DEFAULT_HEARTBEAT_INTERVAL_MS: u64 = 100;
pub const DEFAULT_ELECTION_TIMEOUT_MS: u64 = 1_000;
/// etcd's `maxElectionMs`.
pub const ELECTION_TIMEOUT_MS_MAX: u64 = 50_000;
/// `--quota-backend-bytes=0` means this (etcd's `DefaultQuotaBytes`, 2 GiB).
pub const DEFAULT_QUOTA_BACKEND_BYTES: u64 = 2 * 1024 * 1024 * 1024;
/// Above this etcd warns that the quota exceeds the recommended maximum (8 GiB).
pub const QUOTA_BACKEND_BYTES_RECOMMENDED_MAX: u64 = 8 * 1024 * 1024 * 1024;
pub const DEFAULT_MAX_REQUEST_BYTES: u64 = 1_572_864;
pub const DEFAULT_MAX_TXN_OPS: u64 = 128;
/// glommio `io_memory` per shard: small enough that two shards fit an 8 MiB memlock limit.
pub const DEFAULT_IO_MEMORY_BYTES: u64 = 1024 * 1024;

/// `--initial-cluster-state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterState {
    New,
    Existing,
}

impl ClusterState {
    pub fn as_str(self) -> &'static str {
        match self {
            ClusterState::New => "new",
            ClusterState::Existing => "existing",
        }
    }
}

/// `--log-level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
    DPanic,
    Panic,
    Fatal,
}

impl LogLevel {
    fn parse(s: &str) -> Option<LogLevel> {
        Some(match s {
            "debug" => LogLevel::Debug,
            "info" => LogLevel::Info,
            "warn" => LogLevel::Warn,
            "error" => LogLevel::Error,
            "dpanic" => LogLevel::DPanic,
            "panic" => LogLevel::Panic,
            "fatal" => LogLevel::Fatal,
            _ => return None,
        })
    }
}

/// Auto compaction as etcd resolves `--auto-compaction-mode` and `--auto-compaction-retention`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoCompaction {
    Disabled,
    /// Keep this much history (periodic mode; a bare number means hours).
    Periodic(Duration),
    /// Keep this many revisions.
    Revision(u64),
}

/// Client or peer TLS settings (`--cert-file`... or `--peer-cert-file`...).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsConfig {
    pub cert_file: String,
    pub key_file: String,
    pub trusted_ca_file: String,
    pub client_cert_auth: bool,
    pub auto_tls: bool,
    pub crl_file: String,
    pub allowed_hostname: String,
    /// Peer only: `--peer-cert-allowed-cn`.
    pub allowed_cn: String,
}

impl TlsConfig {
    /// True when this side serves TLS (certificates given or generated).
    pub fn is_enabled(&self) -> bool {
        self.auto_tls || !self.cert_file.is_empty() || !self.key_file.is_empty()
    }
}

/// etcd's `--experimental-*` flags that ketch accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Experimental {
    pub initial_corrupt_check: bool,
    pub corrupt_check_time: Duration,
    pub backend_bbolt_freelist_type: String,
    pub enable_lease_checkpoint: bool,
    pub enable_lease_checkpoint_persist: bool,
    pub compaction_batch_limit: i64,
    pub peer_skip_client_san_verification: bool,
    pub watch_progress_notify_interval: Duration,
    pub warning_apply_duration: Duration,
}

/// How severe a [`Notice`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeLevel {
    Info,
    Warn,
}

/// Something etcd would log while reading its configuration (an environment variable used,
/// a deprecated flag, the default data dir); the binary logs these once logging is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub level: NoticeLevel,
    pub message: String,
}

/// Where the configuration came from: etcd reads either the command line and environment,
/// or a config file and nothing else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    CommandLine,
    File(PathBuf),
}

/// A parsed and validated ketch configuration. Field names follow etcd's flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub source: Source,
    pub name: String,
    /// Always set after parsing: `--data-dir`, or `<name>.ketch` when it was not given.
    pub data_dir: PathBuf,
    pub wal_dir: Option<PathBuf>,
    pub snapshot_count: u64,
    pub max_snapshots: u64,
    pub max_wals: u64,
    pub heartbeat_interval_ms: u64,
    pub election_timeout_ms: u64,
    pub initial_election_tick_advance: bool,
    pub quota_backend_bytes: i64,
    pub backend_batch_interval: Duration,
    pub backend_batch_limit: i64,
    pub max_txn_ops: u64,
    pub max_request_bytes: u64,
    pub max_concurrent_streams: u32,
    pub grpc_keepalive_min_time: Duration,
    pub grpc_keepalive_interval: Duration,
    pub grpc_keepalive_timeout: Duration,
    pub listen_peer_urls: Vec<EtcdUrl>,
    pub listen_client_urls: Vec<EtcdUrl>,
    pub listen_metrics_urls: Vec<EtcdUrl>,
    pub initial_advertise_peer_urls: Vec<EtcdUrl>,
    pub advertise_client_urls: Vec<EtcdUrl>,
    /// The `name=url,...` string as given (or derived from name and advertise URLs).
    pub initial_cluster: String,
    pub initial_cluster_token: String,
    pub initial_cluster_state: ClusterState,
    pub strict_reconfig_check: bool,
    pub enable_v2: bool,
    pub pre_vote: bool,
    pub auto_compaction_mode: String,
    pub auto_compaction_retention: String,
    /// Resolved from the two fields above.
    pub auto_compaction: AutoCompaction,
    pub client_tls: TlsConfig,
    pub peer_tls: TlsConfig,
    pub cipher_suites: Vec<String>,
    pub cors: Vec<String>,
    pub host_whitelist: Vec<String>,
    pub auth_token: String,
    pub bcrypt_cost: u64,
    pub auth_token_ttl: u64,
    pub enable_pprof: bool,
    pub metrics: String,
    pub enable_grpc_gateway: bool,
    pub logger: String,
    pub log_outputs: Vec<String>,
    pub log_level: LogLevel,
    pub debug: bool,
    pub log_package_levels: String,
    pub experimental: Experimental,
    pub force_new_cluster: bool,
    pub unsafe_no_fsync: bool,
    /// `--shards`: executors (cores) to run; `None` = every CPU available to the process.
    pub shards: Option<u32>,
    /// `--io-memory-bytes`: glommio `io_memory` per shard.
    pub io_memory_bytes: u64,
    /// What etcd would have logged while reading the configuration.
    pub notices: Vec<Notice>,
    // Raw values that only matter while parsing.
    pub(crate) raw: RawValues,
}

/// Values kept as given until `finish` checks and resolves them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RawValues {
    pub data_dir: String,
    pub cluster_state: String,
    pub log_level: String,
    pub log_output: Option<Vec<String>>,
    pub discovery: String,
    pub discovery_srv: String,
    pub discovery_srv_name: String,
    pub proxy: String,
    pub enable_v2v3: String,
    pub config_file: String,
    pub print_version: bool,
}

fn urls(s: &str) -> Vec<EtcdUrl> {
    parse_url_list(s).expect("built-in default URLs are valid")
}

/// etcd's `InitialClusterFromName`: `name=url` for every advertised peer URL.
pub fn initial_cluster_from_name(name: &str, peer_urls: &[EtcdUrl]) -> String {
    let name = if name.is_empty() { DEFAULT_NAME } else { name };
    peer_urls
        .iter()
        .map(|u| format!("{name}={u}"))
        .collect::<Vec<_>>()
        .join(",")
}

impl Default for Config {
    /// etcd's `embed.NewConfig()` plus its flag defaults, and ketch's own defaults.
    fn default() -> Config {
        let advertise_peer = urls(DEFAULT_INITIAL_ADVERTISE_PEER_URLS);
        Config {
            source: Source::CommandLine,
            name: DEFAULT_NAME.to_owned(),
            data_dir: PathBuf::new(),
            wal_dir: None,
            snapshot_count: DEFAULT_SNAPSHOT_COUNT,
            max_snapshots: 5,
            max_wals: 5,
            heartbeat_interval_ms: DEFAULT_HEARTBEAT_INTERVAL_MS,
            election_timeout_ms: DEFAULT_ELECTION_TIMEOUT_MS,
            initial_election_tick_advance: true,
            quota_backend_bytes: 0,
            backend_batch_interval: Duration::ZERO,
            backend_batch_limit: 0,
            max_txn_ops: DEFAULT_MAX_TXN_OPS,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            max_concurrent_streams: u32::MAX,
            grpc_keepalive_min_time: Duration::from_secs(5),
            grpc_keepalive_interval: Duration::from_secs(2 * 3600),
            grpc_keepalive_timeout: Duration::from_secs(20),
            listen_peer_urls: urls(DEFAULT_LISTEN_PEER_URLS),
            listen_client_urls: urls(DEFAULT_LISTEN_CLIENT_URLS),
            listen_metrics_urls: Vec::new(),
            initial_cluster: initial_cluster_from_name(DEFAULT_NAME, &advertise_peer),
            initial_advertise_peer_urls: advertise_peer,
            advertise_client_urls: urls(DEFAULT_ADVERTISE_CLIENT_URLS),
            initial_cluster_token: DEFAULT_INITIAL_CLUSTER_TOKEN.to_owned(),
            initial_cluster_state: ClusterState::New,
            strict_reconfig_check: true,
            enable_v2: false,
            pre_vote: false,
            auto_compaction_mode: "periodic".to_owned(),
            auto_compaction_retention: "0".to_owned(),
            auto_compaction: AutoCompaction::Disabled,
            client_tls: TlsConfig::default(),
            peer_tls: TlsConfig::default(),
            cipher_suites: Vec::new(),
            cors: vec!["*".to_owned()],
            host_whitelist: vec!["*".to_owned()],
            auth_token: "simple".to_owned(),
            bcrypt_cost: 10,
            auth_token_ttl: 300,
            enable_pprof: false,
            metrics: "basic".to_owned(),
            enable_grpc_gateway: true,
            logger: "capnslog".to_owned(),
            log_outputs: vec!["default".to_owned()],
            log_level: LogLevel::Info,
            debug: false,
            log_package_levels: String::new(),
            experimental: Experimental {
                initial_corrupt_check: false,
                corrupt_check_time: Duration::ZERO,
                backend_bbolt_freelist_type: "array".to_owned(),
                enable_lease_checkpoint: false,
                enable_lease_checkpoint_persist: false,
                compaction_batch_limit: 1000,
                peer_skip_client_san_verification: false,
                watch_progress_notify_interval: Duration::from_secs(600),
                warning_apply_duration: Duration::from_millis(100),
            },
            force_new_cluster: false,
            unsafe_no_fsync: false,
            shards: None,
            io_memory_bytes: DEFAULT_IO_MEMORY_BYTES,
            notices: Vec::new(),
            raw: RawValues {
                cluster_state: "new".to_owned(),
                log_level: "info".to_owned(),
                proxy: "off".to_owned(),
                ..RawValues::default()
            },
        }
    }
}

impl Config {
    /// Parses a command line (the first item is the program name, as in `std::env::args_os`)
    /// with the environment given by `env` (e.g. `|k| std::env::var(k).ok()`), or the
    /// config file `--config-file` / `ETCD_CONFIG_FILE` names, exactly as etcd 3.4.23 does.
    pub fn parse_from<I, E>(args: I, env: E) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = OsString>,
        E: Fn(&str) -> Option<String>,
    {
        let args = args
            .into_iter()
            .skip(1)
            .map(|a| {
                a.into_string()
                    .map_err(|a| ConfigError::Usage(format!("argument {a:?} is not valid UTF-8")))
            })
            .collect::<Result<Vec<String>, _>>()?;
        let mut cfg = Config::default();
        let set_on_command_line = crate::flags::parse_command_line(&mut cfg, &args)?;
        if !cfg.raw.config_file.is_empty() {
            let path = PathBuf::from(&cfg.raw.config_file);
            return crate::file::config_from_file(&path);
        }
        if let Some(path) = crate::flags::config_file_from_env(&env)? {
            return crate::file::config_from_file(&PathBuf::from(path));
        }
        let set_from_env = crate::flags::apply_env(&mut cfg, &set_on_command_line, &env)?;
        // etcd: an explicit --listen-client-urls (flag or variable) without
        // --advertise-client-urls leaves the advertise list empty, which validation refuses.
        let explicit = |n: &str| set_on_command_line.contains(&n) || set_from_env.contains(&n);
        if explicit("listen-client-urls") && !explicit("advertise-client-urls") {
            cfg.advertise_client_urls.clear();
        }
        cfg.finish()?;
        Ok(cfg)
    }

    /// The checks etcd's `Config.Validate` makes, then etcd's start-up defaults (name-based
    /// initial cluster, `<name>.ketch` data dir), then what ketch refuses.
    pub(crate) fn finish(&mut self) -> Result<(), ConfigError> {
        self.validate_logging()?;
        self.validate_urls()?;
        self.validate_cluster_state()?;
        self.validate_timing()?;
        if !self.listen_client_urls.is_empty() && self.advertise_client_urls.is_empty() {
            return Err(invalid(
                "--advertise-client-urls is required when --listen-client-urls is set explicitly",
            ));
        }
        self.auto_compaction = self.resolve_auto_compaction()?;
        if self.experimental.enable_lease_checkpoint_persist
            && !self.experimental.enable_lease_checkpoint
        {
            return Err(invalid(
                "setting experimental-enable-lease-checkpoint-persist requires experimental-enable-lease-checkpoint",
            ));
        }
        self.refuse_unsupported()?;
        self.apply_startup_defaults();
        Ok(())
    }

    fn validate_logging(&mut self) -> Result<(), ConfigError> {
        if let Some(deprecated) = self.raw.log_output.take() {
            if self.log_outputs != ["default"] && self.log_outputs != deprecated {
                return Err(invalid(
                    "both '--log-output' and '--log-outputs' are set; only set '--log-outputs'",
                ));
            }
            self.warn(format!(
                "deprecated '--log-output' flag is set to {deprecated:?}; use '--log-outputs'"
            ));
            self.log_outputs = deprecated;
        }
        self.log_level = LogLevel::parse(&self.raw.log_level).ok_or_else(|| {
            invalid(format!(
                "unknown log level {} (only supports debug, info, warn, error, dpanic, panic, fatal)",
                crate::url::go_quote(&self.raw.log_level)
            ))
        })?;
        let outputs = &self.log_outputs;
        match self.logger.as_str() {
            "capnslog" => {
                if outputs.len() != 1 {
                    return Err(invalid(format!(
                        "--logger=capnslog supports only 1 value in '--log-outputs', got {}",
                        crate::url::go_list(outputs)
                    )));
                }
                if !matches!(outputs[0].as_str(), "default" | "stderr" | "stdout") {
                    return Err(invalid(format!(
                        "unknown log-output {} (only supports \"default\", \"stderr\", \"stdout\")",
                        crate::url::go_quote(&outputs[0])
                    )));
                }
            }
            "zap" => {
                if outputs.len() > 1 && outputs.iter().any(|o| o == "default") {
                    return Err(invalid(
                        "multi logoutput for \"default\" is not supported yet",
                    ));
                }
            }
            other => {
                return Err(invalid(format!(
                    "unknown logger option {}",
                    crate::url::go_quote(other)
                )));
            }
        }
        Ok(())
    }

    fn validate_urls(&self) -> Result<(), ConfigError> {
        check_bind_urls(&self.listen_peer_urls).map_err(invalid)?;
        check_bind_urls(&self.listen_client_urls).map_err(invalid)?;
        check_bind_urls(&self.listen_metrics_urls).map_err(invalid)?;
        check_host_urls(&self.initial_advertise_peer_urls).map_err(|e| {
            invalid(format!(
                "--initial-advertise-peer-urls \"{}\" must be \"host:port\" ({e})",
                join_urls(&self.initial_advertise_peer_urls)
            ))
        })?;
        check_host_urls(&self.advertise_client_urls).map_err(|e| {
            invalid(format!(
                "--advertise-client-urls \"{}\" must be \"host:port\" ({e})",
                join_urls(&self.advertise_client_urls)
            ))
        })
    }

    fn validate_cluster_state(&mut self) -> Result<(), ConfigError> {
        self.initial_cluster_state = match self.raw.cluster_state.as_str() {
            "new" => ClusterState::New,
            "existing" => ClusterState::Existing,
            other => {
                return Err(invalid(format!(
                    "unexpected clusterState {}",
                    crate::url::go_quote(other)
                )));
            }
        };
        Ok(())
    }

    fn validate_timing(&self) -> Result<(), ConfigError> {
        let (tick, election) = (self.heartbeat_interval_ms, self.election_timeout_ms);
        if tick == 0 {
            return Err(invalid(format!(
                "--heartbeat-interval must be >0 (set to {tick}ms)"
            )));
        }
        if election == 0 {
            return Err(invalid(format!(
                "--election-timeout must be >0 (set to {election}ms)"
            )));
        }
        if tick.saturating_mul(5) > election {
            return Err(invalid(format!(
                "--election-timeout[{election}ms] should be at least as 5 times as --heartbeat-interval[{tick}ms]"
            )));
        }
        if election > ELECTION_TIMEOUT_MS_MAX {
            return Err(invalid(format!(
                "--election-timeout[{election}ms] is too long, and should be set less than {ELECTION_TIMEOUT_MS_MAX}ms"
            )));
        }
        Ok(())
    }

    /// etcd's reading of the retention (`embed.StartEtcd`): a bare integer is hours
    /// (periodic) or revisions (revision); anything else must be a Go duration.
    fn resolve_auto_compaction(&self) -> Result<AutoCompaction, ConfigError> {
        let mode = self.auto_compaction_mode.as_str();
        if !matches!(mode, "" | "periodic" | "revision") {
            return Err(invalid(format!(
                "unknown auto-compaction-mode {}",
                crate::url::go_quote(mode)
            )));
        }
        let retention = match self.auto_compaction_retention.as_str() {
            "" => "0",
            r => r,
        };
        if let Ok(n) = retention.parse::<u64>() {
            return Ok(match (mode, n) {
                (_, 0) | ("", _) => AutoCompaction::Disabled,
                ("revision", n) => AutoCompaction::Revision(n),
                (_, n) => AutoCompaction::Periodic(Duration::from_secs(n.saturating_mul(3600))),
            });
        }
        let period = goparse::parse_duration(retention)
            .map_err(|e| invalid(format!("error parsing AutoCompactionRetention: {e}")))?;
        match mode {
            "periodic" if period.is_zero() => Ok(AutoCompaction::Disabled),
            "periodic" => Ok(AutoCompaction::Periodic(period)),
            // etcd would take the duration's nanoseconds as a revision count; refuse instead.
            "revision" => Err(invalid(format!(
                "--auto-compaction-retention={retention} must be a number of revisions with --auto-compaction-mode=revision"
            ))),
            _ => Err(invalid("unsupported compaction mode ")),
        }
    }

    /// What etcd accepts but ketch does not implement: refused with a clear message rather
    /// than silently ignored.
    fn refuse_unsupported(&self) -> Result<(), ConfigError> {
        if self.enable_v2 || !self.raw.enable_v2v3.is_empty() {
            return Err(invalid(
                "--enable-v2=true is not supported: ketch serves only the v3 API (etcd 3.4 ships v2 disabled, 3.6 removed it)",
            ));
        }
        let discovery = [
            ("--discovery", &self.raw.discovery),
            ("--discovery-srv", &self.raw.discovery_srv),
            ("--discovery-srv-name", &self.raw.discovery_srv_name),
        ];
        if let Some((flag, _)) = discovery.iter().find(|(_, v)| !v.is_empty()) {
            return Err(invalid(format!(
                "{flag} is not supported by ketch; bootstrap with --initial-cluster"
            )));
        }
        if !matches!(self.raw.proxy.as_str(), "off" | "readonly" | "on") {
            // Only reachable from a config file; etcd's text.
            return Err(invalid(
                "unexpected error setting up proxyFlag: invalid value",
            ));
        }
        if self.raw.proxy != "off" {
            return Err(invalid(format!(
                "--proxy={} is not supported by ketch (etcd's v2 proxy)",
                self.raw.proxy
            )));
        }
        if self.shards == Some(0) {
            return Err(invalid("--shards must be at least 1"));
        }
        if self.io_memory_bytes == 0 {
            return Err(invalid("--io-memory-bytes must be greater than 0"));
        }
        Ok(())
    }

    /// What etcd's `startEtcdOrProxyV2` does after parsing: `--name x` alone gives
    /// `--initial-cluster x=<advertise peer URLs>`, and an empty data dir `<name>.etcd`
    /// (ketch: `<name>.ketch`).
    fn apply_startup_defaults(&mut self) {
        let default_cluster =
            initial_cluster_from_name(DEFAULT_NAME, &urls(DEFAULT_INITIAL_ADVERTISE_PEER_URLS));
        if self.name != DEFAULT_NAME && self.initial_cluster == default_cluster {
            self.initial_cluster =
                initial_cluster_from_name(&self.name, &self.initial_advertise_peer_urls);
        }
        if self.raw.data_dir.is_empty() {
            let dir = format!("{}.ketch", self.name);
            self.warn(format!(
                "no data-dir provided, using default data-dir ./{dir}"
            ));
            self.data_dir = PathBuf::from(dir);
        } else {
            self.data_dir = PathBuf::from(&self.raw.data_dir);
        }
        if self.quota_backend_bytes > QUOTA_BACKEND_BYTES_RECOMMENDED_MAX as i64 {
            self.warn(format!(
                "backend quota {} exceeds maximum recommended quota {QUOTA_BACKEND_BYTES_RECOMMENDED_MAX}",
                self.quota_backend_bytes
            ));
        }
    }

    pub(crate) fn warn(&mut self, message: String) {
        self.notices.push(Notice {
            level: NoticeLevel::Warn,
            message,
        });
    }

    pub(crate) fn info(&mut self, message: String) {
        self.notices.push(Notice {
            level: NoticeLevel::Info,
            message,
        });
    }

    /// The backend quota in force: `None` when disabled (negative flag), 2 GiB for 0.
    pub fn effective_quota_backend_bytes(&self) -> Option<u64> {
        match self.quota_backend_bytes {
            q if q < 0 => None,
            0 => Some(DEFAULT_QUOTA_BACKEND_BYTES),
            q => Some(q as u64),
        }
    }

    /// Executors to start: `--shards`, or every CPU available to this process.
    pub fn effective_shards(&self) -> u32 {
        self.shards.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map_or(1, |n| u32::try_from(n.get()).unwrap_or(u32::MAX))
        })
    }

    /// The WAL directory: `--wal-dir`, else `<data-dir>/member/wal` as in etcd.
    pub fn effective_wal_dir(&self) -> PathBuf {
        self.wal_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("member").join("wal"))
    }

    /// etcd's default-host rewrite, for the binary to call with the host it detected from
    /// the default route: when listening on 0.0.0.0 with the default advertise URL, advertise
    /// `host` instead. Returns whether anything changed.
    pub fn apply_default_host(&mut self, host: &str) -> bool {
        let default_peer = urls(DEFAULT_INITIAL_ADVERTISE_PEER_URLS);
        let default_client = urls(DEFAULT_ADVERTISE_CLIENT_URLS);
        let mut used = false;
        let listen_peer = self.listen_peer_urls.first().cloned();
        if let Some(lp) = listen_peer.filter(|u| u.hostname() == "0.0.0.0")
            && self.initial_advertise_peer_urls == default_peer
        {
            let old_cluster = initial_cluster_from_name(&self.name, &default_peer);
            self.initial_advertise_peer_urls =
                vec![default_peer[0].with_host_port(host, lp.port())];
            if self.name != DEFAULT_NAME && self.initial_cluster == old_cluster {
                self.initial_cluster =
                    initial_cluster_from_name(&self.name, &self.initial_advertise_peer_urls);
            }
            used = true;
        }
        let listen_client = self.listen_client_urls.first().cloned();
        if let Some(lc) = listen_client.filter(|u| u.hostname() == "0.0.0.0")
            && self.advertise_client_urls == default_client
        {
            self.advertise_client_urls = vec![default_client[0].with_host_port(host, lc.port())];
            used = true;
        }
        used
    }
}

pub(crate) fn invalid(msg: impl Into<String>) -> ConfigError {
    ConfigError::Invalid(msg.into())
}
