//! Crash safety of a one-member group: a child process (this test binary, re-run with
//! `KETCH_RAFT_CRASH_DIR` set) writes with concurrent writers and prints every acknowledged
//! write; the parent SIGKILLs it at a random moment, restarts the member on the same data dir
//! and checks that every acknowledged write is there with its revision and that nothing was
//! invented. Several rounds on one data dir. Seed: `KETCH_RAFT_CRASH_SEED` (printed).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const CHILD_DIR_ENV: &str = "KETCH_RAFT_CRASH_DIR";
const CHILD_ROUND_ENV: &str = "KETCH_RAFT_CRASH_ROUND";
const SEED_ENV: &str = "KETCH_RAFT_CRASH_SEED";
const ROUNDS: u64 = 3;
const CHILD_WRITERS: usize = 16;

/// Kills the child on every exit path.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn next_random(state: &mut u64) -> u64 {
    // xorshift64*
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

/// Child side: write until killed, printing `ACK <key> <revision>` after each acknowledgement.
#[test]
#[ignore = "run by crash_recovery_keeps_every_acknowledged_write as a child process"]
fn crash_child_writer() {
    let Ok(dir) = std::env::var(CHILD_DIR_ENV) else {
        return;
    };
    let round: u64 = std::env::var(CHILD_ROUND_ENV).unwrap().parse().unwrap();
    let m = RunningMember::<TestStore>::start(single_member_options(std::path::Path::new(&dir)));
    let out = std::sync::Arc::new(std::sync::Mutex::new(std::io::stdout()));
    let futs = (0..CHILD_WRITERS).map(|w| {
        let h = m.handle.clone();
        let out = out.clone();
        async move {
            for i in 0.. {
                let key = format!("r{round}-w{w}-{i}");
                let rev = put_revision(&h.write(put(&key, &key)).await.expect("write"));
                let mut o = out.lock().unwrap();
                writeln!(o, "ACK {key} {rev}").unwrap();
                o.flush().unwrap();
            }
        }
    });
    block_on(futures::future::join_all(futs));
}

fn run_child_round(dir: &std::path::Path, round: u64, kill_after: Duration) -> Vec<(String, i64)> {
    let exe = std::env::current_exe().unwrap();
    let child = Command::new(exe)
        .args([
            "--ignored",
            "--exact",
            "crash_child_writer",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_DIR_ENV, dir)
        .env(CHILD_ROUND_ENV, round.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = ChildGuard(child);
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = flume::unbounded();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.strip_prefix("ACK ") {
                let (k, r) = rest.split_once(' ').unwrap();
                tx.send((k.to_string(), r.parse::<i64>().unwrap())).unwrap();
            }
        }
    });
    // Wait for the first acknowledgement (the member is up), then let it write a while.
    let first = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("child acknowledged a write");
    std::thread::sleep(kill_after);
    let started = Instant::now();
    child.0.kill().unwrap(); // SIGKILL
    child.0.wait().unwrap();
    reader.join().unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    let mut acked = vec![first];
    acked.extend(rx.try_iter());
    acked
}

#[test]
fn crash_recovery_keeps_every_acknowledged_write() {
    let seed: u64 = std::env::var(SEED_ENV)
        .map(|s| s.parse().unwrap())
        .unwrap_or_else(|_| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    println!("crash_recovery seed: {seed} (rerun with {SEED_ENV}={seed})");
    let mut rng = seed;
    let dir = tempfile::tempdir().unwrap();
    let mut all_acked: Vec<(String, i64)> = Vec::new();
    for round in 0..ROUNDS {
        let kill_after = Duration::from_millis(50 + next_random(&mut rng) % 400);
        let acked = run_child_round(dir.path(), round, kill_after);
        println!(
            "round {round}: killed after {kill_after:?}, {} writes acknowledged",
            acked.len()
        );
        all_acked.extend(acked);

        let m = RunningMember::<TestStore>::start(single_member_options(dir.path()));
        let store = m.handle.store();
        let s = store.read();
        for (key, rev) in &all_acked {
            let got = s.kv.get(key.as_bytes());
            assert_eq!(
                got,
                Some(&(key.as_bytes().to_vec(), *rev)),
                "acknowledged write {key} at {rev} (seed {seed})"
            );
        }
        // Nothing invented: every key is one a writer proposed (value = key), each put
        // took exactly one revision, and revisions are exactly 1..=revision.
        let mut revs: Vec<i64> =
            s.kv.iter()
                .map(|(k, (v, rev))| {
                    assert_eq!(
                        k,
                        v,
                        "value of {} (seed {seed})",
                        String::from_utf8_lossy(k)
                    );
                    assert!(String::from_utf8_lossy(k).starts_with('r'));
                    *rev
                })
                .collect();
        revs.sort();
        assert_eq!(
            revs,
            (1..=s.revision).collect::<Vec<_>>(),
            "revisions are dense (seed {seed})"
        );
        drop(s);
        m.stop();
    }
}
