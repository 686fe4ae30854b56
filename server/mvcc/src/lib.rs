//! ketch MVCC store: etcd 3.4's revision model in memory, no I/O.
//!
//! [`Store`] holds every key's history (create/mod revision, version, tombstones, leases),
//! answers Range, applies Put/DeleteRange/Txn/Compaction exactly as etcd 3.4 does, replays
//! history for watch ([`Store::events_since`]), hashes it for consistency checks and
//! snapshots it. [`validate`] holds etcd's API-layer request checks. Every error is an
//! [`MvccError`] whose `Display` is etcd's message and whose [`MvccError::grpc_code`] is etcd's
//! gRPC code.
//!
//! The store is pure (no I/O, no clock, no async) and deterministic: replicas applying the same
//! commands in the same order hold the same state and the same [`Store::hash_kv`]. It is
//! `Send + Sync`; the server keeps it behind a reader-writer lock so serializable reads run on
//! every core while the raft applier writes.
//!
//! Entry points:
//! - reads: [`Store::range`] (header left `None`: the caller fills it, revision =
//!   [`Store::revision`]), [`Store::get`], [`Store::events_since`] (watch catch-up);
//! - writes: [`Store::apply`] for a replicated `RaftRequest` (put, delete_range, txn,
//!   compaction, lease grant/revoke), or [`Store::put`], [`Store::delete_range`],
//!   [`Store::txn`], [`Store::compact`], [`Store::grant_lease`], [`Store::revoke_lease`];
//! - state: [`Store::revision`], [`Store::compact_revision`], [`Store::size_bytes`],
//!   [`Store::lease_exists`], [`Store::keys_of_lease`], [`Store::lease_ids`];
//! - persistence: [`Store::write_snapshot`] / [`Store::read_snapshot`]
//!   (format: docs/snapshot-format.md); [`FrozenStore::retained_writes`] lists every retained
//!   write in revision order (etcd's `key` bucket, for `etcdctl snapshot save`);
//! - API-layer checks to run before proposing: [`validate`].

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
pub use snapshot::{FrozenStore, RetainedWrite, SNAPSHOT_FORMAT_VERSION, SNAPSHOT_MAGIC};
pub use store::Store;
