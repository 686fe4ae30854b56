//! Global revision order: etcd revisions form one total order across all keys, so if operation
//! A returned before operation B was called, A's revision must not exceed B's (and must be
//! strictly below it when B is a write, which creates a new revision). Two distinct writes
//! never share a revision (every operation here touches one key).

use std::collections::HashMap;

use super::history::{CasAction, Compare, OpInput, OpOutput, OpResult, Operation};

/// The revision an operation observed or created, and whether it created it.
#[derive(Clone, Copy)]
struct Stamp {
    rev: i64,
    is_write: bool,
}

fn stamp(op: &Operation) -> Option<Stamp> {
    let OpOutput::Ok(result) = &op.output else {
        return None;
    };
    let (rev, is_write) = match (&op.input, result) {
        (_, OpResult::Put { revision }) => (*revision, true),
        (
            _,
            OpResult::Get {
                header_revision, ..
            },
        ) => (*header_revision, false),
        (
            _,
            OpResult::Delete {
                deleted: Some(n),
                revision,
            },
        ) => (*revision, *n > 0),
        (_, OpResult::Delete { deleted: None, .. }) => (None, false),
        (
            OpInput::CompareAndSwap { compare, action },
            OpResult::CompareAndSwap {
                succeeded,
                revision,
            },
        ) => {
            // A successful delete guarded by "key absent" deletes nothing and creates no revision.
            let noop = matches!(
                (compare, action),
                (Compare::ModRevision(0), CasAction::Delete)
            );
            (*revision, *succeeded && !noop)
        }
        (_, OpResult::CompareAndSwap { .. }) => (None, false),
    };
    Some(Stamp {
        rev: rev?,
        is_write,
    })
}

/// A pair of operations whose revisions contradict their real-time order.
#[derive(Debug)]
pub(crate) struct RevisionViolation {
    pub first: Operation,
    pub second: Operation,
    pub explanation: String,
}

pub(crate) fn check_revision_order(ops: &[Operation]) -> Option<RevisionViolation> {
    let stamped: Vec<(&Operation, Stamp)> = ops
        .iter()
        .filter_map(|op| stamp(op).map(|s| (op, s)))
        .collect();
    if let Some(v) = duplicate_write_revision(&stamped) {
        return Some(v);
    }
    let mut by_call: Vec<usize> = (0..stamped.len()).collect();
    by_call.sort_by_key(|&i| stamped[i].0.call_ns);
    let mut by_return: Vec<usize> = (0..stamped.len()).collect();
    by_return.sort_by_key(|&i| stamped[i].0.effective_return_ns());
    let mut returned = 0;
    let mut max_before: Option<usize> = None;
    for &b in &by_call {
        let (op_b, stamp_b) = stamped[b];
        while returned < by_return.len()
            && stamped[by_return[returned]].0.effective_return_ns() < op_b.call_ns
        {
            let a = by_return[returned];
            if max_before.is_none_or(|m| stamped[a].1.rev > stamped[m].1.rev) {
                max_before = Some(a);
            }
            returned += 1;
        }
        let Some(a) = max_before else { continue };
        let (op_a, stamp_a) = stamped[a];
        let bad = if stamp_b.is_write {
            stamp_a.rev >= stamp_b.rev
        } else {
            stamp_a.rev > stamp_b.rev
        };
        if bad {
            let explanation = format!(
                "operation B was called after operation A returned, yet B's revision {} is {} A's revision {}: \
                 revisions must follow real time (a read sees at least every revision that completed \
                 before it; a write creates a revision above all of them)",
                stamp_b.rev,
                if stamp_b.is_write {
                    "not above"
                } else {
                    "below"
                },
                stamp_a.rev
            );
            return Some(RevisionViolation {
                first: op_a.clone(),
                second: op_b.clone(),
                explanation,
            });
        }
    }
    None
}

fn duplicate_write_revision(stamped: &[(&Operation, Stamp)]) -> Option<RevisionViolation> {
    let mut seen: HashMap<i64, &Operation> = HashMap::new();
    for (op, s) in stamped.iter().filter(|(_, s)| s.is_write) {
        if let Some(prev) = seen.insert(s.rev, op) {
            return Some(RevisionViolation {
                first: prev.clone(),
                second: (*op).clone(),
                explanation: format!("two different writes both report revision {}", s.rev),
            });
        }
    }
    None
}
