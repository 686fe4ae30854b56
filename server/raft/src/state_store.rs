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

    /// Writes the whole state.
    fn write_snapshot(&self, w: &mut dyn Write) -> io::Result<()>;

    /// The whole state as `write_snapshot` writes it. A store that builds it in memory anyway
    /// returns that buffer, saving a copy of the whole state.
    fn snapshot_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_snapshot(&mut out)
            .expect("writing a snapshot into memory does not fail");
        out
    }

    /// Replaces the whole state with a snapshot written by `write_snapshot`.
    fn read_snapshot(&mut self, r: &mut dyn Read) -> io::Result<()>;

    /// The store's current revision (etcd's header revision).
    fn revision(&self) -> i64;
}
