//! The store's snapshot: a versioned, CRC-32C-protected dump of every retained write and the
//! lease table (format in docs/snapshot-format.md). The change log and the lease attachments
//! are rebuilt from the key histories on read.

use std::collections::VecDeque;
use std::io::{Read, Write};

use bytes::Bytes;

use crate::error::MvccError;
use crate::key_history::{KeyHistory, KeyVersion};
use crate::map_key::MapKey;
use crate::revision::Revision;
use crate::store::{LogEntry, Store};

pub const SNAPSHOT_MAGIC: &[u8; 8] = b"KETCHMV\0";
pub const SNAPSHOT_FORMAT_VERSION: u32 = 1;
const FLAG_TOMBSTONE: u8 = 1;

/// A writer that feeds everything written through it into a running CRC-32C.
struct CrcWriter<'a, W: Write> {
    inner: &'a mut W,
    crc: u32,
}

impl<W: Write> CrcWriter<'_, W> {
    fn put(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.crc = crc32c::crc32c_append(self.crc, bytes);
        self.inner.write_all(bytes)
    }
}

impl Store {
    /// Writes the snapshot to `w` (buffer it: this issues many small writes).
    pub fn write_snapshot(&self, w: &mut impl Write) -> std::io::Result<()> {
        let mut out = CrcWriter { inner: w, crc: 0 };
        out.put(SNAPSHOT_MAGIC)?;
        out.put(&SNAPSHOT_FORMAT_VERSION.to_le_bytes())?;
        out.put(&self.current_rev.to_le_bytes())?;
        out.put(&self.compact_rev.to_le_bytes())?;
        out.put(&(self.keys.len() as u64).to_le_bytes())?;
        for history in self.keys.values() {
            let key = &history.key;
            out.put(&(key.len() as u32).to_le_bytes())?;
            out.put(key)?;
            out.put(&(history.versions.len() as u32).to_le_bytes())?;
            for v in &history.versions {
                for n in [
                    v.mod_rev.main,
                    v.mod_rev.sub,
                    v.create_rev,
                    v.version,
                    v.lease,
                ] {
                    out.put(&n.to_le_bytes())?;
                }
                out.put(&[if v.is_tombstone() { FLAG_TOMBSTONE } else { 0 }])?;
                out.put(&(v.value.len() as u32).to_le_bytes())?;
                out.put(&v.value)?;
            }
        }
        let ids = self.leases.ids();
        out.put(&(ids.len() as u64).to_le_bytes())?;
        for id in ids {
            out.put(&id.to_le_bytes())?;
        }
        let crc = out.crc;
        out.inner.write_all(&crc.to_le_bytes())
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
            store.keys.insert(MapKey::new(&key), history);
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
