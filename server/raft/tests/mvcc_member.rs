//! A one-member group over the real MVCC store: puts, deletes and txns through `RaftHandle`,
//! then restarts (log replay, and snapshot + purged log) must give back a store whose
//! snapshot bytes are identical to the one before shutdown, with the same revisions.

mod common;

use bytes::Bytes;
use common::*;
use ketch_mvcc::{MvccError, Store};
use ketch_proto::ketchpb::{RaftRequest, raft_request};
use ketch_proto::{
    CompactionRequest, Compare, DeleteRangeRequest, RangeRequest, RequestOp, TxnRequest, compare,
    request_op,
};
use ketch_raft::ProposeError;

fn store_bytes(m: &RunningMember<Store>) -> Vec<u8> {
    let mut out = Vec::new();
    m.handle.store().read().write_snapshot(&mut out).unwrap();
    out
}

fn delete(key: &str) -> RaftRequest {
    let req = DeleteRangeRequest {
        key: Bytes::copy_from_slice(key.as_bytes()),
        ..Default::default()
    };
    RaftRequest {
        request: Some(raft_request::Request::DeleteRange(req)),
        header: None,
        ..RaftRequest::default()
    }
}

fn txn_put_if_version(key: &str, version: i64, value: &str) -> RaftRequest {
    let cmp = Compare {
        key: Bytes::copy_from_slice(key.as_bytes()),
        result: compare::CompareResult::Equal as i32,
        target: compare::CompareTarget::Version as i32,
        target_union: Some(compare::TargetUnion::Version(version)),
        ..Default::default()
    };
    let Some(raft_request::Request::Put(p)) = put(key, value).request else {
        unreachable!()
    };
    let op = RequestOp {
        request: Some(request_op::Request::RequestPut(p)),
    };
    RaftRequest {
        request: Some(raft_request::Request::Txn(TxnRequest {
            compare: vec![cmp],
            success: vec![op],
            failure: vec![],
        })),
        header: None,
        ..RaftRequest::default()
    }
}

fn write_workload(m: &RunningMember<Store>, n: usize) {
    for i in 0..n {
        block_on(
            m.handle
                .write(put(&format!("key/{:03}", i % 40), &format!("v{i}"))),
        )
        .unwrap();
        if i % 7 == 0 {
            block_on(m.handle.write(delete(&format!("key/{:03}", (i + 3) % 40)))).unwrap();
        }
        if i % 11 == 0 {
            block_on(
                m.handle
                    .write(txn_put_if_version(&format!("key/{:03}", i % 40), 1, "txn")),
            )
            .unwrap();
        }
    }
}

#[test]
fn mvcc_state_survives_restart_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let m = RunningMember::<Store>::start(single_member_options(dir.path()));
    write_workload(&m, 120);
    // The store's own error comes back typed, for the server's error mapping.
    let compact = CompactionRequest {
        revision: 1_000_000,
        physical: false,
    };
    let err = block_on(m.handle.write(RaftRequest {
        request: Some(raft_request::Request::Compaction(compact)),
        header: None,
        ..RaftRequest::default()
    }))
    .unwrap_err();
    match err {
        ProposeError::Rejected(e) => {
            assert_eq!(e.downcast_ref::<MvccError>(), Some(&MvccError::FutureRev))
        }
        other => panic!("{other:?}"),
    }
    let before = store_bytes(&m);
    let rev = m.handle.store().read().revision();
    assert!(rev > 120);
    m.stop();

    let m = RunningMember::<Store>::start(single_member_options(dir.path()));
    assert_eq!(m.handle.store().read().revision(), rev);
    assert_eq!(
        store_bytes(&m),
        before,
        "replayed store equals the one before restart"
    );
    let resp = m
        .handle
        .store()
        .read()
        .range(&RangeRequest {
            key: Bytes::from_static(b"key/005"),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(resp.kvs.len(), 1);
    m.stop();
}

#[test]
fn mvcc_state_survives_snapshot_purge_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = single_member_options(dir.path());
    opts.snapshot_count = 50;
    opts.snapshot_catchup_entries = 10;
    opts.wal_segment_size_bytes = 16 << 10;
    let m = RunningMember::<Store>::start(opts.clone());
    write_workload(&m, 200);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let snaps = || {
        let names = std::fs::read_dir(opts.snap_dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap());
        names.filter(|n| n.ends_with(".snap")).count()
    };
    while snaps() == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let before = store_bytes(&m);
    m.stop();
    assert_eq!(snaps(), 1, "one snapshot file is kept");

    let m = RunningMember::<Store>::start(opts);
    assert_eq!(
        store_bytes(&m),
        before,
        "snapshot + log tail rebuild the same store"
    );
    m.stop();
}
