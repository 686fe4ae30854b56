//! A one-member group on a real data dir (WAL with fdatasync, vote and snapshot files):
//! writes and linearizable reads through `RaftHandle` from other threads, restart recovery,
//! snapshot + log purge + restart, group commit under concurrent writers, read coalescing.

mod common;

use std::time::Duration;

use common::*;
use ketch_raft::ProposeError;

#[test]
fn writes_from_another_thread_are_applied_with_increasing_revisions() {
    let dir = tempfile::tempdir().unwrap();
    let m = RunningMember::<TestStore>::start(single_member_options(dir.path()));
    let status = m.handle.status();
    assert!(status.is_leader, "one member leads itself: {status:?}");
    assert_eq!(status.leader_id, MEMBER_ID);
    let h = m.handle.clone();
    let revs: Vec<i64> = std::thread::spawn(move || {
        (0..20)
            .map(|i| put_revision(&block_on(h.write(put(&format!("k{i}"), "v"))).unwrap()))
            .collect()
    })
    .join()
    .unwrap();
    assert_eq!(revs, (1..=20).collect::<Vec<i64>>());
    block_on(m.handle.linearizable_read_barrier()).unwrap();
    let store = m.handle.store();
    assert_eq!(
        store.read().kv.get(b"k7".as_slice()).unwrap(),
        &(b"v".to_vec(), 8)
    );
    let status = m.handle.status();
    assert!(
        status.applied_index >= 20 && status.commit_index >= status.applied_index,
        "{status:?}"
    );
    assert!(status.last_log_index >= status.commit_index, "{status:?}");
    // Events reached the subscriber in log order.
    let evs: Vec<i64> = m.events.try_iter().flatten().map(|(_, rev)| rev).collect();
    assert_eq!(evs, (1..=20).collect::<Vec<i64>>());
    // A refused request is in the log and answered with the store's error.
    let err = block_on(m.handle.write(put("", "x"))).unwrap_err();
    assert!(
        matches!(err, ProposeError::Rejected(ref e) if e.to_string().contains("key is not provided")),
        "{err:?}"
    );
    m.stop();
}

#[test]
fn restart_recovers_every_acknowledged_write_with_its_revision() {
    let dir = tempfile::tempdir().unwrap();
    let m = RunningMember::<TestStore>::start(single_member_options(dir.path()));
    let mut acked = Vec::new();
    for i in 0..50 {
        let rev = put_revision(
            &block_on(
                m.handle
                    .write(put(&format!("key-{i}"), &format!("value-{i}"))),
            )
            .unwrap(),
        );
        acked.push((format!("key-{i}"), format!("value-{i}"), rev));
    }
    let term_before = m.handle.status().term;
    m.stop();

    let m = RunningMember::<TestStore>::start(single_member_options(dir.path()));
    let store = m.handle.store();
    {
        let s = store.read();
        assert_eq!(s.revision, 50);
        for (k, v, rev) in &acked {
            assert_eq!(
                s.kv.get(k.as_bytes()),
                Some(&(v.as_bytes().to_vec(), *rev)),
                "key {k}"
            );
        }
    }
    assert!(
        m.handle.status().term > term_before,
        "a restart elects in a new term"
    );
    // Writing goes on from the recovered revision.
    assert_eq!(
        put_revision(&block_on(m.handle.write(put("after", "restart"))).unwrap()),
        51
    );
    m.stop();
}

#[test]
fn snapshot_purges_the_log_and_restart_loads_snapshot_plus_tail() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = single_member_options(dir.path());
    opts.snapshot_count = 100;
    opts.snapshot_catchup_entries = 0;
    opts.wal_segment_size_bytes = 16 << 10; // small segments, so purging removes files
    let m = RunningMember::<TestStore>::start(opts.clone());
    let value = "x".repeat(200);
    for i in 0..450 {
        block_on(m.handle.write(put(&format!("k{i:04}"), &value))).unwrap();
    }
    // Snapshots are built in the background after the policy triggers.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let snaps = || {
        std::fs::read_dir(opts.snap_dir())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "snap")
            })
            .count()
    };
    while snaps() == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(snaps(), 1, "exactly one snapshot file is kept");
    let segments = || -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(opts.wal_dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".wal"))
            .collect();
        v.sort();
        v
    };
    let metrics = block_on(m.handle.wal_metrics()).unwrap();
    assert!(
        metrics.segment_rollovers >= 4,
        "the log spans many segments: {metrics:?}"
    );
    // The purge after the last snapshot removes every segment below it; the first segment
    // (sequence 0, holding the log's first entries) must be gone.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while segments()
        .first()
        .is_some_and(|n| n.starts_with("0000000000000000-"))
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let left = segments();
    assert!(
        !left[0].starts_with("0000000000000000-"),
        "first segment purged: {left:?}"
    );
    assert!(
        (left.len() as u64) < metrics.segment_rollovers,
        "segments below the snapshot purged: {left:?}"
    );
    m.stop();

    let m = RunningMember::<TestStore>::start(opts.clone());
    {
        let store = m.handle.store();
        let s = store.read();
        assert_eq!(s.revision, 450);
        assert_eq!(s.kv.len(), 450);
        assert_eq!(s.kv.get(b"k0000".as_slice()).unwrap().1, 1);
        assert_eq!(s.kv.get(b"k0449".as_slice()).unwrap().1, 450);
    }
    assert_eq!(
        put_revision(&block_on(m.handle.write(put("next", "v"))).unwrap()),
        451
    );
    m.stop();
}

#[test]
fn concurrent_writers_share_fsyncs() {
    const WRITERS: usize = 64;
    const WRITES_PER_WRITER: usize = 20;
    let dir = tempfile::tempdir().unwrap();
    let m = RunningMember::<TestStore>::start(single_member_options(dir.path()));
    let before = block_on(m.handle.wal_metrics()).unwrap();
    let futs = (0..WRITERS).map(|w| {
        let h = m.handle.clone();
        async move {
            let mut revs = Vec::new();
            for i in 0..WRITES_PER_WRITER {
                revs.push(put_revision(
                    &h.write(put(&format!("w{w}-{i}"), "v")).await.unwrap(),
                ));
            }
            revs
        }
    });
    let mut revs: Vec<i64> = block_on(futures::future::join_all(futs))
        .into_iter()
        .flatten()
        .collect();
    let after = block_on(m.handle.wal_metrics()).unwrap();
    let writes = (WRITERS * WRITES_PER_WRITER) as u64;
    revs.sort();
    assert_eq!(
        revs,
        (1..=writes as i64).collect::<Vec<_>>(),
        "every write got its own revision"
    );
    let batches = after.batches - before.batches;
    let records = after.records - before.records;
    println!(
        "{writes} writes, {records} WAL records, {batches} batches, {} fsyncs",
        after.fsyncs - before.fsyncs
    );
    assert!(records >= writes);
    assert!(
        batches < writes,
        "group commit: {batches} batches for {writes} writes"
    );
    m.stop();
}

#[test]
fn concurrent_linearizable_reads_share_rounds_and_see_prior_writes() {
    const READERS: usize = 200;
    let dir = tempfile::tempdir().unwrap();
    let m = RunningMember::<TestStore>::start(single_member_options(dir.path()));
    block_on(m.handle.write(put("a", "1"))).unwrap();
    let rounds_before = m.handle.read_rounds();
    let futs = (0..READERS).map(|_| {
        let h = m.handle.clone();
        async move {
            h.linearizable_read_barrier().await.unwrap();
            h.store().read().kv.get(b"a".as_slice()).cloned()
        }
    });
    let seen = block_on(futures::future::join_all(futs));
    assert!(seen.iter().all(|v| v == &Some((b"1".to_vec(), 1))));
    let rounds = m.handle.read_rounds() - rounds_before;
    assert!(
        rounds >= 1 && rounds < READERS as u64,
        "{rounds} rounds for {READERS} reads"
    );
    m.stop();
}

#[test]
fn a_stopped_member_refuses_requests() {
    let dir = tempfile::tempdir().unwrap();
    let m = RunningMember::<TestStore>::start(single_member_options(dir.path()));
    let h = m.handle.clone();
    m.stop();
    assert!(matches!(
        block_on(h.write(put("k", "v"))),
        Err(ProposeError::Stopped)
    ));
    assert!(matches!(
        block_on(h.linearizable_read_barrier()),
        Err(ProposeError::Stopped)
    ));
}
