//! Integration proof on real etcd: a few concurrent etcd-client clients issue a few hundred
//! puts/gets/deletes/compare-and-swaps on a handful of fresh keys against an etcd started here
//! (free loopback ports, temp data dir, killed by PID on drop); the recorded history must be
//! linearizable, and a prefix watch recorded meanwhile must match the writes' revisions.
//! Seed in CHECKER_SEED.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Client, WatchOptions};
use ketch_conformance::checker::linearizability::{
    CasAction, CheckResult, Compare, History, Limits, OpInput, OpOutput, OpResult, Operation,
    check_history,
};
use ketch_conformance::checker::record::Recorder;
use ketch_conformance::checker::watch::{
    GroundTruth, WatchRecord, WatchResponse, check_watch, prefix_range_end,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const CLIENTS: u32 = 4;
const OPS_PER_CLIENT: usize = 75;
const KEYS: usize = 3;
const OP_TIMEOUT: Duration = Duration::from_secs(10);
const START_TIMEOUT: Duration = Duration::from_secs(15);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A single-member etcd on free ports; killed by PID when dropped.
struct Etcd {
    child: Child,
    endpoint: String,
    _dir: tempfile::TempDir,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Etcd {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let (client, peer) = (free_port(), free_port());
        let endpoint = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let log = std::fs::File::create(dir.path().join("etcd.log")).expect("log file");
        let child = Command::new("etcd")
            .args(["--name", "n1", "--data-dir"])
            .arg(dir.path().join("data"))
            .args([
                "--listen-client-urls",
                &endpoint,
                "--advertise-client-urls",
                &endpoint,
            ])
            .args([
                "--listen-peer-urls",
                &peer_url,
                "--initial-advertise-peer-urls",
                &peer_url,
            ])
            .args(["--initial-cluster", &format!("n1={peer_url}")])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("etcd is installed (scripts/setup installs it from apt)");
        Self {
            child,
            endpoint,
            _dir: dir,
        }
    }

    async fn client(&self) -> Client {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(mut c) = Client::connect([&self.endpoint], None).await
                && c.status().await.is_ok()
            {
                return c;
            }
            assert!(
                Instant::now() < deadline,
                "etcd did not start on {}",
                self.endpoint
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn run_client(
    mut client: Client,
    id: u32,
    prefix: String,
    seed: u64,
    recorder: Arc<Recorder>,
) {
    let mut rng = StdRng::seed_from_u64(seed ^ u64::from(id));
    // What this client last read of each key: (mod revision, value); compare-and-swaps use it.
    let mut last_seen: BTreeMap<String, (i64, String)> = BTreeMap::new();
    for i in 0..OPS_PER_CLIENT {
        let key = format!("{prefix}{}", rng.random_range(0..KEYS));
        let value = format!("c{id}-{i}");
        let (seen_rev, seen_value) = last_seen.get(&key).cloned().unwrap_or((0, "none".into()));
        let input = match rng.random_range(0..12) {
            0..=3 => OpInput::Get,
            4..=6 => OpInput::Put { value },
            7 => OpInput::Delete,
            8 | 9 => OpInput::CompareAndSwap {
                compare: Compare::ModRevision(seen_rev),
                action: CasAction::Put { value },
            },
            10 => OpInput::CompareAndSwap {
                compare: Compare::Value(seen_value),
                action: CasAction::Put { value },
            },
            _ => OpInput::CompareAndSwap {
                compare: Compare::ModRevision(seen_rev),
                action: CasAction::Delete,
            },
        };
        let output = recorder.run(&mut client, id, &key, input, OP_TIMEOUT).await;
        if let OpOutput::Ok(OpResult::Get {
            mod_revision,
            value,
            ..
        }) = output
        {
            let seen = (
                mod_revision.unwrap_or(0),
                value.unwrap_or_else(|| "none".into()),
            );
            last_seen.insert(key, seen);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_history_on_real_etcd_is_linearizable() {
    let seed: u64 = std::env::var("CHECKER_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("seed {seed} (rerun with CHECKER_SEED={seed})");
    let etcd = Etcd::start();
    let mut admin = etcd.client().await;
    let prefix = format!("lin-{seed}/");
    let start = admin
        .get("none", None)
        .await
        .expect("get")
        .header()
        .expect("header")
        .revision()
        + 1;
    let options = WatchOptions::new()
        .with_prefix()
        .with_start_revision(start)
        .with_prev_key();
    let mut watch = admin
        .watch(prefix.as_str(), Some(options))
        .await
        .expect("watch");

    let recorder = Arc::new(Recorder::new());
    let mut tasks = Vec::new();
    for id in 0..CLIENTS {
        let client = etcd.client().await;
        tasks.push(tokio::spawn(run_client(
            client,
            id,
            prefix.clone(),
            seed,
            Arc::clone(&recorder),
        )));
    }
    for t in tasks {
        t.await.expect("client task");
    }
    let history = Arc::into_inner(recorder)
        .expect("clients are done")
        .into_history();
    let unknown = history
        .operations
        .iter()
        .filter(|o| o.output == OpOutput::Unknown)
        .count();
    assert_eq!(unknown, 0, "no faults here, so every operation completes");
    let cas = |ok: bool| {
        let outcome_is = |o: &Operation| matches!(&o.output, OpOutput::Ok(OpResult::CompareAndSwap { succeeded, .. }) if *succeeded == ok);
        history.operations.iter().filter(|o| outcome_is(o)).count()
    };
    println!(
        "compare-and-swaps: {} succeeded, {} failed",
        cas(true),
        cas(false)
    );
    assert!(
        cas(true) > 0 && cas(false) > 0,
        "both compare-and-swap outcomes are exercised"
    );
    let verdict = check_history(&history, Limits::default());
    assert_eq!(verdict, CheckResult::Linearizable, "{verdict}");

    // The same real history with one stale read appended is rejected.
    assert_stale_read_caught(&history);

    // The watch saw exactly the committed writes, in order, with correct prev_kv.
    let truth = GroundTruth::from_history(&history);
    let last = truth.events.last().expect("some writes").kv.mod_revision;
    let mut record = WatchRecord {
        name: "prefix".into(),
        key: prefix.clone(),
        range_end: Some(prefix_range_end(&prefix)),
        start_revision: start,
        prev_kv: true,
        responses: Vec::new(),
        resumes: None,
    };
    let deadline = Instant::now() + OP_TIMEOUT;
    while record.last_event_revision().is_none_or(|r| r < last) {
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = tokio::time::timeout(left, watch.message())
            .await
            .expect("watch caught up in time");
        let resp = msg.expect("watch stream").expect("watch open");
        if !resp.events().is_empty() {
            record.responses.push(WatchResponse::from_etcd(&resp));
        }
    }
    let violations = check_watch(Some(&truth), &[record]);
    assert!(violations.is_empty(), "{violations:#?}");
    println!(
        "{} operations, {} committed changes: linearizable, watch consistent",
        history.operations.len(),
        truth.events.len()
    );
}

/// Append a read, after everything, of a key's first value although it was overwritten later.
fn assert_stale_read_caught(history: &History) {
    let puts = |key: &str| -> Vec<(String, i64)> {
        let mut puts: Vec<(String, i64)> = history
            .operations
            .iter()
            .filter(|o| o.key == key)
            .filter_map(|o| match (&o.input, &o.output) {
                (OpInput::Put { value }, OpOutput::Ok(OpResult::Put { revision: Some(r) })) => {
                    Some((value.clone(), *r))
                }
                _ => None,
            })
            .collect();
        puts.sort_by_key(|(_, r)| *r);
        puts
    };
    let key = history
        .operations
        .iter()
        .map(|o| o.key.clone())
        .find(|k| puts(k).len() >= 2)
        .expect("a key put twice");
    let (old_value, old_rev) = puts(&key)[0].clone();
    let end = history
        .operations
        .iter()
        .filter_map(|o| o.return_ns)
        .max()
        .expect("ops")
        + 1;
    let mut tampered = history.clone();
    tampered.operations.push(Operation {
        client: 99,
        call_ns: end,
        return_ns: Some(end + 1),
        key: key.clone(),
        input: OpInput::Get,
        output: OpOutput::Ok(OpResult::Get {
            value: Some(old_value),
            mod_revision: Some(old_rev),
            header_revision: None,
        }),
    });
    match check_history(&tampered, Limits::default()) {
        CheckResult::NotLinearizable {
            key: k, minimal, ..
        } => {
            assert_eq!(k, key);
            assert!(minimal.len() <= 4, "shrunk: {minimal:?}");
        }
        other => panic!("stale read not caught: {other}"),
    }
}
