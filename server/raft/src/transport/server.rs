//! The server half of the peer transport: an HTTP/2 listener on the peer port, on the raft
//! executor, that decodes peer RPCs and hands them to this member's openraft
//! (`append_entries`, `vote`, `pre_vote`, `install_full_snapshot`).

use std::convert::Infallible;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use openraft::errors::RaftError;
use openraft::raft::{AppendEntriesRequest, VoteRequest, VoteResponse};
use openraft::storage::Snapshot;
use openraft::vote::RaftLeaderId;
use openraft_rt::WatchReceiver;
use rustls::ServerConfig;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::io::{HyperIo, LocalExec};
use super::wire::{self, ForwardRefusal, SnapshotHeader};
use crate::membership::MemberChangeError;
use crate::node::PeerSide;
use crate::snapshot_file::SnapshotFile;
use crate::state_store::StateStore;
use crate::types::{ApplyOutcome, KetchRaftTypes, RequestBytes};

/// Peer connections served at once; more are closed on accept (a cluster has a handful of
/// members, each holding one connection to us).
pub const MAX_PEER_CONNECTIONS: usize = 64;

/// Longest a forwarded client request may take here, whatever the follower asks.
const FORWARD_TTL_MAX: Duration = Duration::from_secs(30);

/// Counter making received snapshot file names unique within the process.
static RECEIVED_SNAPSHOTS: AtomicU64 = AtomicU64::new(0);

/// The application's calls on the peer port (paths under `/app/`), e.g. lease keep-alives a
/// follower forwards to the leader. Runs on the raft executor.
pub trait PeerApp {
    fn call(
        &self,
        path: String,
        body: Bytes,
    ) -> Pin<Box<dyn Future<Output = Result<Bytes, String>>>>;
}

struct Ctx<S: StateStore> {
    /// openraft (`member.raft`) for the raft RPCs, the driver for ReadIndex requests.
    member: PeerSide<S>,
    me: crate::types::MemberId,
    app: Option<Rc<dyn PeerApp>>,
    cluster_id: String,
    recv_dir: PathBuf,
}

/// Serves peer RPCs accepted on `listener` until `stop` completes; then closes the listener
/// and every peer connection it accepted. `recv_dir` holds snapshots while they arrive (it
/// must not be the member's `snap/` directory; each file is removed once installed).
pub async fn serve_peers<S: StateStore>(
    member: PeerSide<S>,
    listener: glommio::net::TcpListener,
    cluster_id: u64,
    recv_dir: PathBuf,
    stop: impl Future<Output = ()>,
) -> std::io::Result<()> {
    serve_peers_with_app(member, listener, None, cluster_id, recv_dir, None, stop).await
}

/// [`serve_peers`], also answering the application's `/app/` calls with `app`; with `tls`
/// (an `https://` peer listener) every connection must first finish a TLS handshake, which
/// verifies the peer's client certificate when `tls` asks for one. A refused handshake is
/// logged (etcd's "rejected connection from ..." line) and the connection closed.
pub async fn serve_peers_with_app<S: StateStore>(
    member: PeerSide<S>,
    listener: glommio::net::TcpListener,
    tls: Option<Arc<ServerConfig>>,
    cluster_id: u64,
    recv_dir: PathBuf,
    app: Option<Rc<dyn PeerApp>>,
    stop: impl Future<Output = ()>,
) -> std::io::Result<()> {
    std::fs::create_dir_all(&recv_dir)?;
    let me = member.raft.metrics().borrow_watched().id;
    crate::membership::touch_leader_contact(me);
    let ctx = Rc::new(Ctx {
        me,
        member,
        app,
        cluster_id: format!("{cluster_id:x}"),
        recv_dir,
    });
    // Dropped when this function returns: every connection task then ends.
    let (_closing, closed) = flume::bounded::<()>(1);
    let live = Rc::new(std::cell::Cell::new(0usize));
    let mut stop = Box::pin(stop.fuse());
    loop {
        let stream = futures::select! {
            _ = stop => return Ok(()),
            s = Box::pin(listener.accept()).fuse() => s,
        };
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("peer port accept: {e}");
                continue;
            }
        };
        if live.get() >= MAX_PEER_CONNECTIONS {
            tracing::warn!("peer port: {MAX_PEER_CONNECTIONS} connections open, closing a new one");
            continue;
        }
        let _ = stream.set_nodelay(true);
        live.set(live.get() + 1);
        glommio::spawn_local(serve_connection(
            ctx.clone(),
            stream,
            tls.clone(),
            closed.clone(),
            live.clone(),
        ))
        .detach();
    }
}

async fn serve_connection<S: StateStore>(
    ctx: Rc<Ctx<S>>,
    stream: glommio::net::TcpStream,
    tls: Option<Arc<ServerConfig>>,
    closed: flume::Receiver<()>,
    live: Rc<std::cell::Cell<usize>>,
) {
    let served = async {
        match tls {
            None => serve_http(ctx, stream.buffered()).await,
            Some(config) => {
                let remote = stream.peer_addr().ok();
                if let Some(tls_stream) =
                    super::tls::accept(config, stream.buffered(), remote).await
                {
                    // HyperIo reads through AsyncBufRead; the TLS stream only has AsyncRead.
                    serve_http(ctx, futures_lite::io::BufReader::new(tls_stream)).await;
                }
            }
        }
    };
    futures::select! {
        _ = Box::pin(served).fuse() => {}
        _ = Box::pin(closed.recv_async()).fuse() => {}
    }
    live.set(live.get() - 1);
}

/// Serves HTTP/2 for ketch's own peers, and HTTP/1.1 too (for `GET /members` from a joining
/// member), on one connection until it ends.
async fn serve_http<S, IO>(ctx: Rc<Ctx<S>>, io: IO)
where
    S: StateStore,
    IO: futures_lite::io::AsyncBufRead + futures_lite::io::AsyncWrite + Unpin + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let ctx = ctx.clone();
        async move { Ok::<_, Infallible>(handle(&ctx, req).await) }
    });
    let builder = hyper_util::server::conn::auto::Builder::new(LocalExec);
    if let Err(e) = builder.serve_connection(HyperIo::new(io), service).await {
        tracing::debug!("peer connection ended: {e}");
    }
}

fn reply(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r
}

async fn handle<S: StateStore>(ctx: &Ctx<S>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if req.uri().path() == wire::PATH_MEMBERS_LIST && req.method() == http::Method::GET {
        return members_list(ctx);
    }
    let cluster = req.headers().get(wire::CLUSTER_HEADER);
    if cluster.and_then(|v| v.to_str().ok()) != Some(ctx.cluster_id.as_str()) {
        // etcd answers a peer of another cluster with 412 Precondition Failed.
        return reply(StatusCode::PRECONDITION_FAILED, "cluster ID mismatch");
    }
    let path = req.uri().path().to_string();
    let raft = &ctx.member.raft;
    match path.as_str() {
        wire::PATH_APPEND => append(ctx, req).await,
        wire::PATH_VOTE => vote(req, |r| raft.vote(r)).await,
        wire::PATH_PRE_VOTE => vote(req, |r| raft.pre_vote(r)).await,
        wire::PATH_SNAPSHOT => install_snapshot(ctx, req).await,
        wire::PATH_TRANSFER_LEADER => rpc(req, |r| raft.handle_transfer_leader(r)).await,
        wire::PATH_PROPOSE_BATCH => propose_batch(ctx, req).await,
        wire::PATH_READ_INDEX => read_index(ctx, req).await,
        wire::PATH_MEMBERS => {
            let ttl = forward_ttl(&req);
            rpc(req, |change| async move {
                let changed = glommio::timer::timeout(ttl, async {
                    Ok(crate::node::change_members_here(raft, change).await)
                })
                .await;
                Ok::<_, String>(
                    changed.unwrap_or(Err(MemberChangeError::Raft(ForwardRefusal::Timeout))),
                )
            })
            .await
        }
        p if p.starts_with(wire::PATH_APP_PREFIX) && ctx.app.is_some() => app_call(ctx, req).await,
        _ => reply(StatusCode::NOT_FOUND, "unknown peer path"),
    }
}

/// An append (or heartbeat) from the leader. A leader this member cannot reach on its peer
/// port (`membership::is_cut_off`) is answered 503 and not counted as contact: as on etcd,
/// whose peer streams need both directions, the link is down.
async fn append<S: StateStore>(ctx: &Ctx<S>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let decoded: AppendEntriesRequest<KetchRaftTypes> = match decode_body(req).await {
        Ok(r) => r,
        Err(refusal) => return refusal,
    };
    let leader = *decoded.vote.leader_id().node_id();
    if crate::membership::is_cut_off(ctx.me, leader) {
        return reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "this member cannot reach the sender's peer port",
        );
    }
    let answer = ctx
        .member
        .raft
        .append_entries(decoded)
        .await
        .map_err(|e| e.to_string());
    crate::membership::touch_leader_contact(ctx.me);
    reply(StatusCode::OK, wire::encode(&answer))
}

/// A (pre-)vote: a candidate this member saw removed is answered 410 Gone, as etcd's peers
/// answer a removed member, which then stops.
async fn vote<F>(
    req: Request<Incoming>,
    call: impl FnOnce(VoteRequest<KetchRaftTypes>) -> F,
) -> Response<Full<Bytes>>
where
    F: Future<Output = Result<VoteResponse<KetchRaftTypes>, RaftError<KetchRaftTypes>>>,
{
    let decoded: VoteRequest<KetchRaftTypes> = match decode_body(req).await {
        Ok(r) => r,
        Err(refusal) => return refusal,
    };
    let candidate = *decoded.vote.leader_id().node_id();
    if crate::membership::is_removed(candidate) {
        return reply(StatusCode::GONE, wire::REMOVED_TEXT);
    }
    let answer = call(decoded).await.map_err(|e| e.to_string());
    reply(StatusCode::OK, wire::encode(&answer))
}

/// Decodes a JSON request, calls raft, answers JSON of `Result<response, error text>`.
async fn rpc<Req, Resp, E, F>(
    req: Request<Incoming>,
    call: impl FnOnce(Req) -> F,
) -> Response<Full<Bytes>>
where
    Req: DeserializeOwned,
    Resp: Serialize,
    E: std::fmt::Display,
    F: Future<Output = Result<Resp, E>>,
{
    let decoded: Req = match decode_body(req).await {
        Ok(r) => r,
        Err(refusal) => return refusal,
    };
    let answer = call(decoded).await.map_err(|e| e.to_string());
    reply(StatusCode::OK, wire::encode(&answer))
}

/// The request's body decoded, or the 400 answer saying why it is not.
async fn decode_body<Req: DeserializeOwned>(
    req: Request<Incoming>,
) -> Result<Req, Response<Full<Bytes>>> {
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return Err(reply(StatusCode::BAD_REQUEST, e.to_string())),
    };
    wire::decode(&body)
        .map_err(|e| reply(StatusCode::BAD_REQUEST, format!("undecodable request: {e}")))
}

async fn app_call<S: StateStore>(ctx: &Ctx<S>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let Some(app) = ctx.app.clone() else {
        return reply(StatusCode::NOT_FOUND, "unknown peer path");
    };
    let path = req.uri().path().to_string();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return reply(StatusCode::BAD_REQUEST, e.to_string()),
    };
    match app.call(path, body).await {
        Ok(answer) => reply(StatusCode::OK, answer),
        Err(text) => reply(StatusCode::INTERNAL_SERVER_ERROR, text),
    }
}

/// etcd's peer `/members`: every member with its ID, name, URLs and learner flag.
fn members_list<S: StateStore>(ctx: &Ctx<S>) -> Response<Full<Bytes>> {
    let metrics = ctx.member.raft.metrics().borrow_watched().clone();
    let view = crate::node::membership_view(metrics.membership_config.membership());
    let members: Vec<wire::PeerMember> = view
        .members
        .iter()
        .map(|m| wire::PeerMember {
            id: m.id,
            name: m.member.name.clone(),
            peer_urls: m.member.peer_urls.clone(),
            client_urls: m.member.client_urls.clone(),
            is_learner: m.is_learner,
        })
        .collect();
    let mut r = reply(StatusCode::OK, wire::encode_json(&members));
    if let Ok(v) = http::HeaderValue::from_str(&ctx.cluster_id) {
        r.headers_mut().insert(wire::ETCD_CLUSTER_HEADER, v);
    }
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

/// The time a forwarded request may take, as the follower said (bounded).
fn forward_ttl(req: &Request<Incoming>) -> Duration {
    req.headers()
        .get(wire::TIMEOUT_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(FORWARD_TTL_MAX, Duration::from_millis)
        .min(FORWARD_TTL_MAX)
}

/// A follower's batch of client writes: propose them here in one go (if this member still
/// leads) and answer, for each in order, what applying it produced. Writes not answered
/// within the follower's deadline are answered `Timeout`.
async fn propose_batch<S: StateStore>(
    ctx: &Ctx<S>,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let ttl = forward_ttl(&req);
    let deadline = std::time::Instant::now() + ttl;
    let batch: Vec<RequestBytes> = match decode_body(req).await {
        Ok(b) => b,
        Err(refusal) => return refusal,
    };
    let n = batch.len();
    let mut answers: Vec<Result<ApplyOutcome, ForwardRefusal>> = Vec::with_capacity(n);
    match ctx.member.raft.client_write_many(batch).await {
        Ok(mut written) => {
            while answers.len() < n {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                let next = glommio::timer::timeout(left, async { Ok(written.next().await) }).await;
                answers.push(match next {
                    Ok(Some(Ok(Ok(done)))) => Ok(done.response),
                    Ok(Some(Ok(Err(e)))) => {
                        Err(ForwardRefusal::of(&crate::node::client_write_error(e)))
                    }
                    // The batch was proposed: whether this write committed is unknown (a retry
                    // could apply it twice), as when a leader changes under a proposal.
                    Ok(Some(Err(_)) | None) => Err(ForwardRefusal::LeaderChanged),
                    Err(_) => Err(ForwardRefusal::Timeout),
                });
            }
        }
        // Nothing was proposed: the follower may try again.
        Err(_fatal) => answers.resize(n, Err(ForwardRefusal::Stopped)),
    }
    // Every answer body is `Result<_, String>` (see `wire`); the refusals are inside `Ok`.
    reply(StatusCode::OK, wire::encode(&Ok::<_, String>(answers)))
}

/// A follower's linearizable read: confirm leadership with a quorum (ReadIndex) and answer
/// the index the follower must have applied before reading. The request joins this member's
/// next read round, with its own reads and the other followers' requests.
async fn read_index<S: StateStore>(ctx: &Ctx<S>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let ttl = forward_ttl(&req);
    let confirmed = glommio::timer::timeout(ttl, async { Ok(ctx.member.read_index().await) }).await;
    let answer: Result<u64, ForwardRefusal> = match confirmed {
        Ok(Ok(index)) => Ok(index),
        Ok(Err(e)) => Err(ForwardRefusal::of(&e)),
        Err(_) => Err(ForwardRefusal::Timeout),
    };
    // Every answer body is `Result<_, String>` (see `wire`); the refusal is inside `Ok`.
    reply(StatusCode::OK, wire::encode(&Ok::<_, String>(answer)))
}

async fn install_snapshot<S: StateStore>(
    ctx: &Ctx<S>,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let header = req
        .headers()
        .get(wire::SNAPSHOT_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(serde_json::from_str::<SnapshotHeader>);
    let header = match header {
        Some(Ok(h)) => h,
        Some(Err(e)) => return reply(StatusCode::BAD_REQUEST, format!("snapshot header: {e}")),
        None => return reply(StatusCode::BAD_REQUEST, "snapshot header missing"),
    };
    let n = RECEIVED_SNAPSHOTS.fetch_add(1, Ordering::Relaxed);
    let path = ctx
        .recv_dir
        .join(format!("recv-{}-{n}.snap.part", std::process::id()));
    if let Err(e) = receive_to_file(req.into_body(), &path).await {
        let _ = std::fs::remove_file(&path);
        return reply(StatusCode::BAD_REQUEST, format!("receiving snapshot: {e}"));
    }
    let snapshot = Snapshot {
        meta: header.meta,
        snapshot: SnapshotFile { path: path.clone() },
    };
    let answer = ctx
        .member
        .raft
        .install_full_snapshot(header.vote, snapshot)
        .await
        .map_err(|e| e.to_string());
    let _ = std::fs::remove_file(&path);
    reply(StatusCode::OK, wire::encode(&answer))
}

/// Writes the body's frames to `path` as they arrive, then fsyncs it.
async fn receive_to_file(mut body: Incoming, path: &Path) -> std::io::Result<()> {
    let file = glommio::io::BufferedFile::create(path).await?;
    let mut pos = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(std::io::Error::other)?;
        if let Ok(data) = frame.into_data() {
            let n = data.len() as u64;
            file.write_at(data.to_vec(), pos).await?;
            pos += n;
        }
    }
    file.fdatasync().await?;
    file.close().await.map_err(std::io::Error::from)
}
