//! Maintenance: Status for `etcdctl endpoint status`; the rest of the service (alarms,
//! defragment, hashes, snapshot, move-leader) is the cluster issue's and answers Unimplemented.

use std::sync::Arc;

use ketch_proto::maintenance_server::Maintenance;
use ketch_proto::{StatusRequest, StatusResponse};
use tonic::{Request, Response, Status};

use crate::node::Node;
use crate::version::ETCD_COMPAT_VERSION;

pub struct MaintenanceService {
    pub node: Arc<Node>,
}

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn status(
        &self,
        _req: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        let _inflight = self.node.enter();
        let raft = self.node.raft.status();
        let (revision, db_size) = {
            let store = self.node.raft.store();
            let store = store.read();
            (store.revision(), store.size_bytes())
        };
        let mut errors = Vec::new();
        if raft.leader_id == 0 {
            errors.push(crate::errors::NO_LEADER.to_string());
        }
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
            is_learner: false,
        }))
    }
}
