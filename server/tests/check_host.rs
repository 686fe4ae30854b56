//! scripts/check-host, run for real on a fresh temp data dir: every check prints exactly one
//! `PASS|WARN|FAIL <check>: <reason>` line, the summary counts them, the exit code is 1 exactly
//! when a check fails (2 on a usage error), the fdatasync probe reports its measured p50/p99 and
//! leaves nothing behind; and its memlock verdict agrees with ketch's own refusal at the exact
//! boundary (limits lowered with `ulimit -l` in a wrapper that then `exec`s).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{ServerProcess, ketch_bin};

const CHECKS: [&str; 10] = [
    "cores",
    "memlock",
    "nofile",
    "io_uring",
    "filesystem",
    "fdatasync",
    "o_direct",
    "cpu_governor",
    "transparent_hugepages",
    "swap",
];
/// Kept small: the probe's statistics are not under test, its reporting is.
const FSYNC_COUNT: &str = "20";
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// 2 shards x (1 MiB io_memory + glommio's 512 KiB) = ketch's need with these flags.
const TWO_SHARDS_NEED_KIB: u64 = 2 * (1024 + 512);

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/check-host")
}

/// A script running `bin` under `ulimit -l <memlock_kib>` (via exec, so the PID is `bin`'s).
fn with_memlock(dir: &Path, name: &str, bin: &Path, memlock_kib: u64) -> PathBuf {
    let path = dir.join(name);
    let text = format!(
        "#!/bin/sh\nulimit -l {memlock_kib} || exit 99\nexec '{}' \"$@\"\n",
        bin.display()
    );
    std::fs::write(&path, text).expect("writing wrapper");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

fn run(program: &Path, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", program.display()))
}

/// The report's check lines as (status, check, reason), and its summary line.
fn parse(stdout: &str) -> (Vec<(String, String, String)>, String) {
    let mut lines: Vec<&str> = stdout.lines().collect();
    let summary = lines.pop().expect("a summary line").to_string();
    let checks = lines
        .iter()
        .map(|line| {
            let (status, rest) = line.split_once(' ').expect("status then check");
            let (check, reason) = rest.split_once(": ").expect("check: reason");
            assert!(
                matches!(status, "PASS" | "WARN" | "FAIL"),
                "bad status in {line:?}"
            );
            assert!(!reason.trim().is_empty(), "no reason in {line:?}");
            (status.to_string(), check.to_string(), reason.to_string())
        })
        .collect();
    (checks, summary)
}

fn status_of<'a>(
    checks: &'a [(String, String, String)],
    name: &str,
) -> &'a (String, String, String) {
    checks
        .iter()
        .find(|(_, check, _)| check == name)
        .unwrap_or_else(|| panic!("no {name} line in {checks:?}"))
}

#[test]
fn reports_every_check_once_and_exit_code_follows_failures() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("not-yet-created/data");
    let out = run(
        &script(),
        &[
            "--data-dir",
            data_dir.to_str().unwrap(),
            "--fsync-count",
            FSYNC_COUNT,
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let (checks, summary) = parse(&stdout);
    let names: Vec<&str> = checks.iter().map(|(_, c, _)| c.as_str()).collect();
    assert_eq!(names, CHECKS, "one line per check, in order:\n{stdout}");

    let count = |s: &str| checks.iter().filter(|(st, _, _)| st == s).count();
    let (pass, warn, fail) = (count("PASS"), count("WARN"), count("FAIL"));
    assert_eq!(
        summary,
        format!("{pass} passed, {warn} warned, {fail} failed")
    );
    let expected_code = if fail > 0 { 1 } else { 0 };
    assert_eq!(
        out.status.code(),
        Some(expected_code),
        "exit code:\n{stdout}"
    );

    // The probe ran in the nearest existing ancestor of the data dir, and cleaned up.
    let (_, _, fs) = status_of(&checks, "filesystem");
    assert!(
        fs.starts_with(&format!("{} is on ", dir.path().display())),
        "{fs}"
    );
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "probe files left behind: {left:?}");
}

#[test]
fn fdatasync_line_carries_the_measured_percentiles() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(
        &script(),
        &[
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--fsync-count",
            FSYNC_COUNT,
            "--record-bytes",
            "2048",
        ],
    );
    let (checks, _) = parse(&String::from_utf8_lossy(&out.stdout));
    let (_, _, reason) = status_of(&checks, "fdatasync");
    let re = regex::Regex::new(
        r"^(\d+) x 2048 B write\+fdatasync: p50 ([0-9.]+) ms, p99 ([0-9.]+) ms, max ([0-9.]+) ms",
    )
    .unwrap();
    let caps = re
        .captures(reason)
        .unwrap_or_else(|| panic!("fdatasync line: {reason}"));
    assert_eq!(&caps[1], FSYNC_COUNT);
    let ms = |i: usize| caps[i].parse::<f64>().unwrap();
    assert!(
        0.0 < ms(2) && ms(2) <= ms(3) && ms(3) <= ms(4),
        "p50 <= p99 <= max: {reason}"
    );
}

#[test]
fn usage_errors_exit_2() {
    let out = run(&script(), &["--shards", "0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--shards must be >= 1"));
}

/// At exactly ketch's need both check-host and ketch accept; 1 KiB below, both refuse.
#[test]
fn memlock_verdict_matches_ketchs_own_check_at_the_boundary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let flags = ["--shards", "2", "--io-memory-bytes", "1048576"];
    for (memlock_kib, enough) in [
        (TWO_SHARDS_NEED_KIB, true),
        (TWO_SHARDS_NEED_KIB - 1, false),
    ] {
        let check = with_memlock(dir.path(), "check-host-limited", &script(), memlock_kib);
        let data = dir.path().join(format!("data-{memlock_kib}"));
        let mut args = vec!["--data-dir", data.to_str().unwrap(), "--fsync-count", "1"];
        args.extend(flags);
        let out = run(&check, &args);
        let (checks, _) = parse(&String::from_utf8_lossy(&out.stdout));
        let (status, _, reason) = status_of(&checks, "memlock");
        // Enough for ketch to start is PASS, or WARN for a user without CAP_IPC_LOCK
        // (io_uring's own charges); never FAIL.
        if enough {
            assert_ne!(status, "FAIL", "memlock {memlock_kib} KiB: {reason}");
        } else {
            assert_eq!(status, "FAIL", "memlock {memlock_kib} KiB: {reason}");
        }
        assert!(
            reason.contains(&format!("{TWO_SHARDS_NEED_KIB} KiB")),
            "{reason}"
        );
        if !enough {
            assert_eq!(out.status.code(), Some(1), "a FAIL exits 1");
        }

        let ketch = with_memlock(dir.path(), "ketch-limited", &ketch_bin(), memlock_kib);
        let mut server = ServerProcess::start(&ketch, &data, &flags);
        if enough {
            server.wait_healthy(STARTUP_TIMEOUT);
        } else {
            let status = server.child.wait().expect("waiting for ketch");
            assert!(!status.success(), "ketch started under {memlock_kib} KiB");
            let log = std::fs::read_to_string(&server.log).unwrap_or_default();
            assert!(
                log.contains("RLIMIT_MEMLOCK"),
                "ketch's refusal names the limit:\n{log}"
            );
        }
    }
}
