//! The flag table (every etcd 3.4.23 flag plus ketch's), the command-line parser with Go
//! `flag` package semantics (`-name v`, `--name=v`, bare booleans, `--` ends flags, the
//! first positional argument ends parsing), and etcd's `ETCD_*` environment rules with
//! `KETCH_*` accepted as an alias.

use std::time::Duration;

use crate::config::{Config, invalid};
use crate::error::ConfigError;
use crate::goparse;
use crate::url::{EtcdUrl, go_quote, parse_url_list};

/// Sets one value from its flag text; the error is what Go's `flag.Value.Set` returns.
pub(crate) type Apply = fn(&mut Config, &str) -> Result<(), String>;

/// How a flag consumes its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Needs a value: `--x=v` or `--x v`.
    Value,
    /// Go bool flag: bare `--x` is true, a value only with `=`.
    Bool,
    /// An etcd flag from older releases that etcd ignores with a warning (a bool flag).
    Ignored,
}

/// Which environment variables set a flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Env {
    /// `ETCD_<NAME>` as etcd reads it, and `KETCH_<NAME>`.
    EtcdAndKetch,
    /// ketch-only flags: `KETCH_<NAME>` only.
    KetchOnly,
}

/// Help-text section, in etcd's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Section {
    Member,
    Clustering,
    Security,
    Auth,
    Monitoring,
    Logging,
    Proxy,
    Experimental,
    Unsafe,
    Ketch,
    /// Not listed in `--help` (as in etcd: `--version`, `--config-file`, deprecated ones).
    Hidden,
}

pub(crate) struct Flag {
    pub name: &'static str,
    pub kind: Kind,
    pub env: Env,
    pub section: Section,
    /// The default as `--help` shows it.
    pub default: &'static str,
    pub help: &'static str,
    pub apply: Apply,
}

const fn flag(
    name: &'static str,
    kind: Kind,
    section: Section,
    default: &'static str,
    help: &'static str,
    apply: Apply,
) -> Flag {
    Flag {
        name,
        kind,
        env: Env::EtcdAndKetch,
        section,
        default,
        help,
        apply,
    }
}

fn uint(v: &str) -> Result<u64, String> {
    goparse::parse_uint(v, 64).map_err(|e| e.flag_text().to_owned())
}

fn int(v: &str) -> Result<i64, String> {
    goparse::parse_int(v, 64).map_err(|e| e.flag_text().to_owned())
}

fn boolean(v: &str) -> Result<bool, String> {
    goparse::parse_bool(v).map_err(|e| e.flag_text().to_owned())
}

fn duration(v: &str) -> Result<Duration, String> {
    goparse::parse_duration(v).map_err(|e| {
        if e.starts_with("negative") {
            e
        } else {
            goparse::PARSE_ERROR.to_owned()
        }
    })
}

/// etcd's `UniqueURLsWithExceptions(default, "")`: an empty value keeps the current list.
fn url_list(current: &[EtcdUrl], v: &str) -> Result<Vec<EtcdUrl>, String> {
    if v.is_empty() {
        return Ok(current.to_vec());
    }
    parse_url_list(v)
}

/// etcd's `SelectiveStringValue`.
fn selective(v: &str, valid: &[&str]) -> Result<String, String> {
    if valid.contains(&v) {
        Ok(v.to_owned())
    } else {
        Err("invalid value".to_owned())
    }
}

/// etcd's `UniqueStringsValue`: comma-separated, deduplicated, sorted.
fn unique_strings(v: &str) -> Vec<String> {
    let mut out: Vec<String> = v.split(',').map(str::to_owned).collect();
    out.sort();
    out.dedup();
    out
}

/// etcd's `--cors`: `*` or a list of URLs.
fn cors(v: &str) -> Result<Vec<String>, String> {
    if v == "*" {
        return Ok(vec!["*".to_owned()]);
    }
    let mut out: Vec<String> = parse_url_list(v)?.iter().map(ToString::to_string).collect();
    out.dedup();
    Ok(out)
}

/// etcd's `Uint32Value`, whose errors are raw `strconv` errors.
fn uint32(v: &str) -> Result<u32, String> {
    goparse::parse_uint(v, 32)
        .map(|n| n as u32)
        .map_err(|e| match e {
            goparse::NumError::Syntax => {
                format!("strconv.ParseUint: parsing {}: invalid syntax", go_quote(v))
            }
            goparse::NumError::Range => {
                format!(
                    "strconv.ParseUint: parsing {}: value out of range",
                    go_quote(v)
                )
            }
        })
}

fn ignored(_: &mut Config, _: &str) -> Result<(), String> {
    Ok(())
}

use Kind::{Bool, Value};
use Section::*;

/// Every flag etcd 3.4.23 defines (`etcd --help` plus its hidden ones), then ketch's.
pub(crate) static FLAGS: &[Flag] = &[
    flag(
        "config-file",
        Value,
        Hidden,
        "",
        "Path to the server configuration file. Note that if a configuration file is provided, other command line flags and environment variables will be ignored.",
        |c, v| {
            c.raw.config_file = v.to_owned();
            Ok(())
        },
    ),
    flag(
        "version",
        Bool,
        Hidden,
        "false",
        "Print the version and exit.",
        |c, v| {
            c.raw.print_version = boolean(v)?;
            Ok(())
        },
    ),
    // Member
    flag(
        "name",
        Value,
        Member,
        "default",
        "Human-readable name for this member.",
        |c, v| {
            c.name = v.to_owned();
            Ok(())
        },
    ),
    flag(
        "data-dir",
        Value,
        Member,
        "${name}.ketch",
        "Path to the data directory.",
        |c, v| {
            c.raw.data_dir = v.to_owned();
            Ok(())
        },
    ),
    flag(
        "wal-dir",
        Value,
        Member,
        "",
        "Path to the dedicated wal directory.",
        |c, v| {
            c.wal_dir = (!v.is_empty()).then(|| v.into());
            Ok(())
        },
    ),
    flag(
        "snapshot-count",
        Value,
        Member,
        "100000",
        "Number of committed transactions to trigger a snapshot to disk.",
        |c, v| {
            c.snapshot_count = uint(v)?;
            Ok(())
        },
    ),
    flag(
        "heartbeat-interval",
        Value,
        Member,
        "100",
        "Time (in milliseconds) of a heartbeat interval.",
        |c, v| {
            c.heartbeat_interval_ms = uint(v)?;
            Ok(())
        },
    ),
    flag(
        "election-timeout",
        Value,
        Member,
        "1000",
        "Time (in milliseconds) for an election to timeout. See tuning documentation for details.",
        |c, v| {
            c.election_timeout_ms = uint(v)?;
            Ok(())
        },
    ),
    flag(
        "initial-election-tick-advance",
        Bool,
        Member,
        "true",
        "Whether to fast-forward initial election ticks on boot for faster election.",
        |c, v| {
            c.initial_election_tick_advance = boolean(v)?;
            Ok(())
        },
    ),
    flag(
        "listen-peer-urls",
        Value,
        Member,
        "http://localhost:2380",
        "List of URLs to listen on for peer traffic.",
        |c, v| {
            c.listen_peer_urls = url_list(&c.listen_peer_urls, v)?;
            Ok(())
        },
    ),
    flag(
        "listen-client-urls",
        Value,
        Member,
        "http://localhost:2379",
        "List of URLs to listen on for client traffic.",
        |c, v| {
            c.listen_client_urls = url_list(&c.listen_client_urls, v)?;
            Ok(())
        },
    ),
    flag(
        "max-snapshots",
        Value,
        Member,
        "5",
        "Maximum number of snapshot files to retain (0 is unlimited).",
        |c, v| {
            c.max_snapshots = uint(v)?;
            Ok(())
        },
    ),
    flag(
        "max-wals",
        Value,
        Member,
        "5",
        "Maximum number of wal files to retain (0 is unlimited).",
        |c, v| {
            c.max_wals = uint(v)?;
            Ok(())
        },
    ),
    flag(
        "quota-backend-bytes",
        Value,
        Member,
        "0",
        "Raise alarms when backend size exceeds the given quota (0 defaults to low space quota).",
        |c, v| {
            c.quota_backend_bytes = int(v)?;
            Ok(())
        },
    ),
    flag(
        "backend-batch-interval",
        Value,
        Member,
        "",
        "BackendBatchInterval is the maximum time before commit the backend transaction.",
        |c, v| {
            c.backend_batch_interval = duration(v)?;
            Ok(())
        },
    ),
    flag(
        "backend-batch-limit",
        Value,
        Member,
        "0",
        "BackendBatchLimit is the maximum operations before commit the backend transaction.",
        |c, v| {
            c.backend_batch_limit = int(v)?;
            Ok(())
        },
    ),
    flag(
        "max-txn-ops",
        Value,
        Member,
        "128",
        "Maximum number of operations permitted in a transaction.",
        |c, v| {
            c.max_txn_ops = uint(v)?;
            Ok(())
        },
    ),
    flag(
        "max-request-bytes",
        Value,
        Member,
        "1572864",
        "Maximum client request size in bytes the server will accept.",
        |c, v| {
            c.max_request_bytes = uint(v)?;
            Ok(())
        },
    ),
    flag(
        "max-concurrent-streams",
        Value,
        Member,
        "math.MaxUint32",
        "Maximum concurrent streams that each client can open at a time.",
        |c, v| {
            c.max_concurrent_streams = uint32(v)?;
            Ok(())
        },
    ),
    flag(
        "grpc-keepalive-min-time",
        Value,
        Member,
        "5s",
        "Minimum duration interval that a client should wait before pinging server.",
        |c, v| {
            c.grpc_keepalive_min_time = duration(v)?;
            Ok(())
        },
    ),
    flag(
        "grpc-keepalive-interval",
        Value,
        Member,
        "2h",
        "Frequency duration of server-to-client ping to check if a connection is alive (0 to disable).",
        |c, v| {
            c.grpc_keepalive_interval = duration(v)?;
            Ok(())
        },
    ),
    flag(
        "grpc-keepalive-timeout",
        Value,
        Member,
        "20s",
        "Additional duration of wait before closing a non-responsive connection (0 to disable).",
        |c, v| {
            c.grpc_keepalive_timeout = duration(v)?;
            Ok(())
        },
    ),
    // Clustering
    flag(
        "initial-advertise-peer-urls",
        Value,
        Clustering,
        "http://localhost:2380",
        "List of this member's peer URLs to advertise to the rest of the cluster.",
        |c, v| {
            c.initial_advertise_peer_urls = url_list(&c.initial_advertise_peer_urls, v)?;
            Ok(())
        },
    ),
    flag(
        "initial-cluster",
        Value,
        Clustering,
        "default=http://localhost:2380",
        "Initial cluster configuration for bootstrapping.",
        |c, v| {
            c.initial_cluster = v.to_owned();
            Ok(())
        },
    ),
    flag(
        "initial-cluster-state",
        Value,
        Clustering,
        "new",
        "Initial cluster state ('new' or 'existing').",
        |c, v| {
            c.raw.cluster_state = selective(v, &["new", "existing"])?;
            Ok(())
        },
    ),
    flag(
        "initial-cluster-token",
        Value,
        Clustering,
        "etcd-cluster",
        "Initial cluster token for the etcd cluster during bootstrap.",
        |c, v| {
            c.initial_cluster_token = v.to_owned();
            Ok(())
        },
    ),
    flag(
        "advertise-client-urls",
        Value,
        Clustering,
        "http://localhost:2379",
        "List of this member's client URLs to advertise to the public.",
        |c, v| {
            c.advertise_client_urls = url_list(&c.advertise_client_urls, v)?;
            Ok(())
        },
    ),
    flag(
        "discovery",
        Value,
        Clustering,
        "",
        "Discovery URL used to bootstrap the cluster (not supported by ketch).",
        |c, v| {
            c.raw.discovery = v.to_owned();
            Ok(())
        },
    ),
    flag(
        "discovery-fallback",
        Value,
        Clustering,
        "proxy",
        "Expected behavior ('exit' or 'proxy') when discovery services fails.",
        |_, v| {
            selective(v, &["proxy", "exit"])?;
            Ok(())
        },
    ),
    flag(
        "discovery-proxy",
        Value,
        Clustering,
        "",
        "HTTP proxy to use for traffic to discovery service.",
        ignored,
    ),
    flag(
        "discovery-srv",
        Value,
        Clustering,
        "",
        "DNS srv domain used to bootstrap the cluster (not supported by ketch).",
        |c, v| {
            c.raw.discovery_srv = v.to_owned();
            Ok(())
        },
    ),
    flag(
        "discovery-srv-name",
        Value,
        Clustering,
        "",
        "Suffix to the dns srv name queried when bootstrapping (not supported by ketch).",
        |c, v| {
            c.raw.discovery_srv_name = v.to_owned();
            Ok(())
        },
    ),
    flag(
        "strict-reconfig-check",
        Bool,
        Clustering,
        "true",
        "Reject reconfiguration requests that would cause quorum loss.",
        |c, v| {
            c.strict_reconfig_check = boolean(v)?;
            Ok(())
        },
    ),
    flag(
        "pre-vote",
        Bool,
        Clustering,
        "false",
        "Enable to run an additional Raft election phase.",
        |c, v| {
            c.pre_vote = boolean(v)?;
            Ok(())
        },
    ),
    flag(
        "auto-compaction-retention",
        Value,
        Clustering,
        "0",
        "Auto compaction retention length. 0 means disable auto compaction.",
        |c, v| {
            c.auto_compaction_retention = v.to_owned();
            Ok(())
        },
    ),
    flag(
        "auto-compaction-mode",
        Value,
        Clustering,
        "periodic",
        "Interpret 'auto-compaction-retention' one of: periodic|revision. 'periodic' for duration based retention, defaulting to hours if no time unit is provided (e.g. '5m'). 'revision' for revision number based retention.",
        |c, v| {
            c.auto_compaction_mode = v.to_owned();
            Ok(())
        },
    ),
    flag(
        "enable-v2",
        Bool,
        Clustering,
        "false",
        "Accept etcd V2 client requests (ketch refuses true: v3 API only).",
        |c, v| {
            c.enable_v2 = boolean(v)?;
            Ok(())
        },
    ),
    // Security
    flag(
        "cert-file",
        Value,
        Security,
        "",
        "Path to the client server TLS cert file.",
        |c, v| {
            c.client_tls.cert_file = v.to_owned();
            Ok(())
        },
    ),
    flag(
        "key-file",
        Value,
        Security,
        "",
        "Path to the client server TLS key file.",
        |c, v| {
            c.client_tls.key_file = v.to_owned();
            Ok(())
        },
    ),
    flag(
        "client-cert-auth",
        Bool,
        Security,
        "false",
        "Enable client cert authentication.",
        |c, v| {
            c.client_tls.client_cert_auth = boolean(v)?;
            Ok(())
        },
    ),
    flag(
        "client-crl-file",
        Value,
        Security,
        "",
        "Path to the client certificate revocation list file.",
        |c, v| {
            c.client_tls.crl_file = v.to_owned();
            Ok(())
        },
    ),
    flag(
        "client-cert-allowed-hostname",
        Value,
        Security,
        "",
        "Allowed TLS hostname for client cert authentication.",
        |c, v| {
            c.client_tls.allowed_hostname = v.to_owned();
            Ok(())
        },
    ),
    flag(
        "trusted-ca-file",
        Value,
        Security,
        "",
        "Path to the client server TLS trusted CA cert file.",
        |c, v| {
            c.client_tls.trusted_ca_file = v.to_owned();
            Ok(())
        },
    ),
    flag(
        "auto-tls",
        Bool,
        Security,
        "false",
        "Client TLS using generated certificates.",
        |c, v| {
            c.client_tls.auto_tls = boolean(v)?;
            Ok(())
        },
    ),
    flag(
        "peer-cert-file",
        Value,
        Security,
        "",
        "Path to the peer server TLS cert file.",
        |c, v| {
            c.peer_tls.cert_file = v.to_owned();
            Ok(())
        },
    ),
    flag(
        "peer-key-file",
        Value,
        Security,
        "",
        "Path to the peer server TLS key file.",
        |c, v| {
            c.peer_tls.key_file = v.to_owned();
            Ok(())
        },
    ),
    flag(
        "peer-client-cert-auth",
        Bool,
        Security,
        "false",
        "Enable peer client cert authentication.",
        |c, v| {
            c.peer_tls.client_cert_auth = boolean(v)?;
            Ok(())
        },
    ),
    flag(
        "peer-trusted-ca-file",
        Value,
        Security,
        "",
        "Path to the peer server TLS trusted CA file.",
        |c, v| {
            c.peer_tls.trusted_ca_file = v.to_owned();
            Ok(())
        },
    ),
    flag(
        "peer-cert-allowed-cn",
        Value,
        Security,
        "",
        "Required CN for client certs connecting to the peer endpoint.",
        |c, v| {
            c.peer_tls.allowed_cn = v.to_owned();
            Ok(())
        },
    ),
    flag(
        "peer-cert-allowed-hostname",
        Value,
        Security,
        "",
        "Allowed TLS hostname for inter peer authentication.",
        |c, v| {
            c.peer_tls.allowed_hostname = v.to_owned();
            Ok(())
        },
    ),
    flag(
        "peer-auto-tls",
        Bool,
        Security,
        "false",
        "Peer TLS using self-generated certificates if --peer-key-file and --peer-cert-file are not provided.",
        |c, v| {
            c.peer_tls.auto_tls = boolean(v)?;
            Ok(())
        },
    ),
    flag(
        "peer-crl-file",
        Value,
        Security,
        "",
        "Path to the peer certificate revocation list file.",
        |c, v| {
            c.peer_tls.crl_file = v.to_owned();
            Ok(())
        },
    ),
    flag(
        "cipher-suites",
        Value,
        Security,
        "",
        "Comma-separated list of supported TLS cipher suites between client/server and peers (empty will be auto-populated by Go).",
        |c, v| {
            c.cipher_suites = if v.is_empty() {
                Vec::new()
            } else {
                v.split(',').map(str::to_owned).collect()
            };
            Ok(())
        },
    ),
    flag(
        "cors",
        Value,
        Security,
        "*",
        "Comma-separated whitelist of origins for CORS, or cross-origin resource sharing, (empty or * means allow all).",
        |c, v| {
            c.cors = cors(v)?;
            Ok(())
        },
    ),
    flag(
        "host-whitelist",
        Value,
        Security,
        "*",
        "Acceptable hostnames from HTTP client requests, if server is not secure (empty or * means allow all).",
        |c, v| {
            c.host_whitelist = unique_strings(v);
            Ok(())
        },
    ),
    flag(
        "experimental-peer-skip-client-san-verification",
        Bool,
        Experimental,
        "false",
        "Skip verification of SAN field in client certificate for peer connections.",
        |c, v| {
            c.experimental.peer_skip_client_san_verification = boolean(v)?;
            Ok(())
        },
    ),
    // Auth
    flag(
        "auth-token",
        Value,
        Auth,
        "simple",
        "Specify a v3 authentication token type and its options ('simple' or 'jwt').",
        |c, v| {
            c.auth_token = v.to_owned();
            Ok(())
        },
    ),
    flag(
        "bcrypt-cost",
        Value,
        Auth,
        "10",
        "Specify the cost / strength of the bcrypt algorithm for hashing auth passwords. Valid values are between 4 and 31.",
        |c, v| {
            c.bcrypt_cost = uint(v)?;
            Ok(())
        },
    ),
    flag(
        "auth-token-ttl",
        Value,
        Auth,
        "300",
        "Time (in seconds) of the auth-token-ttl.",
        |c, v| {
            c.auth_token_ttl = uint(v)?;
            Ok(())
        },
    ),
    // Profiling and monitoring
    flag(
        "enable-pprof",
        Bool,
        Monitoring,
        "false",
        "Enable runtime profiling data via HTTP server (accepted; ketch serves no pprof).",
        |c, v| {
            c.enable_pprof = boolean(v)?;
            Ok(())
        },
    ),
    flag(
        "metrics",
        Value,
        Monitoring,
        "basic",
        "Set level of detail for exported metrics, specify 'extensive' to include histogram metrics.",
        |c, v| {
            c.metrics = v.to_owned();
            Ok(())
        },
    ),
    flag(
        "listen-metrics-urls",
        Value,
        Monitoring,
        "",
        "List of URLs to listen on for the metrics and health endpoints.",
        |c, v| {
            c.listen_metrics_urls = url_list(&c.listen_metrics_urls, v)?;
            Ok(())
        },
    ),
    // Logging
    flag(
        "logger",
        Value,
        Logging,
        "capnslog",
        "Specify 'zap' for structured logging or 'capnslog'.",
        |c, v| {
            c.logger = v.to_owned();
            Ok(())
        },
    ),
    flag(
        "log-outputs",
        Value,
        Logging,
        "default",
        "Specify 'stdout' or 'stderr' to skip journald logging even when running under systemd, or list of comma separated output targets.",
        |c, v| {
            c.log_outputs = unique_strings(v);
            Ok(())
        },
    ),
    flag(
        "log-level",
        Value,
        Logging,
        "info",
        "Configures log level. Only supports debug, info, warn, error, panic, or fatal.",
        |c, v| {
            c.raw.log_level = v.to_owned();
            Ok(())
        },
    ),
    // v2 proxy: parsed as etcd parses it; anything but --proxy=off is refused.
    flag(
        "proxy",
        Value,
        Proxy,
        "off",
        "Proxy mode setting ('off', 'readonly' or 'on'); ketch accepts only 'off'.",
        |c, v| {
            c.raw.proxy = selective(v, &["off", "readonly", "on"])?;
            Ok(())
        },
    ),
    flag(
        "proxy-failure-wait",
        Value,
        Proxy,
        "5000",
        "Time (in milliseconds) an endpoint will be held in a failed state.",
        |_, v| {
            uint(v)?;
            Ok(())
        },
    ),
    flag(
        "proxy-refresh-interval",
        Value,
        Proxy,
        "30000",
        "Time (in milliseconds) of the endpoints refresh interval.",
        |_, v| {
            uint(v)?;
            Ok(())
        },
    ),
    flag(
        "proxy-dial-timeout",
        Value,
        Proxy,
        "1000",
        "Time (in milliseconds) for a dial to timeout.",
        |_, v| {
            uint(v)?;
            Ok(())
        },
    ),
    flag(
        "proxy-write-timeout",
        Value,
        Proxy,
        "5000",
        "Time (in milliseconds) for a write to timeout.",
        |_, v| {
            uint(v)?;
            Ok(())
        },
    ),
    flag(
        "proxy-read-timeout",
        Value,
        Proxy,
        "0",
        "Time (in milliseconds) for a read to timeout.",
        |_, v| {
            uint(v)?;
            Ok(())
        },
    ),
    // Experimental
    flag(
        "experimental-initial-corrupt-check",
        Bool,
        Experimental,
        "false",
        "Enable to check data corruption before serving any client/peer traffic.",
        |c, v| {
            c.experimental.initial_corrupt_check = boolean(v)?;
            Ok(())
        },
    ),
    flag(
        "experimental-corrupt-check-time",
        Value,
        Experimental,
        "0s",
        "Duration of time between cluster corruption check passes.",
        |c, v| {
            c.experimental.corrupt_check_time = duration(v)?;
            Ok(())
        },
    ),
    flag(
        "experimental-enable-v2v3",
        Value,
        Experimental,
        "",
        "Serve v2 requests through the v3 backend under a given prefix (ketch refuses it: no v2 API).",
        |c, v| {
            c.raw.enable_v2v3 = v.to_owned();
            Ok(())
        },
    ),
    flag(
        "experimental-backend-bbolt-freelist-type",
        Value,
        Experimental,
        "array",
        "ExperimentalBackendFreelistType specifies the type of freelist that boltdb backend uses(array and map are supported types).",
        |c, v| {
            c.experimental.backend_bbolt_freelist_type = v.to_owned();
            Ok(())
        },
    ),
    flag(
        "experimental-enable-lease-checkpoint",
        Bool,
        Experimental,
        "false",
        "ExperimentalEnableLeaseCheckpoint enables primary lessor to persist lease remainingTTL to prevent indefinite auto-renewal of long lived leases.",
        |c, v| {
            c.experimental.enable_lease_checkpoint = boolean(v)?;
            Ok(())
        },
    ),
    flag(
        "experimental-enable-lease-checkpoint-persist",
        Bool,
        Experimental,
        "false",
        "Enable persisting remainingTTL to prevent indefinite auto-renewal of long lived leases. Always enabled in v3.6. Should be used to ensure smooth upgrade from v3.5 clusters with this feature enabled.",
        |c, v| {
            c.experimental.enable_lease_checkpoint_persist = boolean(v)?;
            Ok(())
        },
    ),
    flag(
        "experimental-compaction-batch-limit",
        Value,
        Experimental,
        "1000",
        "ExperimentalCompactionBatchLimit sets the maximum revisions deleted in each compaction batch.",
        |c, v| {
            c.experimental.compaction_batch_limit = int(v)?;
            Ok(())
        },
    ),
    flag(
        "experimental-watch-progress-notify-interval",
        Value,
        Experimental,
        "10m",
        "Duration of periodical watch progress notification.",
        |c, v| {
            c.experimental.watch_progress_notify_interval = duration(v)?;
            Ok(())
        },
    ),
    flag(
        "experimental-warning-apply-duration",
        Value,
        Experimental,
        "100ms",
        "Warning is generated if requests take more than this duration.",
        |c, v| {
            c.experimental.warning_apply_duration = duration(v)?;
            Ok(())
        },
    ),
    // Unsafe
    flag(
        "force-new-cluster",
        Bool,
        Unsafe,
        "false",
        "Force to create a new one-member cluster.",
        |c, v| {
            c.force_new_cluster = boolean(v)?;
            Ok(())
        },
    ),
    flag(
        "unsafe-no-fsync",
        Bool,
        Unsafe,
        "false",
        "Disables fsync, unsafe, will cause data loss.",
        |c, v| {
            c.unsafe_no_fsync = boolean(v)?;
            Ok(())
        },
    ),
    // Deprecated in etcd 3.4 (still accepted)
    flag(
        "debug",
        Bool,
        Hidden,
        "false",
        "Enable debug-level logging for etcd. Use '--log-level=debug' instead.",
        |c, v| {
            c.debug = boolean(v)?;
            Ok(())
        },
    ),
    flag(
        "log-package-levels",
        Value,
        Hidden,
        "",
        "Specify a particular log level for each etcd package (eg: 'etcdmain=CRITICAL,etcdserver=DEBUG').",
        |c, v| {
            c.log_package_levels = v.to_owned();
            Ok(())
        },
    ),
    flag(
        "log-output",
        Value,
        Hidden,
        "default",
        "[TO BE DEPRECATED IN v3.5] use '--log-outputs'.",
        |c, v| {
            c.raw.log_output = Some(unique_strings(v));
            Ok(())
        },
    ),
    flag(
        "enable-grpc-gateway",
        Bool,
        Hidden,
        "true",
        "Enable GRPC gateway.",
        |c, v| {
            c.enable_grpc_gateway = boolean(v)?;
            Ok(())
        },
    ),
    // ketch's own
    Flag {
        name: "shards",
        kind: Value,
        env: Env::KetchOnly,
        section: Ketch,
        default: "number of CPUs available",
        help: "Number of executors (one per core) serving clients.",
        apply: |c, v| {
            c.shards = Some(u32::try_from(uint(v)?).map_err(|_| goparse::RANGE_ERROR.to_owned())?);
            Ok(())
        },
    },
    Flag {
        name: "io-memory-bytes",
        kind: Value,
        env: Env::KetchOnly,
        section: Ketch,
        default: "1048576",
        help: "io_uring registered buffer memory per shard (glommio io_memory); all shards must fit RLIMIT_MEMLOCK.",
        apply: |c, v| {
            c.io_memory_bytes = uint(v)?;
            Ok(())
        },
    },
    // Flags of etcd 2 that etcd 3.4 still accepts and ignores with a warning.
    flag(
        "cluster-active-size",
        Kind::Ignored,
        Hidden,
        "",
        "",
        ignored,
    ),
    flag(
        "cluster-remove-delay",
        Kind::Ignored,
        Hidden,
        "",
        "",
        ignored,
    ),
    flag(
        "cluster-sync-interval",
        Kind::Ignored,
        Hidden,
        "",
        "",
        ignored,
    ),
    flag("config", Kind::Ignored, Hidden, "", "", ignored),
    flag("force", Kind::Ignored, Hidden, "", "", ignored),
    flag("max-result-buffer", Kind::Ignored, Hidden, "", "", ignored),
    flag("max-retry-attempts", Kind::Ignored, Hidden, "", "", ignored),
    flag(
        "peer-heartbeat-interval",
        Kind::Ignored,
        Hidden,
        "",
        "",
        ignored,
    ),
    flag(
        "peer-election-timeout",
        Kind::Ignored,
        Hidden,
        "",
        "",
        ignored,
    ),
    flag("retry-interval", Kind::Ignored, Hidden, "", "", ignored),
    flag("snapshot", Kind::Ignored, Hidden, "", "", ignored),
    flag("v", Kind::Ignored, Hidden, "", "", ignored),
    flag("vv", Kind::Ignored, Hidden, "", "", ignored),
    flag("test.coverprofile", Kind::Ignored, Hidden, "", "", ignored),
    flag("test.outputdir", Kind::Ignored, Hidden, "", "", ignored),
];

fn lookup(name: &str) -> Option<&'static Flag> {
    FLAGS.iter().find(|f| f.name == name)
}

/// `FlagToEnv`: `ETCD_` + the flag name upper-cased with `-` as `_`.
pub fn env_name(prefix: &str, flag_name: &str) -> String {
    format!(
        "{prefix}_{}",
        flag_name.replace('-', "_").to_ascii_uppercase()
    )
}

fn ignored_notice(name: &str) -> String {
    format!("flag \"-{name}\" is no longer supported - ignoring.")
}

/// Go `flag.FlagSet.Parse` over `args` (without the program name) into `cfg`. Returns the
/// names of the flags set, in order.
pub(crate) fn parse_command_line(
    cfg: &mut Config,
    args: &[String],
) -> Result<Vec<&'static str>, ConfigError> {
    if let Some(cmd @ ("gateway" | "grpc-proxy")) = args.first().map(String::as_str) {
        return Err(invalid(format!("'etcd {cmd}' is not supported by ketch")));
    }
    let mut set = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        if arg.len() < 2 || !arg.starts_with('-') {
            break;
        }
        if arg == "--" {
            i += 1;
            break;
        }
        i += 1;
        let body = arg.strip_prefix("--").unwrap_or(&arg[1..]);
        if body.is_empty() || body.starts_with('-') || body.starts_with('=') {
            return Err(ConfigError::Usage(format!("bad flag syntax: {arg}")));
        }
        let (name, inline) = match body.char_indices().skip(1).find(|(_, c)| *c == '=') {
            Some((at, _)) => (&body[..at], Some(&body[at + 1..])),
            None => (body, None),
        };
        let spec = match lookup(name) {
            Some(spec) => spec,
            None if name == "help" || name == "h" => return Err(ConfigError::HelpRequested),
            None => {
                return Err(ConfigError::Usage(format!(
                    "flag provided but not defined: -{name}"
                )));
            }
        };
        let value = match (spec.kind, inline) {
            (_, Some(v)) => v,
            (Kind::Bool | Kind::Ignored, None) => "true",
            (Kind::Value, None) if i < args.len() => {
                i += 1;
                args[i - 1].as_str()
            }
            (Kind::Value, None) => {
                return Err(ConfigError::Usage(format!(
                    "flag needs an argument: -{name}"
                )));
            }
        };
        set_from_command_line(cfg, spec, value)?;
        set.push(spec.name);
    }
    if let Some(first) = args.get(i) {
        return Err(invalid(format!("'{first}' is not a valid flag")));
    }
    if cfg.raw.print_version {
        return Err(ConfigError::VersionRequested);
    }
    Ok(set)
}

fn set_from_command_line(cfg: &mut Config, spec: &Flag, value: &str) -> Result<(), ConfigError> {
    let name = spec.name;
    match spec.kind {
        Kind::Ignored => {
            cfg.warn(ignored_notice(name));
            Ok(())
        }
        Kind::Bool => (spec.apply)(cfg, value).map_err(|e| {
            ConfigError::Usage(format!(
                "invalid boolean value {} for -{name}: {e}",
                go_quote(value)
            ))
        }),
        Kind::Value => (spec.apply)(cfg, value).map_err(|e| {
            ConfigError::Usage(format!(
                "invalid value {} for flag -{name}: {e}",
                go_quote(value)
            ))
        }),
    }
}

/// The environment names that set `spec`, etcd's first.
fn env_names(spec: &Flag) -> Vec<String> {
    match spec.env {
        Env::EtcdAndKetch => vec![env_name("ETCD", spec.name), env_name("KETCH", spec.name)],
        Env::KetchOnly => vec![env_name("KETCH", spec.name)],
    }
}

/// `ETCD_CONFIG_FILE` / `KETCH_CONFIG_FILE`, read before anything else as etcd does.
pub(crate) fn config_file_from_env(
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Option<String>, ConfigError> {
    let spec = lookup("config-file").expect("config-file is in the table");
    single_env_value(spec, env).map(|v| v.map(|(_, value)| value))
}

/// The one non-empty value the environment gives for `spec`, with its variable name.
/// `ETCD_X` and `KETCH_X` may both be set only to the same value.
fn single_env_value(
    spec: &Flag,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Option<(String, String)>, ConfigError> {
    let found: Vec<(String, String)> = env_names(spec)
        .into_iter()
        .filter_map(|k| env(&k).filter(|v| !v.is_empty()).map(|v| (k, v)))
        .collect();
    if let [(k1, v1), (k2, v2)] = found.as_slice()
        && v1 != v2
    {
        return Err(invalid(format!(
            "conflicting environment variables {k1}={v1} and {k2}={v2}; set only one"
        )));
    }
    Ok(found.into_iter().next())
}

/// etcd's `SetFlagsFromEnv`: every flag not given on the command line may come from the
/// environment; a variable for a flag that *was* given is a fatal conflict (etcd 3.4.23
/// exits 1 even when the variable is empty; measured).
/// Returns the names of the flags it set: Go's `FlagSet.Set` marks them as set, so etcd's
/// later "was --listen-client-urls given" check counts them (measured).
pub(crate) fn apply_env(
    cfg: &mut Config,
    set_on_command_line: &[&str],
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Vec<&'static str>, ConfigError> {
    for spec in FLAGS
        .iter()
        .filter(|f| set_on_command_line.contains(&f.name))
    {
        if let Some(key) = env_names(spec).into_iter().find(|k| env(k).is_some()) {
            return Err(invalid(format!(
                "conflicting environment variable \"{key}\" is shadowed by corresponding command-line flag (either unset environment variable or disable flag)"
            )));
        }
    }
    let mut set = Vec::new();
    for spec in FLAGS.iter().filter(|f| f.name != "config-file") {
        if set_on_command_line.contains(&spec.name) {
            continue;
        }
        let Some((key, value)) = single_env_value(spec, env)? else {
            continue;
        };
        if spec.kind == Kind::Ignored {
            cfg.warn(ignored_notice(spec.name));
        } else {
            (spec.apply)(cfg, &value).map_err(|e| {
                invalid(format!("invalid value {} for {key}: {e}", go_quote(&value)))
            })?;
        }
        cfg.info(format!(
            "recognized and used environment variable {key}={value}"
        ));
        set.push(spec.name);
    }
    Ok(set)
}

/// etcd's warning for `ETCD_*` variables that name no flag; ketch also checks `KETCH_*`.
/// Give it the whole environment (`std::env::vars()`). Empty when a config file was used,
/// since etcd ignores the environment then.
pub fn unrecognized_env_warnings(
    cfg: &Config,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Vec<String> {
    if cfg.source != crate::config::Source::CommandLine {
        return Vec::new();
    }
    let known: Vec<String> = FLAGS.iter().flat_map(env_names).collect();
    vars.into_iter()
        .filter(|(k, _)| k.starts_with("ETCD_") || k.starts_with("KETCH_"))
        .filter(|(k, _)| !known.contains(k))
        .map(|(k, v)| format!("unrecognized environment variable {k}={v}"))
        .collect()
}
