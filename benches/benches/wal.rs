//! WAL append + fdatasync on the real disk (a directory under target/, never tmpfs):
//! time per batch and records/s for batches of 1, 8, 64 and 512 records of 256 B bodies
//! (and 1 and 64 of 4 KiB), each batch one `append_durable` (one write + one fdatasync);
//! plus group commit formed by the queue: 64 tasks appending one record each.
//!
//! Run: `cargo bench -p ketch-benches --bench wal`.
//!
//! The WAL lives on a glommio executor thread for the whole run (64 MiB segments, one
//! prepared ahead, as in production); criterion's closures send it "run N batches"
//! requests and get back the time measured on the executor.

use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use glommio::{LocalExecutorBuilder, Placement};
use ketch_wal::{Wal, WalOptions};

/// One request to the WAL thread: `iters` batches of `records` records of `body_bytes`,
/// appended by `appenders` concurrent tasks (1: a single `append_durable` per batch).
#[derive(Clone, Copy)]
struct Job {
    iters: u64,
    records: usize,
    body_bytes: usize,
    appenders: usize,
}

/// At most this many requests wait for the WAL thread (criterion sends one at a time).
const JOB_QUEUE_CAPACITY: usize = 1;

struct WalThread {
    jobs: mpsc::SyncSender<Job>,
    elapsed: mpsc::Receiver<Duration>,
    thread: Option<glommio::ExecutorJoinHandle<()>>,
    dir: PathBuf,
}

impl WalThread {
    fn start() -> WalThread {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("wal-bench-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (jobs, job_rx) = mpsc::sync_channel::<Job>(JOB_QUEUE_CAPACITY);
        let (done_tx, elapsed) = mpsc::sync_channel(JOB_QUEUE_CAPACITY);
        let wal_dir = dir.clone();
        let thread = LocalExecutorBuilder::new(Placement::Unbound)
            .io_memory(2 << 20)
            .name("wal-bench")
            .spawn(move || async move {
                let (wal, _) = Wal::open(WalOptions::new(&wal_dir))
                    .await
                    .expect("open wal");
                assert!(
                    wal.metrics().direct_io,
                    "bench dir must be on a disk that takes O_DIRECT"
                );
                loop {
                    match job_rx.try_recv() {
                        Ok(job) => done_tx.send(run_job(&wal, job).await).expect("bench alive"),
                        Err(mpsc::TryRecvError::Empty) => {
                            glommio::timer::sleep(Duration::from_micros(200)).await
                        }
                        Err(mpsc::TryRecvError::Disconnected) => break,
                    }
                }
                print_metrics(&wal);
                wal.close().await.expect("close wal");
            })
            .expect("start executor");
        WalThread {
            jobs,
            elapsed,
            thread: Some(thread),
            dir,
        }
    }

    fn run(&self, job: Job) -> Duration {
        self.jobs.send(job).expect("wal thread alive");
        self.elapsed.recv().expect("wal thread alive")
    }
}

impl Drop for WalThread {
    fn drop(&mut self) {
        let (dead, _) = mpsc::sync_channel(1);
        self.jobs = dead; // disconnect: the executor loop ends
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn run_job(wal: &Wal, job: Job) -> Duration {
    let body = vec![0x5au8; job.body_bytes];
    let mut index = 0u64;
    let started = Instant::now();
    for _ in 0..job.iters {
        if job.appenders == 1 {
            let recs: Vec<_> = (0..job.records as u64)
                .map(|i| (1u8, index + i, body.as_slice()))
                .collect();
            wal.append_durable(&recs).await.expect("append");
        } else {
            let tasks: Vec<_> = (0..job.appenders as u64)
                .map(|i| {
                    let (wal, body) = (wal.clone(), body.clone());
                    glommio::spawn_local(async move {
                        wal.append_durable(&[(1u8, index + i, body.as_slice())])
                            .await
                            .expect("append")
                    })
                })
                .collect();
            for t in tasks {
                t.await;
            }
        }
        index += job.records as u64;
    }
    started.elapsed()
}

fn print_metrics(wal: &Wal) {
    let m = wal.metrics();
    let h = &m.fsync_seconds;
    eprintln!(
        "wal metrics: {} batches, {} records, {} fsyncs (mean {:.3} ms), {} rollovers, {} MiB written",
        m.batches,
        m.records,
        m.fsyncs,
        h.sum_seconds * 1e3 / h.count.max(1) as f64,
        m.segment_rollovers,
        m.bytes_written >> 20
    );
}

fn bench_wal(c: &mut Criterion) {
    let wal = WalThread::start();
    let mut g = c.benchmark_group("wal_append_sync");
    g.measurement_time(Duration::from_secs(5));
    let cases = [
        (1, 256),
        (8, 256),
        (64, 256),
        (512, 256),
        (1, 4096),
        (64, 4096),
    ];
    for (records, body_bytes) in cases {
        g.throughput(Throughput::Elements(records as u64));
        let id = BenchmarkId::new(format!("body_{body_bytes}B"), format!("{records}_records"));
        g.bench_function(id, |b| {
            b.iter_custom(|iters| {
                wal.run(Job {
                    iters,
                    records,
                    body_bytes,
                    appenders: 1,
                })
            })
        });
    }
    g.finish();
    let mut g = c.benchmark_group("wal_group_commit");
    g.measurement_time(Duration::from_secs(5));
    g.throughput(Throughput::Elements(64));
    g.bench_function("64_appenders_x_1_record_256B", |b| {
        b.iter_custom(|iters| {
            wal.run(Job {
                iters,
                records: 64,
                body_bytes: 256,
                appenders: 64,
            })
        })
    });
    g.finish();
}

criterion_group!(benches, bench_wal);
criterion_main!(benches);
