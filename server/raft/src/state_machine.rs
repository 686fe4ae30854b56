//! openraft's `RaftStateMachine` over a [`StateStore`]: committed entries are applied in
//! batches under one write lock, their events go to the subscriber, then each proposer is
//! answered. Snapshots are files in `<data-dir>/snap/` (format in `snapshot_file`).

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::TryStreamExt;
use ketch_proto::ketchpb::RaftResponse;
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine, Snapshot};
use openraft::{AsyncRuntime, OptionalSend};
use parking_lot::RwLock;

use crate::forwarded_waits::ForwardedWaits;
use crate::runtime::GlommioRuntime;
use crate::snapshot_file::{self, SnapshotFile};
use crate::state_store::{FrozenState, SerializedState, StateStore};
use crate::types::{
    ApplyError, ApplyOutcome, EntryPayload, KetchRaftTypes, LogId, MemberId, SnapshotMeta,
    StoredMembership,
};

/// Receives the events of every applied batch, in log order, before the proposers are
/// answered (so a watcher sees a change no later than the writer's response).
pub type EventSink<E> = Box<dyn FnMut(Vec<E>) + 'static>;

type KetchSnapshot = Snapshot<crate::types::LeaderId, u64, crate::types::Member, SnapshotFile>;

/// A committed entry whose bytes are not a `RaftRequest` (every member refuses it alike).
#[derive(Debug, thiserror::Error)]
#[error("raft entry {index} does not decode as a RaftRequest: {source}")]
pub struct UndecodableEntry {
    pub index: u64,
    pub source: prost::DecodeError,
}

/// Snapshot files being written on blocking threads. Such a thread outlives a cancelled
/// builder, so shutdown waits for this to drop to zero before it reports the member stopped.
#[derive(Debug, Clone, Default)]
pub struct SnapshotWrites(Arc<AtomicUsize>);

impl SnapshotWrites {
    pub fn in_flight(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }

    /// Serialises `frozen` and writes the snapshot file on a blocking thread: both are
    /// proportional to the whole state and would otherwise stall every task of the raft
    /// executor (heartbeats and AppendEntries included).
    async fn write<F: FrozenState>(
        &self,
        dir: PathBuf,
        meta: SnapshotMeta,
        frozen: F,
    ) -> io::Result<SnapshotFile> {
        struct Done(Arc<AtomicUsize>);
        impl Drop for Done {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::AcqRel);
            }
        }
        self.0.fetch_add(1, Ordering::AcqRel);
        let done = Done(self.0.clone());
        GlommioRuntime::spawn_blocking(move || {
            let _done = done;
            snapshot_file::write(&dir, &meta, &frozen.into_snapshot_bytes())
        })
        .await?
    }
}

/// The replicated state machine of one member.
pub struct StateMachine<S: StateStore> {
    store: Arc<RwLock<S>>,
    applied: Option<LogId>,
    membership: StoredMembership,
    snap_dir: PathBuf,
    sink: Option<EventSink<S::Event>>,
    writes: SnapshotWrites,
    /// This member's callers of forwarded writes, answered when their entry is applied.
    waits: Option<Arc<ForwardedWaits>>,
}

impl<S: StateStore> StateMachine<S> {
    pub fn new(
        store: Arc<RwLock<S>>,
        snap_dir: PathBuf,
        sink: Option<EventSink<S::Event>>,
        writes: SnapshotWrites,
    ) -> Self {
        StateMachine {
            store,
            applied: None,
            membership: StoredMembership::default(),
            snap_dir,
            sink,
            writes,
            waits: None,
        }
    }

    pub fn with_forwarded_waits(mut self, waits: Arc<ForwardedWaits>) -> Self {
        self.waits = Some(waits);
        self
    }

    /// Applies one decoded batch under a single write lock; returns what to answer, and the
    /// forwarded writes among them (proposer, number, position in the batch).
    fn apply_batch(
        &mut self,
        items: &[EntryResponder<KetchRaftTypes>],
        events: &mut Vec<S::Event>,
    ) -> (Vec<ApplyOutcome>, Vec<(MemberId, u64, usize)>) {
        let mut store = self.store.write();
        let mut outcomes = Vec::with_capacity(items.len());
        let mut forwarded = Vec::new();
        for (entry, _) in items {
            let out = match &entry.payload {
                EntryPayload::Blank => Ok(RaftResponse::default()),
                EntryPayload::Normal(bytes) => match bytes.decode() {
                    Ok(req) => {
                        if req.request_id != 0 {
                            forwarded.push((req.proposer, req.request_id, outcomes.len()));
                        }
                        store
                            .apply_at(entry.log_id.index, &req, events)
                            .map_err(ApplyError::new)
                    }
                    Err(source) => Err(ApplyError::new(UndecodableEntry {
                        index: entry.log_id.index,
                        source,
                    })),
                },
                EntryPayload::Membership(m) => {
                    self.membership = StoredMembership::new(Some(entry.log_id), m.clone());
                    Ok(RaftResponse::default())
                }
            };
            self.applied = Some(entry.log_id);
            outcomes.push(ApplyOutcome(out));
        }
        (outcomes, forwarded)
    }
}

/// Builds a snapshot file from the state frozen when the builder was created (it matches
/// `meta.last_log_id` exactly, whatever is applied meanwhile).
pub struct SnapshotBuilder<S: StateStore> {
    meta: SnapshotMeta,
    frozen: Option<S::Frozen>,
    snap_dir: PathBuf,
    writes: SnapshotWrites,
}

impl<S: StateStore> RaftSnapshotBuilder<KetchRaftTypes> for SnapshotBuilder<S> {
    type SnapshotData = SnapshotFile;

    async fn build_snapshot(&mut self) -> Result<KetchSnapshot, io::Error> {
        let frozen = self
            .frozen
            .take()
            .ok_or_else(|| io::Error::other("snapshot builder used twice"))?;
        let file = self
            .writes
            .write(self.snap_dir.clone(), self.meta.clone(), frozen)
            .await?;
        Ok(Snapshot {
            meta: self.meta.clone(),
            snapshot: file,
        })
    }
}

impl<S: StateStore> RaftStateMachine<KetchRaftTypes> for StateMachine<S> {
    type SnapshotData = SnapshotFile;
    type SnapshotBuilder = SnapshotBuilder<S>;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        Ok((self.applied, self.membership.clone()))
    }

    async fn apply<Strm>(&mut self, entries: Strm) -> Result<(), io::Error>
    where
        Strm: futures::Stream<Item = Result<EntryResponder<KetchRaftTypes>, io::Error>>
            + Unpin
            + OptionalSend,
    {
        let items: Vec<EntryResponder<KetchRaftTypes>> = entries.try_collect().await?;
        let mut events = Vec::new();
        let (outcomes, forwarded) = self.apply_batch(&items, &mut events);
        if let Some(sink) = self.sink.as_mut()
            && !events.is_empty()
        {
            sink(events);
        }
        // After the events, as for the proposers below: this member's callers of forwarded
        // writes (see `forwarded_waits`).
        if let Some(waits) = &self.waits {
            for (proposer, id, i) in forwarded {
                waits.applied(proposer, id, &outcomes[i]);
            }
        }
        for ((_, responder), outcome) in items.into_iter().zip(outcomes) {
            if let Some(r) = responder {
                // Acknowledgement point. Entries reach apply only once committed, and an
                // entry is committed only after a quorum has fdatasynced it (for one member,
                // its own WAL fsync: the WAL runs the IOFlushed callback after fdatasync).
                r.send(outcome);
            }
        }
        Ok(())
    }

    async fn try_create_snapshot_builder(&mut self, _force: bool) -> Option<Self::SnapshotBuilder> {
        Some(self.get_snapshot_builder().await)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        // Applying waits only for the freeze (structural sharing); the serialisation runs in
        // `build_snapshot` on a blocking thread.
        let frozen = self.store.read().freeze();
        let meta = SnapshotMeta {
            last_log_id: self.applied,
            last_membership: self.membership.clone(),
        };
        SnapshotBuilder {
            meta,
            frozen: Some(frozen),
            snap_dir: self.snap_dir.clone(),
            writes: self.writes.clone(),
        }
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: SnapshotFile,
    ) -> Result<(), io::Error> {
        let (file_meta, data) = snapshot_file::read(&snapshot.path)?;
        if file_meta.last_log_id != meta.last_log_id {
            return Err(io::Error::other(format!(
                "snapshot {} holds {:?}, expected {:?}",
                snapshot.path.display(),
                file_meta.last_log_id,
                meta.last_log_id
            )));
        }
        let mut fresh = S::default();
        fresh.read_snapshot(&mut data.as_slice())?;
        *self.store.write() = fresh;
        self.applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        if snapshot.path.parent() != Some(self.snap_dir.as_path()) {
            // Received from the leader: keep it as this member's current snapshot.
            self.writes
                .write(self.snap_dir.clone(), meta.clone(), SerializedState(data))
                .await?;
        }
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<KetchSnapshot>, io::Error> {
        let Some(path) = snapshot_file::latest(&self.snap_dir)? else {
            return Ok(None);
        };
        let (meta, _) = snapshot_file::read(&path)?;
        Ok(Some(Snapshot {
            meta,
            snapshot: SnapshotFile { path },
        }))
    }
}
