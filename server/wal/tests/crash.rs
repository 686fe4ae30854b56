//! Crash safety: a child process (this test binary, re-run with KETCH_WAL_CRASH_CHILD_DIR
//! set) appends records from several tasks and prints `ACK <index>` once each is durable;
//! the parent SIGKILLs it at a random moment (seeded: KETCH_WAL_CRASH_SEED), reopens the
//! WAL and checks that every acknowledged record is there intact and that every record
//! present is exactly one the child wrote. Several rounds on the same directory.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{body_for, run, seed, small_opts, splitmix};
use ketch_wal::Wal;

const TEST_NAME: &str = "sigkill_at_random_moments_loses_no_acknowledged_record";
const CHILD_DIR_ENV: &str = "KETCH_WAL_CRASH_CHILD_DIR";
const CHILD_SEED_ENV: &str = "KETCH_WAL_CRASH_CHILD_SEED";
const ROUNDS: u64 = 6;
const APPENDERS: u64 = 6;
const MAX_BODY_BYTES: u64 = 2000;
const SEGMENT_BYTES: u64 = 128 << 10;
/// The child stops by itself after this long, should the parent be gone.
const CHILD_LIFETIME_MAX: Duration = Duration::from_secs(30);

fn kind_for(index: u64) -> u8 {
    (index % 5) as u8
}

#[test]
fn sigkill_at_random_moments_loses_no_acknowledged_record() {
    if let Ok(dir) = std::env::var(CHILD_DIR_ENV) {
        let seed = std::env::var(CHILD_SEED_ENV).unwrap().parse().unwrap();
        child_main(PathBuf::from(dir), seed);
        return;
    }
    let seed = seed("KETCH_WAL_CRASH_SEED");
    let dir = tempfile::tempdir().unwrap();
    let mut acked = BTreeSet::new();
    for round in 0..ROUNDS {
        let delay_ms = 50 + splitmix(seed ^ round) % 400;
        let new_acks = run_child_until_killed(dir.path(), seed, Duration::from_millis(delay_ms));
        println!(
            "round {round}: killed after {delay_ms} ms, {} acks",
            new_acks.len()
        );
        assert!(
            !new_acks.is_empty(),
            "round {round}: the child acknowledged nothing"
        );
        acked.extend(new_acks);
        verify(dir.path(), seed, &acked);
    }
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill(); // SIGKILL, by the PID we started
        let _ = self.0.wait();
    }
}

/// Starts the child, lets it append for `delay` after it reports it opened the WAL,
/// SIGKILLs it, and returns the indexes it acknowledged.
fn run_child_until_killed(dir: &Path, seed: u64, delay: Duration) -> Vec<u64> {
    let exe = std::env::current_exe().unwrap();
    let child = Command::new(exe)
        .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR_ENV, dir)
        .env(CHILD_SEED_ENV, seed.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let started = Instant::now();
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("child did not start");
        if line.contains("START") {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20));
    }
    std::thread::sleep(delay);
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    reader.join().unwrap();
    rx.try_iter()
        .filter_map(|l| l.strip_prefix("ACK ").map(|i| i.parse().unwrap()))
        .collect()
}

/// Reopens the WAL: records must be `0..n` in order, each exactly as the child made it,
/// and every acknowledged index must be among them.
fn verify(dir: &Path, seed: u64, acked: &BTreeSet<u64>) {
    let dir = dir.to_path_buf();
    let acked = acked.clone();
    run(move || async move {
        let (wal, rec) = Wal::open(small_opts(&dir, SEGMENT_BYTES)).await.unwrap();
        if let Some(t) = &rec.truncated_tail {
            println!("  torn tail cut at {}:{}", t.0.display(), t.1);
        }
        for (pos, r) in rec.records.iter().enumerate() {
            assert_eq!(r.index, pos as u64, "records out of order or missing");
            assert_eq!(r.kind, kind_for(r.index), "record {} kind", r.index);
            assert!(
                r.body == body_for(seed, r.index, MAX_BODY_BYTES),
                "record {} body is not what the child wrote",
                r.index
            );
        }
        let last = acked.last().copied().unwrap_or(0);
        assert!(
            rec.records.len() as u64 > last,
            "acknowledged index {last} lost: only {} records recovered",
            rec.records.len()
        );
        wal.close().await.unwrap();
    });
}

/// The child: recovers, then appends consecutive indexes from several tasks forever,
/// printing `ACK <index>` for each record once `append_durable` returned.
fn child_main(dir: PathBuf, seed: u64) {
    run(move || async move {
        let (wal, rec) = Wal::open(small_opts(&dir, SEGMENT_BYTES)).await.unwrap();
        let next = std::rc::Rc::new(std::cell::Cell::new(rec.records.len() as u64));
        println!("\nSTART {}", next.get());
        std::io::stdout().flush().unwrap();
        let started = Instant::now();
        let mut tasks = Vec::new();
        for t in 0..APPENDERS {
            let (wal, next) = (wal.clone(), next.clone());
            tasks.push(glommio::spawn_local(async move {
                while started.elapsed() < CHILD_LIFETIME_MAX {
                    let first = next.get();
                    let n = splitmix(seed ^ first ^ t) % 4 + 1;
                    next.set(first + n);
                    let bodies: Vec<_> = (first..first + n)
                        .map(|i| body_for(seed, i, MAX_BODY_BYTES))
                        .collect();
                    let recs: Vec<_> = (first..first + n)
                        .zip(&bodies)
                        .map(|(i, b)| (kind_for(i), i, b.as_slice()))
                        .collect();
                    wal.append_durable(&recs).await.unwrap();
                    let mut out = std::io::stdout().lock();
                    for i in first..first + n {
                        writeln!(out, "ACK {i}").unwrap();
                    }
                    out.flush().unwrap();
                }
            }));
        }
        for t in tasks {
            t.await;
        }
    });
}
