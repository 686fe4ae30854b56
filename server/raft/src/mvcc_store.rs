//! The MVCC store as the replicated state: `ketch_mvcc::Store` driven by the raft log.
//! Requests the store does not apply (alarms, lease checkpoints) come back as
//! `MvccError::NotStoreRequest`; a server that replicates them wraps the store in its own
//! `StateStore`.

use std::io::{self, Read};

use ketch_mvcc::{FrozenStore, MvccError, Store};
use ketch_proto::ketchpb::{RaftRequest, RaftResponse};
use ketch_proto::mvccpb::Event;

use crate::state_store::{FrozenState, StateStore};

impl StateStore for Store {
    type Event = Event;
    type Error = MvccError;

    fn apply(
        &mut self,
        req: &RaftRequest,
        events: &mut Vec<Event>,
    ) -> Result<RaftResponse, MvccError> {
        Store::apply(self, req, events)
    }

    type Frozen = FrozenStore;

    fn freeze(&self) -> FrozenStore {
        Store::freeze(self)
    }

    fn read_snapshot(&mut self, mut r: &mut dyn Read) -> io::Result<()> {
        *self = Store::read_snapshot(&mut r).map_err(io::Error::other)?;
        Ok(())
    }

    fn revision(&self) -> i64 {
        Store::revision(self)
    }
}

impl FrozenState for FrozenStore {
    fn into_snapshot_bytes(self) -> Vec<u8> {
        let mut out = Vec::new();
        self.append_snapshot(&mut out);
        out
    }
}
