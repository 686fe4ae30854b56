//! The WAL records that carry the raft log (pure encoding, no I/O). docs/raft.md lists the
//! same bytes. Every integer is little-endian and fixed-width.
//!
//! | kind | record          | WAL index field      | body                                         |
//! |------|-----------------|----------------------|----------------------------------------------|
//! | 1    | entry           | entry index          | term u64, leader u64, payload tag u8, payload |
//! | 2    | truncate-after  | first removed index  | tag u8 (0 none, 1 some), term, leader, index |
//! | 3    | purge marker    | purged index + 1     | term u64, leader u64, index u64              |
//! | 4    | committed       | committed index      | term u64, leader u64, index u64              |
//!
//! Payload tags: 0 blank (no bytes), 1 normal (the protobuf `RaftRequest` bytes), 2
//! membership (JSON of openraft's `Membership`).
//!
//! The purge marker's index field is one past the purged index so that `Wal::purge_upto`
//! (which drops segments whose records all have index <= upto) never drops the segment that
//! holds the newest marker.

use crate::types::{Entry, EntryPayload, LeaderId, LogId, RequestBytes};
use bytes::Bytes;

pub const KIND_ENTRY: u8 = 1;
pub const KIND_TRUNCATE_AFTER: u8 = 2;
pub const KIND_PURGE: u8 = 3;
pub const KIND_COMMITTED: u8 = 4;

const TAG_BLANK: u8 = 0;
const TAG_NORMAL: u8 = 1;
const TAG_MEMBERSHIP: u8 = 2;

/// A WAL record body that does not decode: the log cannot be rebuilt.
#[derive(Debug, thiserror::Error)]
#[error("raft log record (kind {kind}, index {index}): {reason}")]
pub struct RecordError {
    pub kind: u8,
    pub index: u64,
    pub reason: String,
}

/// A decoded WAL record.
#[derive(Debug)]
pub enum LogRecord {
    Entry(Entry),
    /// Entries after this log id (all, when `None`) were removed.
    TruncateAfter(Option<LogId>),
    Purge(LogId),
    Committed(LogId),
}

fn put_log_id(out: &mut Vec<u8>, id: &LogId) {
    out.extend_from_slice(&id.leader_id.term.to_le_bytes());
    out.extend_from_slice(&id.leader_id.node_id.to_le_bytes());
    out.extend_from_slice(&id.index.to_le_bytes());
}

fn log_id(term: u64, node_id: u64, index: u64) -> LogId {
    LogId {
        leader_id: LeaderId { term, node_id },
        index,
    }
}

/// Encodes an entry record body.
pub fn encode_entry(out: &mut Vec<u8>, e: &Entry) {
    out.extend_from_slice(&e.log_id.leader_id.term.to_le_bytes());
    out.extend_from_slice(&e.log_id.leader_id.node_id.to_le_bytes());
    match &e.payload {
        EntryPayload::Blank => out.push(TAG_BLANK),
        EntryPayload::Normal(req) => {
            out.push(TAG_NORMAL);
            out.extend_from_slice(&req.0);
        }
        EntryPayload::Membership(m) => {
            out.push(TAG_MEMBERSHIP);
            serde_json::to_writer(&mut *out, m).expect("membership serializes");
        }
    }
}

pub fn encode_log_id(id: &LogId) -> Vec<u8> {
    let mut out = Vec::with_capacity(24);
    put_log_id(&mut out, id);
    out
}

pub fn encode_truncate(after: Option<&LogId>) -> Vec<u8> {
    let mut out = Vec::with_capacity(25);
    match after {
        None => out.push(0),
        Some(id) => {
            out.push(1);
            put_log_id(&mut out, id);
        }
    }
    out
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    b.get(at..at + 8)
        .map(|s| u64::from_le_bytes(s.try_into().expect("8 bytes")))
}

fn decode_log_id(b: &[u8]) -> Option<LogId> {
    if b.len() != 24 {
        return None;
    }
    Some(log_id(u64_at(b, 0)?, u64_at(b, 8)?, u64_at(b, 16)?))
}

fn decode_entry(index: u64, body: Vec<u8>) -> Result<Entry, String> {
    let (term, node) = match (u64_at(&body, 0), u64_at(&body, 8)) {
        (Some(t), Some(n)) => (t, n),
        _ => return Err("entry body shorter than its header".into()),
    };
    let payload = match body.get(16) {
        Some(&TAG_BLANK) => EntryPayload::Blank,
        Some(&TAG_NORMAL) => {
            let mut bytes = Bytes::from(body);
            EntryPayload::Normal(RequestBytes(bytes.split_off(17)))
        }
        Some(&TAG_MEMBERSHIP) => EntryPayload::Membership(
            serde_json::from_slice(&body[17..]).map_err(|e| e.to_string())?,
        ),
        other => return Err(format!("unknown payload tag {other:?}")),
    };
    Ok(Entry {
        log_id: log_id(term, node, index),
        payload,
    })
}

/// Decodes one record read back from the WAL.
pub fn decode_record(kind: u8, index: u64, body: Vec<u8>) -> Result<LogRecord, RecordError> {
    let err = |reason: String| RecordError {
        kind,
        index,
        reason,
    };
    let bad_id = || err("malformed log id".into());
    match kind {
        KIND_ENTRY => decode_entry(index, body).map(LogRecord::Entry).map_err(err),
        KIND_TRUNCATE_AFTER => match body.first() {
            Some(0) if body.len() == 1 => Ok(LogRecord::TruncateAfter(None)),
            Some(1) => decode_log_id(&body[1..])
                .map(|id| LogRecord::TruncateAfter(Some(id)))
                .ok_or_else(bad_id),
            _ => Err(bad_id()),
        },
        KIND_PURGE => decode_log_id(&body)
            .map(LogRecord::Purge)
            .ok_or_else(bad_id),
        KIND_COMMITTED => decode_log_id(&body)
            .map(LogRecord::Committed)
            .ok_or_else(bad_id),
        _ => Err(err("unknown record kind".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(e: &Entry) -> Entry {
        let mut body = Vec::new();
        encode_entry(&mut body, e);
        match decode_record(KIND_ENTRY, e.log_id.index, body).unwrap() {
            LogRecord::Entry(d) => d,
            other => panic!("decoded {other:?}"),
        }
    }

    #[test]
    fn entries_roundtrip_with_every_payload() {
        let normal = Entry {
            log_id: log_id(3, 7, 42),
            payload: EntryPayload::Normal(RequestBytes(Bytes::from_static(b"\x0a\x03abc"))),
        };
        assert_eq!(roundtrip(&normal), normal);
        let blank = Entry {
            log_id: log_id(1, 9, 1),
            payload: EntryPayload::Blank,
        };
        assert_eq!(roundtrip(&blank), blank);
        let mut nodes = std::collections::BTreeMap::new();
        nodes.insert(
            5u64,
            crate::types::Member {
                name: "a".into(),
                ..Default::default()
            },
        );
        let m = openraft::Membership::new(vec![[5u64].into_iter().collect()], nodes).unwrap();
        let memb = Entry {
            log_id: log_id(2, 5, 3),
            payload: EntryPayload::Membership(m),
        };
        assert_eq!(roundtrip(&memb), memb);
    }

    #[test]
    fn markers_roundtrip_and_garbage_is_refused() {
        let id = log_id(4, 2, 99);
        match decode_record(KIND_PURGE, 100, encode_log_id(&id)).unwrap() {
            LogRecord::Purge(d) => assert_eq!(d, id),
            other => panic!("{other:?}"),
        }
        match decode_record(KIND_TRUNCATE_AFTER, 100, encode_truncate(Some(&id))).unwrap() {
            LogRecord::TruncateAfter(Some(d)) => assert_eq!(d, id),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            decode_record(KIND_TRUNCATE_AFTER, 1, encode_truncate(None)).unwrap(),
            LogRecord::TruncateAfter(None)
        ));
        assert!(decode_record(KIND_COMMITTED, 1, vec![1, 2, 3]).is_err());
        assert!(decode_record(KIND_ENTRY, 1, vec![0; 16]).is_err());
        assert!(decode_record(99, 1, vec![]).is_err());
    }
}
