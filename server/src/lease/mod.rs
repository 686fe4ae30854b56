//! Leases: the replicated lease state beside the MVCC store (`state`), the leader's pure
//! expiry bookkeeping (`lessor`), and this adapter that owns the clock: it answers the Lease
//! service's questions and runs the loop that, on the leader, proposes revocations of expired
//! leases through raft (rate-limited as etcd's `leaseRevokeRate`) and checkpoints remaining
//! TTLs through raft (etcd's `--experimental-enable-lease-checkpoint`, always on here), so a
//! restart or leader change does not give a lease its full TTL back. The same loop, on every
//! member, drops expired auth tokens.

pub mod auth_apply;
pub mod lessor;
pub mod state;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ketch_proto::ketchpb::{RaftRequest, raft_request};
use ketch_proto::{LeaseCheckpoint, LeaseCheckpointRequest, LeaseRevokeRequest};
use parking_lot::Mutex;

use crate::node::Node;
use lessor::LessorCore;
pub use state::ReplicatedStore;

/// etcd's `MaxLeaseTTL`: a larger TTL is refused.
pub const MAX_LEASE_TTL_SECS: i64 = 9_000_000_000;
/// etcd's minimum TTL with its default timing (heartbeat 100 ms, election 1000 ms).
pub const DEFAULT_MIN_TTL_SECS: i64 = 2;
/// How often the leader looks for expired leases (etcd's lessor loop period).
const EXPIRY_TICK: Duration = Duration::from_millis(500);
/// etcd's `leaseRevokeRate`: at most this many revocations proposed per second.
const REVOKE_RATE_PER_SEC: usize = 1000;
/// etcd's `maxLeaseCheckpointBatchSize`: checkpoints per raft entry.
const CHECKPOINT_BATCH: usize = 1000;
/// etcd's `defaultLeaseCheckpointInterval`.
const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(300);
/// Hidden knob for tests: the checkpoint interval in milliseconds.
const CHECKPOINT_INTERVAL_ENV: &str = "KETCH_LEASE_CHECKPOINT_INTERVAL_MS";

/// The lease errors raised outside the MVCC store, with etcd's messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    #[error("etcdserver: too large lease TTL")]
    TtlTooLarge,
    #[error("etcdserver: not leader")]
    NotLeader,
}

pub struct Lessor {
    core: Mutex<LessorCore>,
    pub min_ttl_secs: i64,
    checkpoint_interval: Duration,
    /// etcd's request ID generator: 2 bytes of member ID, 5 of milliseconds, 1 of counter.
    id_suffix: AtomicU64,
    id_prefix: u64,
}

impl Lessor {
    pub fn new(member_id: u64, heartbeat_ms: u64, election_timeout_ms: u64) -> Arc<Lessor> {
        let checkpoint_interval = std::env::var(CHECKPOINT_INTERVAL_ENV)
            .ok()
            .and_then(|v| v.parse().ok())
            .map_or(DEFAULT_CHECKPOINT_INTERVAL, Duration::from_millis);
        let unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Arc::new(Lessor {
            core: Mutex::new(LessorCore::default()),
            min_ttl_secs: min_ttl_secs(heartbeat_ms, election_timeout_ms),
            checkpoint_interval,
            id_suffix: AtomicU64::new((unix_ms & ((1 << 40) - 1)) << 8),
            id_prefix: (member_id & 0xffff) << 48,
        })
    }

    /// A fresh positive lease ID, as etcd picks one when the client gives none.
    pub fn next_id(&self) -> i64 {
        loop {
            let suffix = self.id_suffix.fetch_add(1, Ordering::Relaxed) + 1;
            let id = (self.id_prefix | (suffix & ((1 << 48) - 1))) & (i64::MAX as u64);
            if id != 0 {
                return id as i64;
            }
        }
    }

    /// The TTL a grant is replicated with: at least the minimum; too large is refused.
    pub fn grant_ttl(&self, ttl: i64) -> Result<i64, LeaseError> {
        if ttl > MAX_LEASE_TTL_SECS {
            return Err(LeaseError::TtlTooLarge);
        }
        Ok(ttl.max(self.min_ttl_secs))
    }

    pub fn renew(&self, id: i64, ttl_secs: i64) {
        self.core.lock().renew(id, ttl_secs, Instant::now());
    }

    pub fn is_expired(&self, id: i64) -> bool {
        self.core.lock().is_expired(id, Instant::now())
    }

    /// Seconds left (truncated, as etcd's `int64(Remaining().Seconds())`), falling back to
    /// `table_ttl` for a lease the loop has not picked up yet.
    pub fn remaining_secs(&self, id: i64, table_ttl: state::LeaseTtl) -> i64 {
        match self.core.lock().remaining(id, Instant::now()) {
            Some(d) => d.as_secs() as i64,
            None if table_ttl.remaining_ttl > 0 => table_ttl.remaining_ttl,
            None => table_ttl.granted_ttl,
        }
    }

    /// Lease IDs, soonest expiry first; leases without a deadline yet come last.
    pub fn order_by_expiry(&self, mut ids: Vec<i64>) -> Vec<i64> {
        let order = self.core.lock().ids_by_expiry();
        let rank: std::collections::HashMap<i64, usize> = order
            .into_iter()
            .enumerate()
            .map(|(i, id)| (id, i))
            .collect();
        ids.sort_by_key(|id| (rank.get(id).copied().unwrap_or(usize::MAX), *id));
        ids
    }
}

/// etcd's rule: `(3 * electionTicks / 2) * heartbeat`, rounded up to whole seconds.
pub fn min_ttl_secs(heartbeat_ms: u64, election_timeout_ms: u64) -> i64 {
    let heartbeat_ms = heartbeat_ms.max(1);
    let election_ticks = election_timeout_ms / heartbeat_ms;
    let min_ms = (3 * election_ticks / 2) * heartbeat_ms;
    min_ms.div_ceil(1000) as i64
}

/// The leader's lease loop, run on the raft shard until `stop` fires.
pub async fn run(node: Arc<Node>, stop: flume::Receiver<()>) {
    let mut was_leader = false;
    let mut next_checkpoint = Instant::now() + node.lessor.checkpoint_interval;
    loop {
        if glommio::timer::timeout(EXPIRY_TICK, async {
            let _ = stop.recv_async().await;
            Ok(())
        })
        .await
        .is_ok()
        {
            return;
        }
        expire_tokens(&node);
        let is_leader = node.raft.status().is_leader;
        if is_leader != was_leader {
            node.lessor.core.lock().clear();
            was_leader = is_leader;
        }
        if !is_leader {
            continue;
        }
        reconcile(&node);
        let limit = REVOKE_RATE_PER_SEC * EXPIRY_TICK.as_millis() as usize / 1000;
        let expired = node.lessor.core.lock().take_expired(Instant::now(), limit);
        for id in expired {
            glommio::spawn_local(propose_revoke(node.clone(), id)).detach();
        }
        if Instant::now() >= next_checkpoint {
            next_checkpoint = Instant::now() + node.lessor.checkpoint_interval;
            let ttls = node.lessor.core.lock().remaining_ttls(Instant::now());
            for chunk in ttls.chunks(CHECKPOINT_BATCH) {
                glommio::spawn_local(propose_checkpoint(node.clone(), chunk.to_vec())).detach();
            }
        }
    }
}

/// Drops auth tokens unused for their TTL (every member holds its own tokens). Lookups drop
/// expired tokens anyway; this bounds the memory of tokens nobody uses again.
fn expire_tokens(node: &Node) {
    let store = node.raft.store();
    store.read().auth().expire_tokens(Instant::now());
}

fn reconcile(node: &Node) {
    let store = node.raft.store();
    let store = store.read();
    let generation = store.lease_generation();
    let mut core = node.lessor.core.lock();
    if core.needs_reconcile(generation) {
        core.reconcile(Instant::now(), generation, store.lease_ttls());
    }
}

async fn propose_revoke(node: Arc<Node>, id: i64) {
    let req = raft_request::Request::LeaseRevoke(LeaseRevokeRequest { id });
    // A failure is retried after REVOKE_RETRY; "not found" means someone revoked it first.
    // Revoked as root, as etcd does (`WithRoot`): the holder's permissions do not matter.
    let req = RaftRequest {
        request: Some(req),
        header: auth_apply::internal_header(),
        ..RaftRequest::default()
    };
    if let Err(e) = node.propose(req).await {
        tracing::debug!(lease = id, error = %e, "revoking an expired lease failed");
    }
}

async fn propose_checkpoint(node: Arc<Node>, ttls: Vec<(i64, i64)>) {
    let checkpoints = ttls
        .into_iter()
        .map(|(id, remaining_ttl)| LeaseCheckpoint { id, remaining_ttl })
        .collect();
    let req = raft_request::Request::LeaseCheckpoint(LeaseCheckpointRequest { checkpoints });
    if let Err(e) = node
        .propose(RaftRequest {
            request: Some(req),
            header: None,
            ..RaftRequest::default()
        })
        .await
    {
        tracing::debug!(error = %e, "lease checkpoint failed");
    }
}

/// Clears a lease's checkpoint when it is renewed (as etcd's `Renew` does), so a restart
/// after a keep-alive gives the lease its full TTL, not the stale remaining one.
pub async fn clear_checkpoint(node: &Node, id: i64) -> Result<(), tonic::Status> {
    let checkpoints = vec![LeaseCheckpoint {
        id,
        remaining_ttl: 0,
    }];
    let req = raft_request::Request::LeaseCheckpoint(LeaseCheckpointRequest { checkpoints });
    node.propose(RaftRequest {
        request: Some(req),
        header: None,
        ..RaftRequest::default()
    })
    .await
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_ttl_follows_etcds_rule() {
        assert_eq!(
            min_ttl_secs(100, 1000),
            2,
            "etcd's defaults: 1.5 s rounds up"
        );
        assert_eq!(min_ttl_secs(100, 2000), 3);
        assert_eq!(min_ttl_secs(50, 500), 1);
    }

    #[test]
    fn generated_ids_are_positive_unique_and_carry_the_member_prefix() {
        let l = Lessor::new(0xabcd_1234_5678_9a0b, 100, 1000);
        let a = l.next_id();
        let b = l.next_id();
        assert!(a > 0 && b > a);
        assert_eq!((a as u64) >> 48, 0x9a0b & 0x7fff);
        assert_eq!(l.grant_ttl(1), Ok(2));
        assert_eq!(
            l.grant_ttl(MAX_LEASE_TTL_SECS + 1),
            Err(LeaseError::TtlTooLarge)
        );
    }
}
