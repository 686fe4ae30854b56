//! The bounded append queue: records are framed (and CRC-chained) when queued, and the
//! writer takes them out in batches (no I/O).

use std::collections::VecDeque;

use crate::error::WalError;
use crate::frame::{encode_frame, frame_len};

/// Most records that may wait for the writer at once (beyond the batch being written).
pub const QUEUE_MAX_RECORDS: usize = 1 << 16;
/// Most framed bytes that may wait for the writer at once.
pub const QUEUE_MAX_BYTES: usize = 64 << 20;

/// Called once with the outcome of the batch holding an append's records.
pub type DurableCallback = Box<dyn FnOnce(Result<(), WalError>)>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordMeta {
    pub frame_len: u32,
    pub index: u64,
    pub crc: u32,
}

struct Group {
    records: usize,
    bytes: usize,
    done: DurableCallback,
}

/// Framed records taken by the writer: one write (two at a segment boundary) and one
/// fdatasync.
#[derive(Default)]
pub(crate) struct Batch {
    pub bytes: Vec<u8>,
    pub records: Vec<RecordMeta>,
}

impl Batch {
    pub(crate) fn clear(&mut self) {
        self.bytes.clear();
        self.records.clear();
    }
}

pub(crate) struct AppendQueue {
    bytes: Vec<u8>,
    metas: VecDeque<RecordMeta>,
    groups: VecDeque<Group>,
    /// CRC of the last record queued (or recovered): the seed of the next frame.
    last_crc: u32,
    max_frame_bytes: usize,
}

impl AppendQueue {
    pub(crate) fn new(last_crc: u32, max_frame_bytes: usize) -> Self {
        AppendQueue {
            bytes: Vec::new(),
            metas: VecDeque::new(),
            groups: VecDeque::new(),
            last_crc,
            max_frame_bytes,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// Largest body a record may have (its frame must fit in a segment after the header).
    pub(crate) fn max_body_bytes(&self) -> usize {
        (self.max_frame_bytes - crate::frame::FRAME_HEADER_BYTES)
            & !(crate::frame::FRAME_ALIGN_BYTES - 1)
    }

    /// Whether an append of `records` records and `bytes` framed bytes fits now. An empty
    /// queue takes anything, so that one oversized append can always make progress.
    pub(crate) fn has_room(&self, records: usize, bytes: usize) -> bool {
        self.is_empty()
            || (self.metas.len() + records <= QUEUE_MAX_RECORDS
                && self.bytes.len() + bytes <= QUEUE_MAX_BYTES)
    }

    /// Frames `records` into the queue as one group completed by `done`.
    pub(crate) fn push(
        &mut self,
        records: &[(u8, u64, &[u8])],
        done: DurableCallback,
    ) -> Result<(), (WalError, DurableCallback)> {
        let mut framed = 0;
        for (_, _, body) in records {
            if body.len() > self.max_body_bytes() {
                let e = WalError::RecordTooLarge {
                    body_bytes: body.len(),
                    limit_bytes: self.max_body_bytes(),
                };
                return Err((e, done));
            }
            framed += frame_len(body.len());
        }
        if !self.has_room(records.len(), framed) {
            let e = WalError::QueueFull {
                queued_records: self.metas.len(),
                queued_bytes: self.bytes.len(),
            };
            return Err((e, done));
        }
        for &(kind, index, body) in records {
            let crc = encode_frame(&mut self.bytes, self.last_crc, kind, index, body);
            self.last_crc = crc;
            let frame_len = frame_len(body.len()) as u32;
            self.metas.push_back(RecordMeta {
                frame_len,
                index,
                crc,
            });
        }
        self.groups.push_back(Group {
            records: records.len(),
            bytes: framed,
            done,
        });
        Ok(())
    }

    /// Moves whole groups, up to `max_batch_bytes` (at least one group), into `batch`,
    /// and their callbacks into `done`, in append order.
    pub(crate) fn take_batch(
        &mut self,
        max_batch_bytes: usize,
        batch: &mut Batch,
        done: &mut VecDeque<DurableCallback>,
    ) {
        let (mut n_records, mut n_bytes) = (0, 0);
        while let Some(g) = self.groups.front() {
            if n_bytes > 0 && n_bytes + g.bytes > max_batch_bytes {
                break;
            }
            let g = self.groups.pop_front().expect("front exists");
            n_records += g.records;
            n_bytes += g.bytes;
            done.push_back(g.done);
        }
        batch.bytes.extend_from_slice(&self.bytes[..n_bytes]);
        self.bytes.drain(..n_bytes);
        batch.records.extend(self.metas.drain(..n_records));
    }

    /// Removes every queued group and returns their callbacks (used on failure / drop).
    pub(crate) fn drain_callbacks(&mut self) -> Vec<DurableCallback> {
        self.bytes.clear();
        self.metas.clear();
        self.groups.drain(..).map(|g| g.done).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noop() -> DurableCallback {
        Box::new(|_| {})
    }

    #[test]
    fn batches_take_whole_groups_up_to_the_byte_limit() {
        let mut q = AppendQueue::new(0, 1 << 20);
        q.push(&[(1, 1, &[0u8; 100]), (1, 2, &[0u8; 100])], noop())
            .ok()
            .unwrap();
        q.push(&[(1, 3, &[0u8; 100])], noop()).ok().unwrap();
        let (mut b, mut d) = (Batch::default(), VecDeque::new());
        q.take_batch(300, &mut b, &mut d);
        assert_eq!((b.records.len(), d.len(), b.bytes.len()), (2, 1, 256));
        assert_eq!(b.records[1].index, 2);
        b.clear();
        q.take_batch(300, &mut b, &mut d);
        assert_eq!((b.records.len(), d.len()), (1, 2));
        assert!(q.is_empty());
    }

    #[test]
    fn oversized_record_is_refused_whole() {
        let mut q = AppendQueue::new(0, 1024);
        let big = vec![0u8; 1024];
        let err = q
            .push(&[(1, 1, b"ok"), (1, 2, &big)], noop())
            .err()
            .unwrap()
            .0;
        assert!(matches!(err, WalError::RecordTooLarge { .. }));
        assert!(q.is_empty());
    }

    #[test]
    fn full_queue_refuses_but_empty_queue_takes_anything() {
        let mut q = AppendQueue::new(0, QUEUE_MAX_BYTES * 2);
        let big = vec![0u8; QUEUE_MAX_BYTES];
        assert!(q.push(&[(1, 1, &big)], noop()).is_ok());
        let err = q.push(&[(1, 2, b"x")], noop()).err().unwrap().0;
        assert!(matches!(err, WalError::QueueFull { .. }));
    }
}
