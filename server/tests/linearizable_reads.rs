//! Linearizable reads on a three-member ketch under concurrent writes: every read, on any
//! member and on any shard (several connections per member), returns a revision at least as
//! new as the last write acknowledged before the read was sent, end to end through the
//! shared barriers (reads on one shard share read barriers, and the leader serves followers'
//! ReadIndex requests in its own rounds). The ordering rule of the sharing itself is checked
//! step by step in `read_gate`'s unit test and raft's cluster tests.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use common::{ServerProcess, ketch_bin};
use etcd_client::Client;

const CONNS_PER_MEMBER: usize = 4;
const READERS_PER_CONN: usize = 4;
const RUN: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_on_every_member_and_shard_see_every_acknowledged_write() {
    let tmp = tempfile::tempdir().unwrap();
    let members = ServerProcess::start_cluster(&ketch_bin(), tmp.path(), 3, &[]);
    let endpoints: Vec<String> = members.iter().map(|m| m.endpoint()).collect();
    let acknowledged = Arc::new(AtomicI64::new(0));
    let deadline = Instant::now() + RUN;

    let mut writer = Client::connect([endpoints[0].as_str()], None)
        .await
        .unwrap();
    let ack = acknowledged.clone();
    let writes = tokio::spawn(async move {
        let mut n = 0u64;
        while Instant::now() < deadline {
            let rev = writer
                .put("k", n.to_string(), None)
                .await
                .expect("put")
                .header()
                .unwrap()
                .revision();
            ack.fetch_max(rev, Ordering::SeqCst);
            n += 1;
        }
        n
    });

    let mut readers = Vec::new();
    for ep in &endpoints {
        for _ in 0..CONNS_PER_MEMBER {
            let client = Client::connect([ep.as_str()], None).await.unwrap();
            for _ in 0..READERS_PER_CONN {
                let mut kv = client.kv_client();
                let ack = acknowledged.clone();
                let ep = ep.clone();
                readers.push(tokio::spawn(async move {
                    let mut reads = 0u64;
                    while Instant::now() < deadline {
                        let before = ack.load(Ordering::SeqCst);
                        let got = kv.get("k", None).await.expect("linearizable get");
                        let seen = got.kvs().first().map_or(0, |kv| kv.mod_revision());
                        assert!(
                            seen >= before,
                            "a read on {ep} saw revision {seen}, older than the write \
                             acknowledged at {before} before it was sent"
                        );
                        reads += 1;
                    }
                    reads
                }));
            }
        }
    }
    let writes = writes.await.unwrap();
    let mut reads = 0;
    for r in readers {
        reads += r.await.unwrap();
    }
    println!("{writes} writes, {reads} linearizable reads");
    assert!(writes > 50, "only {writes} writes");
    assert!(reads > 500, "only {reads} reads");
}
