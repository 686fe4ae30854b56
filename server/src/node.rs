//! What every gRPC and HTTP handler shares: the member's identity, the raft handle, limits and
//! metrics. `Node` is `Send + Sync`; handlers on every shard hold an `Arc<Node>`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use ketch_proto::ResponseHeader;
use ketch_proto::ketchpb::{RaftRequest, RaftResponse};
pub type RaftHandle = ketch_raft::RaftHandle<crate::lease::ReplicatedStore>;
use prost::Message;
use tonic::Status;

use crate::errors;
use crate::metrics::ServerMetrics;

pub struct Limits {
    pub max_request_bytes: usize,
    pub max_txn_ops: usize,
    /// `--election-timeout`: how often require-leader watch streams check for a leader.
    pub election_timeout: std::time::Duration,
    /// `--quota-backend-bytes` in force (`None`: no quota, etcd's negative flag).
    pub quota_bytes: Option<i64>,
    /// `--bcrypt-cost`: the cost new passwords are hashed with.
    pub bcrypt_cost: u32,
}

pub struct Node {
    pub cluster_id: u64,
    pub member_id: u64,
    pub limits: Limits,
    pub raft: RaftHandle,
    pub watch: Arc<crate::watch::WatchHub>,
    pub lessor: Arc<crate::lease::Lessor>,
    pub metrics: ServerMetrics,
    inflight: AtomicUsize,
}

impl Node {
    pub fn new(
        cluster_id: u64,
        member_id: u64,
        limits: Limits,
        raft: RaftHandle,
        watch: Arc<crate::watch::WatchHub>,
        lessor: Arc<crate::lease::Lessor>,
    ) -> Arc<Self> {
        Arc::new(Node {
            cluster_id,
            member_id,
            limits,
            raft,
            watch,
            lessor,
            metrics: ServerMetrics::default(),
            inflight: AtomicUsize::new(0),
        })
    }

    pub fn header(&self, revision: i64) -> ResponseHeader {
        ResponseHeader {
            cluster_id: self.cluster_id,
            member_id: self.member_id,
            revision,
            raft_term: self.raft.status().term,
        }
    }

    /// Replicates `req` and returns what applying it produced. The response exists only once
    /// the entry is durable on a quorum and applied: acknowledging it is safe.
    pub async fn propose(&self, req: RaftRequest) -> Result<RaftResponse, Status> {
        // etcd refuses proposals larger than --max-request-bytes before they reach raft.
        if req.encoded_len() > self.limits.max_request_bytes {
            return Err(errors::request_too_large());
        }
        if self.is_learner() {
            return Err(errors::learner_refusal());
        }
        self.check_quota(&req).await?;
        self.metrics.proposals_pending.inc();
        let result = self.raft.write(req).await;
        self.metrics.proposals_pending.dec();
        match result {
            Ok(resp) => Ok(resp),
            Err(e) => {
                self.metrics.proposals_failed.inc();
                Err(errors::propose_status(&e))
            }
        }
    }

    /// etcd's quota check before a write that grows the store: when this member's store plus
    /// the request's cost reaches `--quota-backend-bytes`, the member raises NOSPACE through
    /// raft (every member then refuses such writes at apply) and the write fails.
    async fn check_quota(&self, req: &RaftRequest) -> Result<(), Status> {
        let Some(quota) = self.limits.quota_bytes else {
            return Ok(());
        };
        // Only requests the quota covers take the store's lock to read its size.
        let Some(cost) = req.request.as_ref().and_then(crate::alarm::quota_cost) else {
            return Ok(());
        };
        let size = self.raft.store().read().size_bytes();
        if size + cost < quota {
            return Ok(());
        }
        tracing::warn!(
            "store size {size} bytes + request would reach --quota-backend-bytes {quota}: raising NOSPACE"
        );
        let raise = ketch_proto::AlarmRequest {
            action: ketch_proto::alarm_request::AlarmAction::Activate as i32,
            member_id: self.member_id,
            alarm: ketch_proto::AlarmType::Nospace as i32,
        };
        let raise = RaftRequest {
            request: Some(ketch_proto::ketchpb::raft_request::Request::Alarm(raise)),
            // The member raises it itself (etcd's internal request, not the client's).
            header: crate::lease::auth_apply::internal_header(),
            ..RaftRequest::default()
        };
        if let Err(e) = self.raft.write(raise).await {
            tracing::warn!("raising the NOSPACE alarm: {e}");
        }
        Err(errors::mvcc_status(&ketch_mvcc::MvccError::NoSpace))
    }

    /// Waits until this member has applied everything committed when the call began
    /// (ReadIndex), so a read that follows is linearizable.
    pub async fn read_barrier(&self) -> Result<(), Status> {
        if self.is_learner() {
            return Err(errors::learner_refusal());
        }
        self.raft
            .linearizable_read_barrier()
            .await
            .map_err(|e| errors::propose_status(&e))
    }

    /// Whether this member is a learner (it serves serializable reads only, as in etcd).
    pub fn is_learner(&self) -> bool {
        self.raft.is_learner()
    }

    /// Counts a request as in flight until the guard drops; shutdown waits for zero.
    pub fn enter(&self) -> InflightGuard<'_> {
        self.inflight.fetch_add(1, Ordering::AcqRel);
        InflightGuard(&self.inflight)
    }

    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::Acquire)
    }
}

pub struct InflightGuard<'a>(&'a AtomicUsize);

impl Drop for InflightGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
