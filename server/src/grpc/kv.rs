//! The KV service: reads are served from the local store (after a ReadIndex barrier unless
//! serializable); writes are validated as etcd's API layer does, then replicated.

use std::sync::Arc;

use ketch_mvcc::validate;
use ketch_proto::ketchpb::{raft_request, raft_response};
use ketch_proto::kv_server::Kv;
use ketch_proto::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};
use tonic::{Request, Response, Status};

use crate::errors::{auth_status, mvcc_status};
use crate::grpc::auth::{Credentials, entry, who};
use crate::node::Node;

/// A range re-resolves its asker this many times when the auth store changed between
/// resolving and reading (etcd's `doSerialize` loop, bounded).
const RANGE_AUTH_ATTEMPTS: usize = 3;

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
    /// Proposes `request` as `who`; the permission checks run when it is applied.
    async fn replicate(
        &self,
        who: &ketch_auth::AuthInfo,
        request: raft_request::Request,
    ) -> Result<ketch_proto::ketchpb::RaftResponse, Status> {
        self.node.propose(entry(who, request)).await
    }

    /// Checks read permission and reads under one lock, so the answer matches the
    /// permissions it was checked against; re-resolves the asker if the auth store moved on
    /// since (etcd's `doSerialize`).
    async fn checked_range(
        &self,
        creds: &Credentials,
        req: &RangeRequest,
    ) -> Result<RangeResponse, Status> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let asker = creds
                .resolve(&self.node)
                .await
                .map_err(|e| auth_status(&e))?;
            let store = self.node.raft.store();
            let store = store.read();
            let auth = store.auth();
            match auth.check(&asker, &req.key, &req.range_end, ketch_auth::Perm::Read) {
                Err(ketch_auth::AuthError::AuthOldRevision) if attempt < RANGE_AUTH_ATTEMPTS => {
                    continue;
                }
                Err(e) => return Err(auth_status(&e)),
                Ok(()) => {}
            }
            let mut resp = store.range(req).map_err(|e| mvcc_status(&e))?;
            resp.header = Some(self.node.header(store.revision()));
            return Ok(resp);
        }
    }
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(&self, req: Request<RangeRequest>) -> Result<Response<RangeResponse>, Status> {
        let _inflight = self.node.enter();
        let creds = Credentials::of(&req);
        let req = req.into_inner();
        validate::check_range(&req).map_err(|e| mvcc_status(&e))?;
        if !req.serializable {
            self.node.read_barrier().await?;
        }
        Ok(Response::new(self.checked_range(&creds, &req).await?))
    }

    async fn put(&self, req: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let _inflight = self.node.enter();
        let creds = Credentials::of(&req);
        let req = req.into_inner();
        validate::check_put(&req).map_err(|e| mvcc_status(&e))?;
        let asker = creds
            .resolve(&self.node)
            .await
            .map_err(|e| auth_status(&e))?;
        let resp = self
            .replicate(&asker, raft_request::Request::Put(req))
            .await?;
        let mut resp = expect_response!(resp, Put);
        fill_header(&self.node, &mut resp.header);
        Ok(Response::new(resp))
    }

    async fn delete_range(
        &self,
        req: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        let _inflight = self.node.enter();
        let creds = Credentials::of(&req);
        let req = req.into_inner();
        validate::check_delete_range(&req).map_err(|e| mvcc_status(&e))?;
        let asker = creds
            .resolve(&self.node)
            .await
            .map_err(|e| auth_status(&e))?;
        let resp = self
            .replicate(&asker, raft_request::Request::DeleteRange(req))
            .await?;
        let mut resp = expect_response!(resp, DeleteRange);
        fill_header(&self.node, &mut resp.header);
        Ok(Response::new(resp))
    }

    async fn txn(&self, req: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        let _inflight = self.node.enter();
        let creds = Credentials::of(&req);
        let req = req.into_inner();
        validate::check_txn(&req, self.node.limits.max_txn_ops).map_err(|e| mvcc_status(&e))?;
        let asker = creds
            .resolve(&self.node)
            .await
            .map_err(|e| auth_status(&e))?;
        let resp = self
            .replicate(&asker, raft_request::Request::Txn(req))
            .await?;
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
        let asker = who(&self.node, &req).await?;
        let req = req.into_inner();
        let resp = self
            .replicate(&asker, raft_request::Request::Compaction(req))
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
