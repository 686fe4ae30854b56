//! What ketch prints for `--version` and logs at startup, in etcd's shape: etcd prints
//! `etcd Version`, `Git SHA`, `Go Version`, `Go OS/Arch`, and logs one
//! `starting an etcd server` entry whose fields are the configuration in force.

use crate::cluster::Id;
use crate::config::{AutoCompaction, Config, SNAPSHOT_CATCH_UP_ENTRIES, Source};
use crate::goparse::format_duration;
use crate::url::join_urls;

/// ketch's own version.
pub const KETCH_VERSION: &str = env!("CARGO_PKG_VERSION");
/// The etcd API version ketch implements (what etcd calls the cluster version).
pub const ETCD_API_VERSION: &str = "3.4";
/// The etcd release whose behaviour ketch reproduces and reports to clients that ask for a
/// server version (etcdctl checks it).
pub const ETCD_COMPAT_VERSION: &str = "3.4.23";

/// The git revision ketch was built from (`KETCH_GIT_SHA` at build time, else `git`).
pub fn git_sha() -> &'static str {
    option_env!("KETCH_BUILD_GIT_SHA").unwrap_or("Not provided")
}

/// The compiler version, e.g. `1.95.0`.
pub fn rust_version() -> &'static str {
    option_env!("KETCH_BUILD_RUSTC_VERSION")
        .and_then(|v| v.split_whitespace().nth(1))
        .unwrap_or("Not provided")
}

/// `ketch --version` output, one `Key: value` per line as `etcd --version` prints.
pub fn version_text() -> String {
    format!(
        "ketch Version: {KETCH_VERSION}\n\
         etcd API Version: {ETCD_API_VERSION}\n\
         Git SHA: {}\n\
         Rust Version: {}\n\
         Rust OS/Arch: {}/{}\n",
        git_sha(),
        rust_version(),
        std::env::consts::OS,
        std::env::consts::ARCH,
    )
}

/// The fields of etcd's `starting an etcd server` log entry (same keys), plus ketch's
/// shards, max-txn-ops and the member and cluster IDs, in a fixed order.
pub fn startup_summary(cfg: &Config, member_id: Id, cluster_id: Id) -> Vec<(&'static str, String)> {
    let quota = cfg
        .effective_quota_backend_bytes()
        .map_or_else(|| cfg.quota_backend_bytes.to_string(), |q| q.to_string());
    let retention = match cfg.auto_compaction {
        AutoCompaction::Disabled => "0s".to_owned(),
        AutoCompaction::Periodic(d) => format_duration(d),
        AutoCompaction::Revision(n) => n.to_string(),
    };
    let wal_dir = cfg
        .wal_dir
        .as_ref()
        .map_or_else(String::new, |d| d.display().to_string());
    let config_file = match &cfg.source {
        Source::CommandLine => String::new(),
        Source::File(p) => p.display().to_string(),
    };
    vec![
        ("ketch-version", KETCH_VERSION.to_owned()),
        ("etcd-api-version", ETCD_API_VERSION.to_owned()),
        ("git-sha", git_sha().to_owned()),
        ("rust-version", rust_version().to_owned()),
        ("os", std::env::consts::OS.to_owned()),
        ("arch", std::env::consts::ARCH.to_owned()),
        ("shards", cfg.effective_shards().to_string()),
        ("io-memory-bytes", cfg.io_memory_bytes.to_string()),
        ("config-file", config_file),
        ("name", cfg.name.clone()),
        ("data-dir", cfg.data_dir.display().to_string()),
        ("wal-dir", wal_dir),
        (
            "member-dir",
            cfg.data_dir.join("member").display().to_string(),
        ),
        ("force-new-cluster", cfg.force_new_cluster.to_string()),
        (
            "heartbeat-interval",
            format_duration(ms(cfg.heartbeat_interval_ms)),
        ),
        (
            "election-timeout",
            format_duration(ms(cfg.election_timeout_ms)),
        ),
        (
            "initial-election-tick-advance",
            cfg.initial_election_tick_advance.to_string(),
        ),
        ("snapshot-count", cfg.snapshot_count.to_string()),
        ("max-wals", cfg.max_wals.to_string()),
        ("max-snapshots", cfg.max_snapshots.to_string()),
        (
            "snapshot-catchup-entries",
            SNAPSHOT_CATCH_UP_ENTRIES.to_string(),
        ),
        (
            "initial-advertise-peer-urls",
            join_urls(&cfg.initial_advertise_peer_urls),
        ),
        ("listen-peer-urls", join_urls(&cfg.listen_peer_urls)),
        (
            "advertise-client-urls",
            join_urls(&cfg.advertise_client_urls),
        ),
        ("listen-client-urls", join_urls(&cfg.listen_client_urls)),
        ("listen-metrics-urls", join_urls(&cfg.listen_metrics_urls)),
        ("initial-cluster", cfg.initial_cluster.clone()),
        (
            "initial-cluster-state",
            cfg.initial_cluster_state.as_str().to_owned(),
        ),
        ("initial-cluster-token", cfg.initial_cluster_token.clone()),
        ("quota-backend-bytes", quota),
        ("max-request-bytes", cfg.max_request_bytes.to_string()),
        ("max-txn-ops", cfg.max_txn_ops.to_string()),
        (
            "max-concurrent-streams",
            cfg.max_concurrent_streams.to_string(),
        ),
        ("pre-vote", cfg.pre_vote.to_string()),
        (
            "initial-corrupt-check",
            cfg.experimental.initial_corrupt_check.to_string(),
        ),
        (
            "corrupt-check-time-interval",
            format_duration(cfg.experimental.corrupt_check_time),
        ),
        ("auto-compaction-mode", cfg.auto_compaction_mode.clone()),
        ("auto-compaction-retention", retention),
        ("local-member-id", member_id.to_string()),
        ("cluster-id", cluster_id.to_string()),
    ]
}

fn ms(v: u64) -> std::time::Duration {
    std::time::Duration::from_millis(v)
}
