//! Runs the fast subset of the scenario catalogue against real etcd (started from `etcd` on
//! PATH, or $ETCD_BIN), one test per area, and fails on any failing scenario: etcd is the oracle,
//! so a failure here is a bug in a scenario or in the suite. Seed: $KETCH_CONFORMANCE_SEED.

use std::path::PathBuf;
use std::time::Duration;

use ketch_conformance::catalogue;
use ketch_conformance::runner::{self, RunConfig, Status, Target};
use ketch_conformance::servers::{ServerKind, ServerSpec};

fn on_path(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!("{name} not found on PATH (apt-get install etcd-server etcd-client)")
        })
}

fn seed() -> u64 {
    let seed = std::env::var("KETCH_CONFORMANCE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    eprintln!("seed {seed} (KETCH_CONFORMANCE_SEED to reproduce)");
    seed
}

async fn run_area(area: &str) {
    let etcd = std::env::var_os("ETCD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| on_path("etcd"));
    let spec = ServerSpec {
        kind: ServerKind::Etcd,
        bin: etcd,
        ready_timeout: Duration::from_secs(20),
    };
    let cfg = RunConfig {
        etcdctl_bin: on_path("etcdctl"),
        seed: seed(),
    };
    let scenarios: Vec<_> = catalogue::select(Some(area), true)
        .into_iter()
        .filter(|s| s.area.name() == area)
        .collect();
    assert!(!scenarios.is_empty(), "no fast scenarios in area {area}");
    let mut failures = Vec::new();
    for s in &scenarios {
        let report = runner::run_scenario(s, &[Target::Spawn(spec.clone())], &cfg).await;
        let status = &report.outcomes[0].status;
        eprintln!("{:<44} {status:?}", report.name);
        if let Status::Fail(why) = status {
            failures.push(format!("{}: {why}", report.name));
        }
    }
    assert!(
        failures.is_empty(),
        "scenarios failed against etcd:\n{}",
        failures.join("\n")
    );
}

macro_rules! area_tests {
    ($($test:ident => $area:literal),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                run_area($area).await;
            }
        )*
    };
}

area_tests! {
    kv_fast_subset_passes_on_etcd => "kv",
    txn_fast_subset_passes_on_etcd => "txn",
    compaction_fast_subset_passes_on_etcd => "compaction",
    watch_fast_subset_passes_on_etcd => "watch",
    lease_fast_subset_passes_on_etcd => "lease",
    members_fast_subset_passes_on_etcd => "members",
    maintenance_fast_subset_passes_on_etcd => "maintenance",
    limits_fast_subset_passes_on_etcd => "limits",
    gateway_fast_subset_passes_on_etcd => "gateway",
    etcdctl_fast_subset_passes_on_etcd => "etcdctl",
    failures_fast_subset_passes_on_etcd => "failures",
}
