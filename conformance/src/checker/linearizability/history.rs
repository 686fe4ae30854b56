//! Recorded KV histories: the operations concurrent clients issued and what they saw.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// A recorded history: every operation issued by every client, in any order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    pub operations: Vec<Operation>,
    /// State of keys that existed before the history began; keys not listed start absent.
    #[serde(default)]
    pub initial: BTreeMap<String, KeyState>,
}

/// The value and (when known) mod revision a key holds.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KeyState {
    pub value: String,
    pub mod_revision: Option<i64>,
}

/// One client request and its outcome. Times are monotonic nanoseconds from any common origin.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    pub client: u32,
    pub call_ns: u64,
    /// `None` when the outcome is unknown (treated as returning at infinity).
    pub return_ns: Option<u64>,
    pub key: String,
    pub input: OpInput,
    pub output: OpOutput,
}

/// What the client asked for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpInput {
    Put {
        value: String,
    },
    Get,
    Delete,
    /// A txn on one key: `if compare then action else nothing`.
    CompareAndSwap {
        compare: Compare,
        action: CasAction,
    },
}

/// The compare of a compare-and-swap txn.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Compare {
    /// `mod_revision(key) == rev`; 0 means "the key does not exist" as in etcd.
    ModRevision(i64),
    /// `value(key) == v`; false when the key does not exist, as in etcd.
    Value(String),
}

/// The success branch of a compare-and-swap txn.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CasAction {
    Put { value: String },
    Delete,
}

/// What came back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpOutput {
    Ok(OpResult),
    /// Definitely not applied (e.g. the server rejected it before proposing).
    Failed,
    /// Timeout or lost connection: may have been applied, at any time after the call.
    Unknown,
}

/// The successful result of an operation. Revisions are optional: record them when known.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpResult {
    /// `revision` is the response header revision, i.e. the put's mod revision.
    Put { revision: Option<i64> },
    /// `header_revision` is the store revision the read was served at.
    Get {
        value: Option<String>,
        mod_revision: Option<i64>,
        header_revision: Option<i64>,
    },
    /// `deleted` is the count of deleted keys (0 or 1 here).
    Delete {
        deleted: Option<i64>,
        revision: Option<i64>,
    },
    CompareAndSwap {
        succeeded: bool,
        revision: Option<i64>,
    },
}

impl History {
    pub fn new(operations: Vec<Operation>) -> Self {
        Self {
            operations,
            initial: BTreeMap::new(),
        }
    }

    /// Operations grouped by key, keys in order, each group in recorded order.
    pub fn by_key(&self) -> BTreeMap<&str, Vec<&Operation>> {
        let mut groups: BTreeMap<&str, Vec<&Operation>> = BTreeMap::new();
        for op in &self.operations {
            groups.entry(op.key.as_str()).or_default().push(op);
        }
        groups
    }
}

impl Operation {
    /// The return time used by the checker: unknown outcomes never return.
    pub fn effective_return_ns(&self) -> u64 {
        match (&self.output, self.return_ns) {
            (OpOutput::Unknown, _) | (_, None) => u64::MAX,
            (_, Some(ns)) => ns,
        }
    }

    pub fn is_write(&self) -> bool {
        !matches!(self.input, OpInput::Get)
    }
}

fn opt_rev(rev: Option<i64>) -> String {
    rev.map_or_else(|| "?".to_owned(), |r| r.to_string())
}

impl fmt::Display for OpInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpInput::Put { value } => write!(f, "put({value:?})"),
            OpInput::Get => write!(f, "get()"),
            OpInput::Delete => write!(f, "delete()"),
            OpInput::CompareAndSwap { compare, action } => {
                let cmp = match compare {
                    Compare::ModRevision(rev) => format!("mod_revision=={rev}"),
                    Compare::Value(v) => format!("value=={v:?}"),
                };
                let act = match action {
                    CasAction::Put { value } => format!("put({value:?})"),
                    CasAction::Delete => "delete()".to_owned(),
                };
                write!(f, "cas(if {cmp} then {act})")
            }
        }
    }
}

impl fmt::Display for OpOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpOutput::Failed => write!(f, "FAILED (not applied)"),
            OpOutput::Unknown => write!(f, "UNKNOWN (maybe applied)"),
            OpOutput::Ok(OpResult::Put { revision }) => write!(f, "ok rev={}", opt_rev(*revision)),
            OpOutput::Ok(OpResult::Get {
                value,
                mod_revision,
                header_revision,
            }) => {
                match value {
                    Some(v) => write!(f, "{v:?} mod_rev={}", opt_rev(*mod_revision))?,
                    None => write!(f, "<absent>")?,
                }
                write!(f, " at rev={}", opt_rev(*header_revision))
            }
            OpOutput::Ok(OpResult::Delete { deleted, revision }) => {
                let n = deleted.map_or_else(|| "?".to_owned(), |d| d.to_string());
                write!(f, "deleted={n} rev={}", opt_rev(*revision))
            }
            OpOutput::Ok(OpResult::CompareAndSwap {
                succeeded,
                revision,
            }) => {
                write!(f, "succeeded={succeeded} rev={}", opt_rev(*revision))
            }
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ret = match (&self.output, self.return_ns) {
            (OpOutput::Unknown, _) | (_, None) => "inf".to_owned(),
            (_, Some(ns)) => ns.to_string(),
        };
        write!(
            f,
            "client {:>3} [{:>14} .. {:>14}] {:?} {} -> {}",
            self.client, self.call_ns, ret, self.key, self.input, self.output
        )
    }
}

/// Render operations one per line, sorted by call time: the readable form of a sub-history.
pub fn format_operations(ops: &[Operation]) -> String {
    let mut sorted: Vec<&Operation> = ops.iter().collect();
    sorted.sort_by_key(|op| (op.call_ns, op.effective_return_ns()));
    let mut out = String::new();
    for op in sorted {
        out.push_str("  ");
        out.push_str(&op.to_string());
        out.push('\n');
    }
    out
}
