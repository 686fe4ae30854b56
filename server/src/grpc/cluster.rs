//! Cluster: MemberList for `etcdctl member list`. Membership changes are the cluster issue's and
//! answer Unimplemented until then.

use std::sync::Arc;

use ketch_proto::cluster_server::Cluster;
use ketch_proto::{Member, MemberListRequest, MemberListResponse};
use tonic::{Request, Response, Status};

use crate::node::Node;

pub struct ClusterService {
    pub node: Arc<Node>,
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_list(
        &self,
        _req: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        let _inflight = self.node.enter();
        let members = self
            .node
            .members
            .iter()
            .map(|m| Member {
                id: m.id,
                name: m.name.clone(),
                peer_ur_ls: m.peer_urls.clone(),
                client_ur_ls: m.client_urls.clone(),
                is_learner: false,
            })
            .collect();
        // etcd's MemberList header has no revision (0), as `member list -w json` shows.
        Ok(Response::new(MemberListResponse {
            header: Some(self.node.header(0)),
            members,
        }))
    }
}
