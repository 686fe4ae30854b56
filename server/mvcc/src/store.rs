//! The store: every key's history in a `BTreeMap`, a revision-ordered change log for watch
//! catch-up, the current and compacted revisions, and the lease table. Writes go through a
//! `WriteTxn` so that one request's writes share a main revision (etcd's `storeTxnWrite`).

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use ketch_proto::ketchpb::{RaftRequest, RaftResponse, raft_request, raft_response};
use ketch_proto::mvccpb::{Event, KeyValue, event::EventType};
use ketch_proto::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse,
    LeaseGrantRequest, LeaseGrantResponse, LeaseRevokeResponse, PutRequest, PutResponse,
    RangeRequest, RangeResponse, ResponseHeader,
};
use prost::Message;

use crate::error::MvccError;
use crate::key_history::{KeyHistory, KeyVersion};
use crate::key_span::KeySpan;
use crate::lease::LeaseTable;
use crate::map_key::MapKey;
use crate::revision::Revision;

/// Every key's history, by key. A history sits behind its own `Arc`, so the first write to a
/// tree node after a freeze copies the node's pointers, not its keys' histories; the one
/// history written is then copied alone (`Arc::make_mut`).
pub(crate) type KeyMap = imbl::OrdMap<MapKey, Arc<KeyHistory>>;

/// One entry of the change log: which key was written at which revision.
#[derive(Debug, Clone)]
pub(crate) struct LogEntry {
    pub rev: Revision,
    pub key: Bytes,
}

/// etcd's MVCC key-value store, in memory. Pure: no I/O, no clock, no async; every replica that
/// applies the same commands in the same order holds the same state.
#[derive(Debug, Clone)]
pub struct Store {
    /// A persistent B-tree: cloning it is O(1) and later writes copy only the nodes they
    /// touch, so a snapshot freezes the whole map without stopping apply (`Store::freeze`).
    pub(crate) keys: KeyMap,
    /// Every retained write in revision order (what `events_since` replays).
    pub(crate) log: VecDeque<LogEntry>,
    pub(crate) current_rev: i64,
    /// -1 until the first compaction, as etcd's `compactMainRev`.
    pub(crate) compact_rev: i64,
    pub(crate) leases: LeaseTable,
    pub(crate) size_bytes: i64,
}

/// The writes of one request in progress: they share main revision `begin_rev + 1`.
pub(crate) struct WriteTxn {
    pub begin_rev: i64,
    pub changes: i64,
}

impl WriteTxn {
    /// The revision reads inside the request see: its own earlier writes included.
    pub fn read_rev(&self) -> i64 {
        self.begin_rev + i64::from(self.changes > 0)
    }

    fn next_rev(&mut self) -> Revision {
        let rev = Revision::new(self.begin_rev + 1, self.changes);
        self.changes += 1;
        rev
    }
}

pub(crate) fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        revision,
        ..Default::default()
    })
}

impl Default for Store {
    fn default() -> Self {
        Self::new()
    }
}

impl Store {
    /// An empty store at revision 1, as a fresh etcd.
    pub fn new() -> Self {
        Store {
            keys: KeyMap::new(),
            log: VecDeque::new(),
            current_rev: 1,
            compact_rev: -1,
            leases: LeaseTable::default(),
            size_bytes: 0,
        }
    }

    /// The current main revision (1 on an empty store).
    pub fn revision(&self) -> i64 {
        self.current_rev
    }

    /// The revision of the last compaction, -1 if there was none (etcd's `compactMainRev`).
    pub fn compact_revision(&self) -> i64 {
        self.compact_rev
    }

    /// Estimate of the bytes held: keys, values and per-write overhead of every retained write.
    pub fn size_bytes(&self) -> i64 {
        self.size_bytes
    }

    /// Number of keys live at the current revision.
    pub fn key_count(&self) -> usize {
        self.keys.values().filter(|h| h.live().is_some()).count()
    }

    /// The key's value at `rev` (0 = current), `None` if absent then. For watch's `prev_kv`.
    pub fn get(&self, key: &[u8], rev: i64) -> Result<Option<KeyValue>, MvccError> {
        let rev = self.check_read_rev(rev)?;
        Ok(self
            .keys
            .get(key)
            .and_then(|h| h.live_at(rev).map(|v| v.to_kv(&h.key, true))))
    }

    /// Applies one replicated command and returns its response (header revision = the store
    /// revision after apply; other header fields are the caller's). The events it produced
    /// are appended to `events`, each with `prev_kv` filled (the key's value before this
    /// revision) so that a watcher asking for it needs no lookup; others must clear it.
    /// Lease grant/revoke are applied to the lease table; alarms and lease checkpoints are
    /// the caller's (`NotStoreRequest`).
    pub fn apply(
        &mut self,
        req: &RaftRequest,
        events: &mut Vec<Event>,
    ) -> Result<RaftResponse, MvccError> {
        use raft_request::Request as Q;
        use raft_response::Response as R;
        let response = match req.request.as_ref() {
            Some(Q::Put(r)) => R::Put(self.put(r, events)?),
            Some(Q::DeleteRange(r)) => R::DeleteRange(self.delete_range(r, events)?),
            Some(Q::Txn(r)) => R::Txn(self.txn(r, events)?),
            Some(Q::Compaction(r)) => R::Compaction(self.compact(r)?),
            Some(Q::LeaseGrant(r)) => R::LeaseGrant(self.apply_lease_grant(r)?),
            Some(Q::LeaseRevoke(r)) => R::LeaseRevoke(self.revoke_lease(r.id, events)?),
            // Alarms, lease checkpoints and auth requests are the caller's.
            Some(_) | None => return Err(MvccError::NotStoreRequest),
        };
        Ok(RaftResponse {
            response: Some(response),
        })
    }

    /// etcd's Range at the current revision. The response header is left `None`: the caller
    /// fills it (its revision is `self.revision()`).
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse, MvccError> {
        let mut resp = self.range_at(req, self.current_rev)?;
        resp.header = None;
        Ok(resp)
    }

    /// etcd's Put: fails with `LeaseNotFound` for an unknown lease, `KeyNotFound` for
    /// `ignore_value`/`ignore_lease` on a missing key.
    pub fn put(
        &mut self,
        req: &PutRequest,
        events: &mut Vec<Event>,
    ) -> Result<PutResponse, MvccError> {
        if req.lease != 0 && !self.leases.exists(req.lease) {
            return Err(MvccError::LeaseNotFound);
        }
        let mut w = self.begin();
        let resp = self.put_in(&mut w, req, events);
        self.end(w);
        resp
    }

    /// etcd's DeleteRange; deleting nothing leaves the revision unchanged.
    pub fn delete_range(
        &mut self,
        req: &DeleteRangeRequest,
        events: &mut Vec<Event>,
    ) -> Result<DeleteRangeResponse, MvccError> {
        let mut w = self.begin();
        let resp = self.delete_in(&mut w, req, events);
        self.end(w);
        Ok(resp)
    }

    pub(crate) fn begin(&self) -> WriteTxn {
        WriteTxn {
            begin_rev: self.current_rev,
            changes: 0,
        }
    }

    pub(crate) fn end(&mut self, w: WriteTxn) {
        if w.changes > 0 {
            self.current_rev += 1;
        }
    }

    /// Undoes every write of the request in progress.
    pub(crate) fn roll_back(&mut self, w: &mut WriteTxn) {
        w.changes = 0;
        while self
            .log
            .back()
            .is_some_and(|e| e.rev.main == w.begin_rev + 1)
        {
            let e = self.log.pop_back().expect("checked above");
            let history = logged_history_mut(&mut self.keys, &e.key);
            let undone = history.versions.pop().expect("logged write exists");
            assert_eq!(undone.mod_rev, e.rev, "mvcc: log and key history disagree");
            self.size_bytes -= undone.size_bytes(e.key.len());
            self.leases.detach(undone.lease, &e.key);
            if let Some(restored) = history.live() {
                self.leases.attach(restored.lease, &e.key);
            }
            if history.is_empty() {
                self.keys.remove(&e.key[..]);
            }
        }
    }

    /// A put inside a write request (a lone Put or one op of a Txn).
    pub(crate) fn put_in(
        &mut self,
        w: &mut WriteTxn,
        req: &PutRequest,
        events: &mut Vec<Event>,
    ) -> Result<PutResponse, MvccError> {
        let prev = self
            .keys
            .get(&req.key[..])
            .and_then(|h| h.live().map(|v| (&h.key, v)));
        let Some((prev_key, prev)) = prev else {
            if req.ignore_value || req.ignore_lease {
                return Err(MvccError::KeyNotFound);
            }
            self.write_put(w, &req.key, copy_of(&req.value), req.lease, events);
            return Ok(PutResponse {
                header: header(w.begin_rev + 1),
                prev_kv: None,
            });
        };
        let value = if req.ignore_value {
            prev.value.clone()
        } else {
            copy_of(&req.value)
        };
        let lease = if req.ignore_lease {
            prev.lease
        } else {
            req.lease
        };
        let prev_kv = req.prev_kv.then(|| prev.to_kv(prev_key, true));
        self.write_put(w, &req.key, value, lease, events);
        Ok(PutResponse {
            header: header(w.begin_rev + 1),
            prev_kv,
        })
    }

    /// A delete inside a write request: tombstones every key live in the span, in key order.
    pub(crate) fn delete_in(
        &mut self,
        w: &mut WriteTxn,
        req: &DeleteRangeRequest,
        events: &mut Vec<Event>,
    ) -> DeleteRangeResponse {
        let span = KeySpan::new(&req.key, &req.range_end);
        let mut doomed: Vec<Bytes> = Vec::new();
        let mut prev_kvs = Vec::new();
        self.for_each_in(&span, |k, h| {
            if let Some(v) = h.live() {
                if req.prev_kv {
                    prev_kvs.push(v.to_kv(k, true));
                }
                doomed.push(k.clone());
            }
        });
        for key in &doomed {
            self.write_tombstone(w, key, events);
        }
        let revision = if w.changes > 0 {
            w.begin_rev + 1
        } else {
            w.begin_rev
        };
        DeleteRangeResponse {
            header: header(revision),
            deleted: doomed.len() as i64,
            prev_kvs,
        }
    }

    /// Appends a put of `key` at the request's next revision.
    pub(crate) fn write_put(
        &mut self,
        w: &mut WriteTxn,
        key: &Bytes,
        value: Bytes,
        lease: i64,
        events: &mut Vec<Event>,
    ) {
        let rev = w.next_rev();
        let (key, history) = history_mut(&mut self.keys, key);
        let prev_kv = history.live_at(w.begin_rev).map(|v| v.to_kv(&key, true));
        let (create_rev, version, old_lease) = match history.live() {
            Some(v) => (v.create_rev, v.version + 1, v.lease),
            None => (rev.main, 1, 0),
        };
        let kv = KeyVersion {
            mod_rev: rev,
            create_rev,
            version,
            lease,
            value,
        };
        self.size_bytes += kv.size_bytes(key.len());
        let event_kv = kv.to_kv(&key, true);
        history.push(kv);
        if old_lease != lease {
            self.leases.detach(old_lease, &key);
            self.leases.attach(lease, &key);
        }
        self.log.push_back(LogEntry { rev, key });
        events.push(Event {
            r#type: EventType::Put as i32,
            kv: Some(event_kv),
            prev_kv,
        });
    }

    /// Appends a tombstone of a live `key` at the request's next revision.
    pub(crate) fn write_tombstone(
        &mut self,
        w: &mut WriteTxn,
        key: &Bytes,
        events: &mut Vec<Event>,
    ) {
        let rev = w.next_rev();
        let (key, history) = history_mut(&mut self.keys, key);
        let prev_kv = history.live_at(w.begin_rev).map(|v| v.to_kv(&key, true));
        let old_lease = history.live().map_or(0, |v| v.lease);
        let tomb = KeyVersion::tombstone(rev);
        self.size_bytes += tomb.size_bytes(key.len());
        let event_kv = tomb.to_kv(&key, false);
        history.push(tomb);
        self.leases.detach(old_lease, &key);
        self.log.push_back(LogEntry { rev, key });
        events.push(Event {
            r#type: EventType::Delete as i32,
            kv: Some(event_kv),
            prev_kv,
        });
    }

    /// Calls `f` on every key (with its history) in the span, in key order.
    pub(crate) fn for_each_in(&self, span: &KeySpan<'_>, mut f: impl FnMut(&Bytes, &KeyHistory)) {
        match *span {
            KeySpan::Empty => {}
            KeySpan::One(key) => {
                if let Some(h) = self.keys.get(key) {
                    f(&h.key, h);
                }
            }
            KeySpan::Range(bounds) => {
                for h in self.keys.range::<_, [u8]>(bounds).map(|(_, h)| h) {
                    f(&h.key, h);
                }
            }
        }
    }

    /// Resolves a read revision (0 or less = current) or fails as etcd's `rangeKeys`.
    pub(crate) fn check_read_rev(&self, rev: i64) -> Result<i64, MvccError> {
        self.check_read_rev_at(rev, self.current_rev)
    }

    pub(crate) fn check_read_rev_at(&self, rev: i64, cur_rev: i64) -> Result<i64, MvccError> {
        if rev > cur_rev {
            return Err(MvccError::FutureRev);
        }
        let rev = if rev <= 0 { cur_rev } else { rev };
        if rev < self.compact_rev {
            return Err(MvccError::Compacted);
        }
        Ok(rev)
    }

    /// etcd's Compact: drops every write a read at or above `req.revision` cannot see.
    /// `physical` is accepted and has no effect: compaction here is always complete on return.
    pub fn compact(&mut self, req: &CompactionRequest) -> Result<CompactionResponse, MvccError> {
        let rev = req.revision;
        if rev <= self.compact_rev {
            return Err(MvccError::Compacted);
        }
        if rev > self.current_rev {
            return Err(MvccError::FutureRev);
        }
        self.compact_rev = rev;
        self.compact_keys_written_up_to(rev);
        self.compact_log(rev);
        Ok(CompactionResponse {
            header: header(self.current_rev),
        })
    }

    /// Compacts only the keys with a logged write at or below `rev`: a key with none has at
    /// most one write at or below `rev` (kept by an earlier compaction, never a tombstone),
    /// so there is nothing to drop. The cost is the writes since the last compaction, not
    /// the size of the key space.
    fn compact_keys_written_up_to(&mut self, rev: i64) {
        let mut touched: Vec<Bytes> = self
            .log
            .iter()
            .take_while(|e| e.rev.main <= rev)
            .map(|e| e.key.clone())
            .collect();
        touched.sort_unstable();
        touched.dedup();
        for key in touched {
            let history = logged_history_mut(&mut self.keys, &key);
            self.size_bytes -= history.compact(rev, key.len());
            if history.is_empty() {
                self.keys.remove(&key[..]);
            }
        }
    }

    fn compact_log(&mut self, rev: i64) {
        while self.log.front().is_some_and(|e| e.rev.main < rev) {
            self.log.pop_front();
        }
        // Writes at exactly `rev` survive only if their key kept them (a tombstone at `rev`
        // or a write overwritten later in the same txn is gone, as in etcd).
        let at_rev = self.log.iter().take_while(|e| e.rev.main == rev).count();
        let survivors: Vec<LogEntry> = self
            .log
            .drain(..at_rev)
            .filter(|e| self.keys.get(&e.key[..]).is_some_and(|h| h.contains(e.rev)))
            .collect();
        for e in survivors.into_iter().rev() {
            self.log.push_front(e);
        }
    }

    /// Events of keys in the span from `start_rev` on (0 = next revision), oldest first, for
    /// watch catch-up. Stops after `max_events`, but never splits a revision: the last revision
    /// returned is complete. `prev_kv` is filled when the previous value is still retained.
    pub fn events_since(
        &self,
        key: &[u8],
        range_end: &[u8],
        start_rev: i64,
        max_events: usize,
    ) -> Result<Vec<Event>, MvccError> {
        let start_rev = if start_rev <= 0 {
            self.current_rev + 1
        } else {
            start_rev
        };
        if start_rev < self.compact_rev {
            return Err(MvccError::Compacted);
        }
        let span = KeySpan::new(key, range_end);
        let first = self.log.partition_point(|e| e.rev.main < start_rev);
        let mut out = Vec::new();
        let mut last_main = 0;
        for e in self.log.range(first..) {
            if out.len() >= max_events && e.rev.main != last_main {
                break;
            }
            if !span.contains(&e.key) {
                continue;
            }
            out.push(self.event_of(e));
            last_main = e.rev.main;
        }
        Ok(out)
    }

    fn event_of(&self, e: &LogEntry) -> Event {
        let h = self.keys.get(&e.key[..]).expect("log entry without key");
        let key = &h.key;
        let i = h
            .versions
            .binary_search_by(|v| v.mod_rev.cmp(&e.rev))
            .expect("log entry kept");
        let v = &h.versions[i];
        let prev_rev = e.rev.main - 1;
        let prev_kv = if v.create_rev == e.rev.main || prev_rev < self.compact_rev {
            None
        } else {
            h.live_at(prev_rev).map(|p| p.to_kv(key, true))
        };
        let ty = if v.is_tombstone() {
            EventType::Delete
        } else {
            EventType::Put
        };
        Event {
            r#type: ty as i32,
            kv: Some(v.to_kv(key, !v.is_tombstone())),
            prev_kv,
        }
    }

    /// etcd's HashKV: CRC-32C over the retained writes at or below `rev` (0 = current; a
    /// negative revision, as etcd, hashes none) as
    /// etcd 3.4's backend stores them, so the same history hashes the same on ketch and on
    /// etcd. Returns it with the compact revision.
    ///
    /// etcd hashes its `key` bucket: the bucket's name, then each write in revision order,
    /// as its bucket key (main and sub revision, 8 bytes each big-endian with `_` between,
    /// `t` appended for a tombstone) followed by the marshalled `KeyValue` (only the key, for
    /// a tombstone). Of the writes at or below the compact revision (those a compaction kept)
    /// it hashes only the ones still live at `rev`, unless no key is live at `rev` at all:
    /// etcd 3.4's `HashByRev` asks its index which revisions to keep at `rev`, not at the
    /// compact revision, and skips nothing when that set is empty.
    pub fn hash_kv(&self, rev: i64) -> Result<(u32, i64), MvccError> {
        if rev > 0 && rev <= self.compact_rev {
            return Err(MvccError::Compacted);
        }
        if rev > self.current_rev {
            return Err(MvccError::FutureRev);
        }
        // 0 is the current revision; a negative one hashes no write at all (etcd's answer is
        // the CRC of the bucket name alone).
        let rev = if rev == 0 { self.current_rev } else { rev };
        let mut writes: Vec<(&Bytes, &KeyVersion, bool)> = Vec::new();
        let mut any_live = false;
        for h in self.keys.values() {
            let live = h.live_at(rev).map(|v| v.mod_rev);
            any_live |= live.is_some();
            let retained = h.versions.iter().take_while(|v| v.mod_rev.main <= rev);
            writes.extend(retained.map(|v| (&h.key, v, live == Some(v.mod_rev))));
        }
        writes.retain(|(_, v, live)| v.mod_rev.main > self.compact_rev || *live || !any_live);
        writes.sort_unstable_by_key(|(_, v, _)| v.mod_rev);
        let mut crc = crc32c::crc32c(b"key");
        let mut kv_bytes = Vec::new();
        for (key, v, _) in writes {
            let mut bucket_key = [0u8; 18];
            bucket_key[..8].copy_from_slice(&v.mod_rev.main.to_be_bytes());
            bucket_key[8] = b'_';
            bucket_key[9..17].copy_from_slice(&v.mod_rev.sub.to_be_bytes());
            bucket_key[17] = b't';
            let kv = if v.is_tombstone() {
                KeyValue {
                    key: key.clone(),
                    ..KeyValue::default()
                }
            } else {
                v.to_kv(key, true)
            };
            kv_bytes.clear();
            kv.encode(&mut kv_bytes)
                .expect("a Vec grows to fit the message");
            let bucket_key_len = if v.is_tombstone() { 18 } else { 17 };
            crc = crc32c::crc32c_append(crc, &bucket_key[..bucket_key_len]);
            crc = crc32c::crc32c_append(crc, &kv_bytes);
        }
        Ok((crc, self.compact_rev))
    }

    fn apply_lease_grant(
        &mut self,
        req: &LeaseGrantRequest,
    ) -> Result<LeaseGrantResponse, MvccError> {
        self.grant_lease(req.id)?;
        Ok(LeaseGrantResponse {
            header: header(self.current_rev),
            id: req.id,
            ttl: req.ttl,
            error: String::new(),
        })
    }

    /// Registers lease `id` (chosen by the proposer, non-zero); `LeaseExist` if already there.
    pub fn grant_lease(&mut self, id: i64) -> Result<(), MvccError> {
        self.leases.grant(id)
    }

    pub fn lease_exists(&self, id: i64) -> bool {
        self.leases.exists(id)
    }

    /// The keys attached to lease `id`, in key order (empty if the lease is unknown).
    pub fn keys_of_lease(&self, id: i64) -> Vec<Bytes> {
        self.leases.keys_of(id)
    }

    /// IDs of every granted lease, ascending.
    pub fn lease_ids(&self) -> Vec<i64> {
        self.leases.ids()
    }

    /// Revokes lease `id`, deleting every attached key in one revision (in key order, as
    /// etcd's lessor); no keys means no new revision.
    pub fn revoke_lease(
        &mut self,
        id: i64,
        events: &mut Vec<Event>,
    ) -> Result<LeaseRevokeResponse, MvccError> {
        let keys = self.leases.revoke(id)?;
        let mut w = self.begin();
        for key in &keys {
            self.write_tombstone(&mut w, key, events);
        }
        self.end(w);
        Ok(LeaseRevokeResponse {
            header: header(self.current_rev),
        })
    }
}

/// The key's history, created if new; returns the map's own copy of the key, so that the log
/// and events share it instead of the request's buffer.
fn history_mut<'a>(keys: &'a mut KeyMap, key: &Bytes) -> (Bytes, &'a mut KeyHistory) {
    let h = match MapKey::inline(key) {
        // One descent of the tree whether the key is new or not (the put path).
        Some(map_key) => keys
            .entry(map_key)
            .or_insert_with(|| Arc::new(KeyHistory::new(copy_of(key)))),
        None => {
            // A long key's map key shares its buffer: build it from the stored copy, never
            // from the request's.
            if !keys.contains_key(&key[..]) {
                let key = copy_of(key);
                keys.insert(MapKey::new(&key), Arc::new(KeyHistory::new(key)));
            }
            keys.get_mut(&key[..]).expect("inserted above")
        }
    };
    let h = Arc::make_mut(h);
    (h.key.clone(), h)
}

/// The history of a key the change log names (it exists), writable.
fn logged_history_mut<'a>(keys: &'a mut KeyMap, key: &[u8]) -> &'a mut KeyHistory {
    Arc::make_mut(keys.get_mut(key).expect("logged key exists"))
}

/// A fresh buffer holding `b`: stored keys and values must not pin the (possibly large)
/// request buffer they were decoded from.
pub(crate) fn copy_of(b: &Bytes) -> Bytes {
    Bytes::copy_from_slice(b)
}

// The server shares one store behind a lock so that serializable reads run on every core.
const _: fn() = || {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Store>();
};
