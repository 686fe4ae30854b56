//! The WAL's one error type.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// Every failure the WAL reports. `Clone` because one I/O failure completes every
/// waiter of the batch it hit.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WalError {
    #[error("wal: {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        source: Arc<io::Error>,
    },
    #[error("wal: corrupt data in {} at byte offset {offset}: {reason}", path.display())]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("wal: directory {} is in use by another open Wal", .0.display())]
    Locked(PathBuf),
    #[error("wal: invalid options: {0}")]
    InvalidOptions(String),
    #[error("wal: record body of {body_bytes} bytes exceeds the limit of {limit_bytes} bytes")]
    RecordTooLarge {
        body_bytes: usize,
        limit_bytes: usize,
    },
    #[error("wal: append queue full ({queued_records} records, {queued_bytes} bytes queued)")]
    QueueFull {
        queued_records: usize,
        queued_bytes: usize,
    },
    #[error("wal: closed")]
    Closed,
    /// An earlier write or fdatasync failed; after that nothing more is accepted, because
    /// the state of the file past the last successful sync is unknown.
    #[error("wal: stopped after an earlier failure: {0}")]
    Failed(Arc<WalError>),
}
