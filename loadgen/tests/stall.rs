//! Open-loop accounting charges a stalled server for the whole stall: a real etcd is paused with
//! SIGSTOP for one second in the middle of a 200 req/s run, and the recorded latencies must
//! include every request that was due during the pause, each charged from its intended time.

use std::time::Duration;

use clap::Parser;
use ketch_loadgen::cli::Cli;

mod common;

const STALL: Duration = Duration::from_secs(1);
const RATE: f64 = 200.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_charges_the_whole_stall() {
    let server = common::etcd().await;
    let cli = Cli::try_parse_from([
        "ketch-loadgen",
        "--endpoints",
        &server.client_url,
        "--conns",
        "2",
        "--clients",
        "8",
        "--rate",
        &RATE.to_string(),
        "--duration",
        "3s",
        "put",
        "--val-size",
        "256",
        "--key-space-size",
        "1000",
    ])
    .unwrap();
    let pid = server.pid() as libc::pid_t;
    let pauser = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        // SAFETY: kill(2) on the etcd process this test started and still owns.
        unsafe { libc::kill(pid, libc::SIGSTOP) };
        tokio::time::sleep(STALL).await;
        // SAFETY: as above.
        unsafe { libc::kill(pid, libc::SIGCONT) };
    });
    let out = ketch_loadgen::run::run(&cli.common, &cli.cmd)
        .await
        .expect("run");
    pauser.await.unwrap();
    let put = &out.recorder.ops["put"];
    assert_eq!(
        put.ok_count(),
        600,
        "every request due in 3 s at 200/s completes"
    );
    let h = &put.hist;
    // Requests due during the pause wait until it ends: their latencies spread evenly from
    // ~1 s (due at its start) down to ~0; 200 are due in the pause, ~100 of them wait >= 0.5 s.
    // Closed-loop accounting would show at most one stalled request per client (8).
    let over_half = h.count_between(500_000, h.max());
    assert!(
        over_half >= 80,
        "{over_half} requests >= 0.5 s; max {} us",
        h.max()
    );
    assert!(
        h.max() >= 900_000,
        "max {} us: the whole stall must be charged",
        h.max()
    );
    let summary = out.summary.op("put").unwrap();
    assert!(
        summary.percentile_s(90.0).unwrap() >= 0.3,
        "p90 {:?}",
        summary.percentile_s(90.0)
    );
}
