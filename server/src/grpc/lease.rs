//! The Lease service: grant and revoke go through raft; keep-alive and time-to-live are
//! answered by the leader's lessor, as etcd 3.4's `LeaseServer` does: a follower forwards
//! them to the leader over the peer port (`LeasePeerApp`), as etcd forwards to `/leases`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_lite::StreamExt;
use ketch_proto::ketchpb::{raft_request, raft_response};
use ketch_proto::lease_server::Lease;
use ketch_proto::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse,
    LeaseLeasesRequest, LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse, LeaseStatus,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use prost::Message;
use tonic::{Code, Request, Response, Status, Streaming};

use crate::grpc::auth::entry;
use crate::grpc::watch::ChannelStream;
use crate::lease::LeaseError;
use crate::node::Node;
use ketch_raft::ProposeError;

/// Keep-alive responses buffered per stream before the stream task waits for the client.
const KEEPALIVE_OUTBOUND_CAPACITY: usize = 16;
/// How long a keep-alive of an expired lease waits for its revocation to apply.
const EXPIRED_REVOKE_WAIT: Duration = Duration::from_secs(5);
const EXPIRED_REVOKE_POLL: Duration = Duration::from_millis(20);

pub struct LeaseService {
    pub node: Arc<Node>,
}

/// Peer-port paths of the lease calls a follower forwards to the leader.
const PEER_RENEW: &str = "/app/lease/renew";
const PEER_TIME_TO_LIVE: &str = "/app/lease/timetolive";

/// The leader's side of forwarded lease calls. Answers are a status byte (0 = ok, then the
/// protobuf response; 1 = error, then the gRPC code as 4 bytes big-endian and the message).
pub struct LeasePeerApp {
    pub node: Arc<Node>,
}

impl ketch_raft::transport::PeerApp for LeasePeerApp {
    fn call(
        &self,
        path: String,
        body: Bytes,
    ) -> Pin<Box<dyn Future<Output = Result<Bytes, String>>>> {
        let node = self.node.clone();
        Box::pin(async move {
            let answer = match path.as_str() {
                PEER_RENEW => match LeaseKeepAliveRequest::decode(body) {
                    Ok(req) => renew_here(&node, req.id).await.map(|r| r.encode_to_vec()),
                    Err(e) => return Err(e.to_string()),
                },
                PEER_TIME_TO_LIVE => match LeaseTimeToLiveRequest::decode(body) {
                    Ok(req) => time_to_live_here(&node, req)
                        .await
                        .map(|r| r.encode_to_vec()),
                    Err(e) => return Err(e.to_string()),
                },
                _ => return Err(format!("unknown lease call {path}")),
            };
            Ok(encode_answer(answer))
        })
    }
}

fn encode_answer(answer: Result<Vec<u8>, Status>) -> Bytes {
    let mut out = Vec::new();
    match answer {
        Ok(body) => {
            out.push(0);
            out.extend_from_slice(&body);
        }
        Err(status) => {
            out.push(1);
            out.extend_from_slice(&(status.code() as i32).to_be_bytes());
            out.extend_from_slice(status.message().as_bytes());
        }
    }
    Bytes::from(out)
}

fn decode_answer<M: Message + Default>(mut answer: Bytes) -> Result<M, Status> {
    let bad = || Status::internal("ketch: malformed answer from the leader");
    match answer.first().copied() {
        Some(0) => M::decode(answer.split_off(1)).map_err(|_| bad()),
        Some(1) if answer.len() >= 5 => {
            let code = i32::from_be_bytes([answer[1], answer[2], answer[3], answer[4]]);
            let message = String::from_utf8_lossy(&answer[5..]).into_owned();
            Err(Status::new(Code::from_i32(code), message))
        }
        _ => Err(bad()),
    }
}

/// Sends a lease call to the leader; the header is this member's, as etcd's is.
/// Where a lease call is answered.
enum Served<M> {
    /// This member leads: answer from its own lessor.
    Here,
    /// The leader answered.
    There(M),
}

/// Sends a lease call to the leader unless this member leads. Right after an election raft
/// may name this member leader before its status does: the route waits for the status and
/// answers `LeaderChanged`, and the call is served here.
async fn dispatch<M: Message + Default>(
    node: &Node,
    path: &str,
    req: &impl Message,
) -> Result<Served<M>, Status> {
    if node.raft.status().is_leader {
        return Ok(Served::Here);
    }
    match node
        .raft
        .leader_call(path, Bytes::from(req.encode_to_vec()))
        .await
    {
        Ok(answer) => decode_answer(answer).map(Served::There),
        Err(ProposeError::LeaderChanged) => Ok(Served::Here),
        Err(e) => Err(crate::errors::propose_status(&e)),
    }
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
        let asker = crate::grpc::auth::who(&self.node, &req).await?;
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
            .propose(entry(&asker, raft_request::Request::LeaseGrant(req)))
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
        let asker = crate::grpc::auth::who(&self.node, &req).await?;
        let req = req.into_inner();
        let resp = self
            .node
            .propose(entry(&asker, raft_request::Request::LeaseRevoke(req)))
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
        match dispatch::<LeaseTimeToLiveResponse>(&self.node, PEER_TIME_TO_LIVE, &req).await? {
            Served::Here => Ok(Response::new(time_to_live_here(&self.node, req).await?)),
            Served::There(mut resp) => {
                resp.header = Some(self.node.header(self.node.raft.store().read().revision()));
                Ok(Response::new(resp))
            }
        }
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

/// TimeToLive on the leader: remaining TTL from its lessor, after a ReadIndex round.
async fn time_to_live_here(
    node: &Node,
    req: LeaseTimeToLiveRequest,
) -> Result<LeaseTimeToLiveResponse, Status> {
    require_leader(node)?;
    node.read_barrier().await?;
    let store = node.raft.store();
    let store = store.read();
    let header = Some(node.header(store.revision()));
    let resp = match store.lease_ttl(req.id) {
        Some(ttl) => LeaseTimeToLiveResponse {
            header,
            id: req.id,
            ttl: node.lessor.remaining_secs(req.id, ttl),
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
    Ok(resp)
}

/// One keep-alive: through the leader when this member follows.
async fn renew(node: &Node, id: i64) -> Result<LeaseKeepAliveResponse, Status> {
    match dispatch::<LeaseKeepAliveResponse>(node, PEER_RENEW, &LeaseKeepAliveRequest { id })
        .await?
    {
        Served::Here => renew_here(node, id).await,
        Served::There(mut resp) => {
            resp.header = Some(node.header(node.raft.store().read().revision()));
            Ok(resp)
        }
    }
}

/// One keep-alive on the leader: the header is taken before renewing (so its revision is not newer than
/// the renewal, as etcd notes); TTL 0 means the lease does not exist.
async fn renew_here(node: &Node, id: i64) -> Result<LeaseKeepAliveResponse, Status> {
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
