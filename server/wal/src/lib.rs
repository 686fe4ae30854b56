//! ketch write-ahead log: segments, CRC-framed records, group-commit fsync on io_uring.
//!
//! The WAL stores opaque records `(kind, index, body)` in segment files (format:
//! docs/wal-format.md). It is read once, at [`Wal::open`], and then only appended to.
//! One writer task per WAL does group commit: appends queue their records and a
//! completion; the writer writes a whole batch with one write and one fdatasync, then
//! runs every completion of that batch, in append order. Nothing is reported durable
//! before the fdatasync covering it has returned.
//!
//! Everything runs on one glommio executor: [`Wal`] is `!Send` and cheap to clone.

mod error;
mod frame;
mod metrics;
mod prealloc;
mod queue;
mod recover;
mod scan;
mod segment_file;
mod shared;
mod writer;

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;

use glommio::Task;

pub use error::WalError;
pub use frame::{
    FRAME_ALIGN_BYTES, FRAME_HEADER_BYTES, SEGMENT_HEADER_BYTES, frame_len, segment_file_name,
};
pub use metrics::{FSYNC_BUCKETS, Histogram, WalMetrics, fsync_bucket_upper_seconds};
pub use queue::{DurableCallback, QUEUE_MAX_BYTES, QUEUE_MAX_RECORDS};
pub use recover::{RecoveredRecord, Recovery};
pub use segment_file::DirectIo;

use crate::prealloc::Preallocator;
use crate::queue::{AppendQueue, Batch};
use crate::segment_file::{io_err, resolve_io_mode, sync_dir};
use crate::shared::Shared;
use crate::writer::{WriterState, run_writer};

/// Default segment size, as etcd's.
pub const DEFAULT_SEGMENT_SIZE_BYTES: u64 = 64 << 20;
/// Default most framed bytes per batch (one write + one fdatasync).
pub const DEFAULT_MAX_BATCH_BYTES: usize = 1 << 20;
/// Smallest segment size accepted (tests use small segments to exercise rollover).
pub const MIN_SEGMENT_SIZE_BYTES: u64 = 16 << 10;
/// Segment sizes must be multiples of this (the largest O_DIRECT alignment handled).
pub const SEGMENT_SIZE_MULTIPLE_BYTES: u64 = 4096;
/// Name of the lock file held (flock) while a `Wal` is open on a directory.
pub const LOCK_FILE_NAME: &str = "LOCK";

#[derive(Debug, Clone)]
pub struct WalOptions {
    pub dir: PathBuf,
    pub segment_size_bytes: u64,
    /// Segments kept zero-filled and ready ahead of use (0: prepared when needed).
    pub preallocated_segments: usize,
    pub max_batch_bytes: usize,
    pub direct_io: DirectIo,
}

impl WalOptions {
    /// Defaults: 64 MiB segments, one ready ahead, 1 MiB batches, O_DIRECT where possible.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        WalOptions {
            dir: dir.into(),
            segment_size_bytes: DEFAULT_SEGMENT_SIZE_BYTES,
            preallocated_segments: 1,
            max_batch_bytes: DEFAULT_MAX_BATCH_BYTES,
            direct_io: DirectIo::Auto,
        }
    }

    fn validate(&self) -> Result<(), WalError> {
        let s = self.segment_size_bytes;
        if s < MIN_SEGMENT_SIZE_BYTES || !s.is_multiple_of(SEGMENT_SIZE_MULTIPLE_BYTES) {
            return Err(WalError::InvalidOptions(format!(
                "segment_size_bytes {s} must be a multiple of {SEGMENT_SIZE_MULTIPLE_BYTES} \
                 and at least {MIN_SEGMENT_SIZE_BYTES}"
            )));
        }
        if self.max_batch_bytes == 0 {
            return Err(WalError::InvalidOptions(
                "max_batch_bytes must be > 0".into(),
            ));
        }
        Ok(())
    }
}

/// A handle on an open WAL. Clones share the WAL; the writer stops at [`Wal::close`],
/// or when the last handle is dropped (then waiting appends complete with `Closed`).
#[derive(Clone)]
pub struct Wal {
    inner: Rc<Inner>,
}

struct Inner {
    shared: Rc<Shared>,
    writer: RefCell<Option<Task<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if self.writer.get_mut().is_some() {
            // Dropped without close: the outcome of the batch in flight is unknown, so
            // nobody is told it is durable. Dropping the task cancels the writer.
            self.shared.closing.set(true);
            self.shared.fail_all(WalError::Closed);
        }
    }
}

impl Wal {
    /// Opens (creating if needed) the WAL in `opts.dir`: reads every record back, cuts a
    /// torn tail, and starts the writer and the segment preallocator.
    pub async fn open(opts: WalOptions) -> Result<(Wal, Recovery), WalError> {
        opts.validate()?;
        let dir = opts.dir.clone();
        std::fs::create_dir_all(&dir).map_err(|e| io_err("create dir", &dir, e))?;
        let lock = lock_dir(&dir)?;
        sync_dir(&dir).await?;
        let mode = resolve_io_mode(&dir, &dir.join(LOCK_FILE_NAME), opts.direct_io).await?;
        let rec = recover::recover(&dir, mode).await?;
        let max_frame_bytes = opts.segment_size_bytes as usize - SEGMENT_HEADER_BYTES;
        let metrics = WalMetrics {
            direct_io: rec.recovery.direct_io,
            ..WalMetrics::default()
        };
        let shared = Rc::new(Shared {
            dir: dir.clone(),
            segment_size_bytes: opts.segment_size_bytes,
            max_batch_bytes: opts.max_batch_bytes,
            queue: RefCell::new(AppendQueue::new(rec.last_crc, max_frame_bytes)),
            inflight: RefCell::default(),
            closing: Default::default(),
            failure: RefCell::default(),
            segments: RefCell::new(rec.segments),
            metrics: RefCell::new(metrics),
            writer_wake: Default::default(),
            room_wake: Default::default(),
            _lock: lock,
        });
        let ws = WriterState {
            active: rec.active,
            prealloc: Preallocator::start(
                &dir,
                mode,
                opts.segment_size_bytes,
                opts.preallocated_segments,
            ),
            next_seq: rec.next_seq,
            last_crc: rec.last_crc,
            batch: Batch::default(),
        };
        let writer = glommio::spawn_local(run_writer(shared.clone(), ws));
        let inner = Rc::new(Inner {
            shared,
            writer: RefCell::new(Some(writer)),
        });
        Ok((Wal { inner }, rec.recovery))
    }

    /// Queues `records` (kind, index, body) into the current batch and returns at once.
    /// `on_durable` runs exactly once: with `Ok` after the batch holding them has been
    /// written and fdatasynced, or with the error that stopped it. Completions run in
    /// append order. Refused at once (and `on_durable` dropped uncalled) when the WAL is
    /// closed or failed, a body is too large, or the queue is full
    /// ([`QUEUE_MAX_RECORDS`], [`QUEUE_MAX_BYTES`]).
    pub fn append(
        &self,
        records: &[(u8, u64, &[u8])],
        on_durable: DurableCallback,
    ) -> Result<(), WalError> {
        let shared = &self.inner.shared;
        if let Some(e) = shared.refusal() {
            return Err(e);
        }
        let pushed = shared.queue.borrow_mut().push(records, on_durable);
        pushed.map_err(|(e, _dropped)| e)?;
        shared.writer_wake.notify_all();
        Ok(())
    }

    /// Like [`Wal::append`], but when the queue is full waits for room (the writer
    /// finishing a batch) instead of failing with `QueueFull`. Returns once the records
    /// are queued; `on_durable` runs as for `append`.
    pub async fn append_when_room(
        &self,
        records: &[(u8, u64, &[u8])],
        on_durable: DurableCallback,
    ) -> Result<(), WalError> {
        let shared = &self.inner.shared;
        let framed: usize = records.iter().map(|r| frame_len(r.2.len())).sum();
        let room =
            || shared.refusal().is_some() || shared.queue.borrow().has_room(records.len(), framed);
        shared.room_wake.wait_until(room).await;
        self.append(records, on_durable)
    }

    /// Appends and waits until the records are durable (waiting for queue room first).
    pub async fn append_durable(&self, records: &[(u8, u64, &[u8])]) -> Result<(), WalError> {
        let result = Rc::new(RefCell::new(None));
        let slot = result.clone();
        let done = Rc::new(shared::Notify::default());
        let wake = done.clone();
        let on_durable = Box::new(move |r| {
            *slot.borrow_mut() = Some(r);
            wake.notify_all();
        });
        self.append_when_room(records, on_durable).await?;
        done.wait_until(|| result.borrow().is_some()).await;
        result.take().expect("set before the wake")
    }

    /// Deletes the oldest segments whose records all have index <= `upto`, stopping at
    /// the first that does not qualify; never the active (last) segment. Returns how many
    /// were removed.
    pub async fn purge_upto(&self, upto: u64) -> Result<usize, WalError> {
        let shared = &self.inner.shared;
        let victims: Vec<_> = {
            let mut segs = shared.segments.borrow_mut();
            let mut v = Vec::new();
            while segs.len() > 1
                && segs
                    .front()
                    .is_some_and(|s| s.max_index.is_none_or(|m| m <= upto))
            {
                v.push(segs.pop_front().expect("front exists"));
            }
            v
        };
        for s in &victims {
            glommio::io::remove(&s.path)
                .await
                .map_err(|e| io_err("remove", &s.path, e))?;
        }
        if !victims.is_empty() {
            sync_dir(&shared.dir).await?;
        }
        Ok(victims.len())
    }

    /// Stops taking appends, lets the writer make everything queued durable (completing
    /// its callbacks), and stops the writer. Other clones of this handle see `Closed`.
    pub async fn close(self) -> Result<(), WalError> {
        let shared = self.inner.shared.clone();
        shared.closing.set(true);
        shared.writer_wake.notify_all();
        let writer = self.inner.writer.borrow_mut().take();
        if let Some(w) = writer {
            w.await;
        }
        shared.room_wake.notify_all();
        match &*shared.failure.borrow() {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// A snapshot of the counters (`fsync_seconds` is etcd's
    /// `etcd_disk_wal_fsync_duration_seconds`).
    pub fn metrics(&self) -> WalMetrics {
        self.inner.shared.metrics.borrow().clone()
    }

    /// Segment files currently in the log, oldest first (the last is being appended to).
    pub fn segment_paths(&self) -> Vec<PathBuf> {
        let segs = self.inner.shared.segments.borrow();
        segs.iter().map(|s| s.path.clone()).collect()
    }

    /// Largest body one record may have with these options.
    pub fn max_record_body_bytes(&self) -> usize {
        self.inner.shared.queue.borrow().max_body_bytes()
    }
}

/// Takes an exclusive flock on `<dir>/LOCK`, so two `Wal`s never append to one directory.
fn lock_dir(dir: &std::path::Path) -> Result<nix::fcntl::Flock<std::fs::File>, WalError> {
    let path = dir.join(LOCK_FILE_NAME);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| io_err("open", &path, e))?;
    let file = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map_err(|_| WalError::Locked(dir.to_path_buf()))?;
    fill_lock_file(&file, &path)?;
    Ok(file)
}

/// Gives the lock file 4 KiB of real data. glommio decides once per device whether
/// io_uring polled I/O works by reading the first block of the first file it opens with
/// O_DIRECT; on an empty file that read succeeds without touching the device, glommio
/// wrongly enables polling, and later reads fail with EOPNOTSUPP on devices without
/// poll queues (virtio disks). The WAL opens this file first, so the probe reads a block.
fn fill_lock_file(file: &std::fs::File, path: &std::path::Path) -> Result<(), WalError> {
    use std::io::Write;
    const LOCK_FILE_BYTES: usize = 4096;
    let len = file.metadata().map_err(|e| io_err("stat", path, e))?.len();
    if len >= LOCK_FILE_BYTES as u64 {
        return Ok(());
    }
    let mut text =
        b"ketch-wal lock file: held (flock) by the process that has this WAL open\n".to_vec();
    text.resize(LOCK_FILE_BYTES, b'\n');
    let mut f = file;
    f.write_all(&text).map_err(|e| io_err("write", path, e))?;
    f.sync_all().map_err(|e| io_err("fsync", path, e))
}
