//! Runs the fast subset of the catalogue against ketch (binary: $KETCH_BIN, else the newest of
//! the workspace's target/{debug,release}/ketch) and checks it against `KNOWN_GAPS`: every
//! scenario not listed must pass, and every listed one must still fail, so the list names
//! exactly what ketch does not serve yet and shrinks as it does.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ketch_conformance::catalogue;
use ketch_conformance::runner::{self, RunConfig, Status, Target};
use ketch_conformance::servers::{ServerKind, ServerSpec};

fn ketch_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("KETCH_BIN") {
        return PathBuf::from(p);
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"));
    // `cargo test --workspace` builds the debug binary; a release binary is used only when it
    // is the newer one, so a stale build is never measured.
    let newest = ["debug/ketch", "release/ketch"]
        .iter()
        .map(|p| target.join(p))
        .filter_map(|p| Some((std::fs::metadata(&p).ok()?.modified().ok()?, p)))
        .max();
    newest.map_or_else(|| target.join("debug/ketch"), |(_, p)| p)
}

/// Fast scenarios ketch does not pass yet, each with the reason. Keep in step with ketch.
/// None today (maintenance/status was one until the client port accepted etcdctl's URL
/// `:authority`); the check below still fails when a scenario starts failing.
const KNOWN_GAPS: &[(&str, &str)] = &[];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_subset_on_ketch_matches_known_gaps() {
    let seed = std::env::var("KETCH_CONFORMANCE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    eprintln!("seed {seed} (KETCH_CONFORMANCE_SEED to reproduce)");
    let spec = ServerSpec {
        kind: ServerKind::Ketch,
        bin: ketch_bin(),
        ready_timeout: Duration::from_secs(10),
    };
    let cfg = RunConfig {
        etcdctl_bin: PathBuf::from("/usr/bin/etcdctl"),
        seed,
    };
    let mut unexpected = Vec::new();
    let mut ran = 0;
    for s in catalogue::select(None, true) {
        let report = runner::run_scenario(&s, &[Target::Spawn(spec.clone())], &cfg).await;
        ran += 1;
        let known = KNOWN_GAPS.iter().find(|(name, _)| *name == report.name);
        match (&report.outcomes[0].status, known) {
            (Status::Fail(why), None) => unexpected.push(format!("{} fails: {why}", report.name)),
            (Status::Pass, Some((_, reason))) => unexpected.push(format!(
                "{} passes now: remove it from KNOWN_GAPS (was: {reason})",
                report.name
            )),
            _ => {}
        }
    }
    assert!(ran > 0, "the fast subset is empty");
    assert!(
        unexpected.is_empty(),
        "{} of {ran} fast scenarios disagree with KNOWN_GAPS:\n{}",
        unexpected.len(),
        unexpected.join("\n")
    );
}
