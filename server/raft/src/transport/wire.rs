//! What travels on the peer port (ketch to ketch only, so not protobuf): HTTP/2 POSTs whose
//! bodies are JSON of openraft's own request and response types. A response body is JSON of
//! `Result<response, String>`: `Err` carries the text of the error the peer's raft answered
//! (it stopped, for instance). A snapshot is sent as the raw bytes of its file (see
//! `snapshot_file`), with the vote and the snapshot meta as JSON in a header.

use serde::{Deserialize, Serialize};

use crate::types::{SnapshotMeta, Vote};

pub const PATH_APPEND: &str = "/raft/append";
pub const PATH_VOTE: &str = "/raft/vote";
pub const PATH_PRE_VOTE: &str = "/raft/prevote";
pub const PATH_SNAPSHOT: &str = "/raft/snapshot";
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

/// Encodes a request or response body.
pub fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("raft messages serialize")
}

/// Decodes a request or response body.
pub fn decode<'a, T: Deserialize<'a>>(b: &'a [u8]) -> Result<T, serde_json::Error> {
    serde_json::from_slice(b)
}
