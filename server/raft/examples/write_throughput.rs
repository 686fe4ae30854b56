//! Write throughput of a one-member group over the real MVCC store and WAL (fdatasync on
//! every batch), driven through `RaftHandle` from another thread, as the gRPC shards do.
//! Not a test: run it with
//! `cargo run --release -p ketch-raft --example write_throughput -- [writers] [writes] [dir]`.

use std::collections::BTreeMap;
use std::time::Instant;

use bytes::Bytes;
use ketch_mvcc::Store;
use ketch_proto::PutRequest;
use ketch_proto::ketchpb::{RaftRequest, raft_request};
use ketch_raft::{Member, RaftOptions, UnreachableNetwork, executor_builder, start};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let writers: usize = args.get(1).map_or(1, |a| a.parse().expect("writers"));
    let writes: usize = args.get(2).map_or(20_000, |a| a.parse().expect("writes"));
    let tmp = tempfile::tempdir_in(args.get(3).map_or(".", |s| s.as_str())).expect("temp dir");
    let mut members = BTreeMap::new();
    members.insert(
        1u64,
        Member {
            name: "default".into(),
            ..Default::default()
        },
    );
    let opts = RaftOptions::new(tmp.path(), 1, 1, members);
    let (htx, hrx) = flume::bounded(1);
    let ex = executor_builder("raft")
        .spawn(move || async move {
            let (handle, node) = start::<Store, _>(opts, UnreachableNetwork, None)
                .await
                .expect("start");
            htx.send(handle).unwrap();
            node.stopped().await;
        })
        .expect("executor");
    let handle = hrx.recv().unwrap();
    let value = Bytes::from(vec![b'v'; 256]);
    let per_writer = writes / writers;
    let started = Instant::now();
    let futs = (0..writers).map(|w| {
        let h = handle.clone();
        let value = value.clone();
        async move {
            for i in 0..per_writer {
                let key = Bytes::from(format!("{:08}", (w * per_writer + i) % 100_000));
                let put = PutRequest {
                    key,
                    value: value.clone(),
                    ..Default::default()
                };
                h.write(RaftRequest {
                    request: Some(raft_request::Request::Put(put)),
                    header: None,
                    ..RaftRequest::default()
                })
                .await
                .expect("write");
            }
        }
    });
    futures::executor::block_on(futures::future::join_all(futs));
    let secs = started.elapsed().as_secs_f64();
    let m = futures::executor::block_on(handle.wal_metrics()).unwrap();
    let total = per_writer * writers;
    println!(
        "writers={writers} writes={total} seconds={secs:.3} writes_per_sec={:.0} wal_batches={} fsyncs={} fsync_avg_ms={:.3} direct_io={}",
        total as f64 / secs,
        m.batches,
        m.fsyncs,
        m.fsync_seconds.sum_seconds * 1000.0 / m.fsync_seconds.count.max(1) as f64,
        m.direct_io
    );
    futures::executor::block_on(handle.shutdown());
    ex.join().unwrap();
}
