//! Cluster: MemberList from the replicated membership, and MemberAdd / MemberRemove /
//! MemberUpdate / MemberPromote with etcd's rules (checked by the leader, see
//! `ketch_raft::membership`). Every answer lists the members as they are after the change.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use ketch_proto::cluster_server::Cluster;
use ketch_proto::{
    Member, MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse,
    MemberUpdateRequest, MemberUpdateResponse,
};
use ketch_raft::{MemberChange, MemberView, MembershipView};
use tonic::{Request, Response, Status};

use crate::errors;
use crate::node::Node;

pub struct ClusterService {
    pub node: Arc<Node>,
}

fn member_pb(m: &MemberView) -> Member {
    Member {
        id: m.id,
        name: m.member.name.clone(),
        peer_ur_ls: m.member.peer_urls.clone(),
        client_ur_ls: m.member.client_urls.clone(),
        is_learner: m.is_learner,
    }
}

fn members_pb(view: &MembershipView) -> Vec<Member> {
    view.members.iter().map(member_pb).collect()
}

/// etcd's ID for a member added at run time: SHA-1 over its sorted peer URLs and the
/// current Unix time in seconds (`membership.NewMember` with no cluster name).
fn new_member_id(peer_urls: &[String]) -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    ketch_config::member_id(peer_urls, &now.to_string()).0
}

impl ClusterService {
    /// etcd's `checkMembershipOperationPermission`: member changes need a root-role user
    /// once auth is on (etcd's usual `etcdserver: ...` errors).
    async fn check_admin<T>(&self, req: &Request<T>) -> Result<(), Status> {
        let who = crate::grpc::auth::who(&self.node, req).await?;
        let store = self.node.raft.store();
        let result = store.read().auth().check_admin(&who);
        result.map_err(|e| errors::auth_status(&e))
    }

    async fn change(&self, change: MemberChange) -> Result<MembershipView, Status> {
        self.node
            .raft
            .change_members(change)
            .await
            .map_err(|e| errors::member_status(&e))
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(
        &self,
        req: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        let _inflight = self.node.enter();
        self.check_admin(&req).await?;
        let req = req.into_inner();
        let id = new_member_id(&req.peer_ur_ls);
        let view = self
            .change(MemberChange::Add {
                id,
                peer_urls: req.peer_ur_ls.clone(),
                learner: req.is_learner,
            })
            .await?;
        let member = view.get(id).map(member_pb).unwrap_or(Member {
            id,
            name: String::new(),
            peer_ur_ls: req.peer_ur_ls,
            client_ur_ls: Vec::new(),
            is_learner: req.is_learner,
        });
        Ok(Response::new(MemberAddResponse {
            header: Some(self.node.header(0)),
            member: Some(member),
            members: members_pb(&view),
        }))
    }

    async fn member_remove(
        &self,
        req: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        let _inflight = self.node.enter();
        self.check_admin(&req).await?;
        let id = req.into_inner().id;
        let view = self.change(MemberChange::Remove { id }).await?;
        Ok(Response::new(MemberRemoveResponse {
            header: Some(self.node.header(0)),
            members: members_pb(&view),
        }))
    }

    async fn member_update(
        &self,
        req: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        let _inflight = self.node.enter();
        self.check_admin(&req).await?;
        let req = req.into_inner();
        let view = self
            .change(MemberChange::Update {
                id: req.id,
                peer_urls: req.peer_ur_ls,
            })
            .await?;
        Ok(Response::new(MemberUpdateResponse {
            header: Some(self.node.header(0)),
            members: members_pb(&view),
        }))
    }

    async fn member_promote(
        &self,
        req: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        let _inflight = self.node.enter();
        self.check_admin(&req).await?;
        let id = req.into_inner().id;
        let view = self.change(MemberChange::Promote { id }).await?;
        Ok(Response::new(MemberPromoteResponse {
            header: Some(self.node.header(0)),
            members: members_pb(&view),
        }))
    }

    async fn member_list(
        &self,
        _req: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        let _inflight = self.node.enter();
        // etcd's Cluster headers carry no revision (0), as `member list -w json` shows.
        Ok(Response::new(MemberListResponse {
            header: Some(self.node.header(0)),
            members: members_pb(&self.node.raft.membership()),
        }))
    }
}
