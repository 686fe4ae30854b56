//! The peer network seam. `start` takes any openraft `RaftNetworkFactory` whose clients carry
//! [`SnapshotFile`] snapshots; the cluster transport (HTTP/2 on the peer port) plugs in
//! there. [`UnreachableNetwork`] is the network of a one-member group: it has no peers, and
//! every call reports the target unreachable.

use std::future::Future;

use openraft::errors::{RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{OptionalSend, RaftNetworkFactory, RaftNetworkV2};

use crate::snapshot_file::SnapshotFile;
use crate::types::{KetchRaftTypes, Member, MemberId, Vote};

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
