//! openraft's `RaftLogStorage` on the WAL: entries are WAL records (see `log_record`), the
//! unpurged suffix of the log is also kept in memory for replication and apply reads, and
//! the vote lives in its own small file, replaced atomically and fsynced before `save_vote`
//! returns.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use ketch_wal::{RecoveredRecord, Wal, WalError};
use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader};

use crate::log_record::{
    KIND_COMMITTED, KIND_ENTRY, KIND_PURGE, KIND_TRUNCATE_AFTER, LogRecord, decode_record,
    encode_entry, encode_log_id, encode_truncate,
};
use crate::types::{Entry, KetchRaftTypes, LogId, Vote};

/// How long an append waits for room in a full WAL queue before the log store gives up.
const WAL_QUEUE_FULL_WAIT_MAX: Duration = Duration::from_secs(10);
/// Pause between retries of an append refused because the WAL queue was full.
const WAL_QUEUE_FULL_RETRY: Duration = Duration::from_millis(1);

/// The log's in-memory state: the unpurged entries (contiguous), and what was recovered.
#[derive(Default)]
struct LogMem {
    entries: VecDeque<Entry>,
    last_purged: Option<LogId>,
    vote: Option<Vote>,
    committed: Option<LogId>,
    /// The committed log id last handed to the WAL; a newer one rides on the next append.
    committed_logged: Option<LogId>,
}

impl LogMem {
    fn first_index(&self) -> u64 {
        self.last_purged.as_ref().map_or(0, |p| p.index + 1)
    }

    fn last_log_id(&self) -> Option<LogId> {
        self.entries.back().map(|e| e.log_id).or(self.last_purged)
    }

    fn push(&mut self, e: Entry) {
        let expected = self.last_log_id().map_or(0, |l| l.index + 1);
        assert_eq!(e.log_id.index, expected, "raft log append leaves a hole");
        self.entries.push_back(e);
    }

    fn truncate_after(&mut self, last: Option<&LogId>) {
        let keep = last.map_or(0, |l| {
            (l.index + 1).saturating_sub(self.first_index()) as usize
        });
        self.entries.truncate(keep);
    }

    fn purge(&mut self, upto: &LogId) {
        while self
            .entries
            .front()
            .is_some_and(|e| e.log_id.index <= upto.index)
        {
            self.entries.pop_front();
        }
        self.last_purged = Some(*upto);
    }

    fn range(&self, start: u64, end: u64) -> Vec<Entry> {
        let first = self.first_index();
        let lo = start.max(first).saturating_sub(first) as usize;
        let hi = (end.saturating_sub(first) as usize).min(self.entries.len());
        if lo >= hi {
            return Vec::new();
        }
        self.entries.range(lo..hi).cloned().collect()
    }
}

/// The raft log of one member: openraft's log storage and log reader (clones share it).
#[derive(Clone)]
pub struct LogStore {
    mem: Rc<RefCell<LogMem>>,
    wal: Wal,
    vote_path: PathBuf,
}

/// What the WAL handed back, replayed into the log's state.
fn replay(records: Vec<RecoveredRecord>) -> io::Result<LogMem> {
    let mut entries = BTreeMap::<u64, Entry>::new();
    let mut mem = LogMem::default();
    for r in records {
        match decode_record(r.kind, r.index, r.body).map_err(io::Error::other)? {
            LogRecord::Entry(e) => {
                entries.split_off(&e.log_id.index);
                entries.insert(e.log_id.index, e);
            }
            LogRecord::TruncateAfter(None) => entries.clear(),
            LogRecord::TruncateAfter(Some(id)) => drop(entries.split_off(&(id.index + 1))),
            LogRecord::Purge(id) => {
                entries = entries.split_off(&(id.index + 1));
                mem.last_purged = mem.last_purged.max(Some(id));
            }
            LogRecord::Committed(id) => mem.committed = mem.committed.max(Some(id)),
        }
    }
    mem.committed_logged = mem.committed;
    for (_, e) in entries {
        if e.log_id.index != mem.last_log_id().map_or(0, |l| l.index + 1) {
            return Err(io::Error::other(format!(
                "raft log in the WAL has a hole before index {} (last purged {:?})",
                e.log_id.index, mem.last_purged
            )));
        }
        mem.entries.push_back(e);
    }
    Ok(mem)
}

fn wal_err(e: WalError) -> io::Error {
    io::Error::other(e)
}

/// Writes `bytes` to `path` atomically and durably: temp file, fsync, rename, fsync dir.
pub(crate) fn write_file_durably(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let dir = path.parent().expect("file has a parent dir");
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

impl LogStore {
    /// Rebuilds the log from the records `Wal::open` recovered and the vote file.
    pub fn recover(
        wal: Wal,
        records: Vec<RecoveredRecord>,
        vote_path: PathBuf,
    ) -> io::Result<LogStore> {
        let mut mem = replay(records)?;
        mem.vote = match std::fs::read(&vote_path) {
            Ok(b) => Some(serde_json::from_slice(&b).map_err(io::Error::other)?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        Ok(LogStore {
            mem: Rc::new(RefCell::new(mem)),
            wal,
            vote_path,
        })
    }

    pub fn wal(&self) -> &Wal {
        &self.wal
    }

    /// Index of the last entry in the log, if any.
    pub fn last_index(&self) -> Option<u64> {
        self.mem.borrow().last_log_id().map(|l| l.index)
    }

    /// Makes the latest committed log id durable (at shutdown, so a restart re-applies up
    /// to it at once).
    pub async fn flush_committed(&self) -> io::Result<()> {
        let rec = self.take_committed_record();
        match rec {
            Some((idx, body)) => self
                .wal
                .append_durable(&[(KIND_COMMITTED, idx, &body)])
                .await
                .map_err(wal_err),
            None => Ok(()),
        }
    }

    fn take_committed_record(&self) -> Option<(u64, Vec<u8>)> {
        let mut mem = self.mem.borrow_mut();
        let c = mem.committed?;
        if mem.committed_logged == Some(c) {
            return None;
        }
        mem.committed_logged = Some(c);
        Some((c.index, encode_log_id(&c)))
    }

    /// Hands `records` to the WAL; `done` runs when they are durable. Retries (bounded)
    /// while the WAL's queue is full, since the WAL drops a refused completion.
    async fn wal_append(
        &self,
        records: &[(u8, u64, &[u8])],
        done: Option<IOFlushed<KetchRaftTypes>>,
    ) -> io::Result<()> {
        let slot = Rc::new(RefCell::new(done));
        let started = Instant::now();
        loop {
            let cb_slot = slot.clone();
            let cb = Box::new(move |r: Result<(), WalError>| {
                if let Some(done) = cb_slot.borrow_mut().take() {
                    done.io_completed(r.map_err(wal_err));
                }
            });
            match self.wal.append(records, cb) {
                Ok(()) => return Ok(()),
                Err(WalError::QueueFull { .. }) if started.elapsed() < WAL_QUEUE_FULL_WAIT_MAX => {
                    glommio::timer::sleep(WAL_QUEUE_FULL_RETRY).await;
                }
                Err(e) => return Err(wal_err(e)),
            }
        }
    }
}

impl RaftLogReader<KetchRaftTypes> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let start = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s + 1,
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&e) => e + 1,
            Bound::Excluded(&e) => e,
            Bound::Unbounded => u64::MAX,
        };
        Ok(self.mem.borrow().range(start, end))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        Ok(self.mem.borrow().vote)
    }
}

impl RaftLogStorage<KetchRaftTypes> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<KetchRaftTypes>, io::Error> {
        let mem = self.mem.borrow();
        Ok(LogState {
            last_purged_log_id: mem.last_purged,
            last_log_id: mem.last_log_id(),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        // Durable before returning, as openraft requires: a vote must never be forgotten.
        let bytes = serde_json::to_vec(vote).map_err(io::Error::other)?;
        write_file_durably(&self.vote_path, &bytes)?;
        self.mem.borrow_mut().vote = Some(*vote);
        Ok(())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        // Not written at once: the record rides on the next append's batch (or the final
        // flush at shutdown). A restart that finds an older value re-applies less at start
        // and catches up when the leader commits again; committed entries are durable anyway.
        self.mem.borrow_mut().committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(self.mem.borrow().committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<KetchRaftTypes>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut bodies: Vec<(u8, u64, Vec<u8>)> = Vec::new();
        if let Some((idx, body)) = self.take_committed_record() {
            bodies.push((KIND_COMMITTED, idx, body));
        }
        {
            let mut mem = self.mem.borrow_mut();
            for e in entries {
                let mut body = Vec::with_capacity(64);
                encode_entry(&mut body, &e);
                bodies.push((KIND_ENTRY, e.log_id.index, body));
                // Readable as soon as `append` returns, before it is durable (openraft's rule).
                mem.push(e);
            }
        }
        let records: Vec<(u8, u64, &[u8])> = bodies
            .iter()
            .map(|(k, i, b)| (*k, *i, b.as_slice()))
            .collect();
        // The callback tells openraft the entries are durable: the WAL runs it only after
        // the fdatasync that covers this batch (group commit).
        self.wal_append(&records, Some(callback)).await
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let first_removed = last_log_id.map_or(0, |l| l.index + 1);
        self.mem.borrow_mut().truncate_after(last_log_id.as_ref());
        // Not awaited: an append after it is durable only once this record is (the WAL
        // keeps order), and losing it alone just brings back entries nobody acknowledged.
        let body = encode_truncate(last_log_id.as_ref());
        self.wal_append(&[(KIND_TRUNCATE_AFTER, first_removed, &body)], None)
            .await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        self.mem.borrow_mut().purge(&log_id);
        // The marker must be durable before any segment goes, or a restart would not know
        // where the log starts. Its index is one past the purged index so that the segment
        // holding it survives this purge.
        let body = encode_log_id(&log_id);
        self.wal
            .append_durable(&[(KIND_PURGE, log_id.index + 1, &body)])
            .await
            .map_err(wal_err)?;
        self.wal.purge_upto(log_id.index).await.map_err(wal_err)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log_record::encode_truncate;
    use crate::types::{EntryPayload, LeaderId};

    fn id(term: u64, index: u64) -> LogId {
        LogId {
            leader_id: LeaderId { term, node_id: 1 },
            index,
        }
    }

    fn entry_rec(term: u64, index: u64) -> RecoveredRecord {
        let mut body = Vec::new();
        encode_entry(
            &mut body,
            &Entry {
                log_id: id(term, index),
                payload: EntryPayload::Blank,
            },
        );
        RecoveredRecord {
            kind: KIND_ENTRY,
            index,
            body,
        }
    }

    #[test]
    fn replay_applies_truncations_purges_and_commits_in_order() {
        let mut recs: Vec<_> = (0..10).map(|i| entry_rec(1, i)).collect();
        recs.push(RecoveredRecord {
            kind: KIND_TRUNCATE_AFTER,
            index: 6,
            body: encode_truncate(Some(&id(1, 5))),
        });
        recs.extend((6..8).map(|i| entry_rec(2, i)));
        recs.push(RecoveredRecord {
            kind: KIND_PURGE,
            index: 4,
            body: encode_log_id(&id(1, 3)),
        });
        recs.push(RecoveredRecord {
            kind: KIND_COMMITTED,
            index: 7,
            body: encode_log_id(&id(2, 7)),
        });
        let mem = replay(recs).unwrap();
        assert_eq!(mem.last_purged, Some(id(1, 3)));
        assert_eq!(mem.committed, Some(id(2, 7)));
        let ids: Vec<_> = mem.entries.iter().map(|e| e.log_id).collect();
        assert_eq!(ids, vec![id(1, 4), id(1, 5), id(2, 6), id(2, 7)]);
        assert_eq!(mem.range(5, 7).len(), 2);
        assert_eq!(mem.range(0, 100).len(), 4);
    }

    #[test]
    fn replay_refuses_a_hole() {
        let recs = vec![entry_rec(1, 0), entry_rec(1, 2)];
        assert!(replay(recs).is_err());
    }
}
