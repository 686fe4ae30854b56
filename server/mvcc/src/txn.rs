//! etcd 3.4's Txn (`applierV3backend.Txn`): every compare, nested ones included, is evaluated
//! against the state before the txn, giving the path of taken branches; the puts and ranges
//! on that path are checked against the same state; then the ops run in order, each seeing the
//! earlier ones' writes. All writes share one main revision; no write, no new revision.

use std::cmp::Ordering;

use ketch_proto::compare::{CompareResult, CompareTarget, TargetUnion};
use ketch_proto::mvccpb::Event;
use ketch_proto::{
    Compare, RequestOp, ResponseHeader, ResponseOp, TxnRequest, TxnResponse, request_op,
    response_op,
};

use crate::error::MvccError;
use crate::key_history::KeyVersion;
use crate::key_span::KeySpan;
use crate::store::{Store, WriteTxn, header};

impl Store {
    /// etcd's Txn; the response header carries the store revision after it.
    pub fn txn(
        &mut self,
        req: &TxnRequest,
        events: &mut Vec<Event>,
    ) -> Result<TxnResponse, MvccError> {
        let mut path = Vec::new();
        self.compare_path(req, &mut path);
        self.check_ops(req, &path, &mut 0, &|s, op| s.check_put(op))?;
        self.check_ops(req, &path, &mut 0, &|s, op| s.check_range(op))?;
        let mut w = self.begin();
        let events_before = events.len();
        let result = self.apply_txn(&mut w, req, &path, &mut 0, events);
        if result.is_err() {
            // Reachable only past etcd's checks, where etcd 3.4 panics (e.g. a from-key
            // delete, which the duplicate-key rule misses, then an ignore_value put of a
            // deleted key): refuse the whole txn instead, leaving no trace of it.
            self.roll_back(&mut w);
            events.truncate(events_before);
        }
        self.end(w);
        let mut resp = result?;
        resp.header = header(self.current_rev);
        Ok(resp)
    }

    /// Appends the outcome of this txn's compares, then those of the nested txns on the
    /// taken branch, depth first (etcd's `compareToPath`).
    fn compare_path(&self, req: &TxnRequest, path: &mut Vec<bool>) {
        let succeeded = req.compare.iter().all(|c| self.compare_holds(c));
        path.push(succeeded);
        for op in branch(req, succeeded) {
            if let Some(request_op::Request::RequestTxn(nested)) = &op.request {
                self.compare_path(nested, path);
            }
        }
    }

    /// Runs `check` on every non-txn op on the taken path (etcd's `checkRequests`).
    fn check_ops(
        &self,
        req: &TxnRequest,
        path: &[bool],
        cursor: &mut usize,
        check: &dyn Fn(&Store, &RequestOp) -> Result<(), MvccError>,
    ) -> Result<(), MvccError> {
        let succeeded = path[*cursor];
        *cursor += 1;
        for op in branch(req, succeeded) {
            match &op.request {
                Some(request_op::Request::RequestTxn(nested)) => {
                    self.check_ops(nested, path, cursor, check)?
                }
                _ => check(self, op)?,
            }
        }
        Ok(())
    }

    fn check_put(&self, op: &RequestOp) -> Result<(), MvccError> {
        let Some(request_op::Request::RequestPut(p)) = &op.request else {
            return Ok(());
        };
        if (p.ignore_value || p.ignore_lease)
            && self.keys.get(&p.key[..]).and_then(|h| h.live()).is_none()
        {
            return Err(MvccError::KeyNotFound);
        }
        if p.lease != 0 && !self.leases.exists(p.lease) {
            return Err(MvccError::LeaseNotFound);
        }
        Ok(())
    }

    fn check_range(&self, op: &RequestOp) -> Result<(), MvccError> {
        let Some(request_op::Request::RequestRange(r)) = &op.request else {
            return Ok(());
        };
        if r.revision == 0 {
            return Ok(());
        }
        if r.revision > self.current_rev {
            return Err(MvccError::FutureRev);
        }
        if r.revision < self.compact_rev {
            return Err(MvccError::Compacted);
        }
        Ok(())
    }

    fn apply_txn(
        &mut self,
        w: &mut WriteTxn,
        req: &TxnRequest,
        path: &[bool],
        cursor: &mut usize,
        events: &mut Vec<Event>,
    ) -> Result<TxnResponse, MvccError> {
        let succeeded = path[*cursor];
        *cursor += 1;
        let ops = branch(req, succeeded);
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            use request_op::Request as Q;
            use response_op::Response as R;
            let response = match &op.request {
                Some(Q::RequestRange(r)) => Some(R::ResponseRange(self.range_at(r, w.read_rev())?)),
                Some(Q::RequestPut(r)) => Some(R::ResponsePut(self.put_in(w, r, events)?)),
                Some(Q::RequestDeleteRange(r)) => {
                    Some(R::ResponseDeleteRange(self.delete_in(w, r, events)))
                }
                Some(Q::RequestTxn(r)) => {
                    Some(R::ResponseTxn(self.apply_txn(w, r, path, cursor, events)?))
                }
                None => None,
            };
            responses.push(ResponseOp { response });
        }
        // Nested txn responses carry an empty header in etcd; the top level's is set by `txn`.
        Ok(TxnResponse {
            header: Some(ResponseHeader::default()),
            succeeded,
            responses,
        })
    }

    /// etcd's `applyCompare`: every key live in the span must satisfy the compare; with no
    /// key, a VALUE compare fails and the others compare against zero.
    fn compare_holds(&self, c: &Compare) -> bool {
        let span = KeySpan::new(&c.key, &c.range_end);
        let mut any = false;
        let mut all = true;
        self.for_each_in(&span, |_, h| {
            if let Some(v) = h.live() {
                any = true;
                all = all && compare_version(c, Some(v));
            }
        });
        if !any {
            return c.target != CompareTarget::Value as i32 && compare_version(c, None);
        }
        all
    }
}

fn branch(req: &TxnRequest, succeeded: bool) -> &[RequestOp] {
    if succeeded {
        &req.success
    } else {
        &req.failure
    }
}

/// etcd's `compareKV`; a missing key compares as zero. A target union of another kind than
/// the target compares against zero / empty, as in etcd.
fn compare_version(c: &Compare, v: Option<&KeyVersion>) -> bool {
    let ord = match CompareTarget::try_from(c.target) {
        Ok(CompareTarget::Value) => {
            let want: &[u8] = match &c.target_union {
                Some(TargetUnion::Value(b)) => b,
                _ => &[],
            };
            v.map_or(&[][..], |v| &v.value[..]).cmp(want)
        }
        Ok(CompareTarget::Create) => int_of(v, |v| v.create_rev).cmp(&match c.target_union {
            Some(TargetUnion::CreateRevision(n)) => n,
            _ => 0,
        }),
        Ok(CompareTarget::Mod) => int_of(v, |v| v.mod_rev.main).cmp(&match c.target_union {
            Some(TargetUnion::ModRevision(n)) => n,
            _ => 0,
        }),
        Ok(CompareTarget::Version) => int_of(v, |v| v.version).cmp(&match c.target_union {
            Some(TargetUnion::Version(n)) => n,
            _ => 0,
        }),
        Ok(CompareTarget::Lease) => int_of(v, |v| v.lease).cmp(&match c.target_union {
            Some(TargetUnion::Lease(n)) => n,
            _ => 0,
        }),
        Err(_) => Ordering::Equal,
    };
    match CompareResult::try_from(c.result) {
        Ok(CompareResult::Equal) => ord == Ordering::Equal,
        Ok(CompareResult::NotEqual) => ord != Ordering::Equal,
        Ok(CompareResult::Greater) => ord == Ordering::Greater,
        Ok(CompareResult::Less) => ord == Ordering::Less,
        Err(_) => true,
    }
}

fn int_of(v: Option<&KeyVersion>, f: impl Fn(&KeyVersion) -> i64) -> i64 {
    v.map_or(0, f)
}
