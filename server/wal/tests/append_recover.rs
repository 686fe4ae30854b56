//! Append/recover round trips on a real disk: random record sizes (seeded, env
//! KETCH_WAL_SEED), group commit with many appenders completing in order, segment rollover,
//! purge, drop without close, the directory lock and size limits.

mod common;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use common::{body_for, run, seed, small_opts, splitmix};
use ketch_wal::{RecoveredRecord, Wal, WalError};

fn expected(seed: u64, indexes: impl Iterator<Item = u64>) -> Vec<RecoveredRecord> {
    indexes
        .map(|i| RecoveredRecord {
            kind: (i % 3) as u8,
            index: i,
            body: body_for(seed, i, 3000),
        })
        .collect()
}

/// Appends records `from..to` in random group sizes, as one `append_durable` per group.
async fn append_range(wal: &Wal, seed: u64, from: u64, to: u64) {
    let mut i = from;
    while i < to {
        let n = (splitmix(seed ^ i) % 8 + 1).min(to - i);
        let bodies: Vec<_> = (i..i + n).map(|x| body_for(seed, x, 3000)).collect();
        let recs: Vec<_> = (i..i + n)
            .zip(&bodies)
            .map(|(x, b)| ((x % 3) as u8, x, b.as_slice()))
            .collect();
        wal.append_durable(&recs).await.unwrap();
        i += n;
    }
}

#[test]
fn round_trip_random_sizes_across_rollovers_and_reopens() {
    let seed = seed("KETCH_WAL_SEED");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let (wal, rec) = Wal::open(small_opts(&path, 64 << 10)).await.unwrap();
        assert!(rec.records.is_empty() && rec.truncated_tail.is_none());
        append_range(&wal, seed, 1, 300).await;
        let m = wal.metrics();
        assert!(m.segment_rollovers >= 3, "{m:?}");
        assert_eq!(m.records, 299);
        assert_eq!(m.fsync_seconds.count, m.fsyncs);
        wal.close().await.unwrap();

        let (wal, rec) = Wal::open(small_opts(&path, 64 << 10)).await.unwrap();
        assert_eq!(rec.records, expected(seed, 1..300));
        assert_eq!(rec.truncated_tail, None);
        assert!(rec.segments >= 4);
        append_range(&wal, seed, 300, 400).await;
        wal.close().await.unwrap();

        let (wal, rec) = Wal::open(small_opts(&path, 64 << 10)).await.unwrap();
        assert_eq!(rec.records, expected(seed, 1..400));
        wal.close().await.unwrap();
    });
}

#[test]
fn many_appenders_complete_in_append_order_with_group_commit() {
    const TASKS: u64 = 16;
    const PER_TASK: u64 = 40;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let (wal, _) = Wal::open(small_opts(&path, 256 << 10)).await.unwrap();
        let next = Rc::new(RefCell::new(0u64));
        let appended = Rc::new(RefCell::new(Vec::new()));
        let completed = Rc::new(RefCell::new(Vec::new()));
        let mut tasks = Vec::new();
        for t in 0..TASKS {
            let (wal, next, appended, completed) = (
                wal.clone(),
                next.clone(),
                appended.clone(),
                completed.clone(),
            );
            tasks.push(glommio::spawn_local(async move {
                for _ in 0..PER_TASK {
                    let idx = std::mem::replace(&mut *next.borrow_mut(), 0);
                    *next.borrow_mut() = idx + 1;
                    let body = vec![t as u8; 256];
                    let done = completed.clone();
                    appended.borrow_mut().push(idx);
                    let cb = Box::new(move |r: Result<(), WalError>| {
                        r.unwrap();
                        done.borrow_mut().push(idx);
                    });
                    wal.append(&[(1, idx, &body)], cb).unwrap();
                    glommio::yield_if_needed().await;
                    if idx % 7 == 0 {
                        glommio::timer::sleep(Duration::from_micros(100)).await;
                    }
                }
            }));
        }
        for t in tasks {
            t.await;
        }
        wal.append_durable(&[(2, u64::MAX, b"last")]).await.unwrap();
        let total = TASKS * PER_TASK;
        assert_eq!(completed.borrow().len() as u64, total);
        assert_eq!(
            *completed.borrow(),
            *appended.borrow(),
            "completions out of append order"
        );
        let m = wal.metrics();
        assert!(m.batches < total, "no group commit happened: {m:?}");
        wal.close().await.unwrap();
        let (wal, rec) = Wal::open(small_opts(&path, 256 << 10)).await.unwrap();
        let got: Vec<u64> = rec.records.iter().map(|r| r.index).collect();
        let mut want = appended.borrow().clone();
        want.push(u64::MAX);
        assert_eq!(got, want);
        wal.close().await.unwrap();
    });
}

#[test]
fn purge_deletes_only_old_whole_segments() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let opts = small_opts(&path, 16 << 10);
        let (wal, _) = Wal::open(opts.clone()).await.unwrap();
        let body = [7u8; 1000];
        for i in 1..=200u64 {
            wal.append_durable(&[(1, i, &body)]).await.unwrap();
        }
        let before = wal.segment_paths();
        assert!(before.len() > 10);
        let removed = wal.purge_upto(50).await.unwrap();
        assert!(removed >= 2, "removed {removed}");
        let after = wal.segment_paths();
        assert_eq!(after, before[removed..]);
        for p in &before[..removed] {
            assert!(!p.exists(), "{} still exists", p.display());
        }
        wal.close().await.unwrap();

        let (wal, rec) = Wal::open(opts.clone()).await.unwrap();
        let first = rec.records[0].index;
        assert!(first <= 51 && first > 1, "first remaining index {first}");
        let idx: Vec<u64> = rec.records.iter().map(|r| r.index).collect();
        assert_eq!(idx, (first..=200).collect::<Vec<_>>());
        assert_eq!(wal.purge_upto(u64::MAX).await.unwrap(), rec.segments - 1);
        assert_eq!(
            wal.segment_paths().len(),
            1,
            "the active segment is never purged"
        );
        wal.append_durable(&[(1, 201, &body)]).await.unwrap();
        wal.close().await.unwrap();
        let (_wal, rec) = Wal::open(opts).await.unwrap();
        assert_eq!(rec.records.last().unwrap().index, 201);
    });
}

#[test]
fn dropping_without_close_keeps_every_acknowledged_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let opts = small_opts(&path, 64 << 10);
        let (wal, _) = Wal::open(opts.clone()).await.unwrap();
        for i in 0..50u64 {
            wal.append_durable(&[(1, i, &i.to_le_bytes())])
                .await
                .unwrap();
        }
        let outcomes = Rc::new(RefCell::new(Vec::new()));
        for i in 50..80u64 {
            let o = outcomes.clone();
            let cb = Box::new(move |r: Result<(), WalError>| o.borrow_mut().push((i, r.is_ok())));
            wal.append(&[(1, i, &i.to_le_bytes())], cb).unwrap();
        }
        drop(wal);
        // the unfinished appends are told they are not (known to be) durable
        assert_eq!(outcomes.borrow().len(), 30);
        assert!(outcomes.borrow().iter().all(|(_, ok)| !ok));
        glommio::timer::sleep(Duration::from_millis(20)).await; // let the cancelled writer go
        let (_wal, rec) = Wal::open(opts).await.unwrap();
        let idx: Vec<u64> = rec.records.iter().map(|r| r.index).collect();
        assert!(idx.len() >= 50, "lost acknowledged records: {idx:?}");
        assert_eq!(idx, (0..idx.len() as u64).collect::<Vec<_>>());
        for r in &rec.records {
            assert_eq!(r.body, r.index.to_le_bytes());
        }
    });
}

#[test]
fn second_open_is_locked_out_and_limits_are_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let opts = small_opts(&path, 16 << 10);
        let (wal, _) = Wal::open(opts.clone()).await.unwrap();
        assert!(matches!(
            Wal::open(opts.clone()).await,
            Err(WalError::Locked(_))
        ));
        let big = vec![0u8; wal.max_record_body_bytes() + 1];
        let err = wal.append(&[(1, 1, &big)], Box::new(|_| {})).unwrap_err();
        assert!(matches!(err, WalError::RecordTooLarge { .. }), "{err}");
        let max = vec![1u8; wal.max_record_body_bytes()];
        wal.append_durable(&[(1, 1, &max)]).await.unwrap();
        let clone = wal.clone();
        wal.close().await.unwrap();
        assert!(matches!(
            clone.append_durable(&[(1, 2, b"x")]).await,
            Err(WalError::Closed)
        ));
        drop(clone);
        let (_wal, rec) = Wal::open(opts).await.unwrap();
        assert_eq!(rec.records.len(), 1);
        assert_eq!(rec.records[0].body, max);
        let mut bad = small_opts(&path, 10_000);
        bad.max_batch_bytes = 1;
        assert!(matches!(
            Wal::open(bad).await,
            Err(WalError::InvalidOptions(_))
        ));
    });
}

#[test]
fn full_queue_refuses_append_but_append_when_room_waits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let (wal, _) = Wal::open(small_opts(&path, 1 << 20)).await.unwrap();
        let body = [1u8; 8];
        let acked = Rc::new(RefCell::new(0u64));
        let mut refused = 0;
        // no await in this loop: the writer cannot drain, so the queue must fill up
        for i in 0..(ketch_wal::QUEUE_MAX_RECORDS as u64 + 10) {
            let a = acked.clone();
            let cb = Box::new(move |r: Result<(), WalError>| {
                r.unwrap();
                *a.borrow_mut() += 1;
            });
            match wal.append(&[(1, i, &body)], cb) {
                Ok(()) => {}
                Err(WalError::QueueFull { .. }) => refused += 1,
                Err(e) => panic!("{e}"),
            }
        }
        assert!(refused >= 10, "queue bound not enforced: {refused} refused");
        let a = acked.clone();
        let cb = Box::new(move |r: Result<(), WalError>| {
            r.unwrap();
            *a.borrow_mut() += 1;
        });
        wal.append_when_room(&[(1, u64::MAX, &body)], cb)
            .await
            .unwrap();
        wal.close().await.unwrap();
        let queued = ketch_wal::QUEUE_MAX_RECORDS as u64 + 10 - refused + 1;
        assert_eq!(*acked.borrow(), queued);
    });
}

#[test]
fn one_batch_spanning_several_segments_is_synced_in_each_before_its_callback() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let opts = small_opts(&path, 16 << 10);
        let (wal, _) = Wal::open(opts.clone()).await.unwrap();
        let bodies: Vec<Vec<u8>> = (0..100u64).map(|i| vec![i as u8; 1000]).collect();
        let recs: Vec<_> = bodies
            .iter()
            .enumerate()
            .map(|(i, b)| (1u8, i as u64, b.as_slice()))
            .collect();
        let fsyncs_at_callback = Rc::new(RefCell::new(None));
        let (seen, w) = (fsyncs_at_callback.clone(), wal.clone());
        let cb = Box::new(move |r: Result<(), WalError>| {
            r.unwrap();
            *seen.borrow_mut() = Some(w.metrics().fsyncs);
        });
        wal.append(&recs, cb).unwrap();
        wal.append_durable(&[]).await.unwrap();
        let segments = wal.segment_paths().len() as u64;
        assert!(segments >= 7, "100 KB in 16 KiB segments: {segments}");
        let m = wal.metrics();
        assert_eq!(
            m.batches, 2,
            "one append is one batch, however many segments it spans"
        );
        assert_eq!(m.segment_rollovers, segments - 1);
        // one fdatasync per segment written, all done before the callback ran
        assert_eq!(*fsyncs_at_callback.borrow(), Some(segments));
        wal.close().await.unwrap();
        let (_wal, rec) = Wal::open(opts).await.unwrap();
        assert_eq!(rec.records.len(), 100);
        assert!(
            rec.records
                .iter()
                .enumerate()
                .all(|(i, r)| r.body == bodies[i])
        );
    });
}
