//! The MVCC store as the raft state machine: ketch-raft is generic over what it replicates,
//! ketch-mvcc knows nothing of raft; this newtype joins them.

use std::io::{self, Read, Write};
use std::ops::{Deref, DerefMut};

use ketch_mvcc::{MvccError, Store};
use ketch_proto::ketchpb::{RaftRequest, RaftResponse};
use ketch_proto::mvccpb::Event;
use ketch_raft::StateStore;

#[derive(Default)]
pub struct MvccState(pub Store);

impl Deref for MvccState {
    type Target = Store;
    fn deref(&self) -> &Store {
        &self.0
    }
}

impl DerefMut for MvccState {
    fn deref_mut(&mut self) -> &mut Store {
        &mut self.0
    }
}

impl StateStore for MvccState {
    type Event = Event;
    type Error = MvccError;

    fn apply(&mut self, req: &RaftRequest, events: &mut Vec<Event>) -> Result<RaftResponse, MvccError> {
        self.0.apply(req, events)
    }

    fn write_snapshot(&self, mut w: &mut dyn Write) -> io::Result<()> {
        self.0.write_snapshot(&mut w)
    }

    fn read_snapshot(&mut self, mut r: &mut dyn Read) -> io::Result<()> {
        self.0 = Store::read_snapshot(&mut r).map_err(io::Error::other)?;
        Ok(())
    }

    fn revision(&self) -> i64 {
        self.0.revision()
    }
}
