//! Runs scripts/discovery-demo against ketch (the workspace's debug build next to this test,
//! or $KETCH_BIN): real etcdctl registers two services with leases and keep-alives, watches
//! the prefix, and a killed service's key must vanish within its TTL (the script checks each
//! step and exits non-zero on a failed one). Bounded: the script is stopped after 30 s.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The script normally takes about 10 s (3 s TTL); past this it is stopped and the test fails.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the script may take to clean up after SIGTERM before it is killed.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(5);

/// target/<profile>/ketch beside this test binary (target/<profile>/deps/discovery_demo-*).
fn ketch_beside_test() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let bin = exe.parent()?.parent()?.join("ketch");
    bin.is_file().then_some(bin)
}

#[test]
fn discovery_demo_passes_on_ketch() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/discovery-demo");
    let out_dir = tempfile::tempdir().unwrap();
    let out_path = out_dir.path().join("demo.out");
    let mut cmd = Command::new(&script);
    cmd.args(["--target", "ketch"])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(Stdio::inherit());
    if std::env::var_os("KETCH_BIN").is_none()
        && let Some(bin) = ketch_beside_test()
    {
        cmd.env("KETCH_BIN", bin);
    }
    let mut child = cmd.spawn().expect("running scripts/discovery-demo");
    let deadline = Instant::now() + SCRIPT_TIMEOUT;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let status = status.unwrap_or_else(|| {
        // SIGTERM lets the script stop the servers it started (by PID) before it exits.
        let _ = Command::new("kill").arg(child.id().to_string()).status();
        let stop = Instant::now() + CLEANUP_TIMEOUT;
        while child.try_wait().unwrap().is_none() && Instant::now() < stop {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
        let out = std::fs::read_to_string(&out_path).unwrap_or_default();
        panic!("discovery-demo did not finish within {SCRIPT_TIMEOUT:?}:\n{out}");
    });
    let out = std::fs::read_to_string(&out_path).unwrap();
    println!("{out}");
    assert!(status.success(), "discovery-demo failed ({status}):\n{out}");
    for seen in [
        "ok: get --prefix: /services/web/web-1 /services/web/web-2",
        "ok: both keys present",
        "ok: web-2 still registered",
        "ok: PUT web-1, PUT web-2, DELETE web-1 seen by the watcher",
        "PASS: service discovery on ketch",
    ] {
        assert!(out.contains(seen), "missing {seen:?} in:\n{out}");
    }
}
