//! MVCC store hot paths: put (256 B values over 100k keys), range of one key, range of a
//! 100-key prefix, a compare-and-swap txn, and what a raft snapshot costs (the store's copy,
//! which holds up applying, and its serialization, which does not), on a store preloaded
//! with 100k keys.
//! Run: `cargo bench -p ketch-benches --bench mvcc`.
//!
//! Times are the benchmark thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), not wall time: the
//! machines these run on are shared with builds, and CPU time is what the store costs.

use bytes::Bytes;
use std::time::Duration;

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{BatchSize, Criterion, Throughput, black_box, criterion_group, criterion_main};
use ketch_mvcc::Store;
use ketch_proto::compare::{CompareResult, CompareTarget, TargetUnion};
use ketch_proto::{
    CompactionRequest, Compare, PutRequest, RangeRequest, RequestOp, TxnRequest, request_op,
};

/// Criterion measurement by the calling thread's CPU time.
struct ThreadCpuTime;

fn thread_cpu_now() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant Linux supports.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

impl Measurement for ThreadCpuTime {
    type Intermediate = Duration;
    type Value = Duration;

    fn start(&self) -> Duration {
        thread_cpu_now()
    }

    fn end(&self, start: Duration) -> Duration {
        thread_cpu_now().saturating_sub(start)
    }

    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }

    fn zero(&self) -> Duration {
        Duration::ZERO
    }

    fn to_f64(&self, value: &Duration) -> f64 {
        value.as_nanos() as f64
    }

    fn formatter(&self) -> &dyn ValueFormatter {
        static WALL: WallTime = WallTime;
        WALL.formatter()
    }
}

type Bench = Criterion<ThreadCpuTime>;

const KEY_COUNT: usize = 100_000;
const VALUE_BYTES: usize = 256;

fn key(i: usize) -> Bytes {
    Bytes::from(format!("key/{i:06}"))
}

fn put_req(i: usize) -> PutRequest {
    PutRequest {
        key: key(i),
        value: Bytes::from(vec![b'v'; VALUE_BYTES]),
        ..Default::default()
    }
}

fn loaded_store() -> Store {
    let mut s = Store::new();
    let mut events = Vec::new();
    for i in 0..KEY_COUNT {
        s.put(&put_req(i), &mut events).expect("put");
        events.clear();
    }
    s
}

fn bench_put(c: &mut Bench, store: &Store) {
    let mut g = c.benchmark_group("mvcc");
    g.throughput(Throughput::Elements(1));
    let reqs: Vec<PutRequest> = (0..KEY_COUNT).map(put_req).collect();
    // One copy for every sample: criterion calls the routine once per sample, and a copy per
    // sample would time the copy-on-write of the shared key map (a cost paid once after each
    // snapshot, not per write) instead of the put.
    let mut s = store.clone();
    let mut events = Vec::with_capacity(1);
    let mut i = 0;
    g.bench_function("put_256B_over_100k_keys", |b| {
        b.iter(|| {
            events.clear();
            let resp = s.put(&reqs[i % KEY_COUNT], &mut events).expect("put");
            i = i.wrapping_mul(7919).wrapping_add(1) % KEY_COUNT;
            black_box(resp)
        });
    });
    // The same puts with a snapshot freeze every 10,000 writes (production freezes every
    // --snapshot-count, 100,000 by default): the first write to a tree node after a freeze
    // copies that node's pointers, and each key's first write copies its history. Histories
    // are kept short by a compaction before each freeze (without it they grow by a version
    // per key every 100,000 iterations of the benchmark, and so would the copies).
    const FREEZE_EVERY: usize = 10_000;
    let compact_all_but_latest = |s: &mut Store| {
        let compact = CompactionRequest {
            revision: s.revision() - KEY_COUNT as i64,
            physical: true,
        };
        s.compact(&compact).expect("compact");
    };
    compact_all_but_latest(&mut s);
    let mut frozen = None;
    let mut n = 0usize;
    g.bench_function("put_256B_over_100k_keys_freeze_every_10k", |b| {
        b.iter(|| {
            n += 1;
            if n.is_multiple_of(FREEZE_EVERY) {
                compact_all_but_latest(&mut s);
                frozen = Some(s.freeze());
            }
            events.clear();
            let resp = s.put(&reqs[i % KEY_COUNT], &mut events).expect("put");
            i = i.wrapping_mul(7919).wrapping_add(1) % KEY_COUNT;
            black_box(resp)
        });
    });
    drop(frozen);
    g.throughput(Throughput::Elements(1000));
    g.bench_function("put_1000_new_keys_into_empty_store", |b| {
        b.iter_batched(
            Store::new,
            |mut s| {
                let mut events = Vec::new();
                for r in reqs.iter().take(1000) {
                    events.clear();
                    black_box(s.put(r, &mut events).expect("put"));
                }
                s
            },
            BatchSize::LargeInput,
        );
    });
    g.finish();
}

fn bench_range(c: &mut Bench, store: &Store) {
    let mut g = c.benchmark_group("mvcc");
    g.throughput(Throughput::Elements(1));
    let singles: Vec<RangeRequest> = (0..KEY_COUNT)
        .map(|i| RangeRequest {
            key: key(i),
            ..Default::default()
        })
        .collect();
    g.bench_function("range_single_key", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 7919) % KEY_COUNT;
            black_box(store.range(&singles[i]).expect("range"))
        });
    });
    // "key/0123" covers key/012300 ..= key/012399: 100 keys.
    let prefixes: Vec<RangeRequest> = (0..KEY_COUNT / 100)
        .map(|p| RangeRequest {
            key: Bytes::from(format!("key/{p:04}")),
            range_end: Bytes::from(format!("key/{:04}", p + 1)),
            ..Default::default()
        })
        .collect();
    g.bench_function("range_prefix_100_keys", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 31) % prefixes.len();
            let resp = store.range(&prefixes[i]).expect("range");
            assert_eq!(resp.kvs.len(), 100);
            black_box(resp)
        });
    });
    g.finish();
}

fn cas(i: usize, mod_rev: i64) -> TxnRequest {
    let compare = Compare {
        key: key(i),
        target: CompareTarget::Mod as i32,
        result: CompareResult::Equal as i32,
        target_union: Some(TargetUnion::ModRevision(mod_rev)),
        ..Default::default()
    };
    let put = RequestOp {
        request: Some(request_op::Request::RequestPut(put_req(i))),
    };
    let get = RequestOp {
        request: Some(request_op::Request::RequestRange(RangeRequest {
            key: key(i),
            ..Default::default()
        })),
    };
    TxnRequest {
        compare: vec![compare],
        success: vec![put],
        failure: vec![get],
    }
}

fn bench_txn(c: &mut Bench, store: &Store) {
    let mut g = c.benchmark_group("mvcc");
    g.throughput(Throughput::Elements(1));
    // One copy for every sample (see `bench_put`).
    let mut s = store.clone();
    let mut events = Vec::with_capacity(1);
    // Key i was written at revision i + 2 by the preload; each CAS moves it on.
    let mut reqs: Vec<TxnRequest> = (0..KEY_COUNT).map(|i| cas(i, i as i64 + 2)).collect();
    let mut i = 0;
    g.bench_function("txn_cas_put", |b| {
        b.iter(|| {
            i = (i + 7919) % KEY_COUNT;
            events.clear();
            let resp = s.txn(&reqs[i], &mut events).expect("txn");
            assert!(resp.succeeded);
            reqs[i].compare[0].target_union = Some(TargetUnion::ModRevision(s.revision()));
            black_box(resp)
        });
    });
    g.finish();
}

fn bench_snapshot(c: &mut Bench, store: &Store) {
    let mut g = c.benchmark_group("mvcc");
    g.sample_size(10);
    g.bench_function("snapshot_copy_100k_keys", |b| {
        b.iter(|| black_box(store.clone()))
    });
    g.bench_function("freeze_100k_keys", |b| b.iter(|| black_box(store.freeze())));
    g.bench_function("write_snapshot_100k_keys", |b| {
        b.iter(|| {
            let mut out = Vec::new();
            store.write_snapshot(&mut out).expect("in memory");
            black_box(out)
        })
    });
    g.finish();
}

fn benches(c: &mut Bench) {
    let store = loaded_store();
    bench_snapshot(c, &store);
    bench_put(c, &store);
    bench_range(c, &store);
    bench_txn(c, &store);
}

criterion_group! {
    name = mvcc;
    config = Criterion::default().with_measurement(ThreadCpuTime);
    targets = benches
}
criterion_main!(mvcc);
