//! Starting a raft member on the current glommio executor, and the driver task that serves
//! the `RaftHandle` commands there.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ketch_proto::ketchpb::RaftResponse;
use ketch_wal::{Wal, WalError, WalOptions};
use openraft::errors::{ClientWriteError, Fatal, LinearizableReadError, RaftError};
use openraft::network::NetSnapshot;
use openraft::{Config, RaftNetworkFactory, ReadPolicy, SnapshotPolicy};
use openraft_rt::WatchReceiver;
use parking_lot::RwLock;

use crate::handle::{COMMAND_QUEUE_CAPACITY, Command, ProposeError, RaftHandle, Reply, StatusCell};
use crate::log_store::LogStore;
use crate::snapshot_file::SnapshotFile;
use crate::state_machine::{EventSink, SnapshotWrites, StateMachine};
use crate::state_store::StateStore;
use crate::types::{KetchRaftTypes, Member, MemberId};

/// The openraft node type ketch runs.
pub type KetchRaft<S> = openraft::Raft<KetchRaftTypes, StateMachine<S>>;

/// Longest wait for in-flight writes at shutdown before stopping anyway.
const SHUTDOWN_DRAIN_MAX: Duration = Duration::from_secs(10);
/// Longest wait at start for a one-member group to elect itself and re-apply its log.
const SINGLE_MEMBER_RECOVERY_MAX: Duration = Duration::from_secs(30);

/// How to start a member. `members` is the initial cluster (used on first start only).
#[derive(Debug, Clone)]
pub struct RaftOptions {
    pub data_dir: PathBuf,
    pub member_id: MemberId,
    pub cluster_id: u64,
    pub members: BTreeMap<MemberId, Member>,
    pub heartbeat_ms: u64,
    pub election_timeout_ms: u64,
    /// Take a snapshot (and purge the log below it) every this many applied entries.
    pub snapshot_count: u64,
    /// Entries kept in the log below a snapshot, for slow followers (etcd keeps 5000).
    pub snapshot_catchup_entries: u64,
    /// Answer `Timeout` to a write or read barrier not done within this time.
    pub request_timeout: Duration,
    pub wal_segment_size_bytes: u64,
}

impl RaftOptions {
    /// etcd's defaults: heartbeat 100 ms, election timeout 1000 ms, snapshot every 10000
    /// entries, 5000 entries kept for catch-up, 64 MiB WAL segments.
    pub fn new(
        data_dir: impl Into<PathBuf>,
        member_id: MemberId,
        cluster_id: u64,
        members: BTreeMap<MemberId, Member>,
    ) -> Self {
        RaftOptions {
            data_dir: data_dir.into(),
            member_id,
            cluster_id,
            members,
            heartbeat_ms: 100,
            election_timeout_ms: 1000,
            snapshot_count: 10_000,
            snapshot_catchup_entries: 5_000,
            // etcd: 5 s plus two election timeouts.
            request_timeout: Duration::from_secs(7),
            wal_segment_size_bytes: ketch_wal::DEFAULT_SEGMENT_SIZE_BYTES,
        }
    }

    pub fn wal_dir(&self) -> PathBuf {
        self.data_dir.join("wal")
    }

    pub fn snap_dir(&self) -> PathBuf {
        self.data_dir.join("snap")
    }

    pub fn vote_path(&self) -> PathBuf {
        self.data_dir.join("vote")
    }

    fn openraft_config(&self) -> Result<Config, StartError> {
        let config = Config {
            cluster_name: format!("{:x}", self.cluster_id),
            heartbeat_interval: self.heartbeat_ms,
            election_timeout_min: self.election_timeout_ms,
            // etcd randomises the election timeout in [t, 2t).
            election_timeout_max: self.election_timeout_ms * 2,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_count),
            max_in_snapshot_log_to_keep: self.snapshot_catchup_entries,
            purge_batch_size: 1,
            // As etcd: a restarted leader campaigns in a new term instead of resuming (its
            // committed index may be one batch stale, see `LogStore::save_committed`).
            enable_leader_restore: Some(false),
            ..Config::default()
        };
        config
            .validate()
            .map_err(|e| StartError::Config(e.to_string()))
    }
}

/// Why a member could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("raft config: {0}")]
    Config(String),
    #[error("raft data dir {}: {source}", path.display())]
    DataDir { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Wal(#[from] WalError),
    #[error("raft log: {0}")]
    Log(io::Error),
    #[error("raft: {0}")]
    Raft(String),
    #[error("one-member group did not recover within {0:?}")]
    RecoveryTimeout(Duration),
}

/// The member on its executor (`!Send`): the openraft object, for the peer transport's
/// inbound RPCs, and the driver task, which ends after `RaftHandle::shutdown`.
pub struct RaftNode<S: StateStore> {
    pub raft: KetchRaft<S>,
    driver: glommio::task::JoinHandle<()>,
}

impl<S: StateStore> RaftNode<S> {
    /// Completes when the member has stopped (after `RaftHandle::shutdown`).
    pub async fn stopped(self) {
        self.driver.await;
    }
}

/// Starts a member on the current glommio executor: opens the WAL under
/// `<data_dir>/wal`, loads the newest snapshot from `<data_dir>/snap`, re-applies the log
/// after it, and initialises the group on first start. A one-member group is leader and has
/// re-applied its whole log when this returns.
pub async fn start<S, N>(
    opts: RaftOptions,
    network: N,
    events: Option<EventSink<S::Event>>,
) -> Result<(RaftHandle<S>, RaftNode<S>), StartError>
where
    S: StateStore,
    N: RaftNetworkFactory<KetchRaftTypes>,
    N::Network: NetSnapshot<KetchRaftTypes, SnapshotData = SnapshotFile>,
{
    let config = Arc::new(opts.openraft_config()?);
    for dir in [opts.data_dir.clone(), opts.wal_dir(), opts.snap_dir()] {
        std::fs::create_dir_all(&dir).map_err(|source| StartError::DataDir {
            path: dir.clone(),
            source,
        })?;
    }
    let snap_dir = opts.snap_dir();
    crate::snapshot_file::remove_temp_files(&snap_dir).map_err(|source| StartError::DataDir {
        path: snap_dir,
        source,
    })?;
    let mut wal_opts = WalOptions::new(opts.wal_dir());
    wal_opts.segment_size_bytes = opts.wal_segment_size_bytes;
    let (wal, recovery) = Wal::open(wal_opts).await?;
    let log =
        LogStore::recover(wal, recovery.records, opts.vote_path()).map_err(StartError::Log)?;
    let recovered_last = log.last_index();
    let store = Arc::new(RwLock::new(S::default()));
    let snapshot_writes = SnapshotWrites::default();
    let sm = StateMachine::new(
        store.clone(),
        opts.snap_dir(),
        events,
        snapshot_writes.clone(),
    );
    let raft = KetchRaft::new(opts.member_id, config, network, log.clone(), sm)
        .await
        .map_err(|e| StartError::Raft(e.to_string()))?;
    let first_start = !raft
        .is_initialized()
        .await
        .map_err(|e| StartError::Raft(e.to_string()))?;
    if first_start {
        raft.initialize(opts.members.clone())
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?;
    }
    if opts.members.len() == 1 {
        wait_single_member_ready(&raft, opts.member_id, recovered_last).await?;
    }
    let status = Arc::new(StatusCell::default());
    // Filled before the handle exists, so its first `status()` is already current.
    copy_metrics(&raft.metrics().borrow_watched(), &status);
    glommio::spawn_local(track_metrics(raft.clone(), status.clone())).detach();
    let (tx, rx) = flume::bounded(COMMAND_QUEUE_CAPACITY);
    let driver = Driver {
        raft: raft.clone(),
        log,
        snapshot_writes,
        request_timeout: opts.request_timeout,
        reads: Rc::default(),
        status: status.clone(),
    };
    let driver = glommio::spawn_local(driver.run(rx)).detach();
    Ok((
        RaftHandle {
            commands: tx,
            status,
            store,
        },
        RaftNode { raft, driver },
    ))
}

async fn wait_single_member_ready<S: StateStore>(
    raft: &KetchRaft<S>,
    me: MemberId,
    last: Option<u64>,
) -> Result<(), StartError> {
    let wait = raft.wait(Some(SINGLE_MEMBER_RECOVERY_MAX));
    let timeout = |_| StartError::RecoveryTimeout(SINGLE_MEMBER_RECOVERY_MAX);
    wait.current_leader(me, "one-member group elects itself")
        .await
        .map_err(timeout)?;
    wait.applied_index_at_least(last, "re-apply the recovered log")
        .await
        .map_err(timeout)?;
    Ok(())
}

fn copy_metrics(m: &openraft::RaftMetrics<KetchRaftTypes>, status: &StatusCell) {
    let leader = m.current_leader.unwrap_or(0);
    status.leader_id.store(leader, Ordering::Release);
    status.term.store(m.current_term, Ordering::Release);
    status
        .last_log_index
        .store(m.last_log_index.unwrap_or(0), Ordering::Release);
    status
        .commit_index
        .store(m.local_committed.map_or(0, |l| l.index), Ordering::Release);
    status
        .applied_index
        .store(m.last_applied.map_or(0, |l| l.index), Ordering::Release);
    status.is_leader.store(
        m.current_leader.is_some() && leader == m.id,
        Ordering::Release,
    );
}

/// Copies openraft's metrics into the atomics read by `RaftHandle::status`.
async fn track_metrics<S: StateStore>(raft: KetchRaft<S>, status: Arc<StatusCell>) {
    let mut rx = raft.metrics();
    loop {
        copy_metrics(&rx.borrow_watched(), &status);
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// ReadIndex rounds: a read joins the next round to start (never one already running,
/// whose read index may predate it), and one round serves every read queued before it.
#[derive(Default)]
struct ReadRounds {
    running: Cell<bool>,
    queued: RefCell<Vec<Reply<()>>>,
}

struct Driver<S: StateStore> {
    raft: KetchRaft<S>,
    log: LogStore,
    snapshot_writes: SnapshotWrites,
    request_timeout: Duration,
    reads: Rc<ReadRounds>,
    status: Arc<StatusCell>,
}

impl<S: StateStore> Driver<S> {
    async fn run(self, rx: flume::Receiver<Command>) {
        let in_flight = Rc::new(Cell::new(0usize));
        while let Ok(cmd) = rx.recv_async().await {
            match cmd {
                Command::Write { data, reply } => self.spawn_write(data, reply, in_flight.clone()),
                Command::ReadBarrier { reply } => {
                    self.reads.queued.borrow_mut().push(reply);
                    self.start_read_round();
                }
                Command::WalMetrics { reply } => {
                    let _ = reply.send(self.log.wal().metrics());
                }
                Command::Shutdown { reply } => {
                    drop(rx);
                    self.stop(&in_flight).await;
                    let _ = reply.send(());
                    return;
                }
            }
        }
        self.stop(&in_flight).await;
    }

    fn spawn_write(
        &self,
        data: crate::types::RequestBytes,
        reply: Reply<RaftResponse>,
        in_flight: Rc<Cell<usize>>,
    ) {
        let raft = self.raft.clone();
        let timeout = self.request_timeout;
        in_flight.set(in_flight.get() + 1);
        glommio::spawn_local(async move {
            let res =
                glommio::timer::timeout(timeout, async { Ok(raft.client_write(data).await) }).await;
            let out = match res {
                Ok(Ok(resp)) => resp.data.0.map_err(ProposeError::Rejected),
                Ok(Err(e)) => Err(write_error(e)),
                Err(_) => Err(ProposeError::Timeout),
            };
            let _ = reply.send(out);
            in_flight.set(in_flight.get() - 1);
        })
        .detach();
    }

    fn start_read_round(&self) {
        start_read_round(
            self.raft.clone(),
            self.reads.clone(),
            self.request_timeout,
            self.status.clone(),
        );
    }

    async fn stop(&self, in_flight: &Cell<usize>) {
        let started = Instant::now();
        while in_flight.get() > 0 && started.elapsed() < SHUTDOWN_DRAIN_MAX {
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
        if let Err(e) = self.raft.shutdown().await {
            tracing::error!("raft shutdown: {e}");
        }
        if let Err(e) = self.log.flush_committed().await {
            tracing::error!("raft log final flush: {e}");
        }
        if let Err(e) = self.log.wal().clone().close().await {
            tracing::error!("closing the WAL: {e}");
        }
        let started = Instant::now();
        while self.snapshot_writes.in_flight() > 0 && started.elapsed() < SHUTDOWN_DRAIN_MAX {
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
    }
}

fn start_read_round<S: StateStore>(
    raft: KetchRaft<S>,
    reads: Rc<ReadRounds>,
    timeout: Duration,
    status: Arc<StatusCell>,
) {
    if reads.running.get() || reads.queued.borrow().is_empty() {
        return;
    }
    reads.running.set(true);
    status.read_rounds.fetch_add(1, Ordering::Relaxed);
    let batch = std::mem::take(&mut *reads.queued.borrow_mut());
    glommio::spawn_local(async move {
        let res = glommio::timer::timeout(timeout, async {
            Ok(raft.ensure_linearizable(ReadPolicy::ReadIndex).await)
        })
        .await;
        let out = match res {
            Ok(Ok(_read_log_id)) => Ok(()),
            Ok(Err(e)) => Err(read_error(e)),
            Err(_) => Err(ProposeError::Timeout),
        };
        for reply in batch {
            let _ = reply.send(out.clone());
        }
        reads.running.set(false);
        start_read_round(raft, reads, timeout, status);
    })
    .detach();
}

fn forward(f: openraft::errors::ForwardToLeader<KetchRaftTypes>) -> ProposeError {
    match f.leader_id {
        Some(leader_id) => ProposeError::ForwardToLeader {
            leader_id,
            leader: f.leader_node,
        },
        None => ProposeError::NoLeader,
    }
}

fn fatal(f: Fatal<KetchRaftTypes>) -> ProposeError {
    match f {
        Fatal::Stopped => ProposeError::Stopped,
        other => ProposeError::Fatal(other.to_string()),
    }
}

fn write_error(e: RaftError<KetchRaftTypes, ClientWriteError<KetchRaftTypes>>) -> ProposeError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => forward(f),
        RaftError::APIError(ClientWriteError::LogEntryDiscarded(_)) => ProposeError::LeaderChanged,
        RaftError::APIError(other) => ProposeError::Internal(other.to_string()),
        RaftError::Fatal(f) => fatal(f),
    }
}

fn read_error(e: RaftError<KetchRaftTypes, LinearizableReadError<KetchRaftTypes>>) -> ProposeError {
    match e {
        RaftError::APIError(LinearizableReadError::ForwardToLeader(f)) => forward(f),
        RaftError::APIError(LinearizableReadError::QuorumNotEnough(_)) => {
            ProposeError::QuorumNotReachable
        }
        RaftError::Fatal(f) => fatal(f),
    }
}
