//! Pure on-disk encoding: the segment header and the record frame (no I/O).
//! docs/wal-format.md describes the same bytes in prose.

/// First 8 bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"KETCHWAL";
/// Version of the segment and frame layout written by this code.
pub const FORMAT_VERSION: u32 = 1;
/// Size of the segment header; records start right after it.
pub const SEGMENT_HEADER_BYTES: usize = 64;
/// Size of a record frame's fixed header; the body follows it.
pub const FRAME_HEADER_BYTES: usize = 24;
/// Every frame starts and ends on this alignment (zero padding after the body).
pub const FRAME_ALIGN_BYTES: usize = 16;
/// Version byte of a record frame; a frame header can never be all zero because of it.
pub const RECORD_VERSION: u8 = 1;
/// Granularity at which a torn write is recognised (smallest device sector).
pub const SECTOR_BYTES: usize = 512;

/// Total frame size, header and padding included, for a body of `body_len` bytes.
pub fn frame_len(body_len: usize) -> usize {
    align_up(FRAME_HEADER_BYTES + body_len, FRAME_ALIGN_BYTES)
}

pub fn align_up(v: usize, align: usize) -> usize {
    v.div_ceil(align) * align
}

pub fn align_down(v: usize, align: usize) -> usize {
    v / align * align
}

/// Appends one frame for `(kind, index, body)` to `out` and returns its CRC, which is
/// chained: CRC32C of frame bytes `[4, frame_len)` seeded with the previous record's CRC.
pub fn encode_frame(out: &mut Vec<u8>, prev_crc: u32, kind: u8, index: u64, body: &[u8]) -> u32 {
    let body_len = u32::try_from(body.len()).expect("caller checked the body length");
    let start = out.len();
    let len = frame_len(body.len());
    out.extend_from_slice(&[0u8; 4]); // CRC, filled below
    out.extend_from_slice(&body_len.to_le_bytes());
    out.extend_from_slice(&index.to_le_bytes());
    out.push(kind);
    out.push(RECORD_VERSION);
    out.extend_from_slice(&[0u8; 6]);
    out.extend_from_slice(body);
    out.resize(start + len, 0);
    let crc = crc32c::crc32c_append(prev_crc, &out[start + 4..start + len]);
    out[start..start + 4].copy_from_slice(&crc.to_le_bytes());
    crc
}

/// The fixed fields of a frame header, as read from disk (not yet validated by CRC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub crc: u32,
    pub body_len: u32,
    pub index: u64,
    pub kind: u8,
    pub version: u8,
    pub reserved_is_zero: bool,
}

impl FrameHeader {
    pub fn parse(b: &[u8; FRAME_HEADER_BYTES]) -> FrameHeader {
        FrameHeader {
            crc: u32::from_le_bytes(b[0..4].try_into().expect("4 bytes")),
            body_len: u32::from_le_bytes(b[4..8].try_into().expect("4 bytes")),
            index: u64::from_le_bytes(b[8..16].try_into().expect("8 bytes")),
            kind: b[16],
            version: b[17],
            reserved_is_zero: b[18..24].iter().all(|&x| x == 0),
        }
    }

    pub fn frame_len(&self) -> usize {
        frame_len(self.body_len as usize)
    }
}

/// The 64-byte header at offset 0 of every segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    pub seq: u64,
    pub first_index: u64,
    pub segment_size_bytes: u64,
    /// CRC of the last record of the previous segment (0 for the first segment ever):
    /// the seed of this segment's CRC chain.
    pub prev_crc: u32,
}

impl SegmentHeader {
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_BYTES] {
        let mut b = [0u8; SEGMENT_HEADER_BYTES];
        b[0..8].copy_from_slice(&SEGMENT_MAGIC);
        b[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[16..24].copy_from_slice(&self.seq.to_le_bytes());
        b[24..32].copy_from_slice(&self.first_index.to_le_bytes());
        b[32..40].copy_from_slice(&self.segment_size_bytes.to_le_bytes());
        b[40..44].copy_from_slice(&self.prev_crc.to_le_bytes());
        let crc = crc32c::crc32c(&b[0..60]);
        b[60..64].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes and checks magic, version and header CRC; the error says which failed.
    pub fn decode(b: &[u8; SEGMENT_HEADER_BYTES]) -> Result<SegmentHeader, &'static str> {
        if b[0..8] != SEGMENT_MAGIC {
            return Err("bad segment magic");
        }
        let stored_crc = u32::from_le_bytes(b[60..64].try_into().expect("4 bytes"));
        if crc32c::crc32c(&b[0..60]) != stored_crc {
            return Err("segment header CRC mismatch");
        }
        let version = u32::from_le_bytes(b[8..12].try_into().expect("4 bytes"));
        if version != FORMAT_VERSION {
            return Err("unsupported segment format version");
        }
        let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"));
        Ok(SegmentHeader {
            seq: u64_at(16),
            first_index: u64_at(24),
            segment_size_bytes: u64_at(32),
            prev_crc: u32::from_le_bytes(b[40..44].try_into().expect("4 bytes")),
        })
    }
}

/// Segment file name: sequence number and first record index, 16 hex digits each, so
/// that names sort in log order (as etcd's `%016x-%016x.wal`).
pub fn segment_file_name(seq: u64, first_index: u64) -> String {
    format!("{seq:016x}-{first_index:016x}.wal")
}

/// Parses a name made by [`segment_file_name`]; `None` for any other file.
pub fn parse_segment_file_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(".wal")?;
    let (seq, first) = stem.split_once('-')?;
    if seq.len() != 16 || first.len() != 16 {
        return None;
    }
    Some((
        u64::from_str_radix(seq, 16).ok()?,
        u64::from_str_radix(first, 16).ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_is_aligned_and_chains_crc() {
        let mut out = Vec::new();
        let c1 = encode_frame(&mut out, 7, 3, 42, b"hello");
        assert_eq!(out.len(), 32);
        let c2 = encode_frame(&mut out, c1, 4, 43, &[9u8; 40]);
        assert_eq!(out.len(), 32 + 64);
        let h = FrameHeader::parse(out[32..56].try_into().unwrap());
        assert_eq!((h.crc, h.body_len, h.index, h.kind), (c2, 40, 43, 4));
        assert_eq!(c2, crc32c::crc32c_append(c1, &out[36..96]));
        // a different seed gives a different CRC: the chain binds records to their order
        let mut other = Vec::new();
        assert_ne!(encode_frame(&mut other, 8, 3, 42, b"hello"), c1);
    }

    #[test]
    fn segment_header_round_trips_and_rejects_flips() {
        let h = SegmentHeader {
            seq: 5,
            first_index: 77,
            segment_size_bytes: 1 << 20,
            prev_crc: 0xdead_beef,
        };
        let mut b = h.encode();
        assert_eq!(SegmentHeader::decode(&b), Ok(h));
        b[30] ^= 1;
        assert_eq!(
            SegmentHeader::decode(&b),
            Err("segment header CRC mismatch")
        );
    }

    #[test]
    fn names_sort_and_parse() {
        let a = segment_file_name(2, 0x10);
        let b = segment_file_name(10, 0x5);
        assert!(a < b);
        assert_eq!(parse_segment_file_name(&b), Some((10, 5)));
        assert_eq!(parse_segment_file_name("x.wal"), None);
        assert_eq!(parse_segment_file_name("0000000000000000.wal.tmp"), None);
    }
}
