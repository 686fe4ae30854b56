//! Opening a WAL directory: read every segment in order, validate, repair a torn tail of
//! the last segment, and hand back the records and the state to append from.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use crate::error::WalError;
use crate::frame::{SegmentHeader, align_down, align_up, parse_segment_file_name};
use crate::prealloc::TMP_SUFFIX;
use crate::scan::{SegmentScan, Tail, scan_segment};
use crate::segment_file::{IoMode, SegmentFile, io_err, sync_dir};
use crate::shared::SegmentInfo;
use crate::writer::Active;

/// A record read back at open, in log order (a later record with an index seen before
/// supersedes nothing by itself: interpreting indexes is the caller's business).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveredRecord {
    pub kind: u8,
    pub index: u64,
    pub body: Vec<u8>,
}

/// What `Wal::open` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    pub records: Vec<RecoveredRecord>,
    /// Segment and byte offset where a torn tail (a partial last write) was cut off;
    /// offset 0 means the whole last segment was dropped (its header never landed).
    pub truncated_tail: Option<(PathBuf, u64)>,
    /// Segment files in the log after recovery.
    pub segments: usize,
    /// Whether segment files are written with O_DIRECT.
    pub direct_io: bool,
}

pub(crate) struct Recovered {
    pub recovery: Recovery,
    pub segments: VecDeque<SegmentInfo>,
    pub active: Option<Active>,
    pub next_seq: u64,
    pub last_crc: u32,
}

/// Largest O_DIRECT alignment handled (segment sizes are multiples of it).
const MAX_ALIGN_BYTES: usize = 4096;

/// Where the last valid segment ends, to resume appending there.
struct SegmentEnd {
    path: PathBuf,
    capacity: u64,
    end_offset: u64,
    last_crc: u32,
    /// Bytes of the last (up to 4 KiB-aligned) block before `end_offset`.
    block_start: u64,
    block: Vec<u8>,
}

pub(crate) async fn recover(dir: &Path, mode: IoMode) -> Result<Recovered, WalError> {
    let listed = list_segments(dir).await?;
    let mut records = Vec::new();
    let mut segments = VecDeque::new();
    let mut truncated_tail = None;
    let mut end: Option<SegmentEnd> = None;
    let mut next_seq = listed.last().map_or(0, |(seq, _, _)| seq + 1);
    for (k, (seq, first_index, path)) in listed.iter().enumerate() {
        let is_last = k + 1 == listed.len();
        let file = SegmentFile::open(path, mode, false).await?;
        let bytes = file.read_all().await?;
        let scan = scan_segment(&bytes, is_last).map_err(|c| corrupt(path, c.offset, c.reason))?;
        let SegmentScan::Records {
            header,
            records: found,
            end_offset,
            last_crc,
            tail,
        } = scan
        else {
            drop_unwritten_segment(dir, file, path).await?;
            truncated_tail = Some((path.clone(), 0));
            next_seq = *seq;
            break;
        };
        check_header(path, (*seq, *first_index), &header, end.as_ref())?;
        segments.push_back(SegmentInfo {
            path: path.clone(),
            max_index: found.iter().map(|r| r.index).max(),
        });
        records.extend(found.into_iter().map(|r| RecoveredRecord {
            kind: r.kind,
            index: r.index,
            body: bytes[r.body].to_vec(),
        }));
        if let Tail::Torn {
            offset,
            nonzero_end,
        } = tail
        {
            zero_torn_tail(&file, &bytes, offset, nonzero_end).await?;
            truncated_tail = Some((path.clone(), offset));
        }
        file.close().await?;
        end = Some(SegmentEnd::new(path, &header, end_offset, last_crc, &bytes));
    }
    let last_crc = end.as_ref().map_or(0, |e| e.last_crc);
    let active = match end {
        Some(e) => Some(reopen_for_append(e, mode).await?),
        None => None,
    };
    let recovery = Recovery {
        records,
        truncated_tail,
        segments: segments.len(),
        direct_io: mode == IoMode::Direct,
    };
    Ok(Recovered {
        recovery,
        segments,
        active,
        next_seq,
        last_crc,
    })
}

fn corrupt(path: &Path, offset: u64, reason: String) -> WalError {
    WalError::Corrupt {
        path: path.to_path_buf(),
        offset,
        reason,
    }
}

impl SegmentEnd {
    fn new(
        path: &Path,
        header: &SegmentHeader,
        end_offset: u64,
        last_crc: u32,
        bytes: &[u8],
    ) -> Self {
        let block_start = align_down(end_offset as usize, MAX_ALIGN_BYTES);
        SegmentEnd {
            path: path.to_path_buf(),
            capacity: header.segment_size_bytes,
            end_offset,
            last_crc,
            block_start: block_start as u64,
            block: bytes[block_start..end_offset as usize].to_vec(),
        }
    }
}

/// The header must match the file name, and continue the CRC chain of the segment before.
fn check_header(
    path: &Path,
    (seq, first_index): (u64, u64),
    header: &SegmentHeader,
    prev: Option<&SegmentEnd>,
) -> Result<(), WalError> {
    if (header.seq, header.first_index) != (seq, first_index) {
        return Err(corrupt(
            path,
            0,
            "segment header does not match the file name".into(),
        ));
    }
    match prev {
        Some(prev) if header.prev_crc != prev.last_crc => {
            let reason = format!(
                "CRC chain broken: header prev_crc {:#010x} but {} ends (at byte {}) with {:#010x}",
                header.prev_crc,
                prev.path.display(),
                prev.end_offset,
                prev.last_crc
            );
            Err(corrupt(path, 0, reason))
        }
        _ => Ok(()),
    }
}

/// The last segment was renamed into place but its first write never landed: delete it.
async fn drop_unwritten_segment(
    dir: &Path,
    file: SegmentFile,
    path: &Path,
) -> Result<(), WalError> {
    file.close().await?;
    glommio::io::remove(path)
        .await
        .map_err(|e| io_err("remove", path, e))?;
    sync_dir(dir).await
}

/// Segment files sorted by sequence number, after deleting unfinished preallocations.
/// A gap in the sequence is an error: a segment in the middle is missing.
async fn list_segments(dir: &Path) -> Result<Vec<(u64, u64, PathBuf)>, WalError> {
    let entries = std::fs::read_dir(dir).map_err(|e| io_err("read dir", dir, e))?;
    let mut out = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| io_err("read dir", dir, e))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.ends_with(TMP_SUFFIX) {
            glommio::io::remove(&path)
                .await
                .map_err(|e| io_err("remove", &path, e))?;
        } else if let Some((seq, first)) = parse_segment_file_name(name) {
            out.push((seq, first, path));
        }
    }
    out.sort();
    for w in out.windows(2) {
        if w[1].0 != w[0].0 + 1 {
            return Err(WalError::Corrupt {
                path: w[1].2.clone(),
                offset: 0,
                reason: format!("segment sequence gap: {:#x} follows {:#x}", w[1].0, w[0].0),
            });
        }
    }
    Ok(out)
}

/// Overwrites `[offset, nonzero_end)` with zeros (keeping the valid bytes before `offset`
/// in the same block), so that records appended at `offset` are never followed by stale
/// bytes of the torn write, and syncs it.
async fn zero_torn_tail(
    file: &SegmentFile,
    bytes: &[u8],
    offset: u64,
    nonzero_end: u64,
) -> Result<(), WalError> {
    let align = file.alignment();
    let start = align_down(offset as usize, align);
    let end = align_up(nonzero_end as usize, align);
    let mut buf = file.alloc(end - start);
    buf.as_mut_slice()[..offset as usize - start].copy_from_slice(&bytes[start..offset as usize]);
    file.write_all_at(buf, start as u64).await?;
    file.fdatasync().await
}

async fn reopen_for_append(e: SegmentEnd, mode: IoMode) -> Result<Active, WalError> {
    let file = SegmentFile::open(&e.path, mode, false).await?;
    let align = file.alignment() as u64;
    assert!(
        align as usize <= MAX_ALIGN_BYTES,
        "O_DIRECT alignment {align} above {MAX_ALIGN_BYTES}"
    );
    let tail_start = e.end_offset / align * align;
    let skip = (tail_start - e.block_start) as usize;
    Ok(Active {
        file,
        capacity: e.capacity,
        write_pos: e.end_offset,
        tail_start,
        tail: e.block[skip..].to_vec(),
        dirty: false,
    })
}
