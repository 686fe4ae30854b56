//! gRPC through the real `etcd-client` crate, and JSON renderings of its responses for
//! observations. Header fields other than the revision are left out here on purpose: the
//! raft term and IDs legitimately differ between servers (see `normalize`).

use std::time::Duration;

use etcd_client::{
    Client, ConnectOptions, DeleteResponse, Error, Event, EventType, GetResponse, KeyValue,
    PutResponse, ResponseHeader, TxnOpResponse, TxnResponse, WatchResponse,
};
use serde_json::{Value, json};

/// Connecting to an endpoint may take this long.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// One request may take this long (a write with quorum lost waits for etcd's own timeout).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Values longer than this are shown as length + checksum in observations.
const VALUE_SHOWN_BYTES_MAX: usize = 64;

/// Connects to the given client URLs.
pub async fn connect(endpoints: &[String]) -> Result<Client, Error> {
    let opts = ConnectOptions::new()
        .with_connect_timeout(CONNECT_TIMEOUT)
        .with_timeout(REQUEST_TIMEOUT);
    Client::connect(endpoints, Some(opts)).await
}

/// Shows bytes as text when printable UTF-8, else as `hex:...`.
pub fn bytes_text(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) if s.chars().all(|c| !c.is_control()) => s.to_string(),
        _ => format!(
            "hex:{}",
            bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
        ),
    }
}

/// A value for an observation: the text, or for long values its length and a checksum.
pub fn value_text(bytes: &[u8]) -> String {
    if bytes.len() <= VALUE_SHOWN_BYTES_MAX {
        return bytes_text(bytes);
    }
    let sum = bytes.iter().fold(0u64, |acc, b| {
        acc.wrapping_mul(31).wrapping_add(u64::from(*b))
    });
    format!("<{} bytes, sum {sum:016x}>", bytes.len())
}

/// An error as code + message (transport errors are reduced to their kind, since their text
/// comes from the client library, not the server).
pub fn err_json(err: &Error) -> Value {
    match err {
        Error::GRpcStatus(status) => {
            json!({"code": format!("{:?}", status.code()), "message": status.message()})
        }
        Error::TransportError(_) => json!({"transport": "unavailable"}),
        Error::WatchError(m) => json!({"watch_error": m}),
        Error::LeaseKeepAliveError(m) => json!({"lease_error": m}),
        other => json!({"client_error": other.to_string()}),
    }
}

/// The gRPC status code name of an error, or "Transport"/"Client".
pub fn err_code(err: &Error) -> String {
    match err {
        Error::GRpcStatus(status) => format!("{:?}", status.code()),
        Error::TransportError(_) => "Transport".to_string(),
        _ => "Client".to_string(),
    }
}

/// The server's message of a gRPC error (empty for other errors).
pub fn err_message(err: &Error) -> String {
    match err {
        Error::GRpcStatus(status) => status.message().to_string(),
        other => other.to_string(),
    }
}

pub fn header_json(h: Option<&ResponseHeader>) -> Value {
    json!({"revision": h.map(ResponseHeader::revision)})
}

pub fn kv_json(kv: &KeyValue) -> Value {
    json!({
        "key": bytes_text(kv.key()),
        "value": value_text(kv.value()),
        "create_revision": kv.create_revision(),
        "mod_revision": kv.mod_revision(),
        "version": kv.version(),
        "lease": kv.lease(),
    })
}

pub fn kvs_json(kvs: &[KeyValue]) -> Value {
    Value::Array(kvs.iter().map(kv_json).collect())
}

pub fn get_json(r: &GetResponse) -> Value {
    json!({"header": header_json(r.header()), "kvs": kvs_json(r.kvs()), "more": r.more(), "count": r.count()})
}

pub fn put_json(r: &PutResponse) -> Value {
    json!({"header": header_json(r.header()), "prev_kv": r.prev_key().map(kv_json)})
}

pub fn del_json(r: &DeleteResponse) -> Value {
    json!({"header": header_json(r.header()), "deleted": r.deleted(), "prev_kvs": kvs_json(r.prev_kvs())})
}

pub fn txn_json(r: &TxnResponse) -> Value {
    let ops: Vec<Value> = r
        .op_responses()
        .iter()
        .map(|op| match op {
            TxnOpResponse::Put(p) => json!({"put": put_json(p)}),
            TxnOpResponse::Get(g) => json!({"get": get_json(g)}),
            TxnOpResponse::Delete(d) => json!({"delete": del_json(d)}),
            TxnOpResponse::Txn(t) => json!({"txn": txn_json(t)}),
        })
        .collect();
    json!({"header": header_json(r.header()), "succeeded": r.succeeded(), "responses": ops})
}

pub fn event_json(e: &Event) -> Value {
    let kind = match e.event_type() {
        EventType::Put => "PUT",
        EventType::Delete => "DELETE",
    };
    json!({"type": kind, "kv": e.kv().map(kv_json), "prev_kv": e.prev_kv().map(kv_json)})
}

/// A watch response with its events; the watch ID is kept (it is assigned per stream from 0).
pub fn watch_json(r: &WatchResponse) -> Value {
    json!({
        "header": header_json(r.header()),
        "watch_id": r.watch_id(),
        "created": r.created(),
        "canceled": r.canceled(),
        "compact_revision": r.compact_revision(),
        "cancel_reason": r.cancel_reason(),
        "events": r.events().iter().map(event_json).collect::<Vec<_>>(),
    })
}

/// A `Result` of any call as JSON: `{"ok": ...}` or `{"err": ...}`.
pub fn result_json<T>(r: &Result<T, Error>, ok: impl Fn(&T) -> Value) -> Value {
    match r {
        Ok(v) => json!({"ok": ok(v)}),
        Err(e) => json!({"err": err_json(e)}),
    }
}
