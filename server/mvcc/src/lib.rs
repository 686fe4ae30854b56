//! ketch MVCC store: etcd 3.4's revision model in memory, no I/O.
//!
//! [`Store`] holds every key's history (create/mod revision, version, tombstones, leases),
//! answers Range, applies Put/DeleteRange/Txn/Compaction exactly as etcd 3.4 does, replays
//! history for watch ([`Store::events_since`]), hashes it for consistency checks and
//! snapshots it. [`validate`] holds etcd's API-layer request checks. Every error is an
//! [`MvccError`] whose `Display` is etcd's message and whose [`MvccError::grpc_code`] is etcd's
//! gRPC code.

mod error;
mod key_history;
mod key_span;
mod lease;
mod map_key;
mod range;
mod revision;
mod snapshot;
mod store;
mod txn;
pub mod validate;

pub use error::{GrpcCode, MvccError};
pub use revision::Revision;
pub use snapshot::{SNAPSHOT_FORMAT_VERSION, SNAPSHOT_MAGIC};
pub use store::Store;
