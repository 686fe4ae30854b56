//! Every workload runs for about a second against a real etcd started by the test, through the
//! `ketch-loadgen` binary, and leaves a complete run folder whose summary shows requests served
//! without errors, a time series, an interval log, plots and the server's version.

use std::path::Path;
use std::process::Command;

use ketch_loadgen::report::Summary;
use ketch_loadgen::runfolder::RUN_FOLDER_FILES;

mod common;

/// Runs the binary against `endpoint` with `args`, writing `dir`; returns the parsed summary.
fn run_loadgen(endpoint: &str, dir: &Path, args: &[&str]) -> Summary {
    let out = Command::new(env!("CARGO_BIN_EXE_ketch-loadgen"))
        .args(["--endpoints", endpoint, "--json", "--output"])
        .arg(dir)
        .args(args)
        .output()
        .expect("running ketch-loadgen");
    assert!(
        out.status.success(),
        "ketch-loadgen failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON summary on stdout")
}

/// Checks the run folder is complete and consistent with the summary.
fn check_folder(dir: &Path, summary: &Summary, ops: &[&str]) {
    for f in RUN_FOLDER_FILES {
        let len = std::fs::metadata(dir.join(f))
            .unwrap_or_else(|_| panic!("{f} missing"))
            .len();
        assert!(len > 0, "{f} is empty");
    }
    let on_disk: Summary =
        serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(&on_disk, summary);
    let run: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("run.json")).unwrap()).unwrap();
    let version = run["servers"][0]["version"].as_str().unwrap();
    assert!(version.starts_with("3."), "server version {version}");
    assert!(run["machine"]["logical_cpus"].as_u64().unwrap() >= 1);
    let csv = std::fs::read_to_string(dir.join("timeseries.csv")).unwrap();
    let hlog = std::fs::read_to_string(dir.join("latency.hlog")).unwrap();
    assert_eq!(hlog.matches("#[StartTime").count(), 1, "one header only");
    assert!(!hlog.contains("MaxValueDivisor"));
    for op in ops {
        let s = summary
            .op(op)
            .unwrap_or_else(|| panic!("no {op} in {:?}", summary.ops));
        assert!(s.requests > 0, "{op}: no requests");
        assert_eq!(s.errors, 0, "{op}: errors {:?}", s.error_table);
        assert!(s.fastest_s > 0.0 && s.fastest_s <= s.percentile_s(50.0).unwrap() + 1e-3);
        assert!(s.percentile_s(50.0).unwrap() <= s.percentile_s(99.0).unwrap());
        assert!(
            csv.lines().any(|l| l.split(',').nth(1) == Some(op)),
            "{op} not in timeseries.csv"
        );
        assert!(
            hlog.contains(&format!("Tag={op},")),
            "{op} not in latency.hlog"
        );
    }
    check_hlog(dir, summary);
    for svg in ["latency-percentiles.svg", "throughput.svg"] {
        let text = std::fs::read_to_string(dir.join(svg)).unwrap();
        assert!(
            text.starts_with("<svg") && text.contains("<polyline"),
            "{svg} has no curve"
        );
    }
    assert!(summary.cpu.per_request_us > 0.0);
}

/// The interval log parses back, and per operation its histograms add up to the summary's count.
fn check_hlog(dir: &Path, summary: &Summary) {
    use hdrhistogram::serialization::Deserializer;
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    let bytes = std::fs::read(dir.join("latency.hlog")).unwrap();
    let mut counts = std::collections::BTreeMap::<String, u64>::new();
    let mut de = Deserializer::new();
    for entry in IntervalLogIterator::new(&bytes) {
        if let LogEntry::Interval(iv) = entry.expect("well-formed interval log") {
            let raw = base64_decode(iv.encoded_histogram());
            let h: hdrhistogram::Histogram<u64> = de.deserialize(&mut raw.as_slice()).unwrap();
            *counts
                .entry(iv.tag().unwrap().as_str().to_string())
                .or_default() += h.len();
        }
    }
    for op in &summary.ops {
        assert_eq!(
            counts.get(&op.op).copied().unwrap_or(0),
            op.requests,
            "{}: hlog vs summary",
            op.op
        );
    }
}

/// Standard base64 (the interval log's encoding), decoded without another dependency.
fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("bad base64 byte {c}"),
    } as u32;
    let bytes: Vec<u8> = s.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &c)| acc | val(c) << (18 - 6 * i));
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

/// Runs `args` against a fresh etcd, checks the run folder for `ops`, returns the summary.
async fn workload(ops: &[&str], args: &[&str]) -> Summary {
    let server = common::etcd().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let summary = run_loadgen(&server.client_url, &dir, args);
    check_folder(&dir, &summary, ops);
    summary
}

#[tokio::test]
async fn put() {
    workload(
        &["put"],
        &[
            "--conns",
            "2",
            "--clients",
            "4",
            "--duration",
            "1s",
            "put",
            "--val-size",
            "256",
            "--key-space-size",
            "1000",
            "--compact-interval",
            "300ms",
            "--compact-index-delta",
            "10",
        ],
    )
    .await;
}

#[tokio::test]
async fn put_open_loop() {
    let server = common::etcd().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let s = run_loadgen(
        &server.client_url,
        &dir,
        &["--clients", "4", "--rate", "300", "--duration", "1s", "put"],
    );
    check_folder(&dir, &s, &["put"]);
    assert_eq!(s.mode, "open-loop");
    assert_eq!(s.op("put").unwrap().requests, 300);
    assert_eq!(s.send_lag.as_ref().unwrap().samples, 300);
}

#[tokio::test]
async fn range() {
    workload(
        &["range"],
        &[
            "--clients",
            "4",
            "--duration",
            "1s",
            "range",
            "a",
            "z",
            "--consistency",
            "s",
            "--limit",
            "10",
        ],
    )
    .await;
}

#[tokio::test]
async fn txn_put() {
    workload(
        &["txn-put"],
        &[
            "--clients",
            "4",
            "--duration",
            "1s",
            "txn-put",
            "--txn-ops",
            "3",
            "--key-space-size",
            "100",
        ],
    )
    .await;
}

#[tokio::test]
async fn txn_mixed() {
    workload(
        &["txn-read", "txn-write"],
        &[
            "--clients",
            "4",
            "--duration",
            "1s",
            "txn-mixed",
            "--rw-ratio",
            "2",
            "--key-space-size",
            "100",
        ],
    )
    .await;
}

#[tokio::test]
async fn watch() {
    let s = workload(
        &["watch-create", "put", "watch-event"],
        &[
            "--clients",
            "2",
            "watch",
            "--streams",
            "3",
            "--watch-per-stream",
            "4",
            "--key-space-size",
            "2",
            "--put-total",
            "200",
            "--put-rate",
            "200",
        ],
    )
    .await;
    assert_eq!(s.op("watch-create").unwrap().requests, 12);
    // 12 watchers over 2 keys: every put is seen by 6 watchers.
    assert_eq!(s.op("watch-event").unwrap().requests, 200 * 6);
}

#[tokio::test]
async fn put_with_watchers_on_their_keys() {
    let s = workload(
        &["put", "watch-create", "watch-event"],
        &[
            "--clients",
            "4",
            "--total",
            "300",
            "put",
            "--key-space-size",
            "10",
            "--watchers",
            "20",
            "--watch-streams",
            "4",
        ],
    )
    .await;
    assert_eq!(s.op("put").unwrap().requests, 300);
    assert_eq!(s.op("watch-create").unwrap().requests, 20);
    // 20 watchers over 10 keys: every put is seen by 2 of them.
    assert_eq!(s.op("watch-event").unwrap().requests, 300 * 2);
}

#[tokio::test]
async fn put_with_watchers_on_the_whole_key_range() {
    let server = common::etcd().await;
    // A key outside the put key range: the range watchers must not see it.
    let mut c = etcd_client::Client::connect([server.client_url.as_str()], None)
        .await
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let url = server.client_url.clone();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop = done.clone();
    // Written for the whole run, so they overlap the put phase whatever the machine's speed.
    let outside = tokio::spawn(async move {
        let mut i = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            c.put(format!("zz-outside-{i}"), "x", None).await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            i += 1;
        }
        i
    });
    let s = tokio::task::spawn_blocking(move || {
        run_loadgen(
            &url,
            &dir,
            &[
                "--clients",
                "4",
                "--total",
                "200",
                "put",
                "--key-space-size",
                "1000",
                "--watchers",
                "6",
                "--watch-streams",
                "3",
                "--watch-prefix",
            ],
        )
    })
    .await
    .unwrap();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(outside.await.unwrap() > 0);
    assert_eq!(s.op("watch-create").unwrap().requests, 6);
    let events = s.op("watch-event").unwrap();
    // Every put reaches all 6 watchers, and nothing else does.
    assert_eq!((events.requests, events.errors), (200 * 6, 0));
}

#[tokio::test]
async fn put_refuses_watchers_not_spread_evenly_over_streams() {
    let server = common::etcd().await;
    let out = Command::new(env!("CARGO_BIN_EXE_ketch-loadgen"))
        .args(["--endpoints", &server.client_url, "--total", "10", "put"])
        .args(["--watchers", "7", "--watch-streams", "2"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("multiple of --watch-streams"));
}

#[tokio::test]
async fn watch_latency() {
    let s = workload(
        &["put", "watch-latency"],
        &[
            "watch-latency",
            "--streams",
            "2",
            "--watchers-per-stream",
            "3",
            "--put-total",
            "100",
            "--put-rate",
            "100",
        ],
    )
    .await;
    assert_eq!(s.op("watch-latency").unwrap().requests, 100 * 6);
    // --put-rate makes the put phase open loop, and the summary says so.
    assert_eq!(s.mode, "open-loop");
    assert_eq!(s.rate_per_s, Some(100.0));
    assert_eq!(s.send_lag.as_ref().unwrap().samples, 100);
}

#[tokio::test]
async fn lease_keepalive() {
    workload(
        &["lease-keepalive"],
        &[
            "--conns",
            "2",
            "--clients",
            "4",
            "--duration",
            "1s",
            "lease-keepalive",
        ],
    )
    .await;
}

#[tokio::test]
async fn run_folder_is_never_overwritten() {
    let server = common::etcd().await;
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("keep"), b"x").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ketch-loadgen"))
        .args([
            "--endpoints",
            &server.client_url,
            "--total",
            "10",
            "--output",
        ])
        .arg(tmp.path())
        .arg("put")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not empty"));
}

#[test]
fn compare_measures_etcd_alone_when_ketch_cannot_serve() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("report");
    let etcd = common::etcd_bin();
    let etcd = if etcd.is_absolute() {
        etcd
    } else {
        which(&etcd)
    };
    let res = Command::new(env!("CARGO_BIN_EXE_ketch-loadgen"))
        .args([
            "compare",
            "--cases",
            "put-1",
            "--case-duration",
            "1s",
            "--ketch-bin",
            "/bin/false",
            "--etcd-bin",
        ])
        .arg(&etcd)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let readme = std::fs::read_to_string(out.join("README.md")).unwrap();
    assert!(readme.contains("**ketch was not measured**"), "{readme}");
    assert!(readme.contains("| put-1 | etcd | 0 |"), "{readme}");
    assert!(out.join("latency-put-1.svg").exists());
    assert!(out.join("r0-put-1-etcd/summary.json").exists());
}

fn which(bin: &Path) -> std::path::PathBuf {
    let path = std::env::var_os("PATH").unwrap();
    std::env::split_paths(&path)
        .map(|d| d.join(bin))
        .find(|p| p.is_file())
        .expect("etcd on PATH")
}
