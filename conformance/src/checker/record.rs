//! Recording helpers: run operations through the real `etcd-client` and turn what comes back
//! into checker input. The only I/O in the checker module; the checkers themselves are pure.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use etcd_client::{
    Client, Compare as EtcdCompare, CompareOp, EventType as EtcdEventType, Txn, TxnOp,
};

use super::linearizability::{CasAction, Compare, History, OpInput, OpOutput, OpResult, Operation};
use super::watch::{EventType, GroundTruth, KeyValue, WatchEvent, WatchResponse};

/// Collects operations from concurrent clients against one clock.
pub struct Recorder {
    origin: Instant,
    operations: Mutex<Vec<Operation>>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    pub fn new() -> Self {
        Self {
            origin: Instant::now(),
            operations: Mutex::new(Vec::new()),
        }
    }

    /// Nanoseconds since the recorder was created.
    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).expect("a run lasts less than 584 years")
    }

    /// Run `input` on `key` through `client` (bounded by `timeout`) and record it.
    pub async fn run(
        &self,
        client: &mut Client,
        client_id: u32,
        key: &str,
        input: OpInput,
        timeout: Duration,
    ) -> OpOutput {
        let call_ns = self.now_ns();
        let output = execute(client, key, &input, timeout).await;
        let return_ns = (output != OpOutput::Unknown).then(|| self.now_ns());
        let op = Operation {
            client: client_id,
            call_ns,
            return_ns,
            key: key.to_owned(),
            input,
            output: output.clone(),
        };
        self.operations
            .lock()
            .expect("recorder lock is never poisoned")
            .push(op);
        output
    }

    pub fn into_history(self) -> History {
        History::new(
            self.operations
                .into_inner()
                .expect("recorder lock is never poisoned"),
        )
    }
}

fn header_revision(header: Option<&etcd_client::ResponseHeader>) -> Option<i64> {
    header.map(etcd_client::ResponseHeader::revision)
}

/// Run one single-key operation. Any error or timeout is an unknown outcome: the request may
/// have been applied (a definite rejection cannot be told apart from the client side reliably).
pub async fn execute(
    client: &mut Client,
    key: &str,
    input: &OpInput,
    timeout: Duration,
) -> OpOutput {
    let result = match input {
        OpInput::Put { value } => {
            let r = tokio::time::timeout(timeout, client.put(key, value.as_str(), None)).await;
            r.ok().and_then(Result::ok).map(|r| OpResult::Put {
                revision: header_revision(r.header()),
            })
        }
        OpInput::Get => {
            let r = tokio::time::timeout(timeout, client.get(key, None)).await;
            r.ok().and_then(Result::ok).map(|r| {
                let kv = r.kvs().first();
                OpResult::Get {
                    value: kv.map(|kv| String::from_utf8_lossy(kv.value()).into_owned()),
                    mod_revision: kv.map(etcd_client::KeyValue::mod_revision),
                    header_revision: header_revision(r.header()),
                }
            })
        }
        OpInput::Delete => {
            let r = tokio::time::timeout(timeout, client.delete(key, None)).await;
            r.ok().and_then(Result::ok).map(|r| OpResult::Delete {
                deleted: Some(r.deleted()),
                revision: header_revision(r.header()),
            })
        }
        OpInput::CompareAndSwap { compare, action } => {
            let txn = Txn::new()
                .when([etcd_compare(key, compare)])
                .and_then([etcd_action(key, action)]);
            let r = tokio::time::timeout(timeout, client.txn(txn)).await;
            r.ok()
                .and_then(Result::ok)
                .map(|r| OpResult::CompareAndSwap {
                    succeeded: r.succeeded(),
                    revision: header_revision(r.header()),
                })
        }
    };
    result.map_or(OpOutput::Unknown, OpOutput::Ok)
}

fn etcd_compare(key: &str, compare: &Compare) -> EtcdCompare {
    match compare {
        Compare::ModRevision(rev) => EtcdCompare::mod_revision(key, CompareOp::Equal, *rev),
        Compare::Value(v) => EtcdCompare::value(key, CompareOp::Equal, v.as_str()),
    }
}

fn etcd_action(key: &str, action: &CasAction) -> TxnOp {
    match action {
        CasAction::Put { value } => TxnOp::put(key, value.as_str(), None),
        CasAction::Delete => TxnOp::delete(key, None),
    }
}

fn convert_kv(kv: &etcd_client::KeyValue) -> KeyValue {
    KeyValue {
        key: String::from_utf8_lossy(kv.key()).into_owned(),
        value: String::from_utf8_lossy(kv.value()).into_owned(),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
        version: kv.version(),
    }
}

impl WatchResponse {
    /// Convert a response received from `etcd_client` (keys and values as lossy UTF-8).
    pub fn from_etcd(resp: &etcd_client::WatchResponse) -> Self {
        let events = resp
            .events()
            .iter()
            .filter_map(|e| {
                Some(WatchEvent {
                    kind: match e.event_type() {
                        EtcdEventType::Put => EventType::Put,
                        EtcdEventType::Delete => EventType::Delete,
                    },
                    kv: convert_kv(e.kv()?),
                    prev_kv: e.prev_kv().map(convert_kv),
                })
            })
            .collect();
        // etcd-client does not expose `fragment`; fragmenting watches are not recorded this way.
        Self {
            header_revision: header_revision(resp.header()).unwrap_or(0),
            events,
            fragment: false,
        }
    }
}

/// The write a successful operation committed, if it changed the key: (revision, new value
/// or `None` for a delete).
fn committed_change(op: &Operation) -> Option<(i64, Option<&str>)> {
    match (&op.input, &op.output) {
        (OpInput::Put { value }, OpOutput::Ok(OpResult::Put { revision: Some(r) })) => {
            Some((*r, Some(value)))
        }
        (
            OpInput::Delete,
            OpOutput::Ok(OpResult::Delete {
                deleted: Some(n),
                revision: Some(r),
            }),
        ) if *n > 0 => Some((*r, None)),
        (
            OpInput::CompareAndSwap { compare, action },
            OpOutput::Ok(OpResult::CompareAndSwap {
                succeeded: true,
                revision: Some(r),
            }),
        ) => match action {
            CasAction::Put { value } => Some((*r, Some(value))),
            // Deleting an absent key changes nothing.
            CasAction::Delete if *compare == Compare::ModRevision(0) => None,
            CasAction::Delete => Some((*r, None)),
        },
        _ => None,
    }
}

impl GroundTruth {
    /// Rebuild the committed changes from a history's successful writes, in revision order.
    /// Complete only if no write had an unknown outcome and every key started absent.
    pub fn from_history(history: &History) -> Self {
        let mut writes: Vec<(i64, Option<&str>, &str)> = history
            .operations
            .iter()
            .filter_map(|op| committed_change(op).map(|(r, v)| (r, v, op.key.as_str())))
            .collect();
        writes.sort_by_key(|(r, _, _)| *r);
        let mut current: BTreeMap<&str, KeyValue> = BTreeMap::new();
        let mut events = Vec::with_capacity(writes.len());
        for (rev, value, key) in writes {
            let prev = current.get(key).cloned();
            let Some(value) = value else {
                current.remove(key);
                let kv = KeyValue {
                    key: key.to_owned(),
                    value: String::new(),
                    create_revision: 0,
                    mod_revision: rev,
                    version: 0,
                };
                events.push(WatchEvent {
                    kind: EventType::Delete,
                    kv,
                    prev_kv: prev,
                });
                continue;
            };
            let kv = KeyValue {
                key: key.to_owned(),
                value: value.to_owned(),
                create_revision: prev.as_ref().map_or(rev, |p| p.create_revision),
                mod_revision: rev,
                version: prev.as_ref().map_or(1, |p| p.version + 1),
            };
            current.insert(key, kv.clone());
            events.push(WatchEvent {
                kind: EventType::Put,
                kv,
                prev_kv: prev,
            });
        }
        Self::new(1, events)
    }
}
