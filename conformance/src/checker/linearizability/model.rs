//! The sequential specification of one etcd key: a register with a mod revision.
//!
//! Values are interned to `u32` so that states are small `Copy` values that hash fast in the
//! search cache. A step may have two outcomes (a compare-and-swap whose outcome is unknown and
//! whose compare cannot be decided from what is known), so `step` returns up to two states.

use std::collections::HashMap;

use super::history::{CasAction, Compare, KeyState, OpInput, OpOutput, OpResult, Operation};

/// State of one key. `mod_rev` is `None` when the write that produced the value had an unknown
/// revision; `rev_floor` is a lower bound for that unknown revision (else the key's last
/// modification). `seen_rev` is the highest store revision any operation linearized so far on
/// the key observed or created: the store revision only grows, so a later read is served at a
/// revision no lower and a later write creates a higher one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct RegisterState {
    pub value: Option<u32>,
    pub mod_rev: Option<i64>,
    pub rev_floor: i64,
    pub seen_rev: i64,
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum ModelInput {
    Put(u32),
    Get,
    Delete,
    Cas {
        compare: ModelCompare,
        action: ModelAction,
    },
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum ModelCompare {
    ModRevision(i64),
    Value(u32),
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum ModelAction {
    Put(u32),
    Delete,
}

/// Output as the model sees it; `None` fields mean "not recorded".
#[derive(Clone, Copy, Debug)]
pub(crate) enum ModelOutput {
    Unknown,
    Put {
        rev: Option<i64>,
    },
    Get {
        value: Option<u32>,
        mod_rev: Option<i64>,
        header_rev: Option<i64>,
    },
    Delete {
        deleted: Option<i64>,
        rev: Option<i64>,
    },
    Cas {
        succeeded: bool,
        rev: Option<i64>,
    },
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct ModelOp {
    pub input: ModelInput,
    pub output: ModelOutput,
}

/// Interns the values of one key's sub-history.
#[derive(Default)]
pub(crate) struct ValueTable {
    ids: HashMap<String, u32>,
    pub names: Vec<String>,
}

impl ValueTable {
    pub fn intern(&mut self, value: &str) -> u32 {
        if let Some(id) = self.ids.get(value) {
            return *id;
        }
        let id = u32::try_from(self.names.len()).expect("fewer than 2^32 distinct values");
        self.ids.insert(value.to_owned(), id);
        self.names.push(value.to_owned());
        id
    }

    pub fn describe(&self, state: &RegisterState) -> String {
        let value = state.value.map_or_else(
            || "<absent>".to_owned(),
            |id| format!("{:?}", self.names[id as usize]),
        );
        let rev = state
            .mod_rev
            .map_or_else(|| "?".to_owned(), |r| r.to_string());
        format!(
            "value={value} mod_rev={rev} (store revision seen so far {})",
            state.seen_rev
        )
    }
}

/// Why an operation/outcome pair cannot be modelled (a recording bug, not a store bug).
pub(crate) fn to_model_op(op: &Operation, values: &mut ValueTable) -> Result<ModelOp, String> {
    let input = match &op.input {
        OpInput::Put { value } => ModelInput::Put(values.intern(value)),
        OpInput::Get => ModelInput::Get,
        OpInput::Delete => ModelInput::Delete,
        OpInput::CompareAndSwap { compare, action } => ModelInput::Cas {
            compare: match compare {
                Compare::ModRevision(rev) => ModelCompare::ModRevision(*rev),
                Compare::Value(v) => ModelCompare::Value(values.intern(v)),
            },
            action: match action {
                CasAction::Put { value } => ModelAction::Put(values.intern(value)),
                CasAction::Delete => ModelAction::Delete,
            },
        },
    };
    let output = match (&op.input, &op.output) {
        (_, OpOutput::Unknown) => ModelOutput::Unknown,
        (_, OpOutput::Failed) => return Err(format!("failed operation reached the model: {op}")),
        (OpInput::Put { .. }, OpOutput::Ok(OpResult::Put { revision })) => {
            ModelOutput::Put { rev: *revision }
        }
        (
            OpInput::Get,
            OpOutput::Ok(OpResult::Get {
                value,
                mod_revision,
                header_revision,
            }),
        ) => ModelOutput::Get {
            value: value.as_deref().map(|v| values.intern(v)),
            mod_rev: *mod_revision,
            header_rev: *header_revision,
        },
        (OpInput::Delete, OpOutput::Ok(OpResult::Delete { deleted, revision })) => {
            ModelOutput::Delete {
                deleted: *deleted,
                rev: *revision,
            }
        }
        (
            OpInput::CompareAndSwap { .. },
            OpOutput::Ok(OpResult::CompareAndSwap {
                succeeded,
                revision,
            }),
        ) => ModelOutput::Cas {
            succeeded: *succeeded,
            rev: *revision,
        },
        _ => return Err(format!("output does not match input: {op}")),
    };
    Ok(ModelOp { input, output })
}

pub(crate) fn initial_state(initial: Option<&KeyState>, values: &mut ValueTable) -> RegisterState {
    match initial {
        None => RegisterState {
            value: None,
            mod_rev: None,
            rev_floor: 0,
            seen_rev: 0,
        },
        Some(ks) => RegisterState {
            value: Some(values.intern(&ks.value)),
            mod_rev: ks.mod_revision,
            rev_floor: ks.mod_revision.unwrap_or(0),
            seen_rev: ks.mod_revision.unwrap_or(0),
        },
    }
}

/// Up to two possible successor states; empty when the output is impossible from `state`.
pub(crate) type Successors = [Option<RegisterState>; 2];

pub(crate) fn step(state: RegisterState, op: &ModelOp) -> Successors {
    match (op.input, op.output) {
        (ModelInput::Put(v), ModelOutput::Put { rev }) => [write_value(state, v, rev), None],
        (ModelInput::Put(v), _) => [write_value(state, v, None), None],
        (
            ModelInput::Get,
            ModelOutput::Get {
                value,
                mod_rev,
                header_rev,
            },
        ) => [read(state, value, mod_rev, header_rev), None],
        (ModelInput::Get, _) => [Some(state), None],
        (ModelInput::Delete, ModelOutput::Delete { deleted, rev }) => {
            [delete(state, deleted, rev), None]
        }
        (ModelInput::Delete, _) => [delete(state, None, None), None],
        (ModelInput::Cas { compare, action }, output) => cas(state, compare, action, output),
    }
}

/// A write at revision `rev` must come after every revision already seen on the key; one of
/// unknown revision still does, which bounds its revision from below.
fn write_value(state: RegisterState, value: u32, rev: Option<i64>) -> Option<RegisterState> {
    match rev {
        Some(r) if r <= state.seen_rev => None,
        Some(r) => Some(RegisterState {
            value: Some(value),
            mod_rev: Some(r),
            rev_floor: r,
            seen_rev: r,
        }),
        None => Some(RegisterState {
            value: Some(value),
            mod_rev: None,
            rev_floor: state.seen_rev,
            ..state
        }),
    }
}

/// An operation served at store revision `rev` (a read's header): never below what was seen.
fn observe(state: RegisterState, rev: Option<i64>) -> Option<RegisterState> {
    match rev {
        Some(r) if r < state.seen_rev => None,
        Some(r) => Some(RegisterState {
            seen_rev: r,
            ..state
        }),
        None => Some(state),
    }
}

fn read(
    state: RegisterState,
    value: Option<u32>,
    mod_rev: Option<i64>,
    header_rev: Option<i64>,
) -> Option<RegisterState> {
    if value != state.value {
        return None;
    }
    let state = match (value, mod_rev) {
        (Some(_), Some(m)) => learn_mod_rev(state, m)?,
        _ => state,
    };
    observe(state, header_rev)
}

/// Check a mod revision against the state, or learn it when the state's revision is unknown.
fn learn_mod_rev(state: RegisterState, m: i64) -> Option<RegisterState> {
    match state.mod_rev {
        Some(known) if known == m => Some(state),
        Some(_) => None,
        None if m > state.rev_floor => Some(RegisterState {
            mod_rev: Some(m),
            rev_floor: m,
            seen_rev: state.seen_rev.max(m),
            ..state
        }),
        None => None,
    }
}

fn delete(state: RegisterState, deleted: Option<i64>, rev: Option<i64>) -> Option<RegisterState> {
    let existed = state.value.is_some();
    if deleted.is_some_and(|d| d != i64::from(existed)) {
        return None;
    }
    if !existed {
        // Deleting nothing creates no revision; the header is the current store revision.
        return observe(state, rev);
    }
    match rev {
        Some(r) if r <= state.seen_rev => None,
        Some(r) => Some(RegisterState {
            value: None,
            mod_rev: None,
            rev_floor: r,
            seen_rev: r,
        }),
        None => Some(RegisterState {
            value: None,
            mod_rev: None,
            rev_floor: state.seen_rev,
            ..state
        }),
    }
}

/// `Some(result)` when the compare is decided by the state, `None` when it depends on an
/// unknown mod revision.
fn evaluate(state: RegisterState, compare: ModelCompare) -> Option<bool> {
    match compare {
        ModelCompare::Value(v) => Some(state.value == Some(v)),
        ModelCompare::ModRevision(0) => Some(state.value.is_none()),
        ModelCompare::ModRevision(m) => match (state.value, state.mod_rev) {
            (None, _) => Some(false),
            (Some(_), Some(known)) => Some(known == m),
            (Some(_), None) => None,
        },
    }
}

fn apply_action(
    state: RegisterState,
    action: ModelAction,
    rev: Option<i64>,
) -> Option<RegisterState> {
    match action {
        ModelAction::Put(v) => write_value(state, v, rev),
        ModelAction::Delete => delete(state, None, rev),
    }
}

fn cas(
    state: RegisterState,
    compare: ModelCompare,
    action: ModelAction,
    output: ModelOutput,
) -> Successors {
    let decided = evaluate(state, compare);
    match output {
        ModelOutput::Cas { succeeded, rev } => [
            cas_known(state, compare, decided, action, succeeded, rev),
            None,
        ],
        _ => match decided {
            Some(true) => [apply_action(state, action, None), None],
            Some(false) => [Some(state), None],
            None => {
                let ModelCompare::ModRevision(m) = compare else {
                    unreachable!("value compares are decided")
                };
                let matched = learn_mod_rev(state, m).and_then(|s| apply_action(s, action, None));
                [matched, Some(state)]
            }
        },
    }
}

fn cas_known(
    state: RegisterState,
    compare: ModelCompare,
    decided: Option<bool>,
    action: ModelAction,
    succeeded: bool,
    rev: Option<i64>,
) -> Option<RegisterState> {
    let state = match (decided, compare) {
        (Some(c), _) if c != succeeded => return None,
        (None, ModelCompare::ModRevision(m)) if succeeded => learn_mod_rev(state, m)?,
        _ => state,
    };
    if succeeded {
        return apply_action(state, action, rev);
    }
    observe(state, rev)
}
