//! Checks `--config-file` against etcd 3.4.23 (measured on this machine): etcd's YAML keys
//! (including the nested TLS sections), that a config file replaces command-line flags and
//! environment entirely, and etcd's messages for unreadable files, wrong types and bad URLs.

mod common;

use std::io::Write;

use common::{parse_env, url_strings};
use ketch_config::{AutoCompaction, ClusterState, Config, ConfigError, LogLevel, Source};

fn write_yaml(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(text.as_bytes()).expect("write yaml");
    file
}

fn from_file(text: &str) -> Result<Config, ConfigError> {
    let file = write_yaml(text);
    let path = file.path().to_str().expect("utf-8 path").to_owned();
    parse_env(&["--config-file", &path], &[])
}

fn file_err(text: &str) -> String {
    match from_file(text) {
        Err(ConfigError::Invalid(msg)) => msg,
        other => panic!("{text}: expected a validation error, got {other:?}"),
    }
}

const FULL: &str = "
name: infra2
data-dir: /var/lib/ketch/infra2
wal-dir: /wal
snapshot-count: 5000
heartbeat-interval: 150
election-timeout: 1500
listen-peer-urls: http://127.0.0.1:22380
listen-client-urls: http://127.0.0.1:22379,http://127.0.0.1:22378
initial-advertise-peer-urls: http://127.0.0.1:22380
advertise-client-urls: http://127.0.0.1:22379
initial-cluster: infra1=http://127.0.0.1:12380,infra2=http://127.0.0.1:22380
initial-cluster-token: etcd-cluster-1
initial-cluster-state: existing
strict-reconfig-check: false
quota-backend-bytes: 4294967296
max-request-bytes: 10485760
max-txn-ops: 256
auto-compaction-mode: periodic
auto-compaction-retention: '30m'
grpc-keepalive-interval: 60000000000
logger: zap
log-outputs: [stderr]
log-level: warn
enable-pprof: true
listen-metrics-urls: http://127.0.0.1:9090
client-transport-security:
  cert-file: /c.pem
  key-file: /k.pem
  client-cert-auth: true
  trusted-ca-file: /ca.pem
peer-transport-security:
  auto-tls: true
shards: 2
io-memory-bytes: 2097152
some-unknown-key: ignored
";

#[test]
fn yaml_keys_are_etcds() {
    let cfg = from_file(FULL).expect("valid file");
    assert!(matches!(cfg.source, Source::File(_)));
    assert_eq!(cfg.name, "infra2");
    assert_eq!(cfg.data_dir.to_str(), Some("/var/lib/ketch/infra2"));
    assert_eq!(cfg.effective_wal_dir().to_str(), Some("/wal"));
    assert_eq!(cfg.snapshot_count, 5000);
    assert_eq!(
        (cfg.heartbeat_interval_ms, cfg.election_timeout_ms),
        (150, 1500)
    );
    assert_eq!(
        url_strings(&cfg.listen_client_urls),
        ["http://127.0.0.1:22378", "http://127.0.0.1:22379"]
    );
    assert_eq!(
        url_strings(&cfg.initial_advertise_peer_urls),
        ["http://127.0.0.1:22380"]
    );
    assert_eq!(cfg.initial_cluster_token, "etcd-cluster-1");
    assert_eq!(cfg.initial_cluster_state, ClusterState::Existing);
    assert!(!cfg.strict_reconfig_check);
    assert_eq!(cfg.effective_quota_backend_bytes(), Some(4 << 30));
    assert_eq!((cfg.max_request_bytes, cfg.max_txn_ops), (10_485_760, 256));
    assert_eq!(
        cfg.auto_compaction,
        AutoCompaction::Periodic(std::time::Duration::from_secs(1800))
    );
    assert_eq!(
        cfg.grpc_keepalive_interval,
        std::time::Duration::from_secs(60)
    );
    assert_eq!(
        (cfg.logger.as_str(), cfg.log_level),
        ("zap", LogLevel::Warn)
    );
    assert_eq!(cfg.log_outputs, ["stderr"]);
    assert!(cfg.enable_pprof);
    assert_eq!(
        url_strings(&cfg.listen_metrics_urls),
        ["http://127.0.0.1:9090"]
    );
    assert_eq!(cfg.client_tls.cert_file, "/c.pem");
    assert_eq!(cfg.client_tls.key_file, "/k.pem");
    assert_eq!(cfg.client_tls.trusted_ca_file, "/ca.pem");
    assert!(cfg.client_tls.client_cert_auth);
    assert!(cfg.peer_tls.auto_tls && cfg.peer_tls.cert_file.is_empty());
    assert_eq!((cfg.shards, cfg.io_memory_bytes), (Some(2), 2 << 20));
}

#[test]
fn file_replaces_flags_and_environment() {
    // etcd 3.4.23 with --config-file plus --name/--heartbeat-interval and ETCD_NAME used the
    // file's name and the default heartbeat (measured): the others are ignored, no error.
    let file = write_yaml("name: fromfile\n");
    let path = file.path().to_str().expect("utf-8").to_owned();
    let cfg = parse_env(
        &[
            "--config-file",
            &path,
            "--name",
            "flagname",
            "--heartbeat-interval=200",
        ],
        &[("ETCD_NAME", "envname"), ("ETCD_SNAPSHOT_COUNT", "7")],
    )
    .expect("file wins");
    assert_eq!(cfg.name, "fromfile");
    assert_eq!(cfg.heartbeat_interval_ms, 100);
    assert_eq!(cfg.snapshot_count, 100_000);
    assert_eq!(cfg.initial_cluster, "fromfile=http://localhost:2380");
    assert_eq!(cfg.data_dir.to_str(), Some("fromfile.ketch"));
    // ...but flags are still parsed first: a bad flag value is a usage error (exit 2).
    let err = parse_env(&["--config-file", &path, "--heartbeat-interval=abc"], &[])
        .map(|_| ())
        .unwrap_err();
    assert_eq!(err.exit_code(), 2);
    // ETCD_CONFIG_FILE and KETCH_CONFIG_FILE name the file too.
    for key in ["ETCD_CONFIG_FILE", "KETCH_CONFIG_FILE"] {
        let cfg = parse_env(&["--name", "flagname"], &[(key, &path)]).expect("env file");
        assert_eq!(cfg.name, "fromfile", "{key}");
    }
    assert!(
        ketch_config::unrecognized_env_warnings(&cfg, [("ETCD_X".into(), "1".into())]).is_empty()
    );
}

#[test]
fn file_defaults_are_embed_newconfigs() {
    let cfg = from_file("").expect("empty file is valid");
    assert_eq!(cfg.name, "default");
    assert_eq!(cfg.initial_cluster_state, ClusterState::New);
    // etcd's embed.NewConfig() leaves the gRPC gateway off and sets no compaction mode.
    assert!(!cfg.enable_grpc_gateway);
    assert_eq!(cfg.auto_compaction_mode, "");
    assert_eq!(cfg.auto_compaction, AutoCompaction::Disabled);
    // Key names match case-insensitively (Go's encoding/json); YAML 1.1 booleans work.
    let cfg = from_file("NAME: upper\nStrict-Reconfig-Check: no\n").expect("valid");
    assert_eq!(cfg.name, "upper");
    assert!(!cfg.strict_reconfig_check);
}

#[test]
fn type_errors_match_etcd() {
    let prefix = "error unmarshaling JSON: while decoding JSON: json: ";
    let cases = [
        (
            "name: [1,2]",
            "cannot unmarshal array into Go struct field configYAML.name of type string",
        ),
        (
            "name: 123",
            "cannot unmarshal number into Go struct field configYAML.name of type string",
        ),
        (
            "heartbeat-interval: abc",
            "cannot unmarshal string into Go struct field configYAML.heartbeat-interval of type uint",
        ),
        (
            "snapshot-count: -1",
            "cannot unmarshal number -1 into Go struct field configYAML.snapshot-count of type uint64",
        ),
        (
            "backend-batch-limit: x",
            "cannot unmarshal string into Go struct field configYAML.backend-batch-limit of type int",
        ),
        (
            "quota-backend-bytes: 1.5",
            "cannot unmarshal number 1.5 into Go struct field configYAML.quota-backend-bytes of type int64",
        ),
        (
            "grpc-keepalive-interval: 5s",
            "cannot unmarshal string into Go struct field configYAML.grpc-keepalive-interval of type time.Duration",
        ),
        (
            "log-outputs: stderr",
            "cannot unmarshal string into Go struct field configYAML.log-outputs of type []string",
        ),
        (
            "client-transport-security:\n  cert-file: [1]",
            "cannot unmarshal array into Go struct field securityConfig.client-transport-security.cert-file of type string",
        ),
        (
            "- a",
            "cannot unmarshal array into Go value of type embed.configYAML",
        ),
    ];
    for (yaml, want) in cases {
        assert_eq!(file_err(yaml), format!("{prefix}{want}"), "{yaml}");
    }
}

#[test]
fn other_file_errors_match_etcd() {
    assert_eq!(
        file_err("listen-client-urls: foo"),
        "unexpected error setting up listen-client-urls: URL scheme must be http, https, unix, or unixs: foo"
    );
    assert_eq!(
        file_err("initial-cluster-state: bogus"),
        "unexpected clusterState \"bogus\""
    );
    assert_eq!(
        file_err("proxy: bogus"),
        "unexpected error setting up proxyFlag: invalid value"
    );
    assert_eq!(
        file_err("election-timeout: 400"),
        "--election-timeout[400ms] should be at least as 5 times as --heartbeat-interval[100ms]"
    );
    assert!(file_err("name: x\n  bad: [\n").starts_with("error converting YAML to JSON: yaml: "));
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("nope.yaml");
    let missing = missing.to_str().expect("utf-8");
    match parse_env(&["--config-file", missing], &[]) {
        Err(ConfigError::Invalid(msg)) => {
            assert_eq!(msg, format!("open {missing}: no such file or directory"));
        }
        other => panic!("expected open error, got {other:?}"),
    }
}
