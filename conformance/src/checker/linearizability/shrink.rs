//! Shrinking a failing single-key sub-history to a small one that still fails.
//!
//! Removing a read only removes constraints, but removing a write can create a *new* failure
//! (a read of a value nobody wrote any more). So a write is only dropped when no remaining
//! operation observes it: its value is not read or compared, it is not a delete while some
//! remaining operation observed the key absent, and no failed compare-and-swap remains (whose
//! failure might have depended on it). The result is therefore a failure of the original kind.

use std::time::Instant;

use super::history::{CasAction, Compare, KeyState, OpInput, OpOutput, OpResult, Operation};
use super::KeyVerdict;

/// Bounds on shrinking; the search per candidate gets at most `check_budget`.
pub(crate) struct ShrinkBudget {
    pub deadline: Instant,
    pub max_checks: u32,
}

fn written_value(op: &Operation) -> Option<&str> {
    match &op.input {
        OpInput::Put { value } | OpInput::CompareAndSwap { action: CasAction::Put { value }, .. } => {
            Some(value)
        }
        _ => None,
    }
}

fn deletes(op: &Operation) -> bool {
    matches!(op.input, OpInput::Delete | OpInput::CompareAndSwap { action: CasAction::Delete, .. })
}

fn observed_value(op: &Operation) -> Option<&str> {
    match (&op.input, &op.output) {
        (_, OpOutput::Ok(OpResult::Get { value: Some(v), .. })) => Some(v),
        (OpInput::CompareAndSwap { compare: Compare::Value(v), .. }, _) => Some(v),
        _ => None,
    }
}

fn observes_absence(op: &Operation) -> bool {
    matches!(
        (&op.input, &op.output),
        (_, OpOutput::Ok(OpResult::Get { value: None, .. }))
            | (_, OpOutput::Ok(OpResult::Delete { deleted: Some(0), .. }))
            | (OpInput::CompareAndSwap { compare: Compare::ModRevision(0), .. }, _)
    )
}

fn is_failed_cas(op: &Operation) -> bool {
    matches!(op.output, OpOutput::Ok(OpResult::CompareAndSwap { succeeded: false, .. }))
}

/// May the ops marked in `drop` be removed from `ops` without creating a new kind of failure?
fn removable(ops: &[Operation], drop: &[bool]) -> bool {
    let kept = || ops.iter().zip(drop).filter(|(_, d)| !**d).map(|(op, _)| op);
    let any_failed_cas = kept().any(is_failed_cas);
    let any_absence = kept().any(observes_absence);
    ops.iter().zip(drop).filter(|(_, d)| **d).all(|(op, _)| {
        if !op.is_write() {
            return true;
        }
        if any_failed_cas || (deletes(op) && any_absence) {
            return false;
        }
        written_value(op).is_none_or(|w| kept().all(|k| observed_value(k) != Some(w)))
    })
}

/// Greedy chunked removal (ddmin-like): try dropping chunks of halving size while it fails.
pub(crate) fn shrink(
    mut ops: Vec<Operation>,
    initial: Option<&KeyState>,
    budget: &ShrinkBudget,
    still_fails: impl Fn(&[Operation], Option<&KeyState>, Instant) -> KeyVerdict,
) -> Vec<Operation> {
    let mut checks = 0;
    let mut chunk = ops.len().div_ceil(2).max(1);
    loop {
        let mut start = 0;
        let mut removed_any = false;
        while start < ops.len() {
            if checks >= budget.max_checks || Instant::now() >= budget.deadline {
                return ops;
            }
            let end = (start + chunk).min(ops.len());
            let drop: Vec<bool> = (0..ops.len()).map(|i| i >= start && i < end).collect();
            if drop.iter().all(|d| *d) || !removable(&ops, &drop) {
                start = end;
                continue;
            }
            checks += 1;
            let candidate: Vec<Operation> =
                ops.iter().zip(&drop).filter(|(_, d)| !**d).map(|(op, _)| op.clone()).collect();
            if matches!(still_fails(&candidate, initial, budget.deadline), KeyVerdict::Fails { .. }) {
                ops = candidate;
                removed_any = true;
            } else {
                start = end;
            }
        }
        if chunk == 1 && !removed_any {
            return ops;
        }
        if !removed_any {
            chunk = chunk.div_ceil(2);
        }
        chunk = chunk.min(ops.len().max(1));
    }
}
