//! The client half of the peer transport: openraft's network over HTTP/2 on glommio TCP.
//! One connection per peer, shared by every openraft client of that peer (replication, votes,
//! snapshots multiplex as HTTP/2 streams); a lost connection is redialled on the next call,
//! with capped exponential backoff between failed dials; at most
//! [`MAX_IN_FLIGHT_PER_PEER`] requests in flight per peer; each request bounded by openraft's
//! soft TTL.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::FutureExt;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::SendRequest;
use openraft::errors::{
    NetworkError, RPCError, ReplicationClosed, StreamingError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RPCTypes};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::{OptionalSend, RaftNetworkFactory, RaftNetworkV2};
use rustls::ClientConfig;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::io::{HyperIo, LocalExec};
use super::wire::{self, ForwardRefusal, SnapshotHeader};
use crate::handle::ProposeError;
use crate::membership::{MemberChange, MemberChangeError, MembershipView};
use crate::network::{ForwardedWrite, LeaderForward};
use crate::snapshot_file::SnapshotFile;
use crate::types::{ApplyOutcome, KetchRaftTypes, Member, MemberId, RequestBytes, Vote};

/// Requests in flight to one peer at once; more wait for a slot (backpressure on openraft).
pub const MAX_IN_FLIGHT_PER_PEER: u64 = 64;
/// Client requests a follower forwards to the leader at once; more wait for a slot. They
/// travel on their own connection, so a burst of them never delays replication or votes.
pub const MAX_FORWARDS_PER_PEER: u64 = 1024;
/// First wait after a failed dial; doubled on each further failure up to the cap.
pub const RECONNECT_BACKOFF_MIN: Duration = Duration::from_millis(10);
/// Longest wait between dials of an unreachable peer (etcd's rafthttp retries every 100 ms).
pub const RECONNECT_BACKOFF_MAX: Duration = Duration::from_millis(200);
/// Shortest time a request is given. openraft bounds an append by one heartbeat interval;
/// a follower's append includes its WAL fsync, and on a loaded machine a deadline that short
/// makes every retry time out again (each retry resends the same entries), so the transport
/// waits at least this long. A slow peer only delays its own replication stream.
pub const RPC_TIMEOUT_MIN: Duration = Duration::from_millis(500);
/// Longest wait for a TCP connect, the TLS handshake (https peers) and the HTTP/2 handshake.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// A peer refusing our TLS certificate (or presenting one we refuse) is logged at most once
/// per this interval per peer, not on every redial.
pub const TLS_WARN_INTERVAL: Duration = Duration::from_secs(5);

type Sender = SendRequest<Full<Bytes>>;

/// Why one request to a peer failed.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// No connection (dial failed, or waiting out the backoff after a failed dial).
    #[error("member {target:x} at {addr}: {why}")]
    Unreachable {
        target: MemberId,
        addr: String,
        why: String,
    },
    /// The connection broke mid-request, or the peer answered garbage.
    #[error("member {target:x}: {why}")]
    Network { target: MemberId, why: String },
    /// The peer's raft refused the RPC (it is stopping, for instance).
    #[error("member {target:x} answered: {why}")]
    Remote { target: MemberId, why: String },
    #[error("member {target:x}: no answer within {timeout:?}")]
    Timeout { target: MemberId, timeout: Duration },
}

/// openraft's network factory over the peer transport. Cheap to clone; clones share the
/// connections.
#[derive(Clone)]
pub struct PeerNetwork {
    me: MemberId,
    cluster_id: u64,
    /// Connections for openraft's RPCs.
    peers: Rc<RefCell<HashMap<MemberId, Rc<Peer>>>>,
    /// Connections for forwarded client requests.
    forwards: Rc<RefCell<HashMap<MemberId, Rc<Peer>>>>,
    /// How `https://` peers are dialled (`--peer-*` flags); `None`: only `http://` peers.
    tls: Option<Arc<ClientConfig>>,
}

impl PeerNetwork {
    pub fn new(me: MemberId, cluster_id: u64) -> PeerNetwork {
        PeerNetwork {
            me,
            cluster_id,
            peers: Rc::default(),
            forwards: Rc::default(),
            tls: None,
        }
    }

    /// Dials `https://` peer URLs with `tls`: it presents this member's peer certificate and
    /// verifies the peer's against the peer CAs. `http://` peers stay plaintext.
    pub fn with_tls(mut self, tls: Option<Arc<ClientConfig>>) -> PeerNetwork {
        self.tls = tls;
        self
    }

    /// A forwarded request to the leader, on the forwarding connection, decoded as
    /// `Result<T, String>` (see `wire`).
    async fn forward_rpc<T: DeserializeOwned>(
        &self,
        leader: MemberId,
        node: &Member,
        path: &str,
        body: Bytes,
        ttl: Duration,
    ) -> Result<T, PeerError> {
        let peer = self.forward_peer(leader, node);
        let answer = peer.post_forward(path, body, ttl).await?;
        peer.answer(&answer)
    }

    fn forward_peer(&self, target: MemberId, node: &Member) -> Rc<Peer> {
        self.peer_for(&self.forwards, target, node, MAX_FORWARDS_PER_PEER)
    }

    /// The pooled peer for `target`, replaced when its address changed.
    fn peer_for(
        &self,
        pool: &RefCell<HashMap<MemberId, Rc<Peer>>>,
        target: MemberId,
        node: &Member,
        slots: u64,
    ) -> Rc<Peer> {
        let addr = peer_target(node);
        let mut pool = pool.borrow_mut();
        match pool.get(&target) {
            Some(p) if p.addr == addr => p.clone(),
            _ => {
                let p = Rc::new(Peer {
                    me: self.me,
                    target,
                    cluster_id: format!("{:x}", self.cluster_id),
                    addr,
                    tls: self.tls.clone(),
                    tls_warned_at: Rc::default(),
                    sender: RefCell::new(None),
                    backoff: Cell::new(RECONNECT_BACKOFF_MIN),
                    retry_at: Cell::new(None),
                    dialing: glommio::sync::Semaphore::new(1),
                    slots: glommio::sync::Semaphore::new(slots),
                });
                pool.insert(target, p.clone());
                p
            }
        }
    }
}

impl RaftNetworkFactory<KetchRaftTypes> for PeerNetwork {
    type Network = PeerClient;

    async fn new_client(&mut self, target: MemberId, node: &Member) -> PeerClient {
        let peer = self.peer_for(&self.peers, target, node, MAX_IN_FLIGHT_PER_PEER);
        PeerClient { me: self.me, peer }
    }
}

impl LeaderForward for PeerNetwork {
    async fn forward_writes(
        &self,
        leader: MemberId,
        node: &Member,
        batch: Vec<RequestBytes>,
        ttl: Duration,
    ) -> Vec<ForwardedWrite> {
        let n = batch.len();
        let body = Bytes::from(wire::encode(&batch));
        let answer: Result<Vec<Result<ApplyOutcome, ForwardRefusal>>, _> = self
            .forward_rpc(leader, node, wire::PATH_PROPOSE_BATCH, body, ttl)
            .await;
        let failed = match answer {
            Ok(outcomes) if outcomes.len() == n => {
                return outcomes
                    .into_iter()
                    .map(|o| {
                        o.map(|outcome| outcome.0)
                            .map_err(ForwardRefusal::into_error)
                    })
                    .collect();
            }
            Ok(outcomes) => {
                // Which of them happened is unknown: as when a leader changes under them.
                tracing::warn!(
                    "the leader answered {} outcomes for {n} forwarded writes",
                    outcomes.len()
                );
                ProposeError::LeaderChanged
            }
            // Not sent: look for the leader again.
            Err(PeerError::Unreachable { .. }) => ProposeError::NoLeader,
            Err(PeerError::Timeout { .. }) => ProposeError::Timeout,
            // Sent, and the connection broke or the leader answered garbage: whether the
            // writes happened is unknown, as when a leader changes under a proposal.
            Err(e @ (PeerError::Network { .. } | PeerError::Remote { .. })) => {
                tracing::debug!("forwarding writes: {e}");
                ProposeError::LeaderChanged
            }
        };
        vec![Err(failed); n]
    }

    async fn read_index(
        &self,
        leader: MemberId,
        node: &Member,
        ttl: Duration,
    ) -> Result<u64, ProposeError> {
        let answer: Result<Result<u64, ForwardRefusal>, _> = self
            .forward_rpc(leader, node, wire::PATH_READ_INDEX, Bytes::new(), ttl)
            .await;
        match answer {
            Ok(Ok(index)) => Ok(index),
            Ok(Err(refusal)) => Err(refusal.into_error()),
            Err(PeerError::Timeout { .. }) => Err(ProposeError::Timeout),
            // Reads change nothing: any other failure is worth another try.
            Err(e) => {
                tracing::debug!("asking the leader for the read index: {e}");
                Err(ProposeError::NoLeader)
            }
        }
    }

    async fn app_call(
        &self,
        leader: MemberId,
        node: &Member,
        path: String,
        body: Bytes,
        ttl: Duration,
    ) -> Result<Bytes, ProposeError> {
        let peer = self.forward_peer(leader, node);
        match peer.post_forward(&path, body, ttl).await {
            Ok(answer) => Ok(answer),
            Err(PeerError::Timeout { .. }) => Err(ProposeError::Timeout),
            // Application calls are reads or idempotent (a lease renewal): whatever failed,
            // ask the leader again (a new one, if this one died).
            Err(e) => {
                tracing::debug!("application call {path} to the leader: {e}");
                Err(ProposeError::NoLeader)
            }
        }
    }

    async fn change_members(
        &self,
        leader: MemberId,
        node: &Member,
        change: MemberChange,
        ttl: Duration,
    ) -> Result<MembershipView, MemberChangeError> {
        let body = Bytes::from(wire::encode(&change));
        let answer = self
            .forward_rpc(leader, node, wire::PATH_MEMBERS, body, ttl)
            .await;
        match answer {
            Ok(answer) => answer,
            Err(PeerError::Unreachable { .. }) => {
                Err(MemberChangeError::Raft(ForwardRefusal::NoLeader))
            }
            Err(e) => {
                tracing::debug!("forwarding a membership change: {e}");
                Err(MemberChangeError::Raft(ForwardRefusal::Timeout))
            }
        }
    }
}

/// Where a member's first peer URL points: its socket address, and for an `https://` URL the
/// host its certificate must name.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PeerTarget {
    addr: SocketAddr,
    tls_host: Option<String>,
}

/// The first peer URL of a member as a [`PeerTarget`] (`http://127.0.0.1:2380`).
fn peer_target(node: &Member) -> Result<PeerTarget, String> {
    let url = node
        .peer_urls
        .first()
        .ok_or_else(|| format!("member {:?} has no peer URL", node.name))?;
    let (host_port, https) = match url.strip_prefix("https://") {
        Some(rest) => (rest, true),
        None => (url.strip_prefix("http://").unwrap_or(url), false),
    };
    let host_port = host_port.trim_end_matches('/');
    let addr = host_port
        .to_socket_addrs()
        .map_err(|e| format!("peer URL {url}: {e}"))?
        .next()
        .ok_or_else(|| format!("peer URL {url} resolves to no address"))?;
    let tls_host = https.then(|| super::tls::host_of(host_port).to_owned());
    Ok(PeerTarget { addr, tls_host })
}

/// One peer: its connection, dial backoff and in-flight slots.
struct Peer {
    /// This member (told by a 410 answer that it was removed).
    me: MemberId,
    target: MemberId,
    cluster_id: String,
    addr: Result<PeerTarget, String>,
    tls: Option<Arc<ClientConfig>>,
    /// When a TLS failure with this peer was last logged (see [`TLS_WARN_INTERVAL`]).
    tls_warned_at: Rc<Cell<Option<Instant>>>,
    sender: RefCell<Option<Sender>>,
    backoff: Cell<Duration>,
    retry_at: Cell<Option<Instant>>,
    dialing: glommio::sync::Semaphore,
    slots: glommio::sync::Semaphore,
}

impl Peer {
    fn unreachable(&self, why: impl Into<String>) -> PeerError {
        PeerError::Unreachable {
            target: self.target,
            addr: match &self.addr {
                Ok(a) => a.addr.to_string(),
                Err(_) => "?".into(),
            },
            why: why.into(),
        }
    }

    fn live_sender(&self) -> Option<Sender> {
        let s = self.sender.borrow();
        s.as_ref().filter(|s| !s.is_closed()).cloned()
    }

    /// The live connection, dialling one if there is none and the backoff allows it.
    async fn connection(&self) -> Result<Sender, PeerError> {
        if let Some(s) = self.live_sender() {
            return Ok(s);
        }
        let _dial = self.dialing.acquire_permit(1).await;
        if let Some(s) = self.live_sender() {
            return Ok(s);
        }
        let addr = self.addr.clone().map_err(|e| self.unreachable(e))?;
        if self.retry_at.get().is_some_and(|at| Instant::now() < at) {
            return Err(self.unreachable("backing off after a failed dial"));
        }
        let dialed =
            glommio::timer::timeout(CONNECT_TIMEOUT, async { Ok(self.dial(&addr).await) }).await;
        match dialed
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()))
        {
            Ok(s) => {
                self.backoff.set(RECONNECT_BACKOFF_MIN);
                self.retry_at.set(None);
                *self.sender.borrow_mut() = Some(s.clone());
                Ok(s)
            }
            Err(e) => {
                let wait = self.backoff.get();
                self.retry_at.set(Some(Instant::now() + wait));
                self.backoff.set((wait * 2).min(RECONNECT_BACKOFF_MAX));
                Err(self.unreachable(e))
            }
        }
    }

    /// POSTs `body` to `path` and returns the response body, within `ttl`.
    async fn post(
        &self,
        path: &str,
        body: Bytes,
        header: Option<(&str, String)>,
        ttl: Duration,
    ) -> Result<Bytes, PeerError> {
        let _slot = self.slots.acquire_permit(1).await;
        let call = async {
            let mut sender = self.connection().await?;
            let req = self.request(path, body, header)?;
            let net = |e: hyper::Error| {
                if e.is_canceled() {
                    // The connection closed before the request went out: nothing was sent.
                    return self.unreachable(e.to_string());
                }
                PeerError::Network {
                    target: self.target,
                    why: e.to_string(),
                }
            };
            let resp = sender.send_request(req).await.map_err(net)?;
            let status = resp.status();
            let bytes = resp.into_body().collect().await.map_err(net)?.to_bytes();
            if status == http::StatusCode::GONE {
                // This member was removed from the cluster (etcd's peers answer 410 too).
                crate::membership::mark_removed(self.me);
            }
            if !status.is_success() {
                return Err(PeerError::Network {
                    target: self.target,
                    why: format!("HTTP {status}: {}", String::from_utf8_lossy(&bytes)),
                });
            }
            Ok(bytes)
        };
        match glommio::timer::timeout(ttl, async { Ok(call.await) }).await {
            Ok(r) => r,
            Err(_) => Err(PeerError::Timeout {
                target: self.target,
                timeout: ttl,
            }),
        }
    }

    fn request(
        &self,
        path: &str,
        body: Bytes,
        header: Option<(&str, String)>,
    ) -> Result<http::Request<Full<Bytes>>, PeerError> {
        let mut b = http::Request::post(format!("http://member/{}", path.trim_start_matches('/')))
            .header(wire::CLUSTER_HEADER, &self.cluster_id);
        if let Some((name, value)) = header {
            b = b.header(name, value);
        }
        b.body(Full::new(body)).map_err(|e| PeerError::Network {
            target: self.target,
            why: e.to_string(),
        })
    }

    /// A forwarded client request: tells the leader how long this member waits.
    async fn post_forward(
        &self,
        path: &str,
        body: Bytes,
        ttl: Duration,
    ) -> Result<Bytes, PeerError> {
        let header = (wire::TIMEOUT_HEADER, ttl.as_millis().to_string());
        self.post(path, body, Some(header), ttl).await
    }

    /// One RPC: the peer answers `Result<Resp, String>`.
    async fn rpc<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        path: &str,
        req: &Req,
        ttl: Duration,
    ) -> Result<Resp, PeerError> {
        let body = self
            .post(path, Bytes::from(wire::encode(req)), None, ttl)
            .await?;
        self.answer(&body)
    }

    fn answer<Resp: DeserializeOwned>(&self, body: &[u8]) -> Result<Resp, PeerError> {
        let res: Result<Resp, String> = wire::decode(body).map_err(|e| PeerError::Network {
            target: self.target,
            why: format!("undecodable answer: {e}"),
        })?;
        res.map_err(|why| PeerError::Remote {
            target: self.target,
            why,
        })
    }
}

impl Peer {
    /// Dials `target` (through TLS for an https peer URL) and runs the HTTP/2 connection task
    /// on this executor. The dial runs as its own task: polled from the executor rather than
    /// from inside openraft's replication futures, the TLS handshake's deep stack (in debug
    /// builds) does not add to theirs; on the raft executor's default 2 MiB stack it
    /// overflowed otherwise.
    async fn dial(&self, target: &PeerTarget) -> std::io::Result<Sender> {
        let dialing = dial(target.clone(), self.tls.clone(), self.tls_warned_at.clone());
        glommio::spawn_local(dialing).await
    }
}

/// See [`Peer::dial`].
async fn dial(
    target: PeerTarget,
    tls: Option<Arc<ClientConfig>>,
    tls_warned_at: Rc<Cell<Option<Instant>>>,
) -> std::io::Result<Sender> {
    let addr = target.addr;
    let stream = glommio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let Some(host) = &target.tls_host else {
        return http2_handshake(addr, HyperIo::new(stream.buffered())).await;
    };
    let Some(tls) = tls else {
        return Err(std::io::Error::other(
            "https peer URL, but this member has no peer TLS configuration \
             (--peer-cert-file/--peer-key-file, --peer-trusted-ca-file or --peer-auto-tls)",
        ));
    };
    match super::tls::connect(tls, host, stream).await {
        // HyperIo reads through AsyncBufRead; the TLS stream only has AsyncRead.
        Ok(tls_stream) => {
            let tapped = TlsTap {
                inner: tls_stream,
                addr,
                warned_at: tls_warned_at,
            };
            http2_handshake(addr, HyperIo::new(futures_lite::io::BufReader::new(tapped))).await
        }
        Err(e) => {
            let why = super::tls::dial_error_text(&e);
            warn_tls(&tls_warned_at, addr, &why);
            Err(std::io::Error::other(why))
        }
    }
}

/// Runs hyper's HTTP/2 client handshake on `io` and spawns the connection task.
async fn http2_handshake<IO>(addr: SocketAddr, io: HyperIo<IO>) -> std::io::Result<Sender>
where
    IO: futures_lite::io::AsyncBufRead + futures_lite::io::AsyncWrite + Unpin + 'static,
{
    let (sender, conn) = hyper::client::conn::http2::handshake(LocalExec, io)
        .await
        .map_err(std::io::Error::other)?;
    glommio::spawn_local(async move {
        if let Err(e) = conn.await {
            tracing::debug!("peer connection to {addr} ended: {e}");
        }
    })
    .detach();
    Ok(sender)
}

/// A dialled peer's TLS stream that logs the TLS error breaking it (see [`warn_tls`]): with
/// TLS 1.3 a peer refuses our certificate only after our side of the handshake has finished,
/// and hyper's HTTP/2 layer keeps only the text of the I/O error it then meets.
struct TlsTap<S> {
    inner: S,
    addr: SocketAddr,
    warned_at: Rc<Cell<Option<Instant>>>,
}

impl<S> TlsTap<S> {
    fn tap<T>(&self, r: std::io::Result<T>) -> std::io::Result<T> {
        if let Err(e) = &r
            && e.get_ref().is_some_and(|i| i.is::<rustls::Error>())
        {
            warn_tls(&self.warned_at, self.addr, &super::tls::dial_error_text(e));
        }
        r
    }
}

impl<S: futures_lite::io::AsyncRead + Unpin> futures_lite::io::AsyncRead for TlsTap<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut [u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::task::ready!(std::pin::Pin::new(&mut self.inner).poll_read(cx, buf));
        std::task::Poll::Ready(self.tap(r))
    }
}

impl<S: futures_lite::io::AsyncWrite + Unpin> futures_lite::io::AsyncWrite for TlsTap<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::task::ready!(std::pin::Pin::new(&mut self.inner).poll_write(cx, buf));
        std::task::Poll::Ready(self.tap(r))
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let r = std::task::ready!(std::pin::Pin::new(&mut self.inner).poll_flush(cx));
        std::task::Poll::Ready(self.tap(r))
    }

    fn poll_close(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_close(cx)
    }
}

/// Logs a TLS failure with a peer, at most once per [`TLS_WARN_INTERVAL`].
fn warn_tls(warned_at: &Cell<Option<Instant>>, addr: SocketAddr, why: &str) {
    let now = Instant::now();
    if warned_at
        .get()
        .is_some_and(|at| now.duration_since(at) < TLS_WARN_INTERVAL)
    {
        return;
    }
    warned_at.set(Some(now));
    tracing::warn!("peer {addr}: TLS connection failed: {why}");
}

/// The time a request is given: openraft's hard TTL, at least [`RPC_TIMEOUT_MIN`].
fn ttl(option: &RPCOption) -> Duration {
    option.hard_ttl().max(RPC_TIMEOUT_MIN)
}

/// openraft's client for one peer.
pub struct PeerClient {
    me: MemberId,
    peer: Rc<Peer>,
}

impl PeerClient {
    fn rpc_error(&self, e: PeerError, action: RPCTypes) -> RPCError<KetchRaftTypes> {
        tracing::debug!("{action:?}: {e}");
        match e {
            PeerError::Timeout { timeout, .. } => RPCError::Timeout(Timeout {
                action,
                id: self.me,
                target: self.peer.target,
                timeout,
            }),
            PeerError::Network { .. } => RPCError::Network(NetworkError::new(&e)),
            // A stopping peer or one we cannot dial: let openraft back off.
            PeerError::Unreachable { .. } | PeerError::Remote { .. } => {
                RPCError::Unreachable(Unreachable::new(&e))
            }
        }
    }

    async fn vote_rpc(
        &self,
        path: &str,
        rpc: VoteRequest<KetchRaftTypes>,
        option: RPCOption,
    ) -> Result<VoteResponse<KetchRaftTypes>, RPCError<KetchRaftTypes>> {
        self.peer
            .rpc(path, &rpc, ttl(&option))
            .await
            .map_err(|e| self.rpc_error(e, RPCTypes::Vote))
    }
}

impl RaftNetworkV2<KetchRaftTypes> for PeerClient {
    type SnapshotData = SnapshotFile;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<KetchRaftTypes>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<KetchRaftTypes>, RPCError<KetchRaftTypes>> {
        self.peer
            .rpc(wire::PATH_APPEND, &rpc, ttl(&option))
            .await
            .map_err(|e| self.rpc_error(e, RPCTypes::AppendEntries))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<KetchRaftTypes>,
        option: RPCOption,
    ) -> Result<VoteResponse<KetchRaftTypes>, RPCError<KetchRaftTypes>> {
        self.vote_rpc(wire::PATH_VOTE, rpc, option).await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<KetchRaftTypes>,
        option: RPCOption,
    ) -> Result<VoteResponse<KetchRaftTypes>, RPCError<KetchRaftTypes>> {
        self.vote_rpc(wire::PATH_PRE_VOTE, rpc, option).await
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<KetchRaftTypes>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<KetchRaftTypes>, RPCError<KetchRaftTypes>> {
        self.peer
            .rpc(wire::PATH_TRANSFER_LEADER, &req, ttl(&option))
            .await
            .map_err(|e| self.rpc_error(e, RPCTypes::TransferLeader))
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: openraft::alias::SnapshotOf<KetchRaftTypes, SnapshotFile>,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<KetchRaftTypes>, StreamingError<KetchRaftTypes>> {
        let send = self.send_snapshot(vote, snapshot, option);
        futures::select! {
            closed = Box::pin(cancel).fuse() => Err(StreamingError::Closed(closed)),
            res = Box::pin(send).fuse() => res,
        }
    }
}

impl PeerClient {
    /// Sends the snapshot file's bytes in one POST (HTTP/2 frames it; the receiver writes
    /// the frames to disk as they arrive).
    async fn send_snapshot(
        &self,
        vote: Vote,
        snapshot: openraft::alias::SnapshotOf<KetchRaftTypes, SnapshotFile>,
        option: RPCOption,
    ) -> Result<SnapshotResponse<KetchRaftTypes>, StreamingError<KetchRaftTypes>> {
        let bytes = read_file(&snapshot.snapshot.path)
            .await
            .map_err(|e| StreamingError::Unreachable(Unreachable::new(&e)))?;
        let header = SnapshotHeader {
            vote,
            meta: snapshot.meta,
        };
        let header = String::from_utf8(wire::encode_json(&header)).expect("JSON is UTF-8");
        let to_streaming = |e: PeerError| match self.rpc_error(e, RPCTypes::InstallSnapshot) {
            RPCError::Timeout(t) => StreamingError::Timeout(t),
            RPCError::Network(n) => StreamingError::Network(n),
            RPCError::Unreachable(u) => StreamingError::Unreachable(u),
            RPCError::RemoteError(r) => StreamingError::Unreachable(Unreachable::new(&r)),
        };
        let body = self
            .peer
            .post(
                wire::PATH_SNAPSHOT,
                Bytes::from(bytes),
                Some((wire::SNAPSHOT_HEADER, header)),
                ttl(&option),
            )
            .await
            .map_err(to_streaming)?;
        self.peer.answer(&body).map_err(to_streaming)
    }
}

async fn read_file(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    let f = glommio::io::BufferedFile::open(path).await?;
    let size = f.file_size().await?;
    let data = f.read_at(0, size as usize).await?;
    let out = data.to_vec();
    f.close().await.map_err(std::io::Error::from)?;
    Ok(out)
}
