//! The KV service: reads are served from the local store (after a ReadIndex barrier unless
//! serializable); writes are validated as etcd's API layer does, then replicated.

use std::sync::Arc;

use ketch_mvcc::validate;
use ketch_proto::ketchpb::{RaftRequest, raft_request, raft_response};
use ketch_proto::kv_server::Kv;
use ketch_proto::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};
use tonic::{Request, Response, Status};

use crate::errors::mvcc_status;
use crate::node::Node;

pub struct KvService {
    pub node: Arc<Node>,
}

/// Unwraps the response variant a request must produce; anything else is a programming error
/// in the state machine.
macro_rules! expect_response {
    ($resp:expr, $variant:ident) => {
        match $resp.response {
            Some(raft_response::Response::$variant(r)) => r,
            other => panic!(
                "state machine answered {} with {:?}",
                stringify!($variant),
                other
            ),
        }
    };
}

impl KvService {
    async fn replicate(
        &self,
        request: raft_request::Request,
    ) -> Result<ketch_proto::ketchpb::RaftResponse, Status> {
        self.node
            .propose(RaftRequest {
                request: Some(request),
            })
            .await
    }
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(&self, req: Request<RangeRequest>) -> Result<Response<RangeResponse>, Status> {
        let _inflight = self.node.enter();
        let req = req.into_inner();
        validate::check_range(&req).map_err(|e| mvcc_status(&e))?;
        if !req.serializable {
            self.node.read_barrier().await?;
        }
        let store = self.node.raft.store();
        let store = store.read();
        let mut resp = store.range(&req).map_err(|e| mvcc_status(&e))?;
        resp.header = Some(self.node.header(store.revision()));
        Ok(Response::new(resp))
    }

    async fn put(&self, req: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let _inflight = self.node.enter();
        let req = req.into_inner();
        validate::check_put(&req).map_err(|e| mvcc_status(&e))?;
        let resp = self.replicate(raft_request::Request::Put(req)).await?;
        let mut resp = expect_response!(resp, Put);
        fill_header(&self.node, &mut resp.header);
        Ok(Response::new(resp))
    }

    async fn delete_range(
        &self,
        req: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        let _inflight = self.node.enter();
        let req = req.into_inner();
        validate::check_delete_range(&req).map_err(|e| mvcc_status(&e))?;
        let resp = self
            .replicate(raft_request::Request::DeleteRange(req))
            .await?;
        let mut resp = expect_response!(resp, DeleteRange);
        fill_header(&self.node, &mut resp.header);
        Ok(Response::new(resp))
    }

    async fn txn(&self, req: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        let _inflight = self.node.enter();
        let req = req.into_inner();
        validate::check_txn(&req, self.node.limits.max_txn_ops).map_err(|e| mvcc_status(&e))?;
        let resp = self.replicate(raft_request::Request::Txn(req)).await?;
        let mut resp = expect_response!(resp, Txn);
        // Nested responses keep the headers the store gave them (etcd's: a range reports the
        // revision it read at, a write the txn's revision, a nested txn an empty header).
        fill_header(&self.node, &mut resp.header);
        Ok(Response::new(resp))
    }

    async fn compact(
        &self,
        req: Request<CompactionRequest>,
    ) -> Result<Response<CompactionResponse>, Status> {
        let _inflight = self.node.enter();
        let req = req.into_inner();
        let resp = self
            .replicate(raft_request::Request::Compaction(req))
            .await?;
        let mut resp = expect_response!(resp, Compaction);
        fill_header(&self.node, &mut resp.header);
        Ok(Response::new(resp))
    }
}

/// The state machine sets the revision; identity and term are the member's.
fn fill_header(node: &Node, header: &mut Option<ketch_proto::ResponseHeader>) {
    let revision = header.as_ref().map_or(0, |h| h.revision);
    *header = Some(node.header(revision));
}
