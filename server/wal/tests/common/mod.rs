//! Helpers shared by the WAL integration tests: a glommio executor sized for the 8 MiB
//! memlock limit, seeds, deterministic bodies, small-segment options.
#![allow(dead_code)] // each test binary uses a different subset

use std::future::Future;
use std::path::Path;

use glommio::{LocalExecutorBuilder, Placement};
use ketch_wal::{DirectIo, WalOptions};

/// Runs `f` to completion on a fresh single-thread glommio executor.
pub fn run<F, Fut, T>(f: F) -> T
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(1 << 20)
        .spawn(f)
        .expect("start glommio executor")
        .join()
        .expect("executor thread")
}

/// The seed from env var `var`, or a random one; printed so a failure can be replayed.
pub fn seed(var: &str) -> u64 {
    let s = std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    println!("seed: {var}={s}");
    s
}

pub fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The body a test writes for `index`: length and bytes derived from `(seed, index)`,
/// so a reader can check any record without having seen it written.
pub fn body_for(seed: u64, index: u64, max_len: u64) -> Vec<u8> {
    let h = splitmix(seed ^ index.wrapping_mul(0x1000_0000_01b3));
    let len = (h % max_len) as usize;
    (0..len)
        .map(|i| (splitmix(h.wrapping_add(i as u64 / 8)) >> ((i % 8) * 8)) as u8)
        .collect()
}

/// Small segments (so tests roll over) in `dir`.
pub fn small_opts(dir: &Path, segment_size_bytes: u64) -> WalOptions {
    let mut o = WalOptions::new(dir);
    o.segment_size_bytes = segment_size_bytes;
    o.max_batch_bytes = 64 << 10;
    o.direct_io = DirectIo::Auto;
    o
}
