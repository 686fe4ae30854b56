//! The store's snapshot: a versioned, CRC-32C-protected dump of every retained write and the
//! lease table (format in docs/snapshot-format.md). The change log and the lease attachments
//! are rebuilt from the key histories on read.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::sync::Arc;

use bytes::Bytes;
use ketch_proto::mvccpb::KeyValue;

use crate::error::MvccError;
use crate::key_history::{KeyHistory, KeyVersion};
use crate::map_key::MapKey;
use crate::revision::Revision;
use crate::store::{KeyMap, LogEntry, Store};

pub const SNAPSHOT_MAGIC: &[u8; 8] = b"KETCHMV\0";
pub const SNAPSHOT_FORMAT_VERSION: u32 = 1;
const FLAG_TOMBSTONE: u8 = 1;

/// One retained write of a key, as [`FrozenStore::retained_writes`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetainedWrite {
    pub revision: Revision,
    pub tombstone: bool,
    pub kv: KeyValue,
}

/// What a snapshot holds, frozen at one revision. Taking it is O(1) (the key map is a
/// persistent B-tree shared with the live store, which copies only the nodes it later
/// writes), so apply stops for no longer than the lease-id list takes to copy; the
/// serialisation, which is proportional to every retained write, runs on another thread.
#[derive(Debug, Clone)]
pub struct FrozenStore {
    keys: KeyMap,
    current_rev: i64,
    compact_rev: i64,
    lease_ids: Vec<i64>,
    size_bytes: i64,
}

impl FrozenStore {
    /// The store revision the snapshot is at.
    pub fn revision(&self) -> i64 {
        self.current_rev
    }

    /// The revision of the last compaction, -1 if there was none.
    pub fn compact_revision(&self) -> i64 {
        self.compact_rev
    }

    /// Every retained write (tombstones included) in revision order: what etcd's backend
    /// holds in its `key` bucket. A tombstone's `kv` has the key only, as etcd stores it.
    pub fn retained_writes(&self) -> Vec<RetainedWrite> {
        let mut out = Vec::new();
        for h in self.keys.values() {
            out.extend(h.versions.iter().map(|v| RetainedWrite {
                revision: v.mod_rev,
                tombstone: v.is_tombstone(),
                kv: if v.is_tombstone() {
                    KeyValue {
                        key: h.key.clone(),
                        ..Default::default()
                    }
                } else {
                    v.to_kv(&h.key, true)
                },
            }));
        }
        out.sort_unstable_by_key(|w| w.revision);
        out
    }

    /// Appends the snapshot to `out`: built in memory, then its CRC-32C computed in one pass
    /// (a running CRC per field cost more than the rest together).
    pub fn append_snapshot(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.reserve(self.snapshot_len_estimate());
        out.extend_from_slice(SNAPSHOT_MAGIC);
        out.extend_from_slice(&SNAPSHOT_FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&self.current_rev.to_le_bytes());
        out.extend_from_slice(&self.compact_rev.to_le_bytes());
        out.extend_from_slice(&(self.keys.len() as u64).to_le_bytes());
        for history in self.keys.values() {
            put_key_history(out, history);
        }
        out.extend_from_slice(&(self.lease_ids.len() as u64).to_le_bytes());
        for id in &self.lease_ids {
            out.extend_from_slice(&id.to_le_bytes());
        }
        let crc = crc32c::crc32c(&out[start..]);
        out.extend_from_slice(&crc.to_le_bytes());
    }

    /// Bytes of the snapshot, give or take (every retained write's key, value and fields).
    fn snapshot_len_estimate(&self) -> usize {
        const HEADER_BYTES: usize = 64;
        HEADER_BYTES + usize::try_from(self.size_bytes).unwrap_or(0)
    }
}

impl Store {
    /// Freezes what a snapshot holds (see [`FrozenStore`]).
    pub fn freeze(&self) -> FrozenStore {
        FrozenStore {
            keys: self.keys.clone(),
            current_rev: self.current_rev,
            compact_rev: self.compact_rev,
            lease_ids: self.leases.ids(),
            size_bytes: self.size_bytes,
        }
    }

    /// Writes the snapshot to `w` in one write (see [`FrozenStore::append_snapshot`]).
    pub fn write_snapshot(&self, w: &mut impl Write) -> std::io::Result<()> {
        let mut out = Vec::new();
        self.append_snapshot(&mut out);
        w.write_all(&out)
    }

    /// Appends the snapshot of the current state to `out`.
    pub fn append_snapshot(&self, out: &mut Vec<u8>) {
        self.freeze().append_snapshot(out);
    }

    /// Reads a snapshot written by `write_snapshot`, checking magic, version and checksum.
    pub fn read_snapshot(r: &mut impl Read) -> Result<Store, MvccError> {
        let mut buf = Vec::new();
        r.read_to_end(&mut buf)
            .map_err(|e| MvccError::Snapshot(format!("read: {e}")))?;
        if buf.len() < SNAPSHOT_MAGIC.len() + 4 {
            return Err(MvccError::Snapshot("truncated".into()));
        }
        let (body, trailer) = buf.split_at(buf.len() - 4);
        let want = u32::from_le_bytes(trailer.try_into().expect("4 bytes"));
        if crc32c::crc32c(body) != want {
            return Err(MvccError::Snapshot("checksum mismatch".into()));
        }
        let mut p = Parser { buf: body, pos: 0 };
        if p.take(8)? != SNAPSHOT_MAGIC[..] {
            return Err(MvccError::Snapshot("bad magic".into()));
        }
        let version = p.u32()?;
        if version != SNAPSHOT_FORMAT_VERSION {
            return Err(MvccError::Snapshot(format!(
                "unknown format version {version}"
            )));
        }
        let mut store = Store::new();
        store.current_rev = p.i64()?;
        store.compact_rev = p.i64()?;
        let key_count = p.u64()?;
        for _ in 0..key_count {
            let (key, history) = p.key_history()?;
            store.keys.insert(MapKey::new(&key), Arc::new(history));
        }
        for _ in 0..p.u64()? {
            store.leases.grant(p.i64()?)?;
        }
        if p.pos != p.buf.len() {
            return Err(MvccError::Snapshot("trailing bytes".into()));
        }
        store.rebuild_derived();
        Ok(store)
    }

    /// Rebuilds what the snapshot does not hold: the change log, lease attachments, size.
    fn rebuild_derived(&mut self) {
        let mut log = Vec::new();
        let mut leases = std::mem::take(&mut self.leases);
        let mut size = 0;
        for h in self.keys.values() {
            let key = &h.key;
            for v in &h.versions {
                log.push(LogEntry {
                    rev: v.mod_rev,
                    key: key.clone(),
                });
                size += v.size_bytes(key.len());
            }
            if let Some(v) = h.live() {
                leases.attach(v.lease, key);
            }
        }
        log.sort_unstable_by_key(|e| e.rev);
        self.log = VecDeque::from(log);
        self.leases = leases;
        self.size_bytes = size;
    }
}

struct Parser<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn take(&mut self, n: usize) -> Result<Bytes, MvccError> {
        if self.buf.len() - self.pos < n {
            return Err(MvccError::Snapshot(format!(
                "truncated at byte {}",
                self.pos
            )));
        }
        // A copy, not a slice: a stored key or value must not pin the whole snapshot buffer.
        let b = Bytes::copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(b)
    }

    fn u32(&mut self) -> Result<u32, MvccError> {
        Ok(u32::from_le_bytes(
            self.take(4)?[..].try_into().expect("4 bytes"),
        ))
    }

    fn u64(&mut self) -> Result<u64, MvccError> {
        Ok(u64::from_le_bytes(
            self.take(8)?[..].try_into().expect("8 bytes"),
        ))
    }

    fn i64(&mut self) -> Result<i64, MvccError> {
        Ok(self.u64()? as i64)
    }

    fn key_history(&mut self) -> Result<(Bytes, KeyHistory), MvccError> {
        let key_len = self.u32()? as usize;
        let key = self.take(key_len)?;
        let mut history = KeyHistory::new(key.clone());
        for _ in 0..self.u32()? {
            let mod_rev = Revision::new(self.i64()?, self.i64()?);
            let (create_rev, version, lease) = (self.i64()?, self.i64()?, self.i64()?);
            let flags = self.take(1)?[0];
            let value_len = self.u32()? as usize;
            let value = self.take(value_len)?;
            if (flags & FLAG_TOMBSTONE != 0) != (create_rev == 0) {
                return Err(MvccError::Snapshot(format!(
                    "inconsistent tombstone at {}",
                    self.pos
                )));
            }
            if history
                .versions
                .last()
                .is_some_and(|l| l.mod_rev >= mod_rev)
            {
                return Err(MvccError::Snapshot(format!(
                    "revisions out of order at {}",
                    self.pos
                )));
            }
            history.versions.push(KeyVersion {
                mod_rev,
                create_rev,
                version,
                lease,
                value,
            });
        }
        Ok((key, history))
    }
}

/// One key's record: key length and bytes, version count, then each version's fields.
fn put_key_history(out: &mut Vec<u8>, history: &KeyHistory) {
    let key = &history.key;
    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(&(history.versions.len() as u32).to_le_bytes());
    for v in &history.versions {
        for n in v.fixed_fields() {
            out.extend_from_slice(&n.to_le_bytes());
        }
        out.push(if v.is_tombstone() { FLAG_TOMBSTONE } else { 0 });
        out.extend_from_slice(&(v.value.len() as u32).to_le_bytes());
        out.extend_from_slice(&v.value);
    }
}

#[cfg(test)]
mod tests {
    use ketch_proto::{CompactionRequest, DeleteRangeRequest, PutRequest};

    use super::*;

    fn put(s: &mut Store, k: &str, v: &str) {
        let req = PutRequest {
            key: Bytes::copy_from_slice(k.as_bytes()),
            value: Bytes::copy_from_slice(v.as_bytes()),
            ..Default::default()
        };
        s.put(&req, &mut Vec::new()).expect("put");
    }

    #[test]
    fn retained_writes_are_every_kept_revision_in_order_with_tombstones() {
        let mut s = Store::new();
        put(&mut s, "b", "1"); // 2
        put(&mut s, "a", "1"); // 3
        put(&mut s, "a", "2"); // 4
        let del = DeleteRangeRequest {
            key: Bytes::from_static(b"b"),
            ..Default::default()
        };
        s.delete_range(&del, &mut Vec::new()).expect("delete"); // 5
        put(&mut s, "b", "2"); // 6
        let compact = CompactionRequest {
            revision: 3,
            physical: true,
        };
        s.compact(&compact).expect("compact");
        let frozen = s.freeze();
        assert_eq!(frozen.compact_revision(), 3);
        let writes = frozen.retained_writes();
        let got: Vec<(i64, bool, &[u8], i64)> = writes
            .iter()
            .map(|w| (w.revision.main, w.tombstone, &w.kv.value[..], w.kv.version))
            .collect();
        // b@2 is kept (newest at or below 3, live), a@3 too; nothing is dropped above 3.
        let want: Vec<(i64, bool, &[u8], i64)> = vec![
            (2, false, b"1", 1),
            (3, false, b"1", 1),
            (4, false, b"2", 2),
            (5, true, b"", 0),
            (6, false, b"2", 1),
        ];
        assert_eq!(got, want);
        let tomb = &writes[3].kv;
        assert_eq!((tomb.key.as_ref(), tomb.mod_revision), (&b"b"[..], 0));
    }
}
