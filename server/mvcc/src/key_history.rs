//! One key's history: every retained write of the key, oldest first. A tombstone ends a
//! generation; the next put starts a new one (version 1, new create revision), as in etcd's
//! `keyIndex`.

use bytes::Bytes;
use ketch_proto::mvccpb::KeyValue;

use crate::revision::Revision;

/// One write of a key. A tombstone has `create_rev == 0`, version 0, empty value, no lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyVersion {
    pub mod_rev: Revision,
    pub create_rev: i64,
    pub version: i64,
    pub lease: i64,
    pub value: Bytes,
}

impl KeyVersion {
    pub fn tombstone(mod_rev: Revision) -> Self {
        KeyVersion {
            mod_rev,
            create_rev: 0,
            version: 0,
            lease: 0,
            value: Bytes::new(),
        }
    }

    /// The fixed-width fields, in the order the snapshot writes them.
    pub fn fixed_fields(&self) -> [i64; 5] {
        [
            self.mod_rev.main,
            self.mod_rev.sub,
            self.create_rev,
            self.version,
            self.lease,
        ]
    }

    pub fn is_tombstone(&self) -> bool {
        self.create_rev == 0
    }

    /// The etcd `KeyValue` of this write (a tombstone gives etcd's delete-event form:
    /// key and mod revision only).
    pub fn to_kv(&self, key: &Bytes, with_value: bool) -> KeyValue {
        KeyValue {
            key: key.clone(),
            create_revision: self.create_rev,
            mod_revision: self.mod_rev.main,
            version: self.version,
            value: if with_value {
                self.value.clone()
            } else {
                Bytes::new()
            },
            lease: self.lease,
        }
    }

    /// Bytes this write holds, for `size_bytes` (key + value + fixed fields and overhead).
    pub fn size_bytes(&self, key_len: usize) -> i64 {
        const FIXED_BYTES: usize = 64;
        (key_len + self.value.len() + FIXED_BYTES) as i64
    }
}

/// All retained writes of one key, in increasing revision order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyHistory {
    /// The store's one shared copy of the key: responses, events and the log clone it.
    pub key: Bytes,
    pub versions: Vec<KeyVersion>,
}

impl KeyHistory {
    pub fn new(key: Bytes) -> Self {
        KeyHistory {
            key,
            versions: Vec::new(),
        }
    }

    /// The newest write with `mod_rev.main <= rev` (a tombstone included), if any.
    pub fn write_at(&self, rev: i64) -> Option<&KeyVersion> {
        // The common case is a read at the newest revision: check the last write first.
        let last = self.versions.last()?;
        if last.mod_rev.main <= rev {
            return Some(last);
        }
        let n = self.versions.partition_point(|v| v.mod_rev.main <= rev);
        n.checked_sub(1).map(|i| &self.versions[i])
    }

    /// The live value at `rev`: the newest write at or below it unless that is a tombstone.
    pub fn live_at(&self, rev: i64) -> Option<&KeyVersion> {
        self.write_at(rev).filter(|v| !v.is_tombstone())
    }

    /// The live value now.
    pub fn live(&self) -> Option<&KeyVersion> {
        self.versions.last().filter(|v| !v.is_tombstone())
    }

    /// Appends a write; panics if it is not newer than the last one (an applier bug).
    pub fn push(&mut self, v: KeyVersion) {
        if let Some(last) = self.versions.last() {
            assert!(
                last.mod_rev < v.mod_rev,
                "mvcc: write with an unexpected smaller revision"
            );
        }
        self.versions.push(v);
    }

    pub fn contains(&self, rev: Revision) -> bool {
        self.versions
            .binary_search_by(|v| v.mod_rev.cmp(&rev))
            .is_ok()
    }

    /// Drops what a compaction at `rev` makes unreachable: every write older than the newest
    /// one at or below `rev`, and that one too if it is a tombstone (etcd drops a generation
    /// whose tombstone is at or below the compaction revision). Returns the bytes freed.
    pub fn compact(&mut self, rev: i64, key_len: usize) -> i64 {
        let n = self.versions.partition_point(|v| v.mod_rev.main <= rev);
        if n == 0 {
            return 0;
        }
        let keep_from = if self.versions[n - 1].is_tombstone() {
            n
        } else {
            n - 1
        };
        let freed = self.versions[..keep_from]
            .iter()
            .map(|v| v.size_bytes(key_len))
            .sum();
        self.versions.drain(..keep_from);
        freed
    }

    pub fn is_empty(&self) -> bool {
        self.versions.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(main: i64, create: i64, version: i64, value: &'static str) -> KeyVersion {
        KeyVersion {
            mod_rev: Revision::new(main, 0),
            create_rev: create,
            version,
            lease: 0,
            value: Bytes::from_static(value.as_bytes()),
        }
    }

    fn history() -> KeyHistory {
        // put@2, put@3, delete@4, put@6 (new generation), put@8
        let mut h = KeyHistory::default();
        h.push(put(2, 2, 1, "a"));
        h.push(put(3, 2, 2, "b"));
        h.push(KeyVersion::tombstone(Revision::new(4, 0)));
        h.push(put(6, 6, 1, "c"));
        h.push(put(8, 6, 2, "d"));
        h
    }

    #[test]
    fn reads_at_each_revision_see_the_newest_write_at_or_below() {
        let h = history();
        assert!(h.live_at(1).is_none());
        assert_eq!(h.live_at(2).unwrap().value, "a");
        assert_eq!(h.live_at(3).unwrap().value, "b");
        assert!(h.live_at(4).is_none());
        assert!(h.live_at(5).is_none());
        assert_eq!(h.live_at(7).unwrap().value, "c");
        assert_eq!(h.live_at(100).unwrap().value, "d");
        assert_eq!(h.live().unwrap().version, 2);
    }

    #[test]
    fn compaction_keeps_the_newest_write_at_or_below_and_drops_tombstones() {
        let mut h = history();
        h.compact(3, 1);
        assert_eq!(h.versions.len(), 4, "keeps put@3 and everything after");
        assert_eq!(h.live_at(3).unwrap().value, "b");
        h.compact(5, 1);
        assert_eq!(
            h.versions.len(),
            2,
            "tombstone@4 at or below 5 goes with its generation"
        );
        assert!(h.live_at(5).is_none());
        h.compact(8, 1);
        assert_eq!(h.versions, vec![put(8, 6, 2, "d")]);
    }

    #[test]
    fn compaction_of_a_deleted_key_empties_it() {
        let mut h = KeyHistory::default();
        h.push(put(2, 2, 1, "a"));
        h.push(KeyVersion::tombstone(Revision::new(3, 0)));
        assert!(h.compact(3, 1) > 0);
        assert!(h.is_empty());
    }

    #[test]
    #[should_panic(expected = "unexpected smaller revision")]
    fn out_of_order_write_panics() {
        let mut h = history();
        h.push(put(7, 6, 3, "x"));
    }
}
