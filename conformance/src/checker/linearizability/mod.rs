//! Linearizability of KV histories recorded from concurrent clients.
//!
//! The history is split per key (linearizability is compositional: a history is linearizable
//! iff each per-key sub-history is), each key is searched with Wing & Gong / Lowe memoisation
//! (see `search`), and a separate pass checks that revisions follow real time across keys
//! (see `revision_order`). Failed operations are dropped (not applied); operations with an
//! unknown outcome never return, so they may take effect at any point after their call or,
//! equivalently, not at all. A failing key is shrunk to a small sub-history that still fails.

mod history;
mod model;
mod revision_order;
mod search;
mod shrink;

use std::fmt;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub use history::{
    CasAction, Compare, History, KeyState, OpInput, OpOutput, OpResult, Operation,
    format_operations,
};
use model::{ValueTable, initial_state, to_model_op};
use search::{SearchOutcome, TimedOp, search};

/// Bounds on the work the checker may do.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct Limits {
    /// Total time for searching every key.
    pub search_timeout: Duration,
    /// Extra time for shrinking a failing key.
    pub shrink_timeout: Duration,
    /// At most this many candidate sub-histories are searched while shrinking.
    pub shrink_max_checks: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            search_timeout: Duration::from_secs(30),
            shrink_timeout: Duration::from_secs(10),
            shrink_max_checks: 2000,
        }
    }
}

/// The verdict on a whole history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CheckResult {
    Linearizable,
    /// `minimal` is a small sub-history that is not linearizable on its own.
    NotLinearizable {
        key: String,
        minimal: Vec<Operation>,
        explanation: String,
    },
    /// The search ran out of time on these keys; nothing is claimed about them.
    Timeout {
        keys: Vec<String>,
    },
    /// The recording itself is malformed (e.g. a get with a put result).
    InvalidHistory {
        reason: String,
    },
}

impl CheckResult {
    pub fn is_linearizable(&self) -> bool {
        matches!(self, CheckResult::Linearizable)
    }
}

impl fmt::Display for CheckResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckResult::Linearizable => write!(f, "linearizable"),
            CheckResult::Timeout { keys } => {
                write!(
                    f,
                    "TIMED OUT (no verdict) on {} key(s): {:?}",
                    keys.len(),
                    keys
                )
            }
            CheckResult::InvalidHistory { reason } => write!(f, "invalid history: {reason}"),
            CheckResult::NotLinearizable {
                key,
                minimal,
                explanation,
            } => write!(
                f,
                "NOT linearizable on key {key:?}; minimal failing sub-history ({} ops):\n{}{explanation}",
                minimal.len(),
                format_operations(minimal)
            ),
        }
    }
}

/// The verdict on one key's sub-history.
#[derive(Debug)]
pub(crate) enum KeyVerdict {
    Passes,
    /// `pending`: indices of the ops left out of the longest linearized prefix.
    Fails {
        explanation: String,
        pending: Vec<usize>,
    },
    Timeout,
}

/// Check a whole history: every key, then the global revision order.
pub fn check_history(history: &History, limits: Limits) -> CheckResult {
    if let Err(reason) = validate(history) {
        return CheckResult::InvalidHistory { reason };
    }
    let deadline = Instant::now() + limits.search_timeout;
    let mut timed_out = Vec::new();
    for (key, ops) in history.by_key() {
        let ops: Vec<Operation> = ops.into_iter().filter(|op| relevant(op)).cloned().collect();
        let initial = history.initial.get(key);
        match check_key(&ops, initial, deadline) {
            KeyVerdict::Passes => {}
            KeyVerdict::Timeout => timed_out.push(key.to_owned()),
            KeyVerdict::Fails { pending, .. } => {
                return shrink_failure(key, ops, &pending, initial, limits);
            }
        }
    }
    if !timed_out.is_empty() {
        return CheckResult::Timeout { keys: timed_out };
    }
    match revision_order::check_revision_order(&history.operations) {
        None => CheckResult::Linearizable,
        Some(v) => CheckResult::NotLinearizable {
            key: if v.first.key == v.second.key {
                v.first.key.clone()
            } else {
                format!("{} / {}", v.first.key, v.second.key)
            },
            explanation: format!(
                "revision order violated: A = {}\nB = {}\n{}",
                v.first, v.second, v.explanation
            ),
            minimal: vec![v.first, v.second],
        },
    }
}

/// Failed operations never happened; a read with an unknown outcome constrains nothing.
fn relevant(op: &Operation) -> bool {
    match op.output {
        OpOutput::Failed => false,
        OpOutput::Unknown => op.is_write(),
        OpOutput::Ok(_) => true,
    }
}

fn validate(history: &History) -> Result<(), String> {
    let mut values = ValueTable::default();
    for op in history.operations.iter().filter(|op| relevant(op)) {
        to_model_op(op, &mut values)?;
        if op.return_ns.is_some_and(|r| r < op.call_ns) {
            return Err(format!("operation returns before it is called: {op}"));
        }
        if matches!(op.output, OpOutput::Ok(_)) && op.return_ns.is_none() {
            return Err(format!("successful operation without a return time: {op}"));
        }
    }
    Ok(())
}

/// Search one key's (already filtered) sub-history.
pub(crate) fn check_key(
    ops: &[Operation],
    initial: Option<&KeyState>,
    deadline: Instant,
) -> KeyVerdict {
    let mut values = ValueTable::default();
    let init = initial_state(initial, &mut values);
    let timed: Vec<TimedOp> = ops
        .iter()
        .map(|op| TimedOp {
            op: to_model_op(op, &mut values).expect("validated before the search"),
            call_ns: op.call_ns,
            return_ns: op.effective_return_ns(),
        })
        .collect();
    match search(&timed, init, deadline) {
        SearchOutcome::Linearizable => KeyVerdict::Passes,
        SearchOutcome::Timeout => KeyVerdict::Timeout,
        SearchOutcome::NotLinearizable { deepest, state } => KeyVerdict::Fails {
            explanation: explain(ops, &deepest, &values.describe(&state)),
            pending: (0..ops.len()).filter(|i| !deepest.contains(i)).collect(),
        },
    }
}

fn explain(ops: &[Operation], deepest: &[usize], state: &str) -> String {
    let mut out = format!(
        "No order of these operations respects both real time and the semantics of a single key. \
         The longest valid prefix found linearizes {} of {} operation(s):\n",
        deepest.len(),
        ops.len()
    );
    for &i in deepest {
        out.push_str(&format!("  {}\n", ops[i]));
    }
    out.push_str(&format!(
        "after which the key holds {state}, and none of the remaining operation(s) can come next:\n"
    ));
    let remaining: Vec<Operation> = (0..ops.len())
        .filter(|i| !deepest.contains(i))
        .map(|i| ops[i].clone())
        .collect();
    out.push_str(&format_operations(&remaining));
    out
}

fn shrink_failure(
    key: &str,
    ops: Vec<Operation>,
    pending: &[usize],
    initial: Option<&KeyState>,
    limits: Limits,
) -> CheckResult {
    let budget = shrink::ShrinkBudget {
        deadline: Instant::now() + limits.shrink_timeout,
        max_checks: limits.shrink_max_checks,
    };
    let minimal = shrink::shrink(ops, pending, initial, &budget, check_key);
    // Re-run on the final sub-history so the explanation describes exactly what is printed.
    let explanation = match check_key(&minimal, initial, Instant::now() + limits.search_timeout) {
        KeyVerdict::Fails { explanation, .. } => explanation,
        other => format!("(no explanation: re-checking the shrunk sub-history gave {other:?})"),
    };
    CheckResult::NotLinearizable {
        key: key.to_owned(),
        minimal,
        explanation,
    }
}
