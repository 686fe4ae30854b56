//! Maintenance: Status, Hash, HashKV, Defragment, MoveLeader and Alarm (list, raise, disarm,
//! through raft as etcd does), and Snapshot: the state exported as etcd 3.4's backend file
//! (`crate::snapshot_export`), so `etcdctl snapshot save/status/restore` work.

use std::sync::Arc;

use ketch_proto::AlarmType;
use ketch_proto::ketchpb::{RaftRequest, raft_request, raft_response};
use ketch_proto::maintenance_server::Maintenance;
use ketch_proto::{
    AlarmRequest, AlarmResponse, DefragmentRequest, DefragmentResponse, HashKvRequest,
    HashKvResponse, HashRequest, HashResponse, MoveLeaderRequest, MoveLeaderResponse,
    SnapshotRequest, SnapshotResponse, StatusRequest, StatusResponse,
};
use tonic::{Request, Response, Status};

use crate::errors::mvcc_status;
use crate::grpc::auth::Credentials;
use crate::grpc::watch::{ChannelStream, ResponseStream};
use crate::node::Node;
use crate::version::ETCD_COMPAT_VERSION;

pub struct MaintenanceService {
    pub node: Arc<Node>,
}

impl MaintenanceService {
    /// etcd's `authMaintenanceServer`: Hash, HashKV, Defragment, Snapshot and MoveLeader
    /// need a root-role user once auth is on. Its errors skip etcd's translation: code
    /// Unknown with the auth package's text (`auth: permission denied`).
    async fn check_admin<T>(&self, req: &Request<T>) -> Result<(), Status> {
        let status = |e: &ketch_auth::AuthError| crate::errors::maintenance_auth_status(e);
        let who = Credentials::of(req)
            .resolve(&self.node)
            .await
            .map_err(|e| status(&e))?;
        let store = self.node.raft.store();
        let result = store.read().auth().check_admin(&who);
        result.map_err(|e| status(&e))
    }
}

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn status(
        &self,
        _req: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        let _inflight = self.node.enter();
        let raft = self.node.raft.status();
        let (revision, db_size, alarms) = {
            let store = self.node.raft.store();
            let store = store.read();
            let alarms = store.alarms().list(AlarmType::None);
            (store.revision(), store.size_bytes(), alarms)
        };
        let mut errors = Vec::new();
        if raft.leader_id == 0 {
            errors.push(crate::errors::NO_LEADER.to_string());
        }
        errors.extend(alarms.iter().map(crate::alarm::describe));
        Ok(Response::new(StatusResponse {
            header: Some(self.node.header(revision)),
            version: ETCD_COMPAT_VERSION.to_string(),
            db_size,
            leader: raft.leader_id,
            raft_index: raft.commit_index,
            raft_term: raft.term,
            raft_applied_index: raft.applied_index,
            errors,
            db_size_in_use: db_size,
            is_learner: self.node.is_learner(),
        }))
    }

    /// etcd hashes its whole backend file; ketch has no such file, so Hash is the KV hash at
    /// the current revision (equal on members holding the same data, which is what it is for).
    async fn hash(&self, req: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        let _inflight = self.node.enter();
        self.check_admin(&req).await?;
        let store = self.node.raft.store();
        let store = store.read();
        let (hash, _) = store.hash_kv(0).map_err(|e| mvcc_status(&e))?;
        Ok(Response::new(HashResponse {
            header: Some(self.node.header(store.revision())),
            hash,
        }))
    }

    async fn hash_kv(
        &self,
        req: Request<HashKvRequest>,
    ) -> Result<Response<HashKvResponse>, Status> {
        let _inflight = self.node.enter();
        self.check_admin(&req).await?;
        let store = self.node.raft.store();
        let store = store.read();
        let (hash, compact_revision) = store
            .hash_kv(req.get_ref().revision)
            .map_err(|e| mvcc_status(&e))?;
        Ok(Response::new(HashKvResponse {
            header: Some(self.node.header(store.revision())),
            hash,
            compact_revision,
        }))
    }

    /// etcd's Snapshot: the backend database (bbolt, etcd's buckets) in 32 KiB chunks, then
    /// its sha256. Built on its own thread from a frozen copy of the state; the stream's
    /// bounded channel holds back the builder while the client reads slowly.
    async fn snapshot(
        &self,
        req: Request<SnapshotRequest>,
    ) -> Result<Response<ResponseStream<SnapshotResponse>>, Status> {
        use crate::snapshot_export::{SNAPSHOT_CHUNKS_IN_FLIGHT, capture, spawn_stream};
        let _inflight = self.node.enter();
        self.check_admin(&req).await?;
        let state = capture(&self.node);
        let (tx, rx) = flume::bounded(SNAPSHOT_CHUNKS_IN_FLIGHT);
        spawn_stream(state, tx)
            .map_err(|e| Status::internal(format!("starting the snapshot thread: {e}")))?;
        Ok(Response::new(Box::pin(ChannelStream::new(rx, None))))
    }

    /// etcd's MoveLeader: only the leader hands over, to a voter; answered once the
    /// transferee leads.
    async fn move_leader(
        &self,
        req: Request<MoveLeaderRequest>,
    ) -> Result<Response<MoveLeaderResponse>, Status> {
        let _inflight = self.node.enter();
        self.check_admin(&req).await?;
        let to = req.get_ref().target_id;
        if !self.node.raft.status().is_leader {
            return Err(Status::failed_precondition(crate::errors::NOT_LEADER));
        }
        let voter = self
            .node
            .raft
            .membership()
            .get(to)
            .is_some_and(|m| !m.is_learner);
        if !voter || to == self.node.member_id {
            return Err(Status::failed_precondition(crate::errors::BAD_TRANSFEREE));
        }
        match self.node.raft.transfer_leader(to).await {
            Ok(()) => Ok(Response::new(MoveLeaderResponse {
                header: Some(self.node.header(0)),
            })),
            Err(ketch_raft::ProposeError::Timeout) => {
                Err(Status::unavailable(crate::errors::TRANSFER_TIMEOUT))
            }
            Err(e) => Err(crate::errors::propose_status(&e)),
        }
    }

    /// The store lives in memory and compaction frees what it drops at once: there is no file
    /// to rewrite, so defragmenting succeeds without work.
    async fn defragment(
        &self,
        req: Request<DefragmentRequest>,
    ) -> Result<Response<DefragmentResponse>, Status> {
        let _inflight = self.node.enter();
        self.check_admin(&req).await?;
        // etcd answers Defragment without a header (`{}` through the gateway).
        Ok(Response::new(DefragmentResponse { header: None }))
    }

    /// Every action goes through raft, as in etcd (a GET too, so it reads the alarms as of a
    /// committed point). The response has no header, as etcd's.
    async fn alarm(&self, req: Request<AlarmRequest>) -> Result<Response<AlarmResponse>, Status> {
        let _inflight = self.node.enter();
        // etcd checks no permission for alarms.
        let req = RaftRequest {
            request: Some(raft_request::Request::Alarm(req.into_inner())),
            header: None,
            ..RaftRequest::default()
        };
        match self.node.propose(req).await?.response {
            Some(raft_response::Response::Alarm(r)) => Ok(Response::new(r)),
            other => panic!("state machine answered Alarm with {other:?}"),
        }
    }
}
