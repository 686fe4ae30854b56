//! openraft's type configuration for ketch: node IDs are etcd member IDs, nodes are member
//! records, a log entry carries one protobuf-encoded `RaftRequest`, and applying it answers
//! with the store's `RaftResponse` or its error.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use ketch_proto::ketchpb::{RaftRequest, RaftResponse};
use prost::Message;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::runtime::GlommioRuntime;

/// etcd's member ID (SHA-1 over the peer URLs and the cluster token, as etcd computes it).
pub type MemberId = u64;

/// A member of the group, as etcd's Cluster API lists it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Member {
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
}

/// One replicated command: a `ketchpb::RaftRequest`, protobuf-encoded once by the proposer.
/// The log stores these bytes as they are; they are decoded only when applied.
#[derive(Clone, PartialEq, Eq)]
pub struct RequestBytes(pub Bytes);

impl RequestBytes {
    pub fn encode(req: &RaftRequest) -> RequestBytes {
        RequestBytes(Bytes::from(req.encode_to_vec()))
    }

    pub fn decode(&self) -> Result<RaftRequest, prost::DecodeError> {
        RaftRequest::decode(self.0.clone())
    }
}

impl fmt::Debug for RequestBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RequestBytes({} bytes)", self.0.len())
    }
}

impl fmt::Display for RequestBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl Serialize for RequestBytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for RequestBytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // As bytes, not as a sequence: `Vec<u8>`'s own impl takes a sequence, which a
        // binary format decodes one element (one byte) at a time. Borrowed bytes, not an owned
        // buffer: bincode checks a borrowed length against the input before use, where it
        // would allocate an owned buffer of whatever length the peer's message claims.
        d.deserialize_bytes(RequestBytesVisitor)
    }
}

struct RequestBytesVisitor;

/// Most bytes reserved up front from a sequence's own length hint (it is the peer's word).
const SEQ_PREALLOC_MAX_BYTES: usize = 64 * 1024;

impl<'de> serde::de::Visitor<'de> for RequestBytesVisitor {
    type Value = RequestBytes;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the bytes of a RaftRequest")
    }

    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<RequestBytes, E> {
        Ok(RequestBytes(Bytes::copy_from_slice(v)))
    }

    fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<RequestBytes, E> {
        Ok(RequestBytes(Bytes::from(v)))
    }

    /// Self-describing formats (JSON) write bytes as a sequence of numbers.
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<RequestBytes, A::Error> {
        let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(SEQ_PREALLOC_MAX_BYTES));
        while let Some(b) = seq.next_element::<u8>()? {
            v.push(b);
        }
        Ok(RequestBytes(Bytes::from(v)))
    }
}

/// The store refused to apply a request (an MVCC error such as a compacted revision). The
/// concrete error is kept so the server can map it to etcd's gRPC status: downcast with
/// [`ApplyError::downcast_ref`]. Across the wire only its text travels.
#[derive(Clone)]
pub struct ApplyError(pub Arc<dyn std::error::Error + Send + Sync + 'static>);

impl ApplyError {
    pub fn new(e: impl std::error::Error + Send + Sync + 'static) -> ApplyError {
        ApplyError(Arc::new(e))
    }

    pub fn downcast_ref<E: std::error::Error + 'static>(&self) -> Option<&E> {
        self.0.downcast_ref::<E>()
    }
}

impl fmt::Debug for ApplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApplyError({})", self.0)
    }
}

impl fmt::Display for ApplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// An apply error received from another member: only its message is known.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RemoteApplyError(pub String);

/// What applying one log entry answered: the store's response, or its error.
#[derive(Debug, Clone)]
pub struct ApplyOutcome(pub Result<RaftResponse, ApplyError>);

#[derive(Serialize, Deserialize)]
enum ApplyOutcomeWire {
    Ok(#[serde(with = "bytes_as_vec")] Vec<u8>),
    Err(String),
}

mod bytes_as_vec {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        Vec::<u8>::deserialize(d)
    }
}

impl Serialize for ApplyOutcome {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let wire = match &self.0 {
            Ok(r) => ApplyOutcomeWire::Ok(r.encode_to_vec()),
            Err(e) => ApplyOutcomeWire::Err(e.to_string()),
        };
        wire.serialize(s)
    }
}

impl<'de> Deserialize<'de> for ApplyOutcome {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match ApplyOutcomeWire::deserialize(d)? {
            ApplyOutcomeWire::Ok(b) => RaftResponse::decode(b.as_slice())
                .map(|r| ApplyOutcome(Ok(r)))
                .map_err(serde::de::Error::custom),
            ApplyOutcomeWire::Err(m) => Ok(ApplyOutcome(Err(ApplyError::new(RemoteApplyError(m))))),
        }
    }
}

openraft::declare_raft_types!(
    /// ketch's openraft type configuration.
    pub KetchRaftTypes:
        D = RequestBytes,
        R = ApplyOutcome,
        NodeId = MemberId,
        Node = Member,
        AsyncRuntime = GlommioRuntime,
);

pub type LogId = openraft::alias::LogIdOf<KetchRaftTypes>;
pub type Vote = openraft::alias::VoteOf<KetchRaftTypes>;
pub type Entry = openraft::alias::EntryOf<KetchRaftTypes>;
pub type EntryPayload = openraft::alias::EntryPayloadOf<KetchRaftTypes>;
pub type LeaderId = openraft::alias::LeaderIdOf<KetchRaftTypes>;
pub type StoredMembership = openraft::alias::StoredMembershipOf<KetchRaftTypes>;
pub type SnapshotMeta = openraft::alias::SnapshotMetaOf<KetchRaftTypes>;
