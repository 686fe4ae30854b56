//! Checks that ketch's defaults are etcd 3.4.23's: the values `etcd --help` lists and the
//! fields of etcd's `starting an etcd server` log line for a flag-less start (both measured
//! on this machine from /usr/bin/etcd 3.4.23), and that every flag etcd lists is accepted.

mod common;

use std::time::Duration;

use common::{ok, parse, url_strings};
use ketch_config::{AutoCompaction, ClusterState, ConfigError, Id, LogLevel, startup_summary};

#[test]
fn flagless_start_has_etcds_defaults() {
    let cfg = ok(&[]);
    assert_eq!(cfg.name, "default");
    assert_eq!(cfg.data_dir.to_str(), Some("default.ketch"));
    assert_eq!(cfg.wal_dir, None);
    assert_eq!(
        url_strings(&cfg.listen_client_urls),
        ["http://localhost:2379"]
    );
    assert_eq!(
        url_strings(&cfg.advertise_client_urls),
        ["http://localhost:2379"]
    );
    assert_eq!(
        url_strings(&cfg.listen_peer_urls),
        ["http://localhost:2380"]
    );
    assert_eq!(
        url_strings(&cfg.initial_advertise_peer_urls),
        ["http://localhost:2380"]
    );
    assert!(cfg.listen_metrics_urls.is_empty());
    assert_eq!(cfg.initial_cluster, "default=http://localhost:2380");
    assert_eq!(cfg.initial_cluster_token, "etcd-cluster");
    assert_eq!(cfg.initial_cluster_state, ClusterState::New);
    assert_eq!(cfg.heartbeat_interval_ms, 100);
    assert_eq!(cfg.election_timeout_ms, 1000);
    // etcd 3.4's DefaultSnapshotCount; DESIGN.md's 10000 is etcd 3.2's.
    assert_eq!(cfg.snapshot_count, 100_000);
    assert_eq!(cfg.quota_backend_bytes, 0);
    assert_eq!(
        cfg.effective_quota_backend_bytes(),
        Some(2 * 1024 * 1024 * 1024)
    );
    assert_eq!(cfg.max_request_bytes, 1_572_864);
    assert_eq!(cfg.max_txn_ops, 128);
    assert_eq!(cfg.max_concurrent_streams, u32::MAX);
    assert_eq!(cfg.max_snapshots, 5);
    assert_eq!(cfg.max_wals, 5);
    assert_eq!(cfg.grpc_keepalive_min_time, Duration::from_secs(5));
    assert_eq!(cfg.grpc_keepalive_interval, Duration::from_secs(7200));
    assert_eq!(cfg.grpc_keepalive_timeout, Duration::from_secs(20));
    assert!(cfg.strict_reconfig_check);
    assert!(!cfg.enable_v2);
    assert!(!cfg.pre_vote);
    assert!(cfg.initial_election_tick_advance);
    assert_eq!(cfg.auto_compaction_mode, "periodic");
    assert_eq!(cfg.auto_compaction, AutoCompaction::Disabled);
    assert_eq!(cfg.logger, "capnslog");
    assert_eq!(cfg.log_outputs, ["default"]);
    assert_eq!(cfg.log_level, LogLevel::Info);
    assert_eq!(cfg.auth_token, "simple");
    assert_eq!(cfg.bcrypt_cost, 10);
    assert_eq!(cfg.auth_token_ttl, 300);
    assert_eq!(cfg.metrics, "basic");
    assert!(cfg.enable_grpc_gateway);
    assert!(!cfg.client_tls.is_enabled() && !cfg.peer_tls.is_enabled());
    assert_eq!(cfg.shards, None);
    assert!(cfg.effective_shards() >= 1);
    assert_eq!(cfg.io_memory_bytes, 1024 * 1024);
    assert_eq!(
        cfg.effective_wal_dir().to_str(),
        Some("default.ketch/member/wal")
    );
    // etcd warns "no data-dir provided, using default data-dir ./default.etcd".
    assert!(
        cfg.notices
            .iter()
            .any(|n| n.message == "no data-dir provided, using default data-dir ./default.ketch")
    );
}

#[test]
fn startup_summary_matches_etcds_startup_log_fields() {
    let cfg = ok(&[]);
    let boot = cfg.bootstrap().expect("default bootstrap");
    let summary = startup_summary(&cfg, boot.local_member_id, boot.cluster_id);
    let get = |k: &str| {
        summary
            .iter()
            .find(|(key, _)| *key == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("summary lacks {k}"))
    };
    // Values from etcd 3.4.23's `starting an etcd server` entry (--logger=zap), measured.
    assert_eq!(get("name"), "default");
    assert_eq!(get("heartbeat-interval"), "100ms");
    assert_eq!(get("election-timeout"), "1s");
    assert_eq!(get("snapshot-count"), "100000");
    assert_eq!(get("max-wals"), "5");
    assert_eq!(get("max-snapshots"), "5");
    assert_eq!(get("snapshot-catchup-entries"), "5000");
    assert_eq!(get("initial-cluster"), "default=http://localhost:2380");
    assert_eq!(get("initial-cluster-state"), "new");
    assert_eq!(get("initial-cluster-token"), "etcd-cluster");
    assert_eq!(get("quota-backend-bytes"), "2147483648");
    assert_eq!(get("max-request-bytes"), "1572864");
    assert_eq!(get("max-concurrent-streams"), "4294967295");
    assert_eq!(get("max-txn-ops"), "128");
    assert_eq!(get("auto-compaction-mode"), "periodic");
    assert_eq!(get("auto-compaction-retention"), "0s");
    assert_eq!(get("corrupt-check-time-interval"), "0s");
    assert_eq!(get("member-dir"), "default.ketch/member");
    // etcd 3.4.23 with default flags: "starting member 8e9e05c52164694d in cluster
    // cdf818194e3a8c32" (measured).
    assert_eq!(get("local-member-id"), "8e9e05c52164694d");
    assert_eq!(get("cluster-id"), "cdf818194e3a8c32");
    assert_eq!(boot.local_member_id, Id(0x8e9e05c52164694d));
}

/// Every flag `etcd --help` (3.4.23) lists.
const ETCD_HELP_FLAGS: &[&str] = &[
    "name",
    "data-dir",
    "wal-dir",
    "snapshot-count",
    "heartbeat-interval",
    "election-timeout",
    "initial-election-tick-advance",
    "listen-peer-urls",
    "listen-client-urls",
    "max-snapshots",
    "max-wals",
    "quota-backend-bytes",
    "backend-batch-interval",
    "backend-batch-limit",
    "max-txn-ops",
    "max-request-bytes",
    "max-concurrent-streams",
    "grpc-keepalive-min-time",
    "grpc-keepalive-interval",
    "grpc-keepalive-timeout",
    "initial-advertise-peer-urls",
    "initial-cluster",
    "initial-cluster-state",
    "initial-cluster-token",
    "advertise-client-urls",
    "discovery",
    "discovery-fallback",
    "discovery-proxy",
    "discovery-srv",
    "discovery-srv-name",
    "strict-reconfig-check",
    "pre-vote",
    "auto-compaction-retention",
    "auto-compaction-mode",
    "enable-v2",
    "cert-file",
    "key-file",
    "client-cert-auth",
    "client-crl-file",
    "client-cert-allowed-hostname",
    "trusted-ca-file",
    "auto-tls",
    "peer-cert-file",
    "peer-key-file",
    "peer-client-cert-auth",
    "peer-trusted-ca-file",
    "peer-cert-allowed-cn",
    "peer-cert-allowed-hostname",
    "peer-auto-tls",
    "peer-crl-file",
    "cipher-suites",
    "cors",
    "host-whitelist",
    "auth-token",
    "bcrypt-cost",
    "auth-token-ttl",
    "enable-pprof",
    "metrics",
    "listen-metrics-urls",
    "logger",
    "log-outputs",
    "log-level",
    "proxy",
    "proxy-failure-wait",
    "proxy-refresh-interval",
    "proxy-dial-timeout",
    "proxy-write-timeout",
    "proxy-read-timeout",
    "experimental-initial-corrupt-check",
    "experimental-corrupt-check-time",
    "experimental-enable-v2v3",
    "experimental-backend-bbolt-freelist-type",
    "experimental-enable-lease-checkpoint",
    "experimental-compaction-batch-limit",
    "experimental-peer-skip-client-san-verification",
    "experimental-watch-progress-notify-interval",
    "experimental-warning-apply-duration",
    "force-new-cluster",
    "debug",
    "log-package-levels",
];

#[test]
fn every_etcd_flag_is_defined_and_listed_in_help() {
    let help = ketch_config::help_text();
    for name in ETCD_HELP_FLAGS {
        let arg = format!("--{name}=x");
        if let Err(ConfigError::Usage(msg)) = parse(&[&arg]) {
            assert!(
                !msg.starts_with("flag provided but not defined"),
                "{name} is not defined"
            );
        }
        let hidden = ["debug", "log-package-levels"];
        if !hidden.contains(name) {
            assert!(
                help.contains(&format!("  --{name} '")),
                "help lacks --{name}"
            );
        }
    }
    assert!(help.contains("  --shards '") && help.contains("KETCH_SHARDS"));
    assert!(help.contains("  --io-memory-bytes '1048576'"));
    assert!(help.contains("  --snapshot-count '100000'"));
}
