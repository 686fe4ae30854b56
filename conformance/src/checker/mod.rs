//! Correctness checkers for histories recorded against an etcd-compatible store.
//!
//! - [`linearizability`]: per-key linearizability of KV operations (put, get, delete,
//!   compare-and-swap) with unknown outcomes, plus a global check of revision order.
//! - [`watch`]: watch-stream guarantees (ordered, unique, atomic, reliable, resumable,
//!   prev_kv correct) against the write history or across streams.
//!
//! - [`record`]: recording through the real `etcd-client` (operations, watch responses) and
//!   rebuilding the committed changes from a history.
//!
//! The checkers are pure: they take recorded data and return findings.

pub mod linearizability;
pub mod record;
pub mod watch;
