//! `--config-file`: etcd's YAML keys, decoded with the type rules etcd's YAML-to-JSON
//! decoder applies (strings accept any scalar, integers must be numbers, durations are
//! integer nanoseconds, unknown keys are ignored, key case does not matter) and etcd's
//! error texts. A config file replaces the command line and the environment entirely.

use std::path::Path;
use std::time::Duration;

use serde_yaml::Value as Yaml;

use crate::config::{Config, Source, invalid};
use crate::error::ConfigError;
use crate::url::parse_url_list;

/// The Go type of a configYAML field, which decides what YAML values it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GoType {
    Str,
    Uint,
    Uint64,
    Uint32,
    Int,
    Int64,
    Bool,
    Duration,
    StrSlice,
    Security,
}

impl GoType {
    fn go_name(self) -> &'static str {
        match self {
            GoType::Str => "string",
            GoType::Uint => "uint",
            GoType::Uint64 => "uint64",
            GoType::Uint32 => "uint32",
            GoType::Int => "int",
            GoType::Int64 => "int64",
            GoType::Bool => "bool",
            GoType::Duration => "time.Duration",
            GoType::StrSlice => "[]string",
            GoType::Security => "embed.securityConfig",
        }
    }
}

/// A YAML value after the type check.
enum Val {
    Str(String),
    Uint(u64),
    Int(i64),
    Bool(bool),
    Dur(Duration),
    List(Vec<String>),
}

impl Val {
    fn s(self) -> String {
        match self {
            Val::Str(s) => s,
            _ => unreachable!("table types agree with apply functions"),
        }
    }
    fn u(self) -> u64 {
        match self {
            Val::Uint(n) => n,
            _ => unreachable!("table types agree with apply functions"),
        }
    }
    fn i(self) -> i64 {
        match self {
            Val::Int(n) => n,
            _ => unreachable!("table types agree with apply functions"),
        }
    }
    fn b(self) -> bool {
        match self {
            Val::Bool(b) => b,
            _ => unreachable!("table types agree with apply functions"),
        }
    }
    fn d(self) -> Duration {
        match self {
            Val::Dur(d) => d,
            _ => unreachable!("table types agree with apply functions"),
        }
    }
    fn l(self) -> Vec<String> {
        match self {
            Val::List(l) => l,
            _ => unreachable!("table types agree with apply functions"),
        }
    }
}

type Apply = fn(&mut Config, Val, &mut FileUrls);

/// URL keys are strings in the file, parsed after decoding as etcd does.
#[derive(Default)]
struct FileUrls {
    listen_peer: String,
    listen_client: String,
    advertise_peer: String,
    advertise_client: String,
    listen_metrics: String,
}

use GoType::*;

/// etcd 3.4.23's configYAML keys (embed.Config json tags, the etcdmain proxy keys), then
/// ketch's `shards` and `io-memory-bytes`.
static KEYS: &[(&str, GoType, Apply)] = &[
    ("name", Str, |c, v, _| c.name = v.s()),
    ("data-dir", Str, |c, v, _| c.raw.data_dir = v.s()),
    ("wal-dir", Str, |c, v, _| {
        c.wal_dir = Some(v.s()).filter(|s| !s.is_empty()).map(Into::into)
    }),
    ("snapshot-count", Uint64, |c, v, _| c.snapshot_count = v.u()),
    ("max-snapshots", Uint, |c, v, _| c.max_snapshots = v.u()),
    ("max-wals", Uint, |c, v, _| c.max_wals = v.u()),
    ("heartbeat-interval", Uint, |c, v, _| {
        c.heartbeat_interval_ms = v.u()
    }),
    ("election-timeout", Uint, |c, v, _| {
        c.election_timeout_ms = v.u()
    }),
    ("initial-election-tick-advance", Bool, |c, v, _| {
        c.initial_election_tick_advance = v.b()
    }),
    ("backend-batch-interval", Duration, |c, v, _| {
        c.backend_batch_interval = v.d()
    }),
    ("backend-batch-limit", Int, |c, v, _| {
        c.backend_batch_limit = v.i()
    }),
    ("quota-backend-bytes", Int64, |c, v, _| {
        c.quota_backend_bytes = v.i()
    }),
    ("max-txn-ops", Uint, |c, v, _| c.max_txn_ops = v.u()),
    ("max-request-bytes", Uint, |c, v, _| {
        c.max_request_bytes = v.u()
    }),
    ("max-concurrent-streams", Uint32, |c, v, _| {
        c.max_concurrent_streams = v.u() as u32
    }),
    ("cipher-suites", StrSlice, |c, v, _| c.cipher_suites = v.l()),
    ("initial-cluster-state", Str, |c, v, _| {
        c.raw.cluster_state = v.s()
    }),
    ("discovery-srv", Str, |c, v, _| c.raw.discovery_srv = v.s()),
    ("discovery-srv-name", Str, |c, v, _| {
        c.raw.discovery_srv_name = v.s()
    }),
    ("discovery-proxy", Str, |_, _, _| {}),
    ("discovery", Str, |c, v, _| c.raw.discovery = v.s()),
    ("discovery-fallback", Str, |_, _, _| {}),
    ("initial-cluster", Str, |c, v, _| c.initial_cluster = v.s()),
    ("initial-cluster-token", Str, |c, v, _| {
        c.initial_cluster_token = v.s()
    }),
    ("strict-reconfig-check", Bool, |c, v, _| {
        c.strict_reconfig_check = v.b()
    }),
    ("enable-v2", Bool, |c, v, _| c.enable_v2 = v.b()),
    ("auto-compaction-mode", Str, |c, v, _| {
        c.auto_compaction_mode = v.s()
    }),
    ("auto-compaction-retention", Str, |c, v, _| {
        c.auto_compaction_retention = v.s()
    }),
    ("grpc-keepalive-min-time", Duration, |c, v, _| {
        c.grpc_keepalive_min_time = v.d()
    }),
    ("grpc-keepalive-interval", Duration, |c, v, _| {
        c.grpc_keepalive_interval = v.d()
    }),
    ("grpc-keepalive-timeout", Duration, |c, v, _| {
        c.grpc_keepalive_timeout = v.d()
    }),
    ("pre-vote", Bool, |c, v, _| c.pre_vote = v.b()),
    ("auth-token", Str, |c, v, _| c.auth_token = v.s()),
    ("bcrypt-cost", Uint, |c, v, _| c.bcrypt_cost = v.u()),
    ("auth-token-ttl", Uint, |c, v, _| c.auth_token_ttl = v.u()),
    ("experimental-initial-corrupt-check", Bool, |c, v, _| {
        c.experimental.initial_corrupt_check = v.b()
    }),
    ("experimental-corrupt-check-time", Duration, |c, v, _| {
        c.experimental.corrupt_check_time = v.d()
    }),
    ("experimental-enable-v2v3", Str, |c, v, _| {
        c.raw.enable_v2v3 = v.s()
    }),
    (
        "experimental-backend-bbolt-freelist-type",
        Str,
        |c, v, _| c.experimental.backend_bbolt_freelist_type = v.s(),
    ),
    ("experimental-enable-lease-checkpoint", Bool, |c, v, _| {
        c.experimental.enable_lease_checkpoint = v.b()
    }),
    (
        "experimental-enable-lease-checkpoint-persist",
        Bool,
        |c, v, _| c.experimental.enable_lease_checkpoint_persist = v.b(),
    ),
    ("experimental-compaction-batch-limit", Int, |c, v, _| {
        c.experimental.compaction_batch_limit = v.i()
    }),
    (
        "experimental-watch-progress-notify-interval",
        Duration,
        |c, v, _| c.experimental.watch_progress_notify_interval = v.d(),
    ),
    (
        "experimental-warning-apply-duration",
        Duration,
        |c, v, _| c.experimental.warning_apply_duration = v.d(),
    ),
    ("force-new-cluster", Bool, |c, v, _| {
        c.force_new_cluster = v.b()
    }),
    ("enable-pprof", Bool, |c, v, _| c.enable_pprof = v.b()),
    ("metrics", Str, |c, v, _| c.metrics = v.s()),
    ("listen-metrics-urls", Str, |_, v, u| {
        u.listen_metrics = v.s()
    }),
    ("logger", Str, |c, v, _| c.logger = v.s()),
    ("log-level", Str, |c, v, _| c.raw.log_level = v.s()),
    ("log-outputs", StrSlice, |c, v, _| c.log_outputs = v.l()),
    ("log-output", StrSlice, |c, v, _| {
        c.raw.log_output = Some(v.l())
    }),
    ("enable-grpc-gateway", Bool, |c, v, _| {
        c.enable_grpc_gateway = v.b()
    }),
    ("debug", Bool, |c, v, _| c.debug = v.b()),
    ("log-package-levels", Str, |c, v, _| {
        c.log_package_levels = v.s()
    }),
    ("unsafe-no-fsync", Bool, |c, v, _| c.unsafe_no_fsync = v.b()),
    ("listen-peer-urls", Str, |_, v, u| u.listen_peer = v.s()),
    ("listen-client-urls", Str, |_, v, u| u.listen_client = v.s()),
    ("initial-advertise-peer-urls", Str, |_, v, u| {
        u.advertise_peer = v.s()
    }),
    ("advertise-client-urls", Str, |_, v, u| {
        u.advertise_client = v.s()
    }),
    ("cors", Str, |c, v, _| c.cors = split_unique(&v.s())),
    ("host-whitelist", Str, |c, v, _| {
        c.host_whitelist = split_unique(&v.s())
    }),
    ("proxy", Str, |c, v, _| c.raw.proxy = v.s()),
    ("proxy-failure-wait", Uint, |_, _, _| {}),
    ("proxy-refresh-interval", Uint, |_, _, _| {}),
    ("proxy-dial-timeout", Uint, |_, _, _| {}),
    ("proxy-write-timeout", Uint, |_, _, _| {}),
    ("proxy-read-timeout", Uint, |_, _, _| {}),
    ("client-transport-security", Security, |_, _, _| {}),
    ("peer-transport-security", Security, |_, _, _| {}),
    ("shards", Uint32, |c, v, _| c.shards = Some(v.u() as u32)),
    ("io-memory-bytes", Uint64, |c, v, _| {
        c.io_memory_bytes = v.u()
    }),
];

/// Keys of `client-transport-security` and `peer-transport-security`.
static SECURITY_KEYS: &[(&str, GoType)] = &[
    ("cert-file", Str),
    ("key-file", Str),
    ("client-cert-auth", Bool),
    ("trusted-ca-file", Str),
    ("auto-tls", Bool),
];

fn split_unique(s: &str) -> Vec<String> {
    let mut out: Vec<String> = s.split(',').map(str::to_owned).collect();
    out.sort();
    out.dedup();
    out
}

/// Reads and validates a config file as etcd's `configFromFile` does.
pub(crate) fn config_from_file(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| invalid(format!("open {}: {}", path.display(), go_io_error(&e))))?;
    let mut cfg = file_defaults(path);
    let doc: Yaml = serde_yaml::from_str(&text)
        .map_err(|e| invalid(format!("error converting YAML to JSON: yaml: {e}")))?;
    let mut urls = FileUrls::default();
    decode_document(&mut cfg, doc, &mut urls).map_err(|e| {
        invalid(format!(
            "error unmarshaling JSON: while decoding JSON: json: {e}"
        ))
    })?;
    apply_file_urls(&mut cfg, &urls)?;
    if cfg.raw.cluster_state.is_empty() {
        cfg.raw.cluster_state = "new".to_owned();
    }
    cfg.info(format!(
        "loaded server configuration from {:?}; other configuration command line flags and environment variables are ignored",
        path.display().to_string()
    ));
    cfg.finish()?;
    Ok(cfg)
}

/// etcd's `embed.NewConfig()`, which a config file starts from. It differs from the flag
/// defaults in two places: no auto-compaction mode, and the gRPC gateway off.
fn file_defaults(path: &Path) -> Config {
    let mut cfg = Config {
        source: Source::File(path.to_path_buf()),
        ..Config::default()
    };
    cfg.auto_compaction_mode = String::new();
    cfg.auto_compaction_retention = String::new();
    cfg.enable_grpc_gateway = false;
    cfg
}

fn go_io_error(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".to_owned(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
        std::io::ErrorKind::IsADirectory => "is a directory".to_owned(),
        _ => e.to_string(),
    }
}

fn decode_document(cfg: &mut Config, doc: Yaml, urls: &mut FileUrls) -> Result<(), String> {
    let map = match doc {
        Yaml::Null => return Ok(()),
        Yaml::Mapping(map) => map,
        other => {
            return Err(format!(
                "cannot unmarshal {} into Go value of type embed.configYAML",
                json_kind(&other)
            ));
        }
    };
    for (key, value) in map {
        let Some(key) = key.as_str().map(str::to_owned) else {
            continue;
        };
        // encoding/json matches field names case-insensitively; unknown keys are ignored.
        let Some((name, ty, apply)) = KEYS.iter().find(|(k, _, _)| k.eq_ignore_ascii_case(&key))
        else {
            continue;
        };
        if value.is_null() {
            continue;
        }
        if *ty == Security {
            decode_security(cfg, name, value)?;
            continue;
        }
        let field = format!("configYAML.{name}");
        apply(cfg, convert(value, *ty, &field)?, urls);
    }
    Ok(())
}

fn decode_security(cfg: &mut Config, name: &str, value: Yaml) -> Result<(), String> {
    let Yaml::Mapping(map) = value else {
        return Err(type_error(&value, &format!("configYAML.{name}"), Security));
    };
    let tls = if name == "client-transport-security" {
        &mut cfg.client_tls
    } else {
        &mut cfg.peer_tls
    };
    for (key, value) in map {
        let Some(key) = key.as_str() else { continue };
        let Some((field, ty)) = SECURITY_KEYS
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
        else {
            continue;
        };
        if value.is_null() {
            continue;
        }
        // Go names the nested struct's type first: securityConfig.<key>.<field>.
        let path = format!("securityConfig.{name}.{field}");
        match (convert(value, *ty, &path)?, *field) {
            (v, "cert-file") => tls.cert_file = v.s(),
            (v, "key-file") => tls.key_file = v.s(),
            (v, "client-cert-auth") => tls.client_cert_auth = v.b(),
            (v, "trusted-ca-file") => tls.trusted_ca_file = v.s(),
            (v, _) => tls.auto_tls = v.b(),
        }
    }
    Ok(())
}

fn json_kind(v: &Yaml) -> &'static str {
    match v {
        Yaml::Null => "null",
        Yaml::Bool(_) => "bool",
        Yaml::Number(_) => "number",
        Yaml::String(_) => "string",
        Yaml::Sequence(_) => "array",
        Yaml::Mapping(_) => "object",
        Yaml::Tagged(t) => json_kind(&t.value),
    }
}

fn type_error(v: &Yaml, field: &str, ty: GoType) -> String {
    let what = match v {
        Yaml::Number(n) => format!("number {n}"),
        other => json_kind(other).to_owned(),
    };
    format!(
        "cannot unmarshal {what} into Go struct field {field} of type {}",
        ty.go_name()
    )
}

/// The YAML-to-JSON-to-Go conversion for one value.
fn convert(v: Yaml, ty: GoType, field: &str) -> Result<Val, String> {
    let err = |v: &Yaml| type_error(v, field, ty);
    match ty {
        // etcd 3.4.23 refuses `name: 123` ("cannot unmarshal number into ... of type
        // string"; measured): only YAML strings fill string fields.
        Str => match &v {
            Yaml::String(s) => Ok(Val::Str(s.clone())),
            Yaml::Number(_) => Err(format!(
                "cannot unmarshal number into Go struct field {field} of type string"
            )),
            _ => Err(err(&v)),
        },
        Uint | Uint64 | Uint32 => {
            let max = if ty == Uint32 {
                u64::from(u32::MAX)
            } else {
                u64::MAX
            };
            v.as_u64()
                .filter(|n| *n <= max)
                .map(Val::Uint)
                .ok_or_else(|| err(&v))
        }
        Int | Int64 => v.as_i64().map(Val::Int).ok_or_else(|| err(&v)),
        Duration => match v.as_i64() {
            Some(ns) if ns >= 0 => Ok(Val::Dur(std::time::Duration::from_nanos(ns as u64))),
            _ => Err(err(&v)),
        },
        Bool => match &v {
            Yaml::Bool(b) => Ok(Val::Bool(*b)),
            // etcd's YAML 1.1 decoder reads these words as booleans; serde_yaml does not.
            Yaml::String(s) => match s.to_ascii_lowercase().as_str() {
                "y" | "yes" | "on" => Ok(Val::Bool(true)),
                "n" | "no" | "off" => Ok(Val::Bool(false)),
                _ => Err(err(&v)),
            },
            _ => Err(err(&v)),
        },
        StrSlice => match &v {
            Yaml::Sequence(items) => items
                .iter()
                .map(|item| match convert(item.clone(), Str, field)? {
                    Val::Str(s) => Ok(s),
                    _ => unreachable!("Str converts to Val::Str"),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Val::List),
            _ => Err(err(&v)),
        },
        Security => Err(err(&v)),
    }
}

/// etcd parses the URL keys after decoding, failing with `unexpected error setting up <key>`.
fn apply_file_urls(cfg: &mut Config, urls: &FileUrls) -> Result<(), ConfigError> {
    // etcd's message for advertise-client-urls says "advertise-peer-urls" (sic).
    let keys = [
        (&urls.listen_peer, "listen-peer-urls"),
        (&urls.listen_client, "listen-client-urls"),
        (&urls.advertise_peer, "initial-advertise-peer-urls"),
        (&urls.advertise_client, "advertise-peer-urls"),
        (&urls.listen_metrics, "listen-metrics-urls"),
    ];
    let mut parsed = Vec::with_capacity(keys.len());
    for (value, key) in keys {
        if value.is_empty() {
            parsed.push(None);
            continue;
        }
        let list = parse_url_list(value)
            .map_err(|e| invalid(format!("unexpected error setting up {key}: {e}")))?;
        parsed.push(Some(list));
    }
    let mut it = parsed.into_iter();
    let mut set = |target: &mut Vec<crate::url::EtcdUrl>| {
        if let Some(Some(list)) = it.next() {
            *target = list;
        }
    };
    set(&mut cfg.listen_peer_urls);
    set(&mut cfg.listen_client_urls);
    set(&mut cfg.initial_advertise_peer_urls);
    set(&mut cfg.advertise_client_urls);
    set(&mut cfg.listen_metrics_urls);
    Ok(())
}
