//! Thin I/O adapter over one segment file: glommio `DmaFile` (io_uring, O_DIRECT) or,
//! where O_DIRECT is refused or disabled, glommio `BufferedFile` + fdatasync.

use std::io;
use std::path::{Path, PathBuf};

use glommio::io::{BufferedFile, DmaBuffer, DmaFile, OpenOptions};

use crate::error::WalError;
use crate::frame::FRAME_ALIGN_BYTES;

/// Size of each read during recovery and of each zero-filling write.
pub(crate) const IO_CHUNK_BYTES: usize = 1 << 20;

/// Whether segment files use O_DIRECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DirectIo {
    /// O_DIRECT where the file system takes it; buffered writes + fdatasync where it is
    /// refused (tmpfs, some FUSE file systems).
    #[default]
    Auto,
    /// O_DIRECT or fail to open.
    Required,
    /// Always buffered writes + fdatasync.
    Off,
}

/// The I/O mode chosen for a WAL directory at open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IoMode {
    Direct,
    Buffered,
}

pub(crate) enum SegmentFile {
    Direct(DmaFile),
    Buffered(BufferedFile),
}

/// A write buffer suited to the file it goes to.
pub(crate) enum IoBuf {
    Dma(DmaBuffer),
    Plain(Vec<u8>),
}

impl IoBuf {
    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        match self {
            IoBuf::Dma(b) => b.as_bytes_mut(),
            IoBuf::Plain(v) => v.as_mut_slice(),
        }
    }
}

pub(crate) fn io_err(op: &'static str, path: &Path, e: impl Into<io::Error>) -> WalError {
    WalError::Io {
        op,
        path: path.to_path_buf(),
        source: std::sync::Arc::new(e.into()),
    }
}

impl SegmentFile {
    /// Opens (or creates) `path` for reading and writing in `mode`.
    pub(crate) async fn open(path: &Path, mode: IoMode, create: bool) -> Result<Self, WalError> {
        let mut opts = OpenOptions::new();
        opts.read(true).write(true).create(create);
        let file = match mode {
            IoMode::Direct => opts.dma_open(path).await.map(SegmentFile::Direct),
            IoMode::Buffered => opts.buffered_open(path).await.map(SegmentFile::Buffered),
        };
        file.map_err(|e| io_err("open", path, e))
    }

    /// Alignment that writes (offset and length) must keep.
    pub(crate) fn alignment(&self) -> usize {
        match self {
            SegmentFile::Direct(f) => f.alignment() as usize,
            SegmentFile::Buffered(_) => FRAME_ALIGN_BYTES,
        }
    }

    /// A zeroed buffer of `len` bytes to write to this file.
    pub(crate) fn alloc(&self, len: usize) -> IoBuf {
        match self {
            SegmentFile::Direct(f) => {
                let mut b = f.alloc_dma_buffer(len);
                b.as_bytes_mut().fill(0); // DMA buffers come uninitialised
                IoBuf::Dma(b)
            }
            SegmentFile::Buffered(_) => IoBuf::Plain(vec![0; len]),
        }
    }

    pub(crate) fn path(&self) -> PathBuf {
        let p = match self {
            SegmentFile::Direct(f) => f.path().map(|p| p.to_path_buf()),
            SegmentFile::Buffered(f) => f.path().map(|p| p.to_path_buf()),
        };
        p.unwrap_or_default()
    }

    /// Writes the whole buffer at `pos`; a short write is an error.
    pub(crate) async fn write_all_at(&self, buf: IoBuf, pos: u64) -> Result<(), WalError> {
        let (len, res) = match (self, buf) {
            (SegmentFile::Direct(f), IoBuf::Dma(b)) => (b.len(), f.write_at(b, pos).await),
            (SegmentFile::Buffered(f), IoBuf::Plain(v)) => (v.len(), f.write_at(v, pos).await),
            _ => unreachable!("buffers are allocated by the file they are written to"),
        };
        let written = res.map_err(|e| io_err("write", &self.path(), e))?;
        if written != len {
            let short = io::Error::new(io::ErrorKind::WriteZero, format!("{written} of {len}"));
            return Err(io_err("write (short)", &self.path(), short));
        }
        Ok(())
    }

    pub(crate) async fn fdatasync(&self) -> Result<(), WalError> {
        let r = match self {
            SegmentFile::Direct(f) => f.fdatasync().await,
            SegmentFile::Buffered(f) => f.fdatasync().await,
        };
        r.map_err(|e| io_err("fdatasync", &self.path(), e))
    }

    pub(crate) async fn file_size(&self) -> Result<u64, WalError> {
        let r = match self {
            SegmentFile::Direct(f) => f.file_size().await,
            SegmentFile::Buffered(f) => f.file_size().await,
        };
        r.map_err(|e| io_err("stat", &self.path(), e))
    }

    /// Reserves `size` bytes of blocks (fallocate); file systems that lack it are fine,
    /// because the zero-fill that follows allocates the blocks anyway.
    pub(crate) async fn pre_allocate(&self, size: u64) -> Result<(), WalError> {
        let r = match self {
            SegmentFile::Direct(f) => f.pre_allocate(size, false).await,
            SegmentFile::Buffered(f) => f.pre_allocate(size, false).await,
        };
        match r.map_err(io::Error::from) {
            Err(e) if e.raw_os_error() == Some(nix::libc::EOPNOTSUPP) => Ok(()),
            r => r.map_err(|e| io_err("fallocate", &self.path(), e)),
        }
    }

    /// Reads the whole file into memory, in chunks of [`IO_CHUNK_BYTES`].
    pub(crate) async fn read_all(&self) -> Result<Vec<u8>, WalError> {
        let size = self.file_size().await? as usize;
        let mut out = Vec::with_capacity(size);
        while out.len() < size {
            let pos = out.len() as u64;
            let want = IO_CHUNK_BYTES.min(size - out.len());
            let r = match self {
                SegmentFile::Direct(f) => f.read_at(pos, want).await,
                SegmentFile::Buffered(f) => f.read_at(pos, want).await,
            };
            let n = match r.map_err(io::Error::from) {
                Ok(chunk) => {
                    out.extend_from_slice(&chunk);
                    chunk.len()
                }
                // io_uring polled reads refused by the device (see `fill_lock_file`):
                // this is recovery, not the hot path, so a plain positional read will do.
                Err(e) if e.raw_os_error() == Some(nix::libc::EOPNOTSUPP) => {
                    self.read_chunk_std(pos, want, &mut out)?
                }
                Err(e) => return Err(io_err("read", &self.path(), e)),
            };
            if n == 0 {
                break; // file shrank under us; scan what we have
            }
        }
        Ok(out)
    }

    fn read_chunk_std(&self, pos: u64, want: usize, out: &mut Vec<u8>) -> Result<usize, WalError> {
        use std::os::unix::fs::FileExt;
        let path = self.path();
        let f = std::fs::File::open(&path).map_err(|e| io_err("open", &path, e))?;
        let start = out.len();
        out.resize(start + want, 0);
        let n = f
            .read_at(&mut out[start..], pos)
            .map_err(|e| io_err("read", &path, e))?;
        out.truncate(start + n);
        Ok(n)
    }

    /// Overwrites `[from, to)` with zeros (both multiples of the alignment).
    pub(crate) async fn write_zeros(&self, from: u64, to: u64) -> Result<(), WalError> {
        let mut pos = from;
        while pos < to {
            let len = IO_CHUNK_BYTES.min((to - pos) as usize);
            self.write_all_at(self.alloc(len), pos).await?;
            pos += len as u64;
        }
        Ok(())
    }

    pub(crate) async fn rename(&mut self, to: &Path) -> Result<(), WalError> {
        let r = match self {
            SegmentFile::Direct(f) => f.rename(to).await,
            SegmentFile::Buffered(f) => f.rename(to).await,
        };
        r.map_err(|e| io_err("rename", to, e))
    }

    pub(crate) async fn close(self) -> Result<(), WalError> {
        let path = self.path();
        let r = match self {
            SegmentFile::Direct(f) => f.close().await,
            SegmentFile::Buffered(f) => f.close().await,
        };
        r.map_err(|e| io_err("close", &path, e))
    }
}

/// Chooses the I/O mode for `dir`: tmpfs never takes O_DIRECT, and other file systems
/// are probed by opening `probe` (an existing file in `dir`) with O_DIRECT.
pub(crate) async fn resolve_io_mode(
    dir: &Path,
    probe: &Path,
    want: DirectIo,
) -> Result<IoMode, WalError> {
    if want == DirectIo::Off {
        return Ok(IoMode::Buffered);
    }
    let fs = nix::sys::statfs::statfs(dir).map_err(|e| io_err("statfs", dir, e))?;
    let refused = if fs.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC {
        Some(io::Error::from_raw_os_error(nix::libc::EINVAL))
    } else {
        match OpenOptions::new()
            .read(true)
            .write(true)
            .dma_open(probe)
            .await
        {
            Ok(f) => {
                f.close().await.map_err(|e| io_err("close", probe, e))?;
                None
            }
            Err(e) => {
                let e = io::Error::from(e);
                if e.raw_os_error() != Some(nix::libc::EINVAL) {
                    return Err(io_err("open", probe, e));
                }
                Some(e)
            }
        }
    };
    match (refused, want) {
        (None, _) => Ok(IoMode::Direct),
        (Some(_), DirectIo::Auto) => Ok(IoMode::Buffered),
        (Some(e), _) => Err(io_err("open with O_DIRECT (required)", probe, e)),
    }
}

/// fsyncs a directory so that creates, renames and removes in it are durable.
pub(crate) async fn sync_dir(dir: &Path) -> Result<(), WalError> {
    let d = glommio::io::Directory::open(dir)
        .await
        .map_err(|e| io_err("open dir", dir, e))?;
    d.sync().await.map_err(|e| io_err("fsync dir", dir, e))?;
    d.close().await.map_err(|e| io_err("close dir", dir, e))
}
