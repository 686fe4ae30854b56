//! Snapshot files in `<data-dir>/snap/`, named `<term:016x>-<index:016x>.snap` after the
//! last log id they include (as etcd names its snapshots). Layout, little-endian:
//!
//! | bytes    | field                                                      |
//! |----------|------------------------------------------------------------|
//! | 8        | magic `KETCHSNP`                                           |
//! | 4        | format version (1)                                         |
//! | 4        | meta length M                                              |
//! | M        | meta: JSON of openraft's `SnapshotMeta` (last log id, membership) |
//! | 8        | data length N                                              |
//! | N        | data: the store's `write_snapshot` output                  |
//! | 4        | CRC32C of every byte before it                             |
//!
//! A file is written as `<name>.tmp` (fdatasynced every MiB, so that the WAL's flushes never
//! queue behind a large one), fsynced, renamed, and the directory fsynced; only then are
//! older snapshots removed.

use std::io;
use std::path::{Path, PathBuf};

use crate::types::SnapshotMeta;

const MAGIC: &[u8; 8] = b"KETCHSNP";
const VERSION: u32 = 1;
const SUFFIX: &str = ".snap";

/// A snapshot as openraft passes it around: the file that holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotFile {
    pub path: PathBuf,
}

fn file_name(meta: &SnapshotMeta) -> String {
    let (term, index) = meta
        .last_log_id
        .map_or((0, 0), |l| (l.leader_id.term, l.index));
    format!("{term:016x}-{index:016x}{SUFFIX}")
}

/// Parses `<term>-<index>.snap` into `(index, term)` (ordering by index first).
fn parse_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(SUFFIX)?;
    let (t, i) = stem.split_once('-')?;
    Some((
        u64::from_str_radix(i, 16).ok()?,
        u64::from_str_radix(t, 16).ok()?,
    ))
}

/// Bytes written between two fdatasyncs of a snapshot file. A large snapshot written
/// whole and synced once leaves the disk cache a flush of that size, which every WAL write
/// that needs its own flush meanwhile waits behind; in steps this size it waits for one
/// step at most.
const WRITE_STEP_BYTES: usize = 1 << 20;

/// The file's parts before and after the store's data: header (magic to data length) and
/// CRC trailer (pure).
fn frame(meta: &SnapshotMeta, data: &[u8]) -> (Vec<u8>, [u8; 4]) {
    let meta_json = serde_json::to_vec(meta).expect("snapshot meta serializes");
    let mut head = Vec::with_capacity(24 + meta_json.len());
    head.extend_from_slice(MAGIC);
    head.extend_from_slice(&VERSION.to_le_bytes());
    head.extend_from_slice(&(meta_json.len() as u32).to_le_bytes());
    head.extend_from_slice(&meta_json);
    head.extend_from_slice(&(data.len() as u64).to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&head), data);
    (head, crc.to_le_bytes())
}

/// Encodes a whole snapshot file (pure).
pub fn encode(meta: &SnapshotMeta, data: &[u8]) -> Vec<u8> {
    let (head, crc) = frame(meta, data);
    [head.as_slice(), data, &crc].concat()
}

/// Writes `parts` to `path` atomically and durably (temp file, rename, fsync of the dir),
/// fdatasyncing every [`WRITE_STEP_BYTES`] on the way.
fn write_file_in_steps(path: &Path, parts: &[&[u8]]) -> io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    for part in parts {
        for step in part.chunks(WRITE_STEP_BYTES) {
            f.write_all(step)?;
            f.sync_data()?;
        }
    }
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    let dir = path.parent().expect("file has a parent dir");
    std::fs::File::open(dir)?.sync_all()
}

fn corrupt(path: &Path, why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("snapshot {}: {why}", path.display()),
    )
}

/// Decodes a whole snapshot file (pure), checking its CRC.
pub fn decode(path: &Path, bytes: &[u8]) -> io::Result<(SnapshotMeta, Vec<u8>)> {
    if bytes.len() < 28 || &bytes[..8] != MAGIC {
        return Err(corrupt(path, "not a ketch snapshot"));
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    if crc32c::crc32c(body) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
        return Err(corrupt(path, "CRC mismatch"));
    }
    let u32_at = |at: usize| u32::from_le_bytes(body[at..at + 4].try_into().expect("4 bytes"));
    if u32_at(8) != VERSION {
        return Err(corrupt(path, "unknown format version"));
    }
    let meta_len = u32_at(12) as usize;
    let meta_end = 16 + meta_len;
    if body.len() < meta_end + 8 {
        return Err(corrupt(path, "truncated meta"));
    }
    let meta: SnapshotMeta =
        serde_json::from_slice(&body[16..meta_end]).map_err(|e| corrupt(path, &e.to_string()))?;
    let data_len =
        u64::from_le_bytes(body[meta_end..meta_end + 8].try_into().expect("8 bytes")) as usize;
    if body.len() != meta_end + 8 + data_len {
        return Err(corrupt(path, "data length does not match the file"));
    }
    Ok((meta, body[meta_end + 8..].to_vec()))
}

/// Writes a snapshot durably into `dir` and removes the older ones. Blocking.
pub fn write(dir: &Path, meta: &SnapshotMeta, data: &[u8]) -> io::Result<SnapshotFile> {
    let path = dir.join(file_name(meta));
    let (head, crc) = frame(meta, data);
    write_file_in_steps(&path, &[&head, data, &crc])?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(parse_name);
    for (old, key) in list(dir)? {
        if Some(key) != name {
            std::fs::remove_file(old)?;
        }
    }
    Ok(SnapshotFile { path })
}

/// Reads and checks a snapshot file. Blocking.
pub fn read(path: &Path) -> io::Result<(SnapshotMeta, Vec<u8>)> {
    decode(path, &std::fs::read(path)?)
}

fn list(dir: &Path) -> io::Result<Vec<(PathBuf, (u64, u64))>> {
    let mut out = Vec::new();
    for ent in std::fs::read_dir(dir)? {
        let ent = ent?;
        if let Some(key) = ent.file_name().to_str().and_then(parse_name) {
            out.push((ent.path(), key));
        }
    }
    Ok(out)
}

/// Removes `*.tmp` files a crash left behind mid-write (never complete, never read).
pub fn remove_temp_files(dir: &Path) -> io::Result<()> {
    for ent in std::fs::read_dir(dir)? {
        let path = ent?.path();
        if path.extension().is_some_and(|x| x == "tmp") {
            std::fs::remove_file(path)?;
        }
    }
    Ok(())
}

/// The newest snapshot in `dir`, if any.
pub fn latest(dir: &Path) -> io::Result<Option<PathBuf>> {
    Ok(list(dir)?
        .into_iter()
        .max_by_key(|(_, k)| *k)
        .map(|(p, _)| p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{LeaderId, LogId};

    fn meta(index: u64) -> SnapshotMeta {
        SnapshotMeta {
            last_log_id: Some(LogId {
                leader_id: LeaderId {
                    term: 2,
                    node_id: 1,
                },
                index,
            }),
            last_membership: Default::default(),
        }
    }

    #[test]
    fn roundtrip_and_every_flipped_byte_is_detected() {
        let p = Path::new("x.snap");
        let bytes = encode(&meta(7), b"hello");
        let (m, d) = decode(p, &bytes).unwrap();
        assert_eq!(m, meta(7));
        assert_eq!(d, b"hello");
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x40;
            assert!(decode(p, &b).is_err(), "flip at {i} not detected");
        }
        assert!(decode(p, &bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn write_keeps_only_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &meta(5), b"a").unwrap();
        let f = write(dir.path(), &meta(12), b"b").unwrap();
        assert_eq!(latest(dir.path()).unwrap(), Some(f.path.clone()));
        assert_eq!(list(dir.path()).unwrap().len(), 1);
        assert_eq!(read(&f.path).unwrap().1, b"b");
        assert_eq!(
            file_name(&meta(12)),
            "0000000000000002-000000000000000c.snap"
        );
    }
}
