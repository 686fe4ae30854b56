//! Checks the harness itself with real processes: a server that never becomes healthy fails a
//! scenario cleanly within the ready timeout (and is killed), a missing binary is reported by
//! path, the catalogue is large and uniquely named, and `both` mode reports differences.

use std::collections::HashSet;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ketch_conformance::catalogue;
use ketch_conformance::runner::{self, RunConfig, Status, Target};
use ketch_conformance::servers::{ServerKind, ServerSpec};

fn cfg() -> RunConfig {
    RunConfig {
        etcdctl_bin: PathBuf::from("etcdctl"),
        seed: 1,
    }
}

/// A "server" that ignores its flags and never listens.
fn silent_server(dir: &tempfile::TempDir) -> PathBuf {
    let path = dir.path().join("never-healthy");
    let mut f = std::fs::File::create(&path).expect("create script");
    writeln!(f, "#!/bin/sh\nexec sleep 60").expect("write script");
    drop(f);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

#[tokio::test]
async fn unhealthy_ketch_fails_cleanly_within_the_ready_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = ServerSpec {
        kind: ServerKind::Ketch,
        bin: silent_server(&dir),
        ready_timeout: Duration::from_secs(2),
    };
    let scenario = catalogue::select(Some("kv/put-get-basic"), false).remove(0);
    let started = Instant::now();
    let report = runner::run_scenario(&scenario, &[Target::Spawn(spec)], &cfg()).await;
    let elapsed = started.elapsed();
    match &report.outcomes[0].status {
        Status::Fail(why) => assert!(
            why.contains("ketch did not become healthy within 2s"),
            "{why}"
        ),
        other => panic!("expected a clean failure, got {other:?}"),
    }
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
}

#[tokio::test]
async fn missing_binary_is_reported_by_path() {
    let spec = ServerSpec {
        kind: ServerKind::Ketch,
        bin: PathBuf::from("/nonexistent/ketch"),
        ready_timeout: Duration::from_secs(1),
    };
    let scenario = catalogue::select(Some("kv/put-get-basic"), false).remove(0);
    let report = runner::run_scenario(&scenario, &[Target::Spawn(spec)], &cfg()).await;
    match &report.outcomes[0].status {
        Status::Fail(why) => assert!(
            why.contains("ketch binary not found at /nonexistent/ketch"),
            "{why}"
        ),
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[test]
fn catalogue_has_at_least_100_uniquely_named_scenarios_in_every_area() {
    let all = catalogue::all();
    assert!(all.len() >= 100, "only {} scenarios", all.len());
    let names: HashSet<&str> = all.iter().map(|s| s.name).collect();
    assert_eq!(names.len(), all.len(), "duplicate scenario names");
    for (area, n) in catalogue::counts(&all) {
        assert!(n > 0, "area {} is empty", area.name());
        assert!(
            all.iter()
                .filter(|s| s.area == area)
                .all(|s| s.name.starts_with(area.name())),
            "names in {} start with the area",
            area.name()
        );
    }
}

#[tokio::test]
async fn both_mode_reports_a_difference_when_one_target_cannot_serve() {
    let dir = tempfile::tempdir().expect("tempdir");
    let etcd = ServerSpec {
        kind: ServerKind::Etcd,
        bin: PathBuf::from("/usr/bin/etcd"),
        ready_timeout: Duration::from_secs(20),
    };
    let ketch = ServerSpec {
        kind: ServerKind::Ketch,
        bin: silent_server(&dir),
        ready_timeout: Duration::from_secs(1),
    };
    let scenario = catalogue::select(Some("kv/put-get-basic"), false).remove(0);
    let cfg = RunConfig {
        etcdctl_bin: PathBuf::from("/usr/bin/etcdctl"),
        seed: 1,
    };
    let report = runner::run_scenario(
        &scenario,
        &[Target::Spawn(etcd), Target::Spawn(ketch)],
        &cfg,
    )
    .await;
    assert_eq!(report.outcomes[0].status, Status::Pass);
    assert!(matches!(report.outcomes[1].status, Status::Fail(_)));
    let diff = report.difference.expect("a difference");
    assert!(diff.starts_with(".steps"), "{diff}");
}
