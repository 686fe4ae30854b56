//! The `Send` face of the raft member for the gRPC handlers, which run on other executors and
//! need `Send` futures. Requests travel over a bounded flume channel to the driver task on
//! the raft executor (see `node`), replies come back on one-shot flume channels.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use ketch_proto::ketchpb::{RaftRequest, RaftResponse};
use ketch_wal::WalMetrics;
use parking_lot::RwLock;

use crate::membership::{MemberChange, MemberChangeError, MembershipView};
use crate::state_store::StateStore;
use crate::transport::wire::ForwardRefusal;
use crate::types::{ApplyError, Member, MemberId, RequestBytes};

/// Bound of the command queue from the handles to the raft executor; a full queue makes
/// callers wait (backpressure) rather than grow memory.
pub const COMMAND_QUEUE_CAPACITY: usize = 4096;

/// Why a proposal or a linearizable read did not happen. The server maps these to etcd's
/// errors (`etcdserver: no leader`, `etcdserver: request timed out`, ...).
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProposeError {
    /// No leader is known (an election is going on, or no quorum).
    #[error("no leader")]
    NoLeader,
    /// This member is not the leader; the leader is known.
    #[error("not the leader; the leader is member {leader_id:x}")]
    ForwardToLeader {
        leader_id: MemberId,
        leader: Option<Member>,
    },
    /// The entry was appended here but overwritten by a new leader's log: whether it was
    /// committed elsewhere is unknown.
    #[error("leader changed while the request was in flight")]
    LeaderChanged,
    /// The leader could not reach a quorum to confirm a read.
    #[error("quorum not reachable")]
    QuorumNotReachable,
    /// No answer within the request timeout.
    #[error("request timed out")]
    Timeout,
    /// The store refused the request when applying it (e.g. a compacted revision); it is
    /// in the log, and every member refuses it alike.
    #[error("{0}")]
    Rejected(ApplyError),
    /// The member is shutting down or has stopped.
    #[error("raft member stopped")]
    Stopped,
    /// Storage failed (WAL write or fsync): the member stopped to protect the log.
    #[error("fatal raft error: {0}")]
    Fatal(String),
    /// Any other refusal by openraft (kept as text).
    #[error("raft refused the request: {0}")]
    Internal(String),
}

pub(crate) type Reply<T> = flume::Sender<Result<T, ProposeError>>;

pub(crate) enum Command {
    Write {
        data: RequestBytes,
        reply: Reply<RaftResponse>,
    },
    ReadBarrier {
        reply: Reply<()>,
    },
    /// A follower's ReadIndex request, answered by this member (which must lead) with the
    /// read index of the next round it starts: followers' reads share the leader's rounds.
    ReadIndex {
        reply: Reply<u64>,
    },
    LeaderCall {
        path: String,
        body: bytes::Bytes,
        reply: Reply<bytes::Bytes>,
    },
    TransferLeader {
        to: MemberId,
        reply: Reply<()>,
    },
    ChangeMembers {
        change: MemberChange,
        reply: flume::Sender<Result<MembershipView, MemberChangeError>>,
    },
    WalMetrics {
        reply: flume::Sender<WalMetrics>,
    },
    Shutdown {
        reply: flume::Sender<()>,
    },
}

/// The member's raft state as last reported by openraft's metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RaftStatus {
    /// 0 when no leader is known.
    pub leader_id: MemberId,
    pub term: u64,
    /// Index of the last entry in the local log (etcd's Status `raftIndex`).
    pub last_log_index: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    pub is_leader: bool,
}

/// Atomics written by the metrics task on the raft executor, read from any thread.
#[derive(Debug, Default)]
pub(crate) struct StatusCell {
    pub leader_id: AtomicU64,
    pub term: AtomicU64,
    pub last_log_index: AtomicU64,
    pub commit_index: AtomicU64,
    pub applied_index: AtomicU64,
    pub is_leader: AtomicBool,
    /// ReadIndex rounds started (each serves every read that queued before it).
    pub read_rounds: AtomicU64,
    /// Batches of client writes this member forwarded to a leader, and the writes in them.
    pub forwarded_batches: AtomicU64,
    pub forwarded_writes: AtomicU64,
    /// The membership as last committed or proposed (openraft's effective membership).
    pub membership: RwLock<Arc<MembershipView>>,
    /// The log entry `membership` was built from: the view is rebuilt only when it changes.
    pub membership_log: parking_lot::Mutex<Option<crate::types::LogId>>,
    /// Whether this member is a learner in `membership` (read on every client request).
    pub is_learner: AtomicBool,
    /// Set once this member's attributes are in the membership (etcd's "published"): from
    /// then on it serves clients.
    pub published: AtomicBool,
}

impl StatusCell {
    pub fn load(&self) -> RaftStatus {
        RaftStatus {
            leader_id: self.leader_id.load(Ordering::Acquire),
            term: self.term.load(Ordering::Acquire),
            last_log_index: self.last_log_index.load(Ordering::Acquire),
            commit_index: self.commit_index.load(Ordering::Acquire),
            applied_index: self.applied_index.load(Ordering::Acquire),
            is_leader: self.is_leader.load(Ordering::Acquire),
        }
    }
}

/// Handle on a raft member, usable from any thread.
pub struct RaftHandle<S: StateStore> {
    pub(crate) commands: flume::Sender<Command>,
    pub(crate) status: Arc<StatusCell>,
    pub(crate) store: Arc<RwLock<S>>,
}

impl<S: StateStore> Clone for RaftHandle<S> {
    fn clone(&self) -> Self {
        RaftHandle {
            commands: self.commands.clone(),
            status: self.status.clone(),
            store: self.store.clone(),
        }
    }
}

impl<S: StateStore> RaftHandle<S> {
    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, ProposeError> {
        let (tx, rx) = flume::bounded(1);
        self.commands
            .send_async(make(tx))
            .await
            .map_err(|_| ProposeError::Stopped)?;
        rx.recv_async().await.map_err(|_| ProposeError::Stopped)?
    }

    /// Proposes `req`, waits until it is committed and applied, and returns what the store
    /// answered. Returns only after the entry is durable on a quorum.
    pub async fn write(&self, req: RaftRequest) -> Result<RaftResponse, ProposeError> {
        // Encoded here, on the caller's core, so the raft core only moves bytes.
        let data = RequestBytes::encode(&req);
        self.call(|reply| Command::Write { data, reply }).await
    }

    /// Returns once the local store has applied everything committed before the call
    /// (ReadIndex): a read from [`Self::store`] after it is linearizable. Concurrent callers
    /// share one confirmation round.
    pub async fn linearizable_read_barrier(&self) -> Result<(), ProposeError> {
        self.call(|reply| Command::ReadBarrier { reply }).await
    }

    pub fn status(&self) -> RaftStatus {
        self.status.load()
    }

    /// The members as this member last saw them (sorted by ID).
    pub fn membership(&self) -> Arc<MembershipView> {
        self.status.membership.read().clone()
    }

    /// Sends an application call (`/app/...`) to the leader's `PeerApp` and returns its
    /// answer; waits for a leader up to the request timeout. `LeaderChanged` when this member
    /// leads (its status says so too: the caller serves the call itself).
    pub async fn leader_call(
        &self,
        path: &str,
        body: bytes::Bytes,
    ) -> Result<bytes::Bytes, ProposeError> {
        let path = path.to_string();
        self.call(|reply| Command::LeaderCall { path, body, reply })
            .await
    }

    /// Hands leadership to voter `to` (this member must lead) and returns once `to` leads;
    /// `Timeout` when that takes longer than the request timeout.
    pub async fn transfer_leader(&self, to: MemberId) -> Result<(), ProposeError> {
        self.call(|reply| Command::TransferLeader { to, reply })
            .await
    }

    /// Whether this member was removed from the cluster (a peer refused it as removed, or
    /// it applied its own removal); etcd's removed member stops.
    pub fn is_removed(&self, me: MemberId) -> bool {
        crate::membership::is_removed(me)
    }

    /// Whether this member is a learner (it then refuses writes and linearizable reads).
    pub fn is_learner(&self) -> bool {
        self.status.is_learner.load(Ordering::Acquire)
    }

    /// Whether this member has published its name and client URLs to the cluster (etcd
    /// serves clients only from then on).
    pub fn is_published(&self) -> bool {
        self.status.published.load(Ordering::Acquire)
    }

    /// Makes a membership change with etcd's rules, through the leader; returns the
    /// membership once the change is committed.
    pub async fn change_members(
        &self,
        change: MemberChange,
    ) -> Result<MembershipView, MemberChangeError> {
        let (tx, rx) = flume::bounded(1);
        let stopped = || MemberChangeError::Raft(ForwardRefusal::Stopped);
        self.commands
            .send_async(Command::ChangeMembers { change, reply: tx })
            .await
            .map_err(|_| stopped())?;
        rx.recv_async().await.map_err(|_| stopped())?
    }

    /// Number of ReadIndex rounds run so far.
    pub fn read_rounds(&self) -> u64 {
        self.status.read_rounds.load(Ordering::Relaxed)
    }

    /// `(batches, writes)`: client writes this member forwarded to a leader so far, and in
    /// how many batches.
    pub fn forwarded_batches_and_writes(&self) -> (u64, u64) {
        (
            self.status.forwarded_batches.load(Ordering::Relaxed),
            self.status.forwarded_writes.load(Ordering::Relaxed),
        )
    }

    /// The store, for serializable reads (take the read lock briefly).
    pub fn store(&self) -> Arc<RwLock<S>> {
        self.store.clone()
    }

    /// The WAL's counters (etcd's fsync histogram among them).
    pub async fn wal_metrics(&self) -> Result<WalMetrics, ProposeError> {
        let (tx, rx) = flume::bounded(1);
        self.commands
            .send_async(Command::WalMetrics { reply: tx })
            .await
            .map_err(|_| ProposeError::Stopped)?;
        rx.recv_async().await.map_err(|_| ProposeError::Stopped)
    }

    /// Stops taking requests, lets in-flight writes finish, makes the log durable, stops
    /// openraft and closes the WAL. Returns when that is done (at once if already stopped).
    pub async fn shutdown(&self) {
        let (tx, rx) = flume::bounded(1);
        if self
            .commands
            .send_async(Command::Shutdown { reply: tx })
            .await
            .is_ok()
        {
            let _ = rx.recv_async().await;
        }
    }
}
