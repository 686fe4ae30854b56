//! Watch guarantees against a real ketch process under concurrent writers (puts, deletes,
//! two-key txns) and a compaction: every revision is delivered exactly once, in order, never
//! split across responses, with prev_kv equal to the key's previous event; a watcher that
//! stops reading for a while (and so falls out of the broadcast ring) still gets everything;
//! a watch starting below the compaction is created then cancelled with the compact revision.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use common::{ServerProcess, ketch_bin};
use etcd_client::{Client, EventType, Txn, TxnOp, WatchOptions, WatchStream};

const WRITERS: usize = 3;
const OPS_PER_WRITER: usize = 500;
const SLOW_READER_PAUSE: Duration = Duration::from_millis(1500);
const STREAM_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, PartialEq)]
struct Seen {
    rev: i64,
    key: Vec<u8>,
    put: bool,
    value: Vec<u8>,
    prev: Option<(i64, Vec<u8>)>,
}

/// Reads a watch stream until it has seen revision `last`; returns the events and checks
/// that no revision is split across responses.
async fn collect(stream: &mut WatchStream, last: i64) -> Vec<Seen> {
    let mut out: Vec<Seen> = Vec::new();
    let mut response_of_rev: HashMap<i64, usize> = HashMap::new();
    let mut n = 0;
    while out.last().is_none_or(|e| e.rev < last) {
        let resp = tokio::time::timeout(STREAM_TIMEOUT, stream.message())
            .await
            .expect("watch stalled")
            .expect("watch stream error")
            .expect("watch stream ended");
        assert!(!resp.canceled(), "watch cancelled: {resp:?}");
        n += 1;
        for e in resp.events() {
            let kv = e.kv().expect("event kv");
            let rev = kv.mod_revision();
            if let Some(other) = response_of_rev.insert(rev, n) {
                assert_eq!(other, n, "revision {rev} split across responses");
            }
            out.push(Seen {
                rev,
                key: kv.key().to_vec(),
                put: e.event_type() == EventType::Put,
                value: kv.value().to_vec(),
                prev: e.prev_kv().map(|p| (p.mod_revision(), p.value().to_vec())),
            });
        }
    }
    out
}

/// Ordered, unique, gap-free from `first` to `last`, prev_kv consistent with the stream.
fn check(events: &[Seen], first: i64, last: i64, with_prev: bool) {
    for w in events.windows(2) {
        assert!(
            w[0].rev <= w[1].rev,
            "out of order: {:?} then {:?}",
            w[0],
            w[1]
        );
        assert!(
            w[0].rev < w[1].rev || w[0].key < w[1].key,
            "duplicate or unordered event in revision {}",
            w[0].rev
        );
    }
    let revs: Vec<i64> = events.iter().map(|e| e.rev).collect();
    let mut distinct = revs.clone();
    distinct.dedup();
    assert_eq!(
        distinct,
        (first..=last).collect::<Vec<_>>(),
        "gaps or extras"
    );
    if !with_prev {
        return;
    }
    let mut latest: BTreeMap<Vec<u8>, (i64, Vec<u8>)> = BTreeMap::new();
    for e in events {
        let expected = latest.get(&e.key).cloned();
        if first == 2 || expected.is_some() {
            assert_eq!(e.prev, expected, "prev_kv of {:?}", e);
        }
        if e.put {
            latest.insert(e.key.clone(), (e.rev, e.value.clone()));
        } else {
            latest.remove(&e.key);
        }
    }
}

async fn writer(mut c: Client, t: usize) {
    for i in 0..OPS_PER_WRITER {
        let key = format!("k/{t}/{}", i % 7);
        if i % 5 == 4 {
            c.delete(key, None).await.expect("delete");
        } else if i % 7 == 6 {
            let ops = [
                TxnOp::put(format!("k/{t}/x"), format!("{i}"), None),
                TxnOp::put(format!("k/{t}/y"), format!("{i}"), None),
            ];
            c.txn(Txn::new().and_then(ops)).await.expect("txn");
        } else {
            c.put(key, format!("v{i}"), None).await.expect("put");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_see_every_revision_once_in_order_under_load_and_compaction() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let mut server = ServerProcess::start(&ketch_bin(), &tmp.path().join("d"), &[]);
    server.wait_healthy(Duration::from_secs(20));
    let mut client = Client::connect([server.endpoint()], None)
        .await
        .expect("connect");
    client.put("k/seed", "0", None).await.expect("seed put");
    let prefix = || WatchOptions::new().with_prefix();
    let mut fast = client
        .watch("k/", Some(prefix().with_start_revision(1).with_prev_key()))
        .await
        .expect("watch A");
    let slow_start = client
        .get("k/seed", None)
        .await
        .expect("get")
        .header()
        .unwrap()
        .revision();
    let mut slow = client
        .watch("k/", Some(prefix().with_prev_key()))
        .await
        .expect("watch S");

    let writers: Vec<_> = (0..WRITERS)
        .map(|t| tokio::spawn(writer(client.clone(), t)))
        .collect();
    tokio::time::sleep(SLOW_READER_PAUSE).await;
    for w in writers {
        w.await.expect("writer task");
    }
    let last = client
        .get("k/seed", None)
        .await
        .expect("get")
        .header()
        .unwrap()
        .revision();
    assert!(
        last > 1000,
        "enough writes to overflow the broadcast ring: {last}"
    );

    let fast_events = collect(&mut fast, last).await;
    check(&fast_events, 2, last, true);
    let slow_events = collect(&mut slow, last).await;
    check(&slow_events, slow_start + 1, last, false);
    assert_eq!(
        slow_events,
        fast_events[fast_events.iter().position(|e| e.rev > slow_start).unwrap()..],
        "both watchers saw the same events"
    );

    let compact_at = last - 10;
    client.compact(compact_at, None).await.expect("compact");
    let mut compacted = client
        .watch("k/", Some(prefix().with_start_revision(2)))
        .await
        .expect("watch C");
    let mut next = async || {
        tokio::time::timeout(STREAM_TIMEOUT, compacted.message())
            .await
            .expect("compacted watch stalled")
            .expect("stream error")
            .expect("stream ended")
    };
    let created = next().await;
    assert!(
        created.created() && !created.canceled(),
        "created first: {created:?}"
    );
    let resp = next().await;
    assert!(resp.canceled(), "then cancelled: {resp:?}");
    assert_eq!(resp.compact_revision(), compact_at);
    server.kill9();
}
