//! Shared test helpers: a real etcd on free loopback ports with a fresh data dir.
#![allow(dead_code)]

use std::path::PathBuf;

use ketch_loadgen::compare::{ServerGuard, start_server, wait_ready};

/// The etcd binary: $ETCD_BIN, else `etcd` on PATH.
pub fn etcd_bin() -> PathBuf {
    std::env::var_os("ETCD_BIN").map_or_else(|| PathBuf::from("etcd"), PathBuf::from)
}

/// Starts a one-member etcd and waits until it serves; stopped and removed on drop.
pub async fn etcd() -> ServerGuard {
    let mut s = start_server(&etcd_bin(), "test", "").expect("starting etcd");
    wait_ready(&mut s).await.expect("etcd ready");
    s
}

/// The seed of a randomised test: $LOADGEN_SEED, else random; printed either way.
pub fn seed() -> u64 {
    let seed = std::env::var("LOADGEN_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("seed: {seed} (rerun with LOADGEN_SEED={seed})");
    seed
}
