//! The peer network seam. `start` takes any openraft `RaftNetworkFactory` whose clients carry
//! [`SnapshotFile`] snapshots; the cluster transport (HTTP/2 on the peer port) plugs in
//! there. [`UnreachableNetwork`] is the network of a one-member group: it has no peers, and
//! every call reports the target unreachable.
//!
//! [`LeaderForward`] is the second half of the seam: what a follower does with a client's
//! write or linearizable read, which only the leader can serve (etcd's followers forward
//! proposals to the leader and ask it for the read index).

use std::future::Future;
use std::time::Duration;

use ketch_proto::ketchpb::RaftResponse;

use openraft::errors::{RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{OptionalSend, RaftNetworkFactory, RaftNetworkV2};

use crate::handle::ProposeError;
use crate::membership::{MemberChange, MemberChangeError, MembershipView};
use crate::snapshot_file::SnapshotFile;
use crate::transport::wire::ForwardRefusal;
use crate::types::{ApplyError, KetchRaftTypes, Member, MemberId, RequestBytes, Vote};

/// What became of one forwarded write: the leader applied it (the store's answer or its
/// refusal), or it was not proposed or not answered.
pub type ForwardedWrite = Result<Result<RaftResponse, ApplyError>, ProposeError>;

/// How a follower reaches the leader for client requests. Implemented by every network
/// `start` accepts; `ttl` bounds the whole exchange.
pub trait LeaderForward: Clone + 'static {
    /// Has the leader propose every request of `batch` (in one exchange) and answers, for
    /// each, in order, what applying it produced.
    fn forward_writes(
        &self,
        leader: MemberId,
        node: &Member,
        batch: Vec<RequestBytes>,
        ttl: Duration,
    ) -> impl Future<Output = Vec<ForwardedWrite>>;

    /// Has the leader confirm its leadership (ReadIndex) and answers the log index a read
    /// must see applied.
    fn read_index(
        &self,
        leader: MemberId,
        node: &Member,
        ttl: Duration,
    ) -> impl Future<Output = Result<u64, ProposeError>>;

    /// Sends an application call (`/app/...`, see `PeerApp`) to the leader.
    fn app_call(
        &self,
        leader: MemberId,
        node: &Member,
        path: String,
        body: bytes::Bytes,
        ttl: Duration,
    ) -> impl Future<Output = Result<bytes::Bytes, ProposeError>>;

    /// Has the leader check and make a membership change.
    fn change_members(
        &self,
        leader: MemberId,
        node: &Member,
        change: MemberChange,
        ttl: Duration,
    ) -> impl Future<Output = Result<MembershipView, MemberChangeError>>;
}

impl LeaderForward for UnreachableNetwork {
    async fn forward_writes(
        &self,
        leader: MemberId,
        node: &Member,
        batch: Vec<RequestBytes>,
        _ttl: Duration,
    ) -> Vec<ForwardedWrite> {
        let refusal = ProposeError::ForwardToLeader {
            leader_id: leader,
            leader: Some(node.clone()),
        };
        batch.iter().map(|_| Err(refusal.clone())).collect()
    }

    async fn read_index(
        &self,
        leader: MemberId,
        node: &Member,
        _ttl: Duration,
    ) -> Result<u64, ProposeError> {
        Err(ProposeError::ForwardToLeader {
            leader_id: leader,
            leader: Some(node.clone()),
        })
    }

    async fn app_call(
        &self,
        _leader: MemberId,
        _node: &Member,
        _path: String,
        _body: bytes::Bytes,
        _ttl: Duration,
    ) -> Result<bytes::Bytes, ProposeError> {
        Err(ProposeError::NoLeader)
    }

    async fn change_members(
        &self,
        _leader: MemberId,
        _node: &Member,
        _change: MemberChange,
        _ttl: Duration,
    ) -> Result<MembershipView, MemberChangeError> {
        Err(MemberChangeError::Raft(ForwardRefusal::NoLeader))
    }
}

/// A peer that cannot be reached because this member has no transport to it.
#[derive(Debug, thiserror::Error)]
#[error("member {0:x} is unreachable: no peer transport is configured")]
pub struct NoTransport(pub MemberId);

/// Network of a member without a peer transport (a one-member group).
#[derive(Debug, Clone, Default)]
pub struct UnreachableNetwork;

/// Client half of [`UnreachableNetwork`] for one target.
#[derive(Debug, Clone)]
pub struct UnreachablePeer {
    target: MemberId,
}

impl UnreachablePeer {
    fn unreachable(&self) -> Unreachable<KetchRaftTypes> {
        Unreachable::new(&NoTransport(self.target))
    }
}

impl RaftNetworkFactory<KetchRaftTypes> for UnreachableNetwork {
    type Network = UnreachablePeer;

    async fn new_client(&mut self, target: MemberId, _node: &Member) -> Self::Network {
        UnreachablePeer { target }
    }
}

impl RaftNetworkV2<KetchRaftTypes> for UnreachablePeer {
    type SnapshotData = SnapshotFile;

    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<KetchRaftTypes>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<KetchRaftTypes>, RPCError<KetchRaftTypes>> {
        Err(RPCError::Unreachable(self.unreachable()))
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<KetchRaftTypes>,
        _option: RPCOption,
    ) -> Result<VoteResponse<KetchRaftTypes>, RPCError<KetchRaftTypes>> {
        Err(RPCError::Unreachable(self.unreachable()))
    }

    async fn full_snapshot(
        &mut self,
        _vote: Vote,
        _snapshot: openraft::alias::SnapshotOf<KetchRaftTypes, SnapshotFile>,
        _cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<KetchRaftTypes>, StreamingError<KetchRaftTypes>> {
        Err(StreamingError::Unreachable(self.unreachable()))
    }
}
