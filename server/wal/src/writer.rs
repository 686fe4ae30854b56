//! The one writer task per WAL: takes a batch from the queue, writes it (rolling over to
//! a pre-zeroed segment when it does not fit), fdatasyncs, then completes its waiters.
//! While it writes and syncs, the next batch gathers in the queue.

use std::rc::Rc;
use std::time::Instant;

use crate::error::WalError;
use crate::frame::{SEGMENT_HEADER_BYTES, SegmentHeader, align_down, align_up, segment_file_name};
use crate::prealloc::Preallocator;
use crate::queue::Batch;
use crate::segment_file::{SegmentFile, sync_dir};
use crate::shared::{SegmentInfo, Shared};

/// The segment being appended to.
pub(crate) struct Active {
    pub file: SegmentFile,
    /// Bytes this segment may hold (from its header).
    pub capacity: u64,
    /// Offset just past the last record written.
    pub write_pos: u64,
    /// Start of the block holding `write_pos` (a multiple of the file's alignment).
    pub tail_start: u64,
    /// Bytes `[tail_start, write_pos)`, rewritten (unchanged) with the next batch because
    /// O_DIRECT writes whole aligned blocks.
    pub tail: Vec<u8>,
    /// Written since the last fdatasync.
    pub dirty: bool,
}

pub(crate) struct WriterState {
    pub active: Option<Active>,
    pub prealloc: Preallocator,
    pub next_seq: u64,
    /// CRC of the last record written: `prev_crc` of the next segment's header.
    pub last_crc: u32,
    pub batch: Batch,
}

pub(crate) async fn run_writer(shared: Rc<Shared>, mut ws: WriterState) {
    loop {
        let has_work = || !shared.queue.borrow().is_empty() || shared.closing.get();
        shared.writer_wake.wait_until(has_work).await;
        if shared.queue.borrow().is_empty() {
            break; // closing, and everything queued is durable
        }
        take_batch(&shared, &mut ws);
        let records = ws.batch.records.len() as u64;
        match write_batch(&shared, &mut ws).await {
            Ok(()) => {
                let mut m = shared.metrics.borrow_mut();
                m.batches += 1;
                m.records += records;
                drop(m);
                // Durable: the batch's fdatasync has returned.
                shared.complete_inflight_durable();
            }
            Err(e) => {
                shared.fail_all(e);
                break;
            }
        }
        ws.batch.clear();
        shared.room_wake.notify_all();
    }
    if let Some(a) = ws.active.take() {
        let _ = a.file.close().await; // everything in it is already synced
    }
}

fn take_batch(shared: &Shared, ws: &mut WriterState) {
    let mut inflight = shared.inflight.borrow_mut();
    let mut queue = shared.queue.borrow_mut();
    queue.take_batch(shared.max_batch_bytes, &mut ws.batch, &mut inflight);
}

/// Writes the batch, splitting it at a record boundary where the active segment is full,
/// and leaves everything written fdatasynced.
async fn write_batch(shared: &Shared, ws: &mut WriterState) -> Result<(), WalError> {
    let n = ws.batch.records.len();
    let (mut i, mut off) = (0usize, 0usize);
    while i < n {
        if ws.active.is_none() {
            activate_next_segment(shared, ws, i).await?;
        }
        let active = ws.active.as_mut().expect("activated above");
        let room = active.capacity.saturating_sub(active.write_pos);
        let (mut j, mut len) = (i, 0u64);
        while j < n && len + u64::from(ws.batch.records[j].frame_len) <= room {
            len += u64::from(ws.batch.records[j].frame_len);
            j += 1;
        }
        assert!(
            j > i || active.write_pos > SEGMENT_HEADER_BYTES as u64,
            "a record larger than an empty segment passed the append size check"
        );
        if j > i {
            let chunk = &ws.batch.bytes[off..off + len as usize];
            write_chunk(shared, active, chunk).await?;
            let max = ws.batch.records[i..j].iter().map(|r| r.index).max();
            if let Some(seg) = shared.segments.borrow_mut().back_mut() {
                seg.max_index = seg.max_index.max(max);
            }
            ws.last_crc = ws.batch.records[j - 1].crc;
            off += len as usize;
            i = j;
        }
        if i < n {
            // The next record does not fit: make this segment durable before any record
            // lands in the next one, so that only the last segment can ever be torn.
            let full = ws.active.take().expect("active");
            sync_active(shared, &full).await?;
            full.file.close().await?;
            shared.metrics.borrow_mut().segment_rollovers += 1;
        }
    }
    match &ws.active {
        Some(a) if a.dirty => sync_active(shared, a).await,
        _ => Ok(()),
    }?;
    if let Some(a) = ws.active.as_mut() {
        a.dirty = false;
    }
    Ok(())
}

/// Writes `bytes` at the active segment's `write_pos`, as one aligned write starting at
/// the block that holds `write_pos` (whose earlier bytes are rewritten unchanged).
async fn write_chunk(shared: &Shared, a: &mut Active, bytes: &[u8]) -> Result<(), WalError> {
    let align = a.file.alignment();
    let used = a.tail.len() + bytes.len();
    let mut buf = a.file.alloc(align_up(used, align));
    let slice = buf.as_mut_slice();
    slice[..a.tail.len()].copy_from_slice(&a.tail);
    slice[a.tail.len()..used].copy_from_slice(bytes);
    let new_pos = a.write_pos + bytes.len() as u64;
    let new_tail_start = align_down(new_pos as usize, align) as u64;
    let keep_from = (new_tail_start - a.tail_start) as usize;
    let new_tail = slice[keep_from..used].to_vec();
    let len = slice.len() as u64;
    a.file.write_all_at(buf, a.tail_start).await?;
    shared.metrics.borrow_mut().bytes_written += len;
    a.write_pos = new_pos;
    a.tail_start = new_tail_start;
    a.tail = new_tail;
    a.dirty = true;
    Ok(())
}

async fn sync_active(shared: &Shared, a: &Active) -> Result<(), WalError> {
    let started = Instant::now();
    a.file.fdatasync().await?;
    let mut m = shared.metrics.borrow_mut();
    m.fsyncs += 1;
    m.fsync_seconds.observe(started.elapsed());
    Ok(())
}

/// Takes the next pre-zeroed segment, names it after its sequence number and the index
/// of the batch record `first` (the first it will hold), and makes the rename durable.
/// Its header is written with the first chunk of records.
async fn activate_next_segment(
    shared: &Shared,
    ws: &mut WriterState,
    first: usize,
) -> Result<(), WalError> {
    let mut ready = ws.prealloc.take().await?;
    let header = SegmentHeader {
        seq: ws.next_seq,
        first_index: ws.batch.records[first].index,
        segment_size_bytes: shared.segment_size_bytes,
        prev_crc: ws.last_crc,
    };
    let path = shared
        .dir
        .join(segment_file_name(header.seq, header.first_index));
    ready.file.rename(&path).await?;
    sync_dir(&shared.dir).await?;
    shared.segments.borrow_mut().push_back(SegmentInfo {
        path,
        max_index: None,
    });
    ws.next_seq += 1;
    ws.active = Some(Active {
        file: ready.file,
        capacity: shared.segment_size_bytes,
        write_pos: SEGMENT_HEADER_BYTES as u64,
        tail_start: 0,
        tail: header.encode().to_vec(),
        dirty: true,
    });
    Ok(())
}
