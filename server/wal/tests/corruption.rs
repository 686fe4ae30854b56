//! Recovery from damaged segments, made by editing closed WAL files on disk: a torn last
//! record (zeroed sector, cut file, garbage after the end) is cut off and reported and the
//! WAL appends there; a flipped body or padding byte, or a damaged earlier segment, is an
//! error naming the file and byte offset; a truncated last segment header drops it.

mod common;

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use common::{run, small_opts};
use ketch_wal::{SEGMENT_HEADER_BYTES, Wal, WalError, frame_len};

const SEGMENT: u64 = 64 << 10;
const BODY: usize = 1001; // frame of 1040 bytes: 24 header + 1001 body + 15 padding

fn frame_offset(k: usize) -> u64 {
    (SEGMENT_HEADER_BYTES + k * frame_len(BODY)) as u64
}

fn body(i: u64) -> Vec<u8> {
    vec![(i % 251) as u8 + 1; BODY]
}

/// Writes records `0..n` (one per batch) to a fresh WAL in `dir`, closes it, and returns
/// its segment files.
fn write_log(dir: &Path, n: u64) -> Vec<PathBuf> {
    let dir = dir.to_path_buf();
    run(move || async move {
        let (wal, _) = Wal::open(small_opts(&dir, SEGMENT)).await.unwrap();
        for i in 0..n {
            wal.append_durable(&[(1, i, &body(i))]).await.unwrap();
        }
        let segs = wal.segment_paths();
        wal.close().await.unwrap();
        segs
    })
}

fn edit(path: &Path, offset: u64, bytes: &[u8]) {
    let f = OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(bytes, offset).unwrap();
    f.sync_all().unwrap();
}

/// Record indexes recovered, and the torn tail cut, if any.
type Reopened = (Vec<u64>, Option<(PathBuf, u64)>);

/// Opens the WAL, checks every body, closes.
fn reopen(dir: &Path) -> Result<Reopened, WalError> {
    let dir = dir.to_path_buf();
    run(move || async move {
        let (wal, rec) = Wal::open(small_opts(&dir, SEGMENT)).await?;
        for r in &rec.records {
            assert_eq!(r.body, body(r.index), "record {} body differs", r.index);
        }
        let idx = rec.records.iter().map(|r| r.index).collect();
        wal.close().await?;
        Ok((idx, rec.truncated_tail))
    })
}

fn append_one(dir: &Path, i: u64) {
    let dir = dir.to_path_buf();
    run(move || async move {
        let (wal, _) = Wal::open(small_opts(&dir, SEGMENT)).await.unwrap();
        wal.append_durable(&[(1, i, &body(i))]).await.unwrap();
        wal.close().await.unwrap();
    });
}

#[test]
fn zeroed_sector_in_last_record_is_cut_and_appending_resumes_there() {
    let dir = tempfile::tempdir().unwrap();
    let segs = write_log(dir.path(), 10);
    let last = frame_offset(9);
    // zero the sector that holds the end of record 9's body, as a write torn by a crash
    let sector_end = (last + 24 + BODY as u64) / 512 * 512;
    edit(&segs[0], sector_end - 512, &[0u8; 512]);
    let (idx, tail) = reopen(dir.path()).unwrap();
    assert_eq!(idx, (0..9).collect::<Vec<_>>());
    assert_eq!(tail, Some((segs[0].clone(), last)));
    append_one(dir.path(), 9);
    append_one(dir.path(), 10);
    let (idx, tail) = reopen(dir.path()).unwrap();
    assert_eq!(idx, (0..11).collect::<Vec<_>>());
    assert_eq!(tail, None);
}

#[test]
fn file_cut_inside_last_record_is_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let segs = write_log(dir.path(), 5);
    let f = OpenOptions::new().write(true).open(&segs[0]).unwrap();
    f.set_len(frame_offset(4) + 300).unwrap();
    drop(f);
    let (idx, tail) = reopen(dir.path()).unwrap();
    assert_eq!(idx, (0..4).collect::<Vec<_>>());
    assert_eq!(tail, Some((segs[0].clone(), frame_offset(4))));
    append_one(dir.path(), 4);
    assert_eq!(reopen(dir.path()).unwrap().0, (0..5).collect::<Vec<_>>());
}

#[test]
fn garbage_after_the_last_record_is_cut_and_zeroed() {
    let dir = tempfile::tempdir().unwrap();
    let segs = write_log(dir.path(), 3);
    // a later sector of a torn batch landed, its first sector did not
    edit(
        &segs[0],
        frame_offset(3) + 2048,
        b"stale bytes of a torn batch",
    );
    let (idx, tail) = reopen(dir.path()).unwrap();
    assert_eq!(idx, vec![0, 1, 2]);
    assert_eq!(tail, Some((segs[0].clone(), frame_offset(3))));
    // appending over the cut must not leave the garbage to be found after new records
    for i in 3..6 {
        append_one(dir.path(), i);
    }
    assert_eq!(reopen(dir.path()).unwrap(), ((0..6).collect(), None));
}

fn expect_corrupt(dir: &Path, path: &Path, offset: u64) {
    match reopen(dir) {
        Err(e @ WalError::Corrupt { .. }) => {
            let WalError::Corrupt {
                path: p, offset: o, ..
            } = &e
            else {
                unreachable!()
            };
            assert_eq!((p.as_path(), *o), (path, offset), "{e}");
            let msg = e.to_string();
            assert!(msg.contains(&path.display().to_string()) && msg.contains(&offset.to_string()));
        }
        other => panic!(
            "expected corruption at {}:{offset}, got {other:?}",
            path.display()
        ),
    }
}

#[test]
fn flipped_byte_in_a_middle_body_names_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let segs = write_log(dir.path(), 10);
    edit(&segs[0], frame_offset(4) + 24 + 500, &[0xee]);
    expect_corrupt(dir.path(), &segs[0], frame_offset(4));
}

#[test]
fn flipped_byte_in_the_last_body_is_corruption_not_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let segs = write_log(dir.path(), 10);
    edit(&segs[0], frame_offset(9) + 24 + 3, &[0xee]);
    expect_corrupt(dir.path(), &segs[0], frame_offset(9));
}

#[test]
fn flipped_padding_byte_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let segs = write_log(dir.path(), 10);
    edit(&segs[0], frame_offset(3) + 24 + BODY as u64 + 5, &[1]);
    expect_corrupt(dir.path(), &segs[0], frame_offset(3));
}

#[test]
fn damage_in_an_earlier_segment_is_corruption_even_if_it_looks_torn() {
    let dir = tempfile::tempdir().unwrap();
    let segs = write_log(dir.path(), 80); // two segments
    assert_eq!(segs.len(), 2);
    edit(&segs[0], 1024, &[0u8; 512]);
    expect_corrupt(dir.path(), &segs[0], frame_offset(0));
}

#[test]
fn truncated_header_drops_the_last_segment_but_not_an_earlier_one() {
    let dir = tempfile::tempdir().unwrap();
    let segs = write_log(dir.path(), 80);
    let f = OpenOptions::new().write(true).open(&segs[1]).unwrap();
    f.set_len(10).unwrap();
    drop(f);
    let in_first = (0..80)
        .filter(|&k| frame_offset(k as usize + 1) <= SEGMENT)
        .count() as u64;
    let (idx, tail) = reopen(dir.path()).unwrap();
    assert_eq!(idx, (0..in_first).collect::<Vec<_>>());
    assert_eq!(tail, Some((segs[1].clone(), 0)));
    assert!(!segs[1].exists());
    append_one(dir.path(), in_first);
    assert_eq!(
        reopen(dir.path()).unwrap().0,
        (0..=in_first).collect::<Vec<_>>()
    );

    let dir = tempfile::tempdir().unwrap();
    let segs = write_log(dir.path(), 80);
    OpenOptions::new()
        .write(true)
        .open(&segs[0])
        .unwrap()
        .set_len(10)
        .unwrap();
    expect_corrupt(dir.path(), &segs[0], 0);
}

#[test]
fn missing_middle_segment_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let segs = write_log(dir.path(), 150);
    assert!(segs.len() >= 3);
    std::fs::remove_file(&segs[1]).unwrap();
    expect_corrupt(dir.path(), &segs[2], 0);
}
