//! Background preparation of the next segments: each is created under a temporary name,
//! fallocated, overwritten with zeros and fdatasynced, so that the fdatasync after a later
//! overwrite has no block allocation or unwritten-extent conversion to journal.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use glommio::Task;

use crate::error::WalError;
use crate::segment_file::{IoMode, SegmentFile};

/// Suffix of segments being prepared; such files are deleted at open.
pub(crate) const TMP_SUFFIX: &str = ".wal.tmp";

/// A zero-filled segment file (named `*.wal.tmp`), durable, ready to be renamed into the log.
pub(crate) struct ReadySegment {
    pub file: SegmentFile,
}

pub(crate) struct Preallocator {
    dir: PathBuf,
    mode: IoMode,
    segment_size_bytes: u64,
    ahead: usize,
    next_tmp: u64,
    pending: VecDeque<Task<Result<ReadySegment, WalError>>>,
}

impl Preallocator {
    /// Starts preparing `ahead` segments in background tasks.
    pub(crate) fn start(dir: &Path, mode: IoMode, segment_size_bytes: u64, ahead: usize) -> Self {
        let mut p = Preallocator {
            dir: dir.to_path_buf(),
            mode,
            segment_size_bytes,
            ahead,
            next_tmp: 0,
            pending: VecDeque::new(),
        };
        for _ in 0..ahead {
            p.spawn_one();
        }
        p
    }

    fn spawn_one(&mut self) {
        let path = self.dir.join(format!("{:016x}{TMP_SUFFIX}", self.next_tmp));
        self.next_tmp += 1;
        let (mode, size) = (self.mode, self.segment_size_bytes);
        self.pending
            .push_back(glommio::spawn_local(build_segment(path, mode, size)));
    }

    /// The next ready segment (waiting for its preparation if needed); starts preparing
    /// a replacement so that `ahead` stay in preparation or ready.
    pub(crate) async fn take(&mut self) -> Result<ReadySegment, WalError> {
        if self.pending.is_empty() {
            self.spawn_one();
        }
        let task = self.pending.pop_front().expect("one was just ensured");
        let ready = task.await;
        if self.pending.len() < self.ahead {
            self.spawn_one();
        }
        ready
    }
}

async fn build_segment(path: PathBuf, mode: IoMode, size: u64) -> Result<ReadySegment, WalError> {
    let file = SegmentFile::open(&path, mode, true).await?;
    file.pre_allocate(size).await?;
    let align = file.alignment() as u64;
    file.write_zeros(0, size.div_ceil(align) * align).await?;
    file.fdatasync().await?;
    Ok(ReadySegment { file })
}
