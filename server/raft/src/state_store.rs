//! What the state machine needs from the store it replicates (ketch's MVCC store): apply one
//! request, and write or read a snapshot of everything.

use std::io::{self, Read, Write};

use ketch_proto::ketchpb::{RaftRequest, RaftResponse};

/// A deterministic store driven by the raft log. Every member applies the same requests in
/// the same order and must reach the same state.
pub trait StateStore: Default + Send + Sync + 'static {
    /// What applying a request changed, handed to the event subscriber (the watch hub).
    type Event: Send + 'static;
    /// A request the store refuses (reported to its proposer, the log goes on).
    type Error: std::error::Error + Send + Sync + 'static;

    fn apply(
        &mut self,
        req: &RaftRequest,
        events: &mut Vec<Self::Event>,
    ) -> Result<RaftResponse, Self::Error>;

    /// `apply` for the committed entry at raft `index` (what the state machine calls). A
    /// store whose answers depend on the index (auth tokens are named after it) overrides it.
    fn apply_at(
        &mut self,
        index: u64,
        req: &RaftRequest,
        events: &mut Vec<Self::Event>,
    ) -> Result<RaftResponse, Self::Error> {
        let _ = index;
        self.apply(req, events)
    }

    /// The whole state frozen for a snapshot. Apply waits while this runs, so it must be
    /// cheap (structural sharing, not a copy of every write); the frozen state is serialised
    /// on a blocking thread while apply goes on.
    type Frozen: FrozenState;

    fn freeze(&self) -> Self::Frozen;

    /// Writes the whole state (what a snapshot of it holds).
    fn write_snapshot(&self, w: &mut dyn Write) -> io::Result<()> {
        w.write_all(&self.freeze().into_snapshot_bytes())
    }

    /// Replaces the whole state with a snapshot written by `write_snapshot`.
    fn read_snapshot(&mut self, r: &mut dyn Read) -> io::Result<()>;

    /// The store's current revision (etcd's header revision).
    fn revision(&self) -> i64;
}

/// A state frozen by [`StateStore::freeze`], serialisable on any thread.
pub trait FrozenState: Send + 'static {
    /// The snapshot bytes, as `StateStore::read_snapshot` reads them.
    fn into_snapshot_bytes(self) -> Vec<u8>;
}

/// A state serialised when it was frozen: for small stores, where a copy costs nothing worth
/// moving off the apply path.
#[derive(Debug, Clone)]
pub struct SerializedState(pub Vec<u8>);

impl FrozenState for SerializedState {
    fn into_snapshot_bytes(self) -> Vec<u8> {
        self.0
    }
}
