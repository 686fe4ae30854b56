//! The I/O modes: O_DIRECT on the real disk, the buffered + fdatasync fallback on tmpfs
//! (/dev/shm, which refuses O_DIRECT) and when forced off; each round-trips records across
//! rollover, and `Required` refuses tmpfs.

mod common;

use std::path::PathBuf;

use common::{run, small_opts};
use ketch_wal::{DirectIo, Wal, WalError};

/// Appends 100 records of 700 bytes (several segments), reopens, and returns whether
/// O_DIRECT was in use.
fn round_trip(dir: PathBuf, mode: DirectIo) -> bool {
    run(move || async move {
        let mut opts = small_opts(&dir, 16 << 10);
        opts.direct_io = mode;
        let (wal, _) = Wal::open(opts.clone()).await.unwrap();
        for i in 0..100u64 {
            wal.append_durable(&[(3, i, &[i as u8; 700])])
                .await
                .unwrap();
        }
        let m = wal.metrics();
        assert!(m.segment_rollovers >= 3);
        wal.close().await.unwrap();
        let (wal, rec) = Wal::open(opts).await.unwrap();
        assert_eq!(rec.records.len(), 100);
        for (i, r) in rec.records.iter().enumerate() {
            assert_eq!(
                (r.kind, r.index, r.body.as_slice()),
                (3, i as u64, &[i as u8; 700][..])
            );
        }
        assert_eq!(wal.metrics().direct_io, rec.direct_io);
        wal.close().await.unwrap();
        rec.direct_io
    })
}

#[test]
fn tmpfs_falls_back_to_buffered_writes() {
    let dir = tempfile::tempdir_in("/dev/shm").unwrap();
    assert!(!round_trip(dir.path().to_path_buf(), DirectIo::Auto));
}

#[test]
fn real_disk_uses_o_direct_and_can_be_forced_buffered() {
    let dir = tempfile::tempdir().unwrap();
    assert!(round_trip(dir.path().join("direct"), DirectIo::Auto));
    assert!(!round_trip(dir.path().join("buffered"), DirectIo::Off));
}

#[test]
fn required_direct_io_is_refused_on_tmpfs() {
    let dir = tempfile::tempdir_in("/dev/shm").unwrap();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let mut opts = small_opts(&path, 16 << 10);
        opts.direct_io = DirectIo::Required;
        match Wal::open(opts).await {
            Err(e @ WalError::Io { .. }) => assert!(e.to_string().contains("O_DIRECT")),
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("O_DIRECT on tmpfs was accepted"),
        }
    });
}
