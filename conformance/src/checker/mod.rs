//! Correctness checkers for histories recorded against an etcd-compatible store.
//!
//! - [`linearizability`]: per-key linearizability of KV operations (put, get, delete,
//!   compare-and-swap) with unknown outcomes, plus a global check of revision order.
//! - [`watch`]: watch-stream guarantees (ordered, unique, atomic, reliable, resumable,
//!   prev_kv correct) against the write history or across streams.
//!
//! Both are pure: they take recorded data and return findings; recording is the caller's job.

pub mod linearizability;
pub mod watch;
