//! What travels on the peer port (ketch to ketch only, so not protobuf): HTTP/2 POSTs whose
//! bodies are bincode of openraft's own request and response types. A response body is bincode of
//! `Result<response, String>`: `Err` carries the text of the error the peer's raft answered
//! (it stopped, for instance). A snapshot is sent as the raw bytes of its file (see
//! `snapshot_file`), with the vote and the snapshot meta as JSON in a header.

use serde::{Deserialize, Serialize};

use crate::handle::ProposeError;
use crate::types::{SnapshotMeta, Vote};

pub const PATH_APPEND: &str = "/raft/append";
pub const PATH_VOTE: &str = "/raft/vote";
pub const PATH_PRE_VOTE: &str = "/raft/prevote";
pub const PATH_SNAPSHOT: &str = "/raft/snapshot";
pub const PATH_TRANSFER_LEADER: &str = "/raft/transfer-leader";
/// A follower forwarding its clients' writes, batched: the body is bincode of a
/// `Vec<RequestBytes>` (each the protobuf `RaftRequest` as the log stores it); the answer is
/// bincode of `Result<Vec<Result<ApplyOutcome, ForwardRefusal>>, String>`, one outcome per
/// request, in order.
pub const PATH_PROPOSE_BATCH: &str = "/raft/propose-batch";
/// A follower asking for the read index: empty body; the answer is JSON of
/// `Result<u64, ForwardRefusal>`.
pub const PATH_READ_INDEX: &str = "/raft/readindex";
/// A follower forwarding a membership change: the body is JSON of `MemberChange`; the
/// answer is JSON of `Result<MembershipView, MemberChangeError>`.
pub const PATH_MEMBERS: &str = "/raft/members";
/// `GET`: the members as etcd's peer `/members` lists them (JSON array of [`PeerMember`]),
/// with the cluster ID in [`ETCD_CLUSTER_HEADER`]; a member joining an existing cluster
/// learns its ID there. Served over HTTP/1.1 too, with no cluster header required.
pub const PATH_MEMBERS_LIST: &str = "/members";
/// etcd's peer header naming the cluster (hex).
pub const ETCD_CLUSTER_HEADER: &str = "x-etcd-cluster-id";
/// The body of a 410 Gone answer to a removed member (etcd's wording).
pub const REMOVED_TEXT: &str = "the member has been permanently removed from the cluster";
/// Prefix of the application's own peer calls (see `PeerApp`): the body is the
/// application's; the answer is its bytes (200) or an error text (500).
pub const PATH_APP_PREFIX: &str = "/app/";
/// Header of forwarded requests: how long the follower waits, in milliseconds.
pub const TIMEOUT_HEADER: &str = "x-ketch-timeout-ms";
/// Header of a snapshot POST holding [`SnapshotHeader`] as JSON.
pub const SNAPSHOT_HEADER: &str = "x-ketch-snapshot";
/// Header naming the cluster; a peer of another cluster is refused (etcd checks the
/// cluster ID on its peer handlers too).
pub const CLUSTER_HEADER: &str = "x-ketch-cluster-id";

/// The vote of the leader sending a snapshot, and what the snapshot holds.
#[derive(Debug, Serialize, Deserialize)]
pub struct SnapshotHeader {
    pub vote: Vote,
    pub meta: SnapshotMeta,
}

/// Encodes a request or response body: bincode (standard configuration) of openraft's serde
/// types. Entries' payloads are bytes, so an append costs little more than its entries.
pub fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    bincode::serde::encode_to_vec(v, bincode::config::standard()).expect("raft messages serialize")
}

/// Decodes a request or response body.
pub fn decode<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T, bincode::error::DecodeError> {
    bincode::serde::decode_from_slice(b, bincode::config::standard()).map(|(v, _)| v)
}

/// etcd's peer `/members` body is JSON.
pub fn encode_json<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("members serialize")
}

/// Why a leader did not serve a forwarded request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ForwardRefusal {
    /// The receiver is not the leader (any more): ask again.
    NotLeader,
    /// The receiver knows no leader: ask again later.
    NoLeader,
    /// The entry was overwritten by a new leader before it committed.
    LeaderChanged,
    QuorumNotReachable,
    Timeout,
    Stopped,
    Other(String),
}

impl ForwardRefusal {
    /// What the leader tells the follower about a request it did not serve.
    pub fn of(e: &ProposeError) -> ForwardRefusal {
        match e {
            ProposeError::ForwardToLeader { .. } => ForwardRefusal::NotLeader,
            ProposeError::NoLeader => ForwardRefusal::NoLeader,
            ProposeError::LeaderChanged => ForwardRefusal::LeaderChanged,
            ProposeError::QuorumNotReachable => ForwardRefusal::QuorumNotReachable,
            ProposeError::Timeout => ForwardRefusal::Timeout,
            ProposeError::Stopped => ForwardRefusal::Stopped,
            other => ForwardRefusal::Other(other.to_string()),
        }
    }

    /// The follower's view: "not the leader" and "no leader" both mean "find the leader
    /// again", which the follower's retry loop does on `NoLeader`.
    pub fn into_error(self) -> ProposeError {
        match self {
            ForwardRefusal::NotLeader | ForwardRefusal::NoLeader => ProposeError::NoLeader,
            ForwardRefusal::LeaderChanged => ProposeError::LeaderChanged,
            ForwardRefusal::QuorumNotReachable => ProposeError::QuorumNotReachable,
            ForwardRefusal::Timeout => ProposeError::Timeout,
            ForwardRefusal::Stopped => ProposeError::NoLeader,
            ForwardRefusal::Other(text) => ProposeError::Internal(text),
        }
    }
}

/// One member in etcd's peer `/members` JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerMember {
    pub id: u64,
    pub name: String,
    #[serde(rename = "peerURLs")]
    pub peer_urls: Vec<String>,
    #[serde(rename = "clientURLs", default)]
    pub client_urls: Vec<String>,
    #[serde(rename = "isLearner", default)]
    pub is_learner: bool,
}
