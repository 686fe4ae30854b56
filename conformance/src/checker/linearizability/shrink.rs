//! Shrinking a failing single-key sub-history to a small one that still fails.
//!
//! Removing a read only removes constraints, but removing a write can create a *new* failure
//! (a read of a value nobody wrote any more), which would be a misleading report. So shrinking
//! first looks for a *culprit*: one operation whose removal makes the history linearizable (the
//! stale read, the lost write's reader). Then a candidate sub-history is kept only if it still
//! fails, still contains the culprit, and is linearizable without it: every other operation is
//! then consistent, so the failure shown is the culprit's, as in the original. Writes the culprit
//! observed (its value, its revision, the presence or absence it saw) are never dropped. With no
//! single culprit, only operations that change nothing (reads, failed compare-and-swaps) are
//! dropped.

use std::time::Instant;

use super::KeyVerdict;
use super::history::{CasAction, Compare, KeyState, OpInput, OpOutput, OpResult, Operation};

/// Bounds on shrinking.
pub(crate) struct ShrinkBudget {
    pub deadline: Instant,
    pub max_checks: u32,
}

/// The single-key check: `(ops, initial state, deadline) -> verdict`.
pub(crate) trait KeyCheck:
    Fn(&[Operation], Option<&KeyState>, Instant) -> KeyVerdict
{
}
impl<F: Fn(&[Operation], Option<&KeyState>, Instant) -> KeyVerdict> KeyCheck for F {}

fn written_value(op: &Operation) -> Option<&str> {
    match &op.input {
        OpInput::Put { value }
        | OpInput::CompareAndSwap {
            action: CasAction::Put { value },
            ..
        } => Some(value),
        _ => None,
    }
}

fn written_revision(op: &Operation) -> Option<i64> {
    match &op.output {
        OpOutput::Ok(OpResult::Put { revision })
        | OpOutput::Ok(OpResult::Delete { revision, .. })
        | OpOutput::Ok(OpResult::CompareAndSwap { revision, .. }) => *revision,
        _ => None,
    }
}

/// Reads, failed compare-and-swaps and deletes of nothing leave the key as it was.
fn changes_state(op: &Operation) -> bool {
    op.is_write()
        && !matches!(
            op.output,
            OpOutput::Ok(OpResult::CompareAndSwap {
                succeeded: false,
                ..
            }) | OpOutput::Ok(OpResult::Delete {
                deleted: Some(0),
                ..
            })
        )
}

/// What an operation saw of the key, and so which writes it depends on.
#[derive(Default)]
struct Observation<'a> {
    value: Option<&'a str>,
    revision: Option<i64>,
    absent: bool,
    present: bool,
    /// A failed compare-and-swap saw "not what I compared with": it depends on every write.
    anything: bool,
}

fn observation(op: &Operation) -> Observation<'_> {
    let mut o = Observation::default();
    match &op.output {
        OpOutput::Ok(OpResult::Get {
            value,
            mod_revision,
            ..
        }) => {
            o.value = value.as_deref();
            o.revision = mod_revision.filter(|_| value.is_some());
            o.absent = value.is_none();
        }
        OpOutput::Ok(OpResult::Delete { deleted, .. }) => {
            o.absent = *deleted == Some(0);
            o.present = deleted.is_some_and(|d| d > 0);
        }
        OpOutput::Ok(OpResult::CompareAndSwap {
            succeeded: false, ..
        }) => o.anything = true,
        OpOutput::Ok(OpResult::CompareAndSwap {
            succeeded: true, ..
        }) => {
            if let OpInput::CompareAndSwap { compare, .. } = &op.input {
                match compare {
                    Compare::ModRevision(0) => o.absent = true,
                    Compare::ModRevision(m) => o.revision = Some(*m),
                    Compare::Value(v) => o.value = Some(v),
                }
            }
        }
        // If it applied, its compare held: conservatively treat the compare as observed.
        OpOutput::Unknown => {
            if let OpInput::CompareAndSwap { compare, .. } = &op.input {
                match compare {
                    Compare::ModRevision(0) => o.absent = true,
                    Compare::ModRevision(m) => o.revision = Some(*m),
                    Compare::Value(v) => o.value = Some(v),
                }
            }
        }
        _ => {}
    }
    o
}

/// Does `observer` pin `write` (it saw its value or revision, or failed a compare-and-swap that
/// the write may have decided)? A write called after the observer returned cannot pin.
fn pinned_by(observer: &Operation, write: &Operation) -> bool {
    let o = observation(observer);
    if o.value.is_some() && o.value == written_value(write) {
        return true;
    }
    if write.call_ns > observer.effective_return_ns() {
        return false;
    }
    // A write of unknown revision may be the one whose revision was observed.
    let rev_match = o.revision.is_some()
        && (written_revision(write).is_none() || o.revision == written_revision(write));
    o.anything || rev_match
}

/// The revision an op observed: its own for a write, the header revision for a read.
fn observed_revision(op: &Operation) -> Option<i64> {
    match &op.output {
        OpOutput::Ok(OpResult::Get {
            header_revision, ..
        }) => *header_revision,
        _ => written_revision(op),
    }
}

/// Could an op in `set` that leaves the key present (or absent, per `present`) be the latest
/// state change before `observer`? It cannot when it comes later by revision, or when a change
/// of the other kind lies entirely between it and the observer (in real time or by revision).
fn kind_justified(
    set: &[&Operation],
    initial_present: bool,
    observer: &Operation,
    present: bool,
) -> bool {
    let changers = || {
        set.iter()
            .filter(|op| changes_state(op) && !std::ptr::eq(**op, observer))
    };
    let opposite = || changers().filter(|op| written_value(op).is_some() != present);
    let hide_ns = opposite()
        .filter(|op| op.effective_return_ns() < observer.call_ns)
        .map(|op| op.call_ns)
        .max();
    let mut opposite_revs: Vec<i64> = opposite().filter_map(|op| written_revision(op)).collect();
    opposite_revs.sort_unstable();
    // A read at header revision h sees writes up to h; a write at revision r follows those below r.
    let o_rev = observed_revision(observer);
    let o_limit = o_rev.map(|r| if changes_state(observer) { r - 1 } else { r });
    let hidden_by_rev = |p_rev: i64, limit: i64| {
        let i = opposite_revs.partition_point(|&r| r <= p_rev);
        opposite_revs.get(i).is_some_and(|&r| r <= limit)
    };
    if initial_present == present && hide_ns.is_none() {
        let first_opposite = opposite_revs.first().copied();
        if o_limit.is_none_or(|l| first_opposite.is_none_or(|r| r > l)) {
            return true;
        }
    }
    // Unknown outcomes do not count: one of them cannot explain several observers at once.
    changers()
        .filter(|op| written_value(op).is_some() == present && op.output != OpOutput::Unknown)
        .filter(|op| op.call_ns < observer.effective_return_ns())
        .filter(|op| hide_ns.is_none_or(|h| op.effective_return_ns() >= h))
        .any(|op| match (written_revision(op), o_limit) {
            (Some(p), Some(l)) => p <= l && !hidden_by_rev(p, l),
            _ => true,
        })
}

/// May the ops marked in `drop` be removed? Never the culprit nor what it observed; without a
/// culprit, only operations that change nothing.
fn removable(
    ops: &[Operation],
    drop: &[bool],
    culprit: Option<usize>,
    initial_present: bool,
) -> bool {
    let Some(c) = culprit else {
        return ops
            .iter()
            .zip(drop)
            .all(|(op, d)| !*d || !changes_state(op));
    };
    if drop[c] {
        return false;
    }
    let observer = &ops[c];
    let dropped = ops
        .iter()
        .zip(drop)
        .filter(|(op, d)| **d && changes_state(op));
    if dropped.into_iter().any(|(w, _)| pinned_by(observer, w)) {
        return false;
    }
    let all: Vec<&Operation> = ops.iter().collect();
    let kept: Vec<&Operation> = ops
        .iter()
        .zip(drop)
        .filter(|(_, d)| !**d)
        .map(|(op, _)| op)
        .collect();
    let o = observation(observer);
    let kinds = [(o.present, true), (o.absent, false)];
    kinds
        .into_iter()
        .filter(|(seen, _)| *seen)
        .all(|(_, present)| {
            !kind_justified(&all, initial_present, observer, present)
                || kind_justified(&kept, initial_present, observer, present)
        })
}

struct Shrinker<'a, F: KeyCheck> {
    initial: Option<&'a KeyState>,
    budget: &'a ShrinkBudget,
    check: F,
    checks: u32,
}

impl<F: KeyCheck> Shrinker<'_, F> {
    fn exhausted(&self) -> bool {
        self.checks >= self.budget.max_checks || Instant::now() >= self.budget.deadline
    }

    fn verdict(&mut self, ops: &[Operation]) -> KeyVerdict {
        self.checks += 1;
        (self.check)(ops, self.initial, self.budget.deadline)
    }

    /// An op whose removal makes the history linearizable; the unlinearized ops first.
    fn find_culprit(&mut self, ops: &[Operation], pending: &[usize]) -> Option<usize> {
        let rest = (0..ops.len()).rev().filter(|i| !pending.contains(i));
        for i in pending.iter().copied().chain(rest) {
            if self.exhausted() {
                return None;
            }
            let without: Vec<Operation> = ops
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, op)| op.clone())
                .collect();
            if matches!(self.verdict(&without), KeyVerdict::Passes) {
                return Some(i);
            }
        }
        None
    }

    /// Does `candidate` still show the same failure?
    fn keeps_failure(&mut self, candidate: &[Operation], culprit: Option<usize>) -> bool {
        if !matches!(self.verdict(candidate), KeyVerdict::Fails { .. }) {
            return false;
        }
        let Some(c) = culprit else { return true };
        let without: Vec<Operation> = candidate
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != c)
            .map(|(_, op)| op.clone())
            .collect();
        matches!(self.verdict(&without), KeyVerdict::Passes)
    }

    /// One pass at a fixed chunk size; `None` when the budget ran out, else whether it removed.
    fn pass(
        &mut self,
        ops: &mut Vec<Operation>,
        culprit: &mut Option<usize>,
        chunk: usize,
    ) -> Option<bool> {
        let initial_present = self.initial.is_some();
        let mut start = 0;
        let mut removed = false;
        while start < ops.len() {
            if self.exhausted() {
                return None;
            }
            let end = (start + chunk).min(ops.len());
            let drop: Vec<bool> = (0..ops.len()).map(|i| i >= start && i < end).collect();
            if drop.iter().all(|d| *d) || !removable(ops, &drop, *culprit, initial_present) {
                start = end;
                continue;
            }
            let candidate: Vec<Operation> = ops
                .iter()
                .zip(&drop)
                .filter(|(_, d)| !**d)
                .map(|(op, _)| op.clone())
                .collect();
            let new_culprit = culprit.map(|c| c - drop[..c].iter().filter(|d| **d).count());
            if self.keeps_failure(&candidate, new_culprit) {
                *ops = candidate;
                *culprit = new_culprit;
                removed = true;
            } else {
                start = end;
            }
        }
        Some(removed)
    }
}

/// Greedy chunked removal (ddmin-like): sweeps over chunk sizes n/2, n/4, .., 1, dropping any
/// chunk whose removal keeps the failure; sweeps repeat while they remove something.
/// `pending` are the indices (into `ops`) the search could not linearize: culprit suspects.
pub(crate) fn shrink(
    ops: Vec<Operation>,
    pending: &[usize],
    initial: Option<&KeyState>,
    budget: &ShrinkBudget,
    check: impl KeyCheck,
) -> Vec<Operation> {
    let mut s = Shrinker {
        initial,
        budget,
        check,
        checks: 0,
    };
    let mut culprit = s.find_culprit(&ops, pending);
    // Keep the culprit's identity while sorting by call time (chunks then span time windows).
    let mut indexed: Vec<(usize, Operation)> = ops.into_iter().enumerate().collect();
    indexed.sort_by_key(|(_, op)| op.call_ns);
    culprit = culprit.and_then(|c| indexed.iter().position(|(i, _)| *i == c));
    let mut ops: Vec<Operation> = indexed.into_iter().map(|(_, op)| op).collect();
    loop {
        let mut removed_in_sweep = false;
        let mut chunk = ops.len().div_ceil(2).max(1);
        loop {
            match s.pass(&mut ops, &mut culprit, chunk) {
                None => return ops,
                Some(removed) => removed_in_sweep |= removed,
            }
            if chunk == 1 {
                break;
            }
            chunk = chunk.div_ceil(2);
        }
        if !removed_in_sweep {
            return ops;
        }
    }
}
