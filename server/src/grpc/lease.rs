//! The Lease service: grant and revoke go through raft; keep-alive, time-to-live and the
//! lease list are answered by the leader's lessor, as etcd 3.4's `LeaseServer` does.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::StreamExt;
use ketch_proto::ketchpb::{RaftRequest, raft_request, raft_response};
use ketch_proto::lease_server::Lease;
use ketch_proto::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse,
    LeaseLeasesRequest, LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse, LeaseStatus,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use tonic::{Request, Response, Status, Streaming};

use crate::grpc::watch::ChannelStream;
use crate::lease::LeaseError;
use crate::node::Node;

/// Keep-alive responses buffered per stream before the stream task waits for the client.
const KEEPALIVE_OUTBOUND_CAPACITY: usize = 16;
/// How long a keep-alive of an expired lease waits for its revocation to apply.
const EXPIRED_REVOKE_WAIT: Duration = Duration::from_secs(5);
const EXPIRED_REVOKE_POLL: Duration = Duration::from_millis(20);

pub struct LeaseService {
    pub node: Arc<Node>,
}

fn propose_request(r: raft_request::Request) -> RaftRequest {
    RaftRequest { request: Some(r) }
}

fn require_leader(node: &Node) -> Result<(), Status> {
    if node.raft.status().is_leader {
        Ok(())
    } else {
        Err(crate::errors::lease_status(&LeaseError::NotLeader))
    }
}

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(
        &self,
        req: Request<LeaseGrantRequest>,
    ) -> Result<Response<LeaseGrantResponse>, Status> {
        let _inflight = self.node.enter();
        let mut req = req.into_inner();
        req.ttl = self
            .node
            .lessor
            .grant_ttl(req.ttl)
            .map_err(|e| crate::errors::lease_status(&e))?;
        if req.id == 0 {
            req.id = self.node.lessor.next_id();
        }
        let resp = self
            .node
            .propose(propose_request(raft_request::Request::LeaseGrant(req)))
            .await?;
        let Some(raft_response::Response::LeaseGrant(mut resp)) = resp.response else {
            return Err(Status::internal(
                "state machine answered LeaseGrant wrongly",
            ));
        };
        self.node.lessor.renew(resp.id, resp.ttl);
        resp.header = Some(self.node.header(revision_of(&resp.header)));
        Ok(Response::new(resp))
    }

    async fn lease_revoke(
        &self,
        req: Request<LeaseRevokeRequest>,
    ) -> Result<Response<LeaseRevokeResponse>, Status> {
        let _inflight = self.node.enter();
        let req = req.into_inner();
        let resp = self
            .node
            .propose(propose_request(raft_request::Request::LeaseRevoke(req)))
            .await?;
        let Some(raft_response::Response::LeaseRevoke(mut resp)) = resp.response else {
            return Err(Status::internal(
                "state machine answered LeaseRevoke wrongly",
            ));
        };
        resp.header = Some(self.node.header(revision_of(&resp.header)));
        Ok(Response::new(resp))
    }

    async fn lease_keep_alive(
        &self,
        req: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<crate::grpc::watch::ResponseStream<LeaseKeepAliveResponse>>, Status> {
        let inbound = req.into_inner();
        let (tx, rx) = flume::bounded(KEEPALIVE_OUTBOUND_CAPACITY);
        // Handlers run on the shard that accepted the connection; the stream stays there.
        glommio::spawn_local(keep_alive_loop(self.node.clone(), inbound, tx)).detach();
        Ok(Response::new(Box::pin(ChannelStream::new(rx, None))))
    }

    async fn lease_time_to_live(
        &self,
        req: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        let _inflight = self.node.enter();
        let req = req.into_inner();
        require_leader(&self.node)?;
        self.node.read_barrier().await?;
        let store = self.node.raft.store();
        let store = store.read();
        let header = Some(self.node.header(store.revision()));
        let resp = match store.lease_ttl(req.id) {
            Some(ttl) => LeaseTimeToLiveResponse {
                header,
                id: req.id,
                ttl: self.node.lessor.remaining_secs(req.id, ttl),
                granted_ttl: ttl.granted_ttl,
                keys: if req.keys {
                    store.keys_of_lease(req.id).into_iter().collect()
                } else {
                    Vec::new()
                },
            },
            None => LeaseTimeToLiveResponse {
                header,
                id: req.id,
                ttl: -1,
                ..Default::default()
            },
        };
        Ok(Response::new(resp))
    }

    async fn lease_leases(
        &self,
        _req: Request<LeaseLeasesRequest>,
    ) -> Result<Response<LeaseLeasesResponse>, Status> {
        let _inflight = self.node.enter();
        let (ids, revision) = {
            let store = self.node.raft.store();
            let store = store.read();
            (store.lease_ids(), store.revision())
        };
        let leases = self
            .node
            .lessor
            .order_by_expiry(ids)
            .into_iter()
            .map(|id| LeaseStatus { id })
            .collect();
        Ok(Response::new(LeaseLeasesResponse {
            header: Some(self.node.header(revision)),
            leases,
        }))
    }
}

fn revision_of(h: &Option<ketch_proto::ResponseHeader>) -> i64 {
    h.as_ref().map_or(0, |h| h.revision)
}

type KeepAliveTx = flume::Sender<Result<LeaseKeepAliveResponse, Status>>;

async fn keep_alive_loop(
    node: Arc<Node>,
    mut inbound: Streaming<LeaseKeepAliveRequest>,
    tx: KeepAliveTx,
) {
    while let Some(req) = inbound.next().await {
        let Ok(req) = req else { return };
        let resp = renew(&node, req.id).await;
        let failed = resp.is_err();
        if tx.send_async(resp).await.is_err() || failed {
            return;
        }
    }
}

/// One keep-alive: the header is taken before renewing (so its revision is not newer than
/// the renewal, as etcd notes); TTL 0 means the lease does not exist.
async fn renew(node: &Node, id: i64) -> Result<LeaseKeepAliveResponse, Status> {
    require_leader(node)?;
    let revision = node.raft.store().read().revision();
    let header = Some(node.header(revision));
    if node.lessor.is_expired(id) && !wait_revoked(node, id).await {
        return Err(Status::unavailable(crate::errors::TIMEOUT));
    }
    let ttl = node.raft.store().read().lease_ttl(id);
    let Some(ttl) = ttl else {
        return Ok(LeaseKeepAliveResponse { header, id, ttl: 0 });
    };
    if ttl.remaining_ttl > 0 {
        crate::lease::clear_checkpoint(node, id).await?;
    }
    node.lessor.renew(id, ttl.granted_ttl);
    Ok(LeaseKeepAliveResponse {
        header,
        id,
        ttl: ttl.granted_ttl,
    })
}

/// An expired lease is being revoked: wait for that (etcd answers "not found" after it).
async fn wait_revoked(node: &Node, id: i64) -> bool {
    let deadline = Instant::now() + EXPIRED_REVOKE_WAIT;
    while Instant::now() < deadline {
        if !node.raft.store().read().lease_exists(id) || !node.lessor.is_expired(id) {
            return true;
        }
        glommio::timer::sleep(EXPIRED_REVOKE_POLL).await;
    }
    false
}
