//! etcd 3.4's API-layer checks (`validate`): empty keys, ignore_* conflicts, the txn op
//! limit (nested txns get what is left), and the duplicate-key rule for puts and deletes
//! across nested txns, including etcd's quirks (both branches of a nested txn may put the
//! same key; a from-key delete overlaps nothing). Expectations were checked on etcd 3.4.23.

mod common;

use bytes::Bytes;
use common::{del_op, nested, put_op};
use ketch_mvcc::{GrpcCode, MvccError, validate};
use ketch_proto::{
    Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest, request_op,
};

fn get(k: &str) -> RequestOp {
    let r = RangeRequest {
        key: Bytes::copy_from_slice(k.as_bytes()),
        ..Default::default()
    };
    RequestOp {
        request: Some(request_op::Request::RequestRange(r)),
    }
}

fn check(success: Vec<RequestOp>) -> Result<(), MvccError> {
    validate::check_txn(
        &TxnRequest {
            success,
            ..Default::default()
        },
        128,
    )
}

#[test]
fn single_request_checks() {
    assert_eq!(
        validate::check_range(&RangeRequest::default()),
        Err(MvccError::EmptyKey)
    );
    assert_eq!(
        validate::check_delete_range(&DeleteRangeRequest::default()),
        Err(MvccError::EmptyKey)
    );
    let mut p = PutRequest {
        key: Bytes::from_static(b"k"),
        ignore_value: true,
        ..Default::default()
    };
    assert_eq!(validate::check_put(&p), Ok(()));
    p.value = Bytes::from_static(b"v");
    assert_eq!(validate::check_put(&p), Err(MvccError::ValueProvided));
    let p = PutRequest {
        key: Bytes::from_static(b"k"),
        ignore_lease: true,
        lease: 5,
        ..Default::default()
    };
    assert_eq!(validate::check_put(&p), Err(MvccError::LeaseProvided));
}

#[test]
fn op_limit_counts_the_largest_list_and_nested_txns_get_the_rest() {
    let ops = |n: usize| (0..n).map(|i| get(&format!("k{i}"))).collect::<Vec<_>>();
    let t = TxnRequest {
        success: ops(4),
        failure: ops(2),
        ..Default::default()
    };
    assert_eq!(validate::check_txn(&t, 4), Ok(()));
    assert_eq!(validate::check_txn(&t, 3), Err(MvccError::TooManyOps));
    // 2 ops at the top leave 2 for the nested txn, which has 3.
    let t = TxnRequest {
        success: vec![get("a"), nested(ops(3), vec![])],
        ..Default::default()
    };
    assert_eq!(validate::check_txn(&t, 4), Err(MvccError::TooManyOps));
    assert_eq!(validate::check_txn(&t, 5), Ok(()));
    let empty_compare = TxnRequest {
        compare: vec![Compare::default()],
        ..Default::default()
    };
    assert_eq!(
        validate::check_txn(&empty_compare, 8),
        Err(MvccError::EmptyKey)
    );
    let empty_op = TxnRequest {
        success: vec![RequestOp { request: None }],
        ..Default::default()
    };
    assert_eq!(
        validate::check_txn(&empty_op, 8),
        Err(MvccError::KeyNotFound)
    );
}

#[test]
fn duplicate_key_rules() {
    assert_eq!(
        check(vec![put_op("a"), put_op("a")]),
        Err(MvccError::DuplicateKey)
    );
    assert_eq!(
        check(vec![put_op("a"), put_op("b"), get("a"), get("a")]),
        Ok(())
    );
    assert_eq!(
        check(vec![del_op("a", "", false), put_op("a")]),
        Err(MvccError::DuplicateKey)
    );
    assert_eq!(
        check(vec![del_op("a", "c", false), put_op("b")]),
        Err(MvccError::DuplicateKey)
    );
    assert_eq!(
        check(vec![del_op("a", "c", false), put_op("c")]),
        Ok(()),
        "range end is exclusive"
    );
    assert_eq!(
        check(vec![del_op("a", "", false), del_op("a", "z", false)]),
        Ok(()),
        "deletes may overlap"
    );
    // etcd compares "\0" as a plain string: a from-key delete overlaps no put.
    assert_eq!(check(vec![del_op("a", "\0", false), put_op("b")]), Ok(()));
    // Nested: the same key in both branches of one txn is fine; elsewhere it is not.
    assert_eq!(
        check(vec![nested(vec![put_op("a")], vec![put_op("a")])]),
        Ok(())
    );
    assert_eq!(
        check(vec![put_op("a"), nested(vec![put_op("a")], vec![])]),
        Err(MvccError::DuplicateKey)
    );
    assert_eq!(
        check(vec![
            del_op("a", "", false),
            nested(vec![], vec![put_op("a")])
        ]),
        Err(MvccError::DuplicateKey)
    );
    assert_eq!(
        check(vec![
            nested(vec![del_op("a", "", false)], vec![]),
            put_op("a")
        ]),
        Err(MvccError::DuplicateKey)
    );
    assert_eq!(
        check(vec![
            nested(vec![put_op("a")], vec![]),
            nested(vec![put_op("a")], vec![])
        ]),
        Err(MvccError::DuplicateKey)
    );
    // A nested delete after a nested put of the same key: etcd's order lets it through.
    assert_eq!(
        check(vec![
            nested(vec![put_op("a")], vec![]),
            nested(vec![del_op("a", "", false)], vec![])
        ]),
        Ok(())
    );
    assert_eq!(
        check(vec![
            nested(vec![del_op("a", "", false)], vec![]),
            nested(vec![put_op("a")], vec![])
        ]),
        Err(MvccError::DuplicateKey)
    );
}

#[test]
fn codes_and_messages_are_etcds() {
    let cases = [
        (
            MvccError::EmptyKey,
            GrpcCode::InvalidArgument,
            "etcdserver: key is not provided",
        ),
        (
            MvccError::DuplicateKey,
            GrpcCode::InvalidArgument,
            "etcdserver: duplicate key given in txn request",
        ),
        (
            MvccError::Compacted,
            GrpcCode::OutOfRange,
            "etcdserver: mvcc: required revision has been compacted",
        ),
        (
            MvccError::FutureRev,
            GrpcCode::OutOfRange,
            "etcdserver: mvcc: required revision is a future revision",
        ),
        (
            MvccError::LeaseNotFound,
            GrpcCode::NotFound,
            "etcdserver: requested lease not found",
        ),
        (
            MvccError::LeaseExist,
            GrpcCode::FailedPrecondition,
            "etcdserver: lease already exists",
        ),
    ];
    for (e, code, msg) in cases {
        assert_eq!((e.grpc_code(), e.to_string().as_str()), (code, msg));
    }
    assert_eq!(GrpcCode::OutOfRange as i32, 11);
}
