//! `etcdctl snapshot save` for ketch: the member's state exported as etcd 3.4's backend file
//! (a bbolt database with etcd's buckets), streamed as etcd's Maintenance.Snapshot does: 32 KiB
//! chunks with the bytes still to come, then the sha256 of the database.
//!
//! Capturing the state ([`capture`]) is O(1) for the MVCC store (a frozen persistent map) plus
//! a copy of the small lease, member, alarm and auth tables, under the store's read lock. The
//! database is built and sent from a std thread ([`spawn_stream`]), off the shard executor.
//! The database is built whole in memory before the first chunk goes out (about the size of
//! every retained write), as etcd's bolt transaction also holds it fixed while streaming.

mod bbolt;
mod etcd_buckets;

use bytes::Bytes;
use ketch_proto::{AlarmType, SnapshotResponse};
use sha2::{Digest, Sha256};
use tonic::Status;

use bbolt::build_db;
pub use etcd_buckets::BackendState;
use etcd_buckets::{LeaseRecord, etcd_buckets};

use crate::node::Node;

/// etcd's `snapshotSendBufferSize`: the database goes out in chunks of this many bytes.
pub const SNAPSHOT_CHUNK_BYTES: usize = 32 * 1024;
/// Chunks built but not yet taken by the gRPC stream (bounds the copy held in flight).
pub const SNAPSHOT_CHUNKS_IN_FLIGHT: usize = 8;

/// The response stream's channel: chunks in order, then the sha256.
pub type ChunkSender = flume::Sender<Result<SnapshotResponse, Status>>;

/// The member's state as of its last applied entry, ready to export.
pub fn capture(node: &Node) -> BackendState {
    let members = node.raft.membership().members.clone();
    let store = node.raft.store();
    let store = store.read();
    let leases = store
        .lease_ttls()
        .map(|(id, t)| LeaseRecord {
            id,
            ttl: t.granted_ttl,
            remaining_ttl: t.remaining_ttl,
        })
        .collect();
    BackendState {
        mvcc: store.freeze(),
        leases,
        members,
        alarms: store.alarms().list(AlarmType::None),
        auth: store.auth().state().clone(),
        consistent_index: store.applied_index(),
        cluster_version: crate::version::ETCD_CLUSTER_VERSION.to_string(),
    }
}

/// The database bytes of `state` (etcd's backend file, without the sha256).
pub fn backend_db(state: &BackendState) -> Vec<u8> {
    build_db(&etcd_buckets(state))
}

/// Builds the database on a new thread and sends it to `tx` (see [`send_db`]).
pub fn spawn_stream(state: BackendState, tx: ChunkSender) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("snapshot-save".into())
        .spawn(move || {
            let db = backend_db(&state);
            drop(state);
            send_db(Bytes::from(db), &tx);
        })
        .map(|_| ())
}

/// etcd's stream: each chunk carries the bytes of the database still to come after it (0 on
/// the last), then one message with the sha256 of the database (remaining 0). Stops early
/// when the client went away.
pub fn send_db(db: Bytes, tx: &ChunkSender) {
    let mut hasher = Sha256::new();
    let mut sent = 0;
    while sent < db.len() {
        let end = (sent + SNAPSHOT_CHUNK_BYTES).min(db.len());
        let blob = db.slice(sent..end);
        hasher.update(&blob);
        sent = end;
        let chunk = SnapshotResponse {
            header: None,
            remaining_bytes: (db.len() - sent) as u64,
            blob,
        };
        if tx.send(Ok(chunk)).is_err() {
            return;
        }
    }
    let sha = SnapshotResponse {
        header: None,
        remaining_bytes: 0,
        blob: Bytes::from(hasher.finalize().to_vec()),
    };
    let _ = tx.send(Ok(sha));
}
