//! etcd 3.4's API-layer request checks (`etcdserver/api/v3rpc/key.go`), run before a request
//! is proposed: empty keys, ignore_value/ignore_lease conflicts, the txn op limit, and the
//! duplicate-key rule for puts and deletes across a txn and its nested txns.

use std::collections::HashSet;

use bytes::Bytes;
use ketch_proto::{
    DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest, request_op,
};

use crate::error::MvccError;

pub fn check_range(req: &RangeRequest) -> Result<(), MvccError> {
    if req.key.is_empty() {
        return Err(MvccError::EmptyKey);
    }
    Ok(())
}

pub fn check_put(req: &PutRequest) -> Result<(), MvccError> {
    if req.key.is_empty() {
        return Err(MvccError::EmptyKey);
    }
    if req.ignore_value && !req.value.is_empty() {
        return Err(MvccError::ValueProvided);
    }
    if req.ignore_lease && req.lease != 0 {
        return Err(MvccError::LeaseProvided);
    }
    Ok(())
}

pub fn check_delete_range(req: &DeleteRangeRequest) -> Result<(), MvccError> {
    if req.key.is_empty() {
        return Err(MvccError::EmptyKey);
    }
    Ok(())
}

/// etcd's `checkTxnRequest` then `checkIntervals` on both branches.
pub fn check_txn(req: &TxnRequest, max_txn_ops: usize) -> Result<(), MvccError> {
    check_txn_ops(req, max_txn_ops as i64)?;
    check_intervals(&req.success)?;
    check_intervals(&req.failure)?;
    Ok(())
}

fn check_txn_ops(req: &TxnRequest, max_txn_ops: i64) -> Result<(), MvccError> {
    let ops = req
        .compare
        .len()
        .max(req.success.len())
        .max(req.failure.len()) as i64;
    if ops > max_txn_ops {
        return Err(MvccError::TooManyOps);
    }
    if req.compare.iter().any(|c| c.key.is_empty()) {
        return Err(MvccError::EmptyKey);
    }
    // etcd hands nested txns what is left of the limit after this level.
    for op in req.success.iter().chain(&req.failure) {
        check_request_op(op, max_txn_ops - ops)?;
    }
    Ok(())
}

fn check_request_op(op: &RequestOp, max_txn_ops: i64) -> Result<(), MvccError> {
    match &op.request {
        Some(request_op::Request::RequestRange(r)) => check_range(r),
        Some(request_op::Request::RequestPut(r)) => check_put(r),
        Some(request_op::Request::RequestDeleteRange(r)) => check_delete_range(r),
        Some(request_op::Request::RequestTxn(r)) => check_txn_ops(r, max_txn_ops),
        // An empty op: etcd answers "key not found".
        None => Err(MvccError::KeyNotFound),
    }
}

/// A deleted interval as etcd's `adt` interval tree sees it: `[key, end)`, or the point
/// `[key, key+"\0")` when there is no range end. `end` is compared as a plain string, so a
/// from-key delete (`end` = "\0") is an inverted interval that overlaps nothing, as in etcd.
struct Deleted {
    key: Bytes,
    end: Option<Bytes>,
}

impl Deleted {
    fn holds(&self, k: &[u8]) -> bool {
        match &self.end {
            None => self.key == k,
            Some(end) => self.key[..] <= *k && *k < end[..],
        }
    }
}

/// etcd's `checkIntervals`: returns the keys put and the intervals deleted at this level and
/// below, failing on a put that repeats a put or falls in a deleted interval. Puts of the
/// same key in both branches of one nested txn are allowed (only one branch runs).
fn check_intervals(ops: &[RequestOp]) -> Result<(HashSet<Bytes>, Vec<Deleted>), MvccError> {
    let mut dels: Vec<Deleted> = ops
        .iter()
        .filter_map(|op| match &op.request {
            Some(request_op::Request::RequestDeleteRange(d)) => Some(Deleted {
                key: d.key.clone(),
                end: (!d.range_end.is_empty()).then(|| d.range_end.clone()),
            }),
            _ => None,
        })
        .collect();
    let mut puts: HashSet<Bytes> = HashSet::new();
    let deleted = |dels: &[Deleted], k: &[u8]| dels.iter().any(|d| d.holds(k));
    for op in ops {
        let Some(request_op::Request::RequestTxn(t)) = &op.request else {
            continue;
        };
        let (puts_then, dels_then) = check_intervals(&t.success)?;
        let (puts_else, dels_else) = check_intervals(&t.failure)?;
        for k in puts_then.iter() {
            if puts.contains(k) || deleted(&dels, k) {
                return Err(MvccError::DuplicateKey);
            }
            puts.insert(k.clone());
        }
        for k in puts_else {
            if puts.contains(&k) && !puts_then.contains(&k) || deleted(&dels, &k) {
                return Err(MvccError::DuplicateKey);
            }
            puts.insert(k);
        }
        dels.extend(dels_then);
        dels.extend(dels_else);
    }
    for op in ops {
        let Some(request_op::Request::RequestPut(p)) = &op.request else {
            continue;
        };
        if puts.contains(&p.key) || deleted(&dels, &p.key) {
            return Err(MvccError::DuplicateKey);
        }
        puts.insert(p.key.clone());
    }
    Ok((puts, dels))
}
