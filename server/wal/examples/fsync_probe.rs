//! Measures what preallocation buys: the cost of an fdatasync after an O_DIRECT 4 KiB
//! overwrite into (a) blocks that were fallocated but never written, (b) blocks already
//! overwritten with zeros and synced (what the WAL's preallocator prepares), and (c) new
//! blocks that extend the file. Run: `cargo run -p ketch-wal --example fsync_probe [DIR]`
//! (DIR must be on the disk to measure; default: a temp dir under ./target).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use glommio::io::{DmaFile, OpenOptions};
use glommio::{LocalExecutorBuilder, Placement};

const WRITES: usize = 2000;
const BLOCK_BYTES: usize = 4096;
const FILE_BYTES: u64 = (WRITES * BLOCK_BYTES) as u64;

fn main() {
    let base = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"));
    std::fs::create_dir_all(&base).unwrap();
    let dir = tempfile::tempdir_in(&base).unwrap();
    let path = dir.path().to_path_buf();
    LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(1 << 20)
        .spawn(move || async move {
            for case in ["fallocated", "pre-zeroed", "extending"] {
                let f = prepare(&path.join(case), case).await;
                let lat = overwrite_and_sync(&f).await;
                report(case, lat);
                f.close().await.unwrap();
            }
        })
        .unwrap()
        .join()
        .unwrap();
}

async fn prepare(path: &Path, case: &str) -> DmaFile {
    // a 4 KiB data file first: glommio probes polled-I/O support with a real read
    std::fs::write(path.with_extension("probe"), [1u8; 4096]).unwrap();
    let probe = DmaFile::open(path.with_extension("probe")).await.unwrap();
    probe.close().await.unwrap();
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .dma_open(path)
        .await
        .unwrap();
    match case {
        "fallocated" => f.pre_allocate(FILE_BYTES, false).await.unwrap(),
        "pre-zeroed" => {
            f.pre_allocate(FILE_BYTES, false).await.unwrap();
            let mut pos = 0;
            while pos < FILE_BYTES {
                let mut b = f.alloc_dma_buffer(1 << 20);
                b.as_bytes_mut().fill(0);
                f.write_at(b, pos).await.unwrap();
                pos += 1 << 20;
            }
        }
        _ => {}
    }
    f.fdatasync().await.unwrap();
    f
}

async fn overwrite_and_sync(f: &DmaFile) -> Vec<Duration> {
    let mut lat = Vec::with_capacity(WRITES);
    for i in 0..WRITES {
        let mut b = f.alloc_dma_buffer(BLOCK_BYTES);
        b.as_bytes_mut().fill(0xa5);
        f.write_at(b, (i * BLOCK_BYTES) as u64).await.unwrap();
        let t = Instant::now();
        f.fdatasync().await.unwrap();
        lat.push(t.elapsed());
    }
    lat
}

fn report(case: &str, mut lat: Vec<Duration>) {
    lat.sort();
    let mean = lat.iter().sum::<Duration>() / lat.len() as u32;
    let p = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
    println!(
        "{case:>11}: fdatasync after 4 KiB O_DIRECT write, n={}: mean {:?}, p50 {:?}, p99 {:?}",
        lat.len(),
        mean,
        p(0.5),
        p(0.99)
    );
}
