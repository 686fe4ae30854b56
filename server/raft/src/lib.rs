//! ketch consensus: openraft on glommio, log storage on the WAL, state machine over MVCC.
//!
//! Start a member with [`start`] from inside the glommio executor that will own it; use the
//! returned [`RaftHandle`] (`Send + Sync + Clone`) from any thread. docs/raft.md describes
//! how openraft maps onto the WAL and the store.

pub mod forward_queue;
pub mod forwarded_waits;
pub mod handle;
pub mod log_record;
pub mod log_store;
pub mod membership;
pub mod mvcc_store;
pub mod network;
pub mod node;
pub mod runtime;
pub mod snapshot_file;
pub mod state_machine;
pub mod state_store;
pub mod transport;
pub mod types;

pub use handle::{COMMAND_QUEUE_CAPACITY, ProposeError, RaftHandle, RaftStatus};
pub use membership::{MemberChange, MemberChangeError, MemberView, MembershipView};
pub use network::{LeaderForward, UnreachableNetwork};
pub use node::{KetchRaft, PeerSide, RaftNode, RaftOptions, StartError, start};
pub use runtime::{EXECUTOR_IO_MEMORY_BYTES, GlommioRuntime, executor_builder};
pub use snapshot_file::SnapshotFile;
pub use state_machine::EventSink;
pub use state_store::{FrozenState, SerializedState, StateStore};
pub use transport::{PeerNetwork, serve_peers};
pub use types::{ApplyError, ApplyOutcome, KetchRaftTypes, Member, MemberId, RequestBytes};
