//! The Watch service: each stream is served by its own task on the shard that accepted it
//! (`watch::stream`); this handler checks etcd's require-leader metadata and wires the
//! task's bounded output channel to the gRPC response stream.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_lite::Stream;
use ketch_proto::watch_server::Watch;
use ketch_proto::{WatchRequest, WatchResponse};
use tonic::{Request, Response, Status, Streaming};

use crate::node::Node;
use crate::watch::stream::{self, OUTBOUND_CAPACITY};

/// The metadata key etcd's clients set with `WithRequireLeader`.
const REQUIRE_LEADER_KEY: &str = "hasleader";

pub struct WatchService {
    pub node: Arc<Node>,
}

/// What a server-streaming handler returns (tonic's generated `BoxStream`).
pub type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// A `Send` response stream fed by a stream task through a bounded channel. Dropping it
/// (the client went away) drops `_closed`, which tells the task to stop.
pub struct ChannelStream<T: 'static> {
    inner: flume::r#async::RecvStream<'static, Result<T, Status>>,
    _closed: Option<flume::Sender<()>>,
}

impl<T: 'static> ChannelStream<T> {
    pub fn new(rx: flume::Receiver<Result<T, Status>>, closed: Option<flume::Sender<()>>) -> Self {
        ChannelStream {
            inner: rx.into_stream(),
            _closed: closed,
        }
    }
}

impl<T: 'static> Stream for ChannelStream<T> {
    type Item = Result<T, Status>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.inner).poll_next(cx)
    }
}

#[tonic::async_trait]
impl Watch for WatchService {
    async fn watch(
        &self,
        req: Request<Streaming<WatchRequest>>,
    ) -> Result<Response<ResponseStream<WatchResponse>>, Status> {
        let require_leader = req
            .metadata()
            .get(REQUIRE_LEADER_KEY)
            .is_some_and(|v| v.as_bytes() == b"true");
        if require_leader && self.node.raft.status().leader_id == 0 {
            return Err(Status::unavailable(crate::errors::NO_LEADER));
        }
        let creds = crate::grpc::auth::Credentials::of(&req);
        let inbound = req.into_inner();
        let (tx, rx) = flume::bounded(OUTBOUND_CAPACITY);
        let (closed_tx, closed_rx) = flume::bounded::<()>(1);
        // Handlers run on the accepting shard's executor; the stream's task stays there.
        if require_leader {
            glommio::spawn_local(cancel_without_leader(self.node.clone(), tx.clone())).detach();
        }
        glommio::spawn_local(stream::run(
            self.node.clone(),
            inbound,
            tx,
            closed_rx,
            creds,
        ))
        .detach();
        Ok(Response::new(Box::pin(ChannelStream::new(
            rx,
            Some(closed_tx),
        ))))
    }
}

/// etcd's `maxNoLeaderCnt`: a require-leader stream ends after this many election timeouts
/// in a row without a leader.
const MAX_NO_LEADER_CHECKS: u32 = 3;

/// etcd's `monitorLeader` for one require-leader stream: checked once per election timeout;
/// after `MAX_NO_LEADER_CHECKS` checks in a row without a leader the stream ends with
/// `etcdserver: no leader`. Ends with the stream.
async fn cancel_without_leader(node: Arc<Node>, out: flume::Sender<Result<WatchResponse, Status>>) {
    let mut without_leader = 0;
    while !out.is_disconnected() {
        glommio::timer::sleep(node.limits.election_timeout).await;
        if node.raft.status().leader_id == 0 {
            without_leader += 1;
        } else {
            without_leader = 0;
        }
        if without_leader >= MAX_NO_LEADER_CHECKS {
            let _ = out
                .send_async(Err(Status::unavailable(crate::errors::NO_LEADER)))
                .await;
            return;
        }
    }
}
