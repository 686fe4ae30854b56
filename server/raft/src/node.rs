//! Starting a raft member on the current glommio executor, and the driver task that serves
//! the `RaftHandle` commands there.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::future::{Either, select};

use ketch_proto::ketchpb::RaftResponse;
use ketch_wal::{Wal, WalError, WalOptions};
use openraft::errors::{ClientWriteError, Fatal, LinearizableReadError, RaftError};
use openraft::network::NetSnapshot;
use openraft::{ChangeMembers, Config, RaftNetworkFactory, ReadPolicy, SnapshotPolicy};
use openraft_rt::WatchReceiver;
use parking_lot::RwLock;

use crate::forward_queue::ForwardQueue;
use crate::forwarded_waits::ForwardedWaits;
use crate::handle::{COMMAND_QUEUE_CAPACITY, Command, ProposeError, RaftHandle, Reply, StatusCell};
use crate::log_store::LogStore;
use crate::membership::{
    self, LearnerProgress, MemberChange, MemberChangeError, MembershipView, Plan,
};
use crate::network::LeaderForward;
use crate::snapshot_file::SnapshotFile;
use crate::state_machine::{EventSink, SnapshotWrites, StateMachine};
use crate::state_store::StateStore;
use crate::transport::wire::ForwardRefusal;
use crate::types::{ApplyOutcome, KetchRaftTypes, Member, MemberId, RequestBytes};

/// The openraft node type ketch runs.
pub type KetchRaft<S> = openraft::Raft<KetchRaftTypes, StateMachine<S>>;

/// Longest wait for in-flight writes at shutdown before stopping anyway.
const SHUTDOWN_DRAIN_MAX: Duration = Duration::from_secs(10);
/// Longest pause between attempts of a client request while no leader is known (the pause
/// is one heartbeat interval, at most this).
const RETRY_PAUSE_MAX_MS: u64 = 50;
thread_local! {
    /// Serialises membership changes proposed on this executor.
    static MEMBERSHIP_CHANGES: Rc<glommio::sync::Semaphore> = Rc::new(glommio::sync::Semaphore::new(1));
}

/// A member that acknowledged the leader within this time counts as connected for etcd's
/// membership health checks.
const CONNECTED_ACK_MAX: Duration = Duration::from_secs(1);

/// How long one attempt to publish this member's attributes may take, and the pause
/// between attempts.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(7);
const PUBLISH_RETRY: Duration = Duration::from_millis(500);
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
    /// Joins an existing group (`--initial-cluster-state existing`): wait for the leader
    /// to reach this member instead of initialising a group.
    pub join_existing: bool,
    /// This member's name and client URLs, published through the leader once it runs (as
    /// etcd publishes its attributes), so every member lists them.
    pub publish: Option<(String, Vec<String>)>,
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
            join_existing: false,
            publish: None,
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

    /// openraft's `election_timeout_min` (see `openraft_config`): above the heartbeat, so a
    /// follower never campaigns between two heartbeats of a live leader, and below t.
    fn election_timeout_min_ms(&self) -> u64 {
        (self.heartbeat_ms * 2)
            .max(1)
            .min(self.election_timeout_ms.saturating_sub(1))
    }

    fn openraft_config(&self) -> Result<Config, StartError> {
        let config = Config {
            cluster_name: format!("{:x}", self.cluster_id),
            heartbeat_interval: self.heartbeat_ms,
            // etcd campaigns a random [t, 2t) after the last heartbeat and a follower refuses
            // votes for t after one (check quorum). openraft campaigns `lease + [min, max)`
            // after the last heartbeat, with lease = max, and refuses votes for `lease`: so
            // max = t and a small min give etcd's window [t + min, 2t) and etcd's lease t.
            election_timeout_min: self.election_timeout_min_ms(),
            election_timeout_max: self.election_timeout_ms,
            enable_pre_vote: Some(true),
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_count),
            max_in_snapshot_log_to_keep: self.snapshot_catchup_entries,
            purge_batch_size: 1,
            max_payload_entries: MAX_PAYLOAD_ENTRIES,
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

/// Entries per AppendEntries. openraft keeps one AppendEntries in flight per follower, so a
/// follower's throughput is at most this many entries per round trip (send, follower fsync,
/// answer): openraft's default of 300 capped a three-member cluster at about 5,000 writes/s
/// on this machine, with 1,000 clients waiting. etcd sends up to 1 MiB per message with up to
/// 256 in flight; 4,096 entries of a few hundred bytes are about that size.
const MAX_PAYLOAD_ENTRIES: u64 = 4096;

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
    /// The driver's queue, without keeping the driver alive (it ends once every
    /// `RaftHandle` is gone or after a shutdown).
    commands: flume::WeakSender<Command>,
}

/// What the peer transport's server needs of a member: openraft, for the raft RPCs, and the
/// driver, for followers' ReadIndex requests to join this member's read rounds.
pub struct PeerSide<S: StateStore> {
    pub(crate) raft: KetchRaft<S>,
    commands: flume::WeakSender<Command>,
}

impl<S: StateStore> Clone for PeerSide<S> {
    fn clone(&self) -> Self {
        PeerSide {
            raft: self.raft.clone(),
            commands: self.commands.clone(),
        }
    }
}

impl<S: StateStore> PeerSide<S> {
    /// A follower's ReadIndex request: the read index of this member's next read round,
    /// confirmed by a quorum; `ForwardToLeader` when this member does not lead.
    pub(crate) async fn read_index(&self) -> Result<u64, ProposeError> {
        let commands = self.commands.upgrade().ok_or(ProposeError::Stopped)?;
        let (reply, answer) = flume::bounded(1);
        commands
            .send_async(Command::ReadIndex { reply })
            .await
            .map_err(|_| ProposeError::Stopped)?;
        drop(commands);
        answer
            .recv_async()
            .await
            .map_err(|_| ProposeError::Stopped)?
    }
}

impl<S: StateStore> RaftNode<S> {
    /// The member as the peer transport's server serves it.
    pub fn peer_side(&self) -> PeerSide<S> {
        PeerSide {
            raft: self.raft.clone(),
            commands: self.commands.clone(),
        }
    }

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
    N: RaftNetworkFactory<KetchRaftTypes> + LeaderForward,
    N::Network: NetSnapshot<KetchRaftTypes, SnapshotData = SnapshotFile>,
{
    let forward = network.clone();
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
    let waits = Arc::new(ForwardedWaits::new(opts.member_id));
    let sm = StateMachine::new(
        store.clone(),
        opts.snap_dir(),
        events,
        snapshot_writes.clone(),
    )
    .with_forwarded_waits(waits.clone());
    let raft = KetchRaft::new(opts.member_id, config, network, log.clone(), sm)
        .await
        .map_err(|e| StartError::Raft(e.to_string()))?;
    let first_start = !raft
        .is_initialized()
        .await
        .map_err(|e| StartError::Raft(e.to_string()))?;
    if first_start && !opts.join_existing {
        raft.initialize(opts.members.clone())
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?;
    }
    if opts.members.len() == 1 {
        wait_single_member_ready(&raft, opts.member_id, recovered_last).await?;
    }
    let status = Arc::new(StatusCell::default());
    // Filled before the handle exists, so its first `status()` is already current.
    let lease = Duration::from_millis(opts.election_timeout_ms);
    copy_metrics(&raft.metrics().borrow_watched(), &status, lease);
    let tick = Duration::from_millis(opts.heartbeat_ms.max(1));
    glommio::spawn_local(track_metrics(raft.clone(), status.clone(), lease, tick)).detach();
    let (tx, rx) = flume::bounded(COMMAND_QUEUE_CAPACITY);
    let weak_commands = tx.downgrade();
    let driver = Driver {
        raft: raft.clone(),
        log,
        snapshot_writes,
        request_timeout: opts.request_timeout,
        reads: Rc::default(),
        status: status.clone(),
        forwards: ForwardQueue::new(forward.clone(), status.clone()),
        waits,
        forward,
        retry_pause: Duration::from_millis(opts.heartbeat_ms.clamp(1, RETRY_PAUSE_MAX_MS)),
    };
    if let Some((name, client_urls)) = opts.publish.clone() {
        let change = MemberChange::Publish {
            id: opts.member_id,
            name,
            client_urls,
        };
        glommio::spawn_local(publish(driver.route(), change, status.clone())).detach();
    } else {
        status.published.store(true, Ordering::Release);
    }
    let driver = glommio::spawn_local(driver.run(rx)).detach();
    Ok((
        RaftHandle {
            commands: tx,
            status,
            store,
        },
        RaftNode {
            raft,
            driver,
            commands: weak_commands,
        },
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

/// `lease`: a leader of several voters whose last quorum acknowledgement is older than this
/// has lost its quorum and is reported leaderless (etcd's leader steps down then, with
/// CheckQuorum; openraft's keeps its role but refuses proposals).
fn copy_metrics(m: &openraft::RaftMetrics<KetchRaftTypes>, status: &StatusCell, lease: Duration) {
    let membership_log = *m.membership_config.log_id();
    if *status.membership_log.lock() != membership_log {
        let view = membership_view(m.membership_config.membership());
        let old = status.membership.read().clone();
        for gone in old.members.iter().filter(|o| view.get(o.id).is_none()) {
            membership::mark_removed(gone.id);
        }
        let learner = view.get(m.id).is_some_and(|v| v.is_learner);
        status.is_learner.store(learner, Ordering::Release);
        *status.membership.write() = Arc::new(view);
        *status.membership_log.lock() = membership_log;
    }
    let voters = m.membership_config.membership().voter_ids().count();
    let quorum_lost = m.current_leader == Some(m.id)
        && voters > 1
        && m.last_quorum_acked
            .as_ref()
            .is_none_or(|t| t.elapsed() > lease);
    // A follower whose leader has been silent for the lease has no leader (etcd's follower
    // campaigns then and forgets it).
    let leader_silent = m.current_leader.is_some_and(|l| l != m.id)
        && membership::since_leader_contact(m.id).is_some_and(|d| d > lease);
    let leader = if quorum_lost || leader_silent {
        0
    } else {
        m.current_leader.unwrap_or(0)
    };
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
    status
        .is_leader
        .store(leader != 0 && leader == m.id, Ordering::Release);
}

pub(crate) fn membership_view(m: &openraft::Membership<MemberId, Member>) -> MembershipView {
    let nodes: BTreeMap<MemberId, Member> = m.nodes().map(|(id, n)| (*id, n.clone())).collect();
    let voters: BTreeSet<MemberId> = m.voter_ids().collect();
    MembershipView::from_openraft(&nodes, &voters)
}

/// Checks `change` against etcd's rules and proposes it; this member must lead. Answers the
/// membership the change produced.
pub(crate) async fn change_members_here<S: StateStore>(
    raft: &KetchRaft<S>,
    change: MemberChange,
) -> Result<MembershipView, MemberChangeError> {
    let metrics = raft.metrics().borrow_watched().clone();
    if metrics.current_leader != Some(metrics.id) {
        return Err(MemberChangeError::Raft(ForwardRefusal::NotLeader));
    }
    let view = membership_view(metrics.membership_config.membership());
    let leader_last = metrics.last_log_index.unwrap_or(0);
    let progress = |id| {
        let matched = metrics
            .replication
            .as_ref()?
            .get(&id)?
            .as_ref()
            .map_or(0, |l| l.index);
        Some(LearnerProgress {
            matched,
            leader_last,
        })
    };
    // One change at a time: openraft refuses a change while another is in progress.
    let lock = MEMBERSHIP_CHANGES.with(Rc::clone);
    let _one_at_a_time = lock.acquire_permit(1).await;
    let one = |id| BTreeSet::from([id]);
    // Reachable: acknowledged a heartbeat or an append recently (etcd: connected in the
    // last health interval).
    let heartbeats = metrics.heartbeat.clone().unwrap_or_default();
    let connected = |id| {
        id == metrics.id
            || heartbeats
                .get(&id)
                .and_then(|t| t.as_ref())
                .is_some_and(|t| t.elapsed() < CONNECTED_ACK_MAX)
    };
    let written = match membership::plan(&view, &change, progress, connected)? {
        Plan::Nothing => return Ok(view),
        Plan::SetNodes(nodes) => {
            raft.change_membership(ChangeMembers::SetNodes(nodes), false)
                .await
        }
        Plan::AddVoters(nodes) => {
            raft.change_membership(ChangeMembers::AddVoters(nodes), false)
                .await
        }
        Plan::AddLearner(id, node) => raft.add_learner(id, node, false).await,
        Plan::RemoveVoter(id) => {
            raft.change_membership(ChangeMembers::RemoveVoters(one(id)), false)
                .await
        }
        Plan::RemoveLearner(id) => {
            raft.change_membership(ChangeMembers::RemoveNodes(one(id)), false)
                .await
        }
        Plan::PromoteLearner(id) => {
            raft.change_membership(ChangeMembers::AddVoterIds(one(id)), false)
                .await
        }
    };
    let written =
        written.map_err(|e| MemberChangeError::Raft(ForwardRefusal::of(&write_error(e))))?;
    Ok(match written.membership() {
        Some(m) => membership_view(m),
        None => membership_view(
            raft.metrics()
                .borrow_watched()
                .membership_config
                .membership(),
        ),
    })
}

/// Asks openraft to hand leadership to `to` and waits until `to` leads.
async fn transfer_leader<S: StateStore>(
    raft: &KetchRaft<S>,
    to: MemberId,
    timeout: Duration,
) -> Result<(), ProposeError> {
    raft.trigger().transfer_leader(to).await.map_err(fatal)?;
    raft.wait(Some(timeout))
        .current_leader(to, "leadership transferred")
        .await
        .map(|_| ())
        .map_err(|_| ProposeError::Timeout)
}

/// Publishes this member's name and client URLs until the membership holds them.
async fn publish<S: StateStore, F: LeaderForward>(
    route: Route<S, F>,
    change: MemberChange,
    status: Arc<StatusCell>,
) {
    loop {
        let deadline = Instant::now() + PUBLISH_TIMEOUT;
        match route.change_members(change.clone(), deadline).await {
            Ok(_) => {
                status.published.store(true, Ordering::Release);
                tracing::info!("published local member to cluster through raft");
                return;
            }
            Err(MemberChangeError::Raft(ForwardRefusal::Stopped)) => return,
            Err(e) => tracing::warn!("publishing this member's attributes: {e}; retrying"),
        }
        glommio::timer::sleep(PUBLISH_RETRY).await;
    }
}

/// Copies openraft's metrics into the atomics read by `RaftHandle::status`, on every change
/// and every `tick` (a lost quorum shows in no metrics change: time alone reveals it).
async fn track_metrics<S: StateStore>(
    raft: KetchRaft<S>,
    status: Arc<StatusCell>,
    lease: Duration,
    tick: Duration,
) {
    let mut rx = raft.metrics();
    loop {
        copy_metrics(&rx.borrow_watched(), &status, lease);
        let changed = futures::future::select(
            Box::pin(rx.changed()),
            Box::pin(glommio::timer::sleep(tick)),
        )
        .await;
        if let futures::future::Either::Left((Err(_), _)) = changed {
            return;
        }
    }
}

/// ReadIndex rounds: a read joins the next round to start (never one already running,
/// whose read index may predate it), and one round serves every read queued before it:
/// this member's own linearizable reads and, on the leader, the followers' ReadIndex
/// requests, so that one quorum confirmation serves the whole cluster's reads.
#[derive(Default)]
struct ReadRounds {
    running: Cell<bool>,
    queued: RefCell<Vec<ReadWaiter>>,
}

enum ReadWaiter {
    /// A local read: answered once this member has applied up to the read index.
    Applied(Reply<()>),
    /// A follower's request: answered with the read index this member (the leader)
    /// confirmed; the follower waits for its own apply.
    Index(Reply<u64>),
}

struct Driver<S: StateStore, F: LeaderForward> {
    raft: KetchRaft<S>,
    log: LogStore,
    snapshot_writes: SnapshotWrites,
    request_timeout: Duration,
    reads: Rc<ReadRounds>,
    status: Arc<StatusCell>,
    forward: F,
    /// This member's writes on their way to the leader while it follows.
    forwards: Rc<ForwardQueue<F>>,
    /// Callers of forwarded writes whose outcome the leader did not answer.
    waits: Arc<ForwardedWaits>,
    /// Wait between attempts while no leader is known.
    retry_pause: Duration,
}

/// Who serves client requests: this member or, on a follower, the leader.
enum Leader {
    Me,
    Other(MemberId, Member),
    Unknown,
}

struct Route<S: StateStore, F: LeaderForward> {
    raft: KetchRaft<S>,
    status: Arc<StatusCell>,
    forward: F,
    forwards: Rc<ForwardQueue<F>>,
    waits: Arc<ForwardedWaits>,
    retry_pause: Duration,
}

impl<S: StateStore, F: LeaderForward> Clone for Route<S, F> {
    fn clone(&self) -> Self {
        Route {
            raft: self.raft.clone(),
            status: self.status.clone(),
            forward: self.forward.clone(),
            forwards: self.forwards.clone(),
            waits: self.waits.clone(),
            retry_pause: self.retry_pause,
        }
    }
}

impl<S: StateStore, F: LeaderForward> Route<S, F> {
    /// Proposes `data` here if this member leads, else through the leader; while no leader
    /// is known, tries again (etcd's proposals wait for a leader until the request timeout).
    async fn write(
        &self,
        data: RequestBytes,
        deadline: Instant,
    ) -> Result<RaftResponse, ProposeError> {
        // The request number and tagged bytes, made on the first forward and kept for retries.
        let mut forwarded: Option<(u64, RequestBytes)> = None;
        loop {
            // A follower that knows its leader forwards at once (raft would only answer
            // "forward to the leader"); a stale view costs one refusal and another try.
            let forward_to = match self.leader() {
                Leader::Other(leader_id, node) => Some((leader_id, node)),
                Leader::Me | Leader::Unknown => match self.raft.client_write(data.clone()).await {
                    Ok(resp) => return resp.data.0.map_err(ProposeError::Rejected),
                    Err(e) => match write_error(e) {
                        ProposeError::ForwardToLeader {
                            leader_id,
                            leader: Some(node),
                        } => Some((leader_id, node)),
                        e => {
                            self.pause_or_fail(e, deadline).await?;
                            None
                        }
                    },
                },
            };
            if let Some((leader_id, node)) = forward_to {
                let (id, tagged) = forwarded.get_or_insert_with(|| {
                    let id = self.waits.next_id();
                    (id, self.waits.tag(&data, id))
                });
                // Registered before the batch leaves: the entry may be applied here before
                // the leader's answer arrives, or instead of it. Whichever comes first
                // answers (applying is deterministic: both carry the same outcome).
                let applied = pin!(self.waits.register(*id).applied());
                let written = pin!(
                    self.forwards
                        .write(leader_id, node, tagged.clone(), deadline)
                );
                let (written, applied) = match select(written, applied).await {
                    Either::Left(answered) => answered,
                    Either::Right((Some(ApplyOutcome(result)), _)) => {
                        return result.map_err(ProposeError::Rejected);
                    }
                    // Not expected: a waiting entry is removed only when answered or
                    // when its registration (held here) drops.
                    Either::Right((None, _)) => return Err(ProposeError::Stopped),
                };
                match written {
                    Ok(outcome) => return outcome.map_err(ProposeError::Rejected),
                    // Sent, and the answer lost: it may still commit.
                    Err(ProposeError::LeaderChanged) => {
                        return await_forwarded(applied, deadline).await;
                    }
                    // The registration ends with this block, before any new attempt.
                    Err(e) => self.pause_or_fail(e, deadline).await?,
                }
            }
        }
    }

    /// The read index confirmed by a quorum if this member leads (openraft's ReadIndex: it
    /// confirms leadership with a heartbeat round); `ForwardToLeader` otherwise.
    async fn read_index_here(&self) -> Result<u64, ProposeError> {
        match self.raft.get_read_linearizer(ReadPolicy::ReadIndex).await {
            Ok(linearizer) => Ok(linearizer.read_log_id().index()),
            Err(e) => Err(read_error(e)),
        }
    }

    /// The read index for this member's own reads, confirmed by a quorum after `here` (this
    /// member's own ReadIndex attempt) began: `here` itself on the leader; a follower asks
    /// the leader for one.
    async fn confirmed_read_index(
        &self,
        mut here: Result<u64, ProposeError>,
        deadline: Instant,
    ) -> Result<u64, ProposeError> {
        loop {
            let err = match here {
                Ok(index) => return Ok(index),
                Err(e) => e,
            };
            let err = match err {
                ProposeError::ForwardToLeader {
                    leader_id,
                    leader: Some(node),
                } => {
                    let ttl = deadline.saturating_duration_since(Instant::now());
                    match self.forward.read_index(leader_id, &node, ttl).await {
                        Ok(index) => return Ok(index),
                        Err(e) => e,
                    }
                }
                e => e,
            };
            self.pause_or_fail(err, deadline).await?;
            here = self.read_index_here().await;
        }
    }

    /// Sends an application call to the leader, waiting for one while none is known.
    async fn leader_call(
        &self,
        path: String,
        body: bytes::Bytes,
        deadline: Instant,
    ) -> Result<bytes::Bytes, ProposeError> {
        loop {
            let err = match self.leader() {
                // Raft names this member leader; once its status does too (a quorum ack
                // right after an election), the caller serves the call itself.
                Leader::Me if self.status.is_leader.load(Ordering::Acquire) => {
                    return Err(ProposeError::LeaderChanged);
                }
                Leader::Me => ProposeError::NoLeader,
                Leader::Other(l, node) => {
                    let ttl = deadline.saturating_duration_since(Instant::now());
                    match self
                        .forward
                        .app_call(l, &node, path.clone(), body.clone(), ttl)
                        .await
                    {
                        Ok(answer) => return Ok(answer),
                        Err(e) => e,
                    }
                }
                Leader::Unknown => ProposeError::NoLeader,
            };
            self.pause_or_fail(err, deadline).await?;
        }
    }

    /// Makes a membership change here if this member leads, else through the leader.
    async fn change_members(
        &self,
        change: MemberChange,
        deadline: Instant,
    ) -> Result<MembershipView, MemberChangeError> {
        loop {
            let res = match self.leader() {
                Leader::Me => change_members_here(&self.raft, change.clone()).await,
                Leader::Other(l, node) => {
                    let ttl = deadline.saturating_duration_since(Instant::now());
                    self.forward
                        .change_members(l, &node, change.clone(), ttl)
                        .await
                }
                Leader::Unknown => Err(MemberChangeError::Raft(ForwardRefusal::NoLeader)),
            };
            match res {
                Err(MemberChangeError::Raft(
                    ForwardRefusal::NoLeader | ForwardRefusal::NotLeader,
                )) => {
                    if !self.pause_before(deadline).await {
                        return Err(MemberChangeError::Raft(ForwardRefusal::Timeout));
                    }
                }
                other => return other,
            }
        }
    }

    async fn await_applied(&self, index: u64, deadline: Instant) -> Result<(), ProposeError> {
        let ttl = deadline.saturating_duration_since(Instant::now());
        self.raft
            .wait(Some(ttl))
            .applied_index_at_least(Some(index), "apply up to the read index")
            .await
            .map(|_| ())
            .map_err(|_| ProposeError::Timeout)
    }

    /// Errors that mean "no leader to serve this yet" wait a little and let the caller try
    /// again; the others end the request.
    async fn pause_or_fail(
        &self,
        err: ProposeError,
        deadline: Instant,
    ) -> Result<(), ProposeError> {
        let retry = matches!(
            err,
            ProposeError::NoLeader | ProposeError::ForwardToLeader { leader: None, .. }
        );
        if !retry {
            return Err(err);
        }
        if !self.pause_before(deadline).await {
            return Err(ProposeError::Timeout);
        }
        Ok(())
    }

    /// Waits one retry pause; false (without waiting) when that would pass `deadline`.
    async fn pause_before(&self, deadline: Instant) -> bool {
        if Instant::now() + self.retry_pause >= deadline {
            return false;
        }
        glommio::timer::sleep(self.retry_pause).await;
        true
    }

    /// Who leads, as this member last saw it (the leader's record from the membership).
    fn leader(&self) -> Leader {
        let metrics = self.raft.metrics();
        let m = metrics.borrow_watched();
        match m.current_leader {
            Some(l) if l == m.id => Leader::Me,
            Some(l) => match m.membership_config.membership().get_node(&l) {
                Some(node) => Leader::Other(l, node.clone()),
                None => Leader::Unknown,
            },
            None => Leader::Unknown,
        }
    }
}

/// Waits until this member applies a forwarded write whose answer was lost (the leader may
/// have replicated it first) and answers its outcome; `Timeout` at `deadline`, as etcd's
/// `request timed out` for a proposal it never saw applied.
async fn await_forwarded(
    applied: impl Future<Output = Option<ApplyOutcome>>,
    deadline: Instant,
) -> Result<RaftResponse, ProposeError> {
    let ttl = deadline.saturating_duration_since(Instant::now());
    match glommio::timer::timeout(ttl, async { Ok(applied.await) }).await {
        Ok(Some(ApplyOutcome(result))) => result.map_err(ProposeError::Rejected),
        // Not expected (see `Route::write`).
        Ok(None) => Err(ProposeError::Stopped),
        Err(_) => Err(ProposeError::Timeout),
    }
}

impl<S: StateStore, F: LeaderForward> Driver<S, F> {
    fn route(&self) -> Route<S, F> {
        Route {
            raft: self.raft.clone(),
            status: self.status.clone(),
            forward: self.forward.clone(),
            forwards: self.forwards.clone(),
            waits: self.waits.clone(),
            retry_pause: self.retry_pause,
        }
    }

    async fn run(self, rx: flume::Receiver<Command>) {
        let in_flight = Rc::new(Cell::new(0usize));
        while let Ok(cmd) = rx.recv_async().await {
            match cmd {
                Command::Write { data, reply } => self.spawn_write(data, reply, in_flight.clone()),
                Command::ReadBarrier { reply } => {
                    self.reads
                        .queued
                        .borrow_mut()
                        .push(ReadWaiter::Applied(reply));
                    self.start_read_round();
                }
                Command::ReadIndex { reply } => {
                    self.reads
                        .queued
                        .borrow_mut()
                        .push(ReadWaiter::Index(reply));
                    self.start_read_round();
                }
                Command::ChangeMembers { change, reply } => {
                    let route = self.route();
                    let deadline = Instant::now() + self.request_timeout;
                    glommio::spawn_local(async move {
                        let _ = reply.send(route.change_members(change, deadline).await);
                    })
                    .detach();
                }
                Command::LeaderCall { path, body, reply } => {
                    let route = self.route();
                    let deadline = Instant::now() + self.request_timeout;
                    glommio::spawn_local(async move {
                        let _ = reply.send(route.leader_call(path, body, deadline).await);
                    })
                    .detach();
                }
                Command::TransferLeader { to, reply } => {
                    let raft = self.raft.clone();
                    let timeout = self.request_timeout;
                    glommio::spawn_local(async move {
                        let _ = reply.send(transfer_leader(&raft, to, timeout).await);
                    })
                    .detach();
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
        data: RequestBytes,
        reply: Reply<RaftResponse>,
        in_flight: Rc<Cell<usize>>,
    ) {
        let route = self.route();
        let timeout = self.request_timeout;
        in_flight.set(in_flight.get() + 1);
        glommio::spawn_local(async move {
            let deadline = Instant::now() + timeout;
            let res =
                glommio::timer::timeout(timeout, async { Ok(route.write(data, deadline).await) })
                    .await;
            let out = res.unwrap_or(Err(ProposeError::Timeout));
            let _ = reply.send(out);
            in_flight.set(in_flight.get() - 1);
        })
        .detach();
    }

    fn start_read_round(&self) {
        start_read_round(
            self.route(),
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

fn start_read_round<S: StateStore, F: LeaderForward>(
    route: Route<S, F>,
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
        let deadline = Instant::now() + timeout;
        let (mut local, mut followers) = (Vec::new(), Vec::new());
        for waiter in batch {
            match waiter {
                ReadWaiter::Applied(reply) => local.push(reply),
                ReadWaiter::Index(reply) => followers.push(reply),
            }
        }
        let here = glommio::timer::timeout(timeout, async { Ok(route.read_index_here().await) })
            .await
            .unwrap_or(Err(ProposeError::Timeout));
        // Followers wait for their own apply: answer them before this member's reads.
        for reply in followers {
            let _ = reply.send(here.clone());
        }
        let index = if local.is_empty() {
            None
        } else {
            let left = deadline.saturating_duration_since(Instant::now());
            let confirmed = glommio::timer::timeout(left, async {
                Ok(route.confirmed_read_index(here, deadline).await)
            })
            .await;
            Some(confirmed.unwrap_or(Err(ProposeError::Timeout)))
        };
        // The index is confirmed: the next round may start while these reads wait for
        // this member to apply up to it.
        reads.running.set(false);
        start_read_round(route.clone(), reads, timeout, status);
        if let Some(index) = index {
            let out = match index {
                Ok(index) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    glommio::timer::timeout(left, async {
                        Ok(route.await_applied(index, deadline).await)
                    })
                    .await
                    .unwrap_or(Err(ProposeError::Timeout))
                }
                Err(e) => Err(e),
            };
            for reply in local {
                let _ = reply.send(out.clone());
            }
        }
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

pub(crate) fn write_error(
    e: RaftError<KetchRaftTypes, ClientWriteError<KetchRaftTypes>>,
) -> ProposeError {
    match e {
        RaftError::APIError(e) => client_write_error(e),
        RaftError::Fatal(f) => fatal(f),
    }
}

pub(crate) fn client_write_error(e: ClientWriteError<KetchRaftTypes>) -> ProposeError {
    match e {
        ClientWriteError::ForwardToLeader(f) => forward(f),
        ClientWriteError::LogEntryDiscarded(_) => ProposeError::LeaderChanged,
        other => ProposeError::Internal(other.to_string()),
    }
}

pub(crate) fn read_error(
    e: RaftError<KetchRaftTypes, LinearizableReadError<KetchRaftTypes>>,
) -> ProposeError {
    match e {
        RaftError::APIError(LinearizableReadError::ForwardToLeader(f)) => forward(f),
        RaftError::APIError(LinearizableReadError::QuorumNotEnough(_)) => {
            ProposeError::QuorumNotReachable
        }
        RaftError::Fatal(f) => fatal(f),
    }
}
