//! etcd's alarms: which member raised which alarm, replicated through raft (every member
//! applies the same `AlarmRequest`s) and kept in snapshots. While a NOSPACE alarm is active,
//! writes that would grow the store are refused at apply on every member, as etcd's capped
//! applier does; reads, deletes and compaction go on, so space can be freed and the alarm
//! disarmed. The quota check that raises NOSPACE runs before proposing (`quota_exceeded`).
//! Pure: no I/O, no clock.

use std::collections::BTreeSet;

use ketch_proto::alarm_request::AlarmAction;
use ketch_proto::ketchpb::{RaftRequest, raft_request};
use ketch_proto::{AlarmMember, AlarmRequest, AlarmResponse, AlarmType, PutRequest, TxnRequest};

/// etcd's estimate of a key's metadata in its backend (`kvOverhead`).
const KV_OVERHEAD_BYTES: i64 = 256;
/// etcd's estimate of a lease's cost in its backend (`leaseOverhead`).
const LEASE_OVERHEAD_BYTES: i64 = 64;

/// The active alarms, ordered by (member, alarm type).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Alarms {
    active: BTreeSet<(u64, i32)>,
}

impl Alarms {
    /// Applies a committed `AlarmRequest` as etcd's `applierV3backend.Alarm`: GET lists the
    /// alarms of the given type (all of them for NONE), ACTIVATE and DEACTIVATE answer with
    /// the alarm they changed (nothing when it was already so). etcd's response has no header.
    pub fn apply(&mut self, req: &AlarmRequest) -> AlarmResponse {
        let alarm = (req.member_id, req.alarm);
        let alarms = match req.action() {
            AlarmAction::Get => self.list(req.alarm()),
            AlarmAction::Activate if req.alarm() != AlarmType::None => {
                if self.active.insert(alarm) {
                    vec![member(alarm)]
                } else {
                    Vec::new()
                }
            }
            AlarmAction::Activate => Vec::new(),
            AlarmAction::Deactivate => {
                if self.active.remove(&alarm) {
                    vec![member(alarm)]
                } else {
                    Vec::new()
                }
            }
        };
        AlarmResponse {
            header: None,
            alarms,
        }
    }

    /// The active alarms of type `of` (every type for NONE).
    pub fn list(&self, of: AlarmType) -> Vec<AlarmMember> {
        self.active
            .iter()
            .filter(|(_, a)| of == AlarmType::None || *a == of as i32)
            .map(|&a| member(a))
            .collect()
    }

    /// Whether some member raised NOSPACE.
    pub fn no_space(&self) -> bool {
        self.active
            .iter()
            .any(|(_, a)| *a == AlarmType::Nospace as i32)
    }

    /// Whether etcd's capped applier refuses `req` while NOSPACE is active: puts, txns with a
    /// put in a top-level branch (etcd costs only those) and lease grants.
    pub fn refuses(&self, req: &RaftRequest) -> bool {
        use raft_request::Request as Q;
        if !self.no_space() {
            return false;
        }
        match &req.request {
            Some(Q::Put(_)) | Some(Q::LeaseGrant(_)) => true,
            Some(Q::Txn(t)) => txn_cost(t) > 0,
            _ => false,
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (u64, i32)> + '_ {
        self.active.iter().copied()
    }

    pub fn insert(&mut self, member_id: u64, alarm: i32) {
        self.active.insert((member_id, alarm));
    }
}

fn member((member_id, alarm): (u64, i32)) -> AlarmMember {
    AlarmMember { member_id, alarm }
}

/// etcd's `AlarmMember.String()`, as `endpoint status` errors and `alarm list` print it.
pub fn describe(m: &AlarmMember) -> String {
    let name = AlarmType::try_from(m.alarm)
        .map(|a| a.as_str_name())
        .unwrap_or("UNKNOWN");
    format!("memberID:{} alarm:{name} ", m.member_id)
}

fn put_cost(p: &PutRequest) -> i64 {
    KV_OVERHEAD_BYTES + p.key.len() as i64 + p.value.len() as i64
}

/// etcd's `costTxn`: the larger branch's total put cost (nested txns cost nothing).
fn txn_cost(t: &TxnRequest) -> i64 {
    use ketch_proto::request_op::Request as Op;
    let branch = |ops: &[ketch_proto::RequestOp]| -> i64 {
        ops.iter()
            .map(|op| match &op.request {
                Some(Op::RequestPut(p)) => put_cost(p),
                _ => 0,
            })
            .sum()
    };
    branch(&t.success).max(branch(&t.failure))
}

/// What `req` adds to the store by etcd's quota estimate (`backendQuota.Cost`); `None` for
/// requests the quota does not cover.
pub fn quota_cost(req: &raft_request::Request) -> Option<i64> {
    use raft_request::Request as Q;
    match req {
        Q::Put(p) => Some(put_cost(p)),
        Q::Txn(t) => Some(txn_cost(t)),
        Q::LeaseGrant(_) => Some(LEASE_OVERHEAD_BYTES),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    /// etcd's `backendQuota.Available`, negated: the store's size plus what `req` would add
    /// reaches `quota`.
    fn quota_exceeded(size: i64, quota: i64, req: &raft_request::Request) -> bool {
        quota_cost(req).is_some_and(|cost| size + cost >= quota)
    }

    fn req(action: AlarmAction, member_id: u64, alarm: AlarmType) -> AlarmRequest {
        AlarmRequest {
            action: action as i32,
            member_id,
            alarm: alarm as i32,
        }
    }

    #[test]
    fn activate_deactivate_and_get_answer_as_etcd() {
        let mut a = Alarms::default();
        let r = a.apply(&req(AlarmAction::Activate, 7, AlarmType::Nospace));
        assert_eq!(r.alarms.len(), 1, "newly raised alarm is returned");
        assert!(
            a.apply(&req(AlarmAction::Activate, 7, AlarmType::Nospace))
                .alarms
                .is_empty(),
            "raising it again changes nothing"
        );
        assert!(a.no_space());
        a.apply(&req(AlarmAction::Activate, 9, AlarmType::Corrupt));
        let all = a.apply(&req(AlarmAction::Get, 0, AlarmType::None)).alarms;
        assert_eq!(all.len(), 2);
        let nospace = a
            .apply(&req(AlarmAction::Get, 0, AlarmType::Nospace))
            .alarms;
        assert_eq!(nospace, vec![member((7, AlarmType::Nospace as i32))]);
        assert!(
            a.apply(&req(AlarmAction::Deactivate, 8, AlarmType::Nospace))
                .alarms
                .is_empty(),
            "another member's alarm is not disarmed"
        );
        assert_eq!(
            a.apply(&req(AlarmAction::Deactivate, 7, AlarmType::Nospace))
                .alarms
                .len(),
            1
        );
        assert!(!a.no_space());
        assert_eq!(describe(&all[0]), "memberID:7 alarm:NOSPACE ");
    }

    #[test]
    fn nospace_refuses_only_writes_that_grow_the_store() {
        use ketch_proto::request_op::Request as Op;
        let mut a = Alarms::default();
        let put = RaftRequest {
            request: Some(raft_request::Request::Put(PutRequest::default())),
            header: None,
            ..RaftRequest::default()
        };
        assert!(!a.refuses(&put), "no alarm: nothing refused");
        a.insert(1, AlarmType::Nospace as i32);
        assert!(a.refuses(&put));
        let put_op = ketch_proto::RequestOp {
            request: Some(Op::RequestPut(PutRequest::default())),
        };
        let txn = |success, failure| RaftRequest {
            request: Some(raft_request::Request::Txn(TxnRequest {
                compare: vec![],
                success,
                failure,
            })),
            header: None,
            ..RaftRequest::default()
        };
        assert!(a.refuses(&txn(vec![], vec![put_op.clone()])));
        let get_op = ketch_proto::RequestOp {
            request: Some(Op::RequestRange(Default::default())),
        };
        assert!(!a.refuses(&txn(vec![get_op], vec![])), "read-only txn");
        let del = RaftRequest {
            request: Some(raft_request::Request::DeleteRange(Default::default())),
            header: None,
            ..RaftRequest::default()
        };
        assert!(!a.refuses(&del), "deletes free space");
    }

    #[test]
    fn quota_counts_etcd_costs() {
        let p = raft_request::Request::Put(PutRequest {
            key: Bytes::from_static(b"k"),
            value: Bytes::from(vec![0; 743]),
            ..Default::default()
        });
        // 256 overhead + 1 + 743 = 1000.
        assert!(!quota_exceeded(0, 1001, &p));
        assert!(quota_exceeded(1, 1001, &p));
        let del = raft_request::Request::DeleteRange(Default::default());
        assert!(!quota_exceeded(i64::MAX / 2, 1, &del));
    }
}
