//! Pure recovery scan of one segment's bytes: validates the header and every frame,
//! and decides between "end of data", "torn tail" and "corruption" (no I/O).

use crate::frame::{
    FRAME_HEADER_BYTES, FrameHeader, RECORD_VERSION, SECTOR_BYTES, SEGMENT_HEADER_BYTES,
    SegmentHeader,
};

/// One record found by the scan; `body` is a range into the scanned bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScannedRecord {
    pub kind: u8,
    pub index: u64,
    pub body: std::ops::Range<usize>,
}

/// What follows the last valid record of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tail {
    /// Only zeros (or the end of the file) after the last record.
    Clean,
    /// A torn write: bytes in `[offset, nonzero_end)` are not valid records and must be
    /// zeroed before appending at `offset`.
    Torn { offset: u64, nonzero_end: u64 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SegmentScan {
    /// The segment header itself is missing (all zero or cut short) in the last segment:
    /// the segment was created but its first write never landed.
    EmptyTorn,
    Records {
        header: SegmentHeader,
        records: Vec<ScannedRecord>,
        /// Offset just past the last valid record: where appends continue.
        end_offset: u64,
        /// CRC of the last valid record (the header's `prev_crc` when there is none).
        last_crc: u32,
        tail: Tail,
    },
}

/// A scan failure: the byte offset in the segment and what was wrong there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corruption {
    pub offset: u64,
    pub reason: String,
}

fn corrupt(offset: usize, reason: impl Into<String>) -> Corruption {
    Corruption {
        offset: offset as u64,
        reason: reason.into(),
    }
}

/// Scans a whole segment. `is_last` enables torn-tail handling: only the last segment
/// can hold the write that was in flight at a crash.
pub fn scan_segment(bytes: &[u8], is_last: bool) -> Result<SegmentScan, Corruption> {
    let Some(header_bytes) = bytes.first_chunk::<SEGMENT_HEADER_BYTES>() else {
        return if is_last {
            Ok(SegmentScan::EmptyTorn)
        } else {
            Err(corrupt(0, "segment shorter than its header"))
        };
    };
    if is_last && is_all_zero(header_bytes) {
        return Ok(SegmentScan::EmptyTorn);
    }
    let header = SegmentHeader::decode(header_bytes).map_err(|r| corrupt(0, r))?;
    let file_truncated = (bytes.len() as u64) < header.segment_size_bytes;
    let mut records = Vec::new();
    let mut pos = SEGMENT_HEADER_BYTES;
    let mut crc = header.prev_crc;
    let stop = loop {
        match check_frame(bytes, pos, crc, file_truncated) {
            FrameCheck::Valid(h) => {
                let body = pos + FRAME_HEADER_BYTES..pos + FRAME_HEADER_BYTES + h.body_len as usize;
                records.push(ScannedRecord {
                    kind: h.kind,
                    index: h.index,
                    body,
                });
                crc = h.crc;
                pos += h.frame_len();
            }
            FrameCheck::Stop(stop) => break stop,
        }
    };
    let tail = classify_tail(bytes, pos, stop, is_last)?;
    Ok(SegmentScan::Records {
        header,
        records,
        end_offset: pos as u64,
        last_crc: crc,
        tail,
    })
}

/// Why the frame loop stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// An all-zero frame header (or the end of the file): the end of the records.
    End,
    /// A frame that is not valid and shows signs of a write that did not fully land.
    Torn,
    /// A frame that is not valid, for this reason.
    Invalid(&'static str),
}

enum FrameCheck {
    Valid(FrameHeader),
    Stop(Stop),
}

/// Decides what the bytes from `pos` on mean, given why the frame loop stopped.
fn classify_tail(bytes: &[u8], pos: usize, stop: Stop, is_last: bool) -> Result<Tail, Corruption> {
    let nonzero_end = bytes.iter().rposition(|&b| b != 0).map_or(pos, |i| i + 1);
    let torn = Tail::Torn {
        offset: pos as u64,
        nonzero_end: nonzero_end.max(pos) as u64,
    };
    match stop {
        Stop::Torn if is_last => Ok(torn),
        Stop::Torn => Err(corrupt(
            pos,
            "torn record in a segment that is not the last",
        )),
        Stop::Invalid(reason) => Err(corrupt(pos, reason)),
        Stop::End if nonzero_end <= pos => Ok(Tail::Clean),
        // A zero frame header followed by data: the first sectors of the last batch
        // never reached the disk but later ones did.
        Stop::End if is_last => Ok(torn),
        Stop::End => Err(corrupt(
            pos,
            "data after the end of records in a finished segment",
        )),
    }
}

fn check_frame(bytes: &[u8], pos: usize, prev_crc: u32, file_truncated: bool) -> FrameCheck {
    let rest = &bytes[pos.min(bytes.len())..];
    let Some(hb) = rest.first_chunk::<FRAME_HEADER_BYTES>() else {
        return FrameCheck::Stop(match (is_all_zero(rest), file_truncated) {
            (true, _) => Stop::End,
            (false, true) => Stop::Torn,
            (false, false) => Stop::Invalid("partial frame header at end of segment"),
        });
    };
    if is_all_zero(hb) {
        return FrameCheck::Stop(Stop::End);
    }
    let h = FrameHeader::parse(hb);
    let end = pos + h.frame_len();
    let content_end = pos + FRAME_HEADER_BYTES + h.body_len as usize;
    let failure = if h.version != RECORD_VERSION || !h.reserved_is_zero {
        "bad frame header (version or reserved bytes)"
    } else if end > bytes.len() {
        if file_truncated {
            return FrameCheck::Stop(Stop::Torn); // the file was cut inside this frame
        }
        "frame length runs past the end of the segment"
    } else if crc32c::crc32c_append(prev_crc, &bytes[pos + 4..end]) != h.crc {
        "record CRC mismatch"
    } else {
        return FrameCheck::Valid(h);
    };
    if has_zero_sector(bytes, pos, content_end.min(bytes.len())) {
        FrameCheck::Stop(Stop::Torn)
    } else {
        FrameCheck::Stop(Stop::Invalid(failure))
    }
}

/// True when some sector-sized piece of `[start, end)` (split at absolute sector
/// boundaries) is all zero: that sector of the write never reached the disk, since a
/// segment is zero-filled before use. Padding is excluded by the caller.
fn has_zero_sector(bytes: &[u8], start: usize, end: usize) -> bool {
    let mut s = start;
    while s < end {
        let e = ((s / SECTOR_BYTES + 1) * SECTOR_BYTES).min(end);
        if is_all_zero(&bytes[s..e]) {
            return true;
        }
        s = e;
    }
    false
}

fn is_all_zero(b: &[u8]) -> bool {
    b.iter().all(|&x| x == 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::encode_frame;

    const SIZE: usize = 4096;

    fn segment(bodies: &[&[u8]]) -> (Vec<u8>, Vec<usize>) {
        let h = SegmentHeader {
            seq: 0,
            first_index: 1,
            segment_size_bytes: SIZE as u64,
            prev_crc: 0,
        };
        let mut b = h.encode().to_vec();
        let mut crc = 0;
        let mut starts = Vec::new();
        for (i, body) in bodies.iter().enumerate() {
            starts.push(b.len());
            crc = encode_frame(&mut b, crc, 1, i as u64 + 1, body);
        }
        b.resize(SIZE, 0);
        (b, starts)
    }

    fn records(s: &SegmentScan) -> usize {
        match s {
            SegmentScan::Records { records, .. } => records.len(),
            SegmentScan::EmptyTorn => 0,
        }
    }

    #[test]
    fn clean_segment_reads_all_records() {
        let (b, _) = segment(&[b"a", b"bb", &[7; 600]]);
        let s = scan_segment(&b, true).unwrap();
        assert_eq!(records(&s), 3);
        assert!(matches!(
            s,
            SegmentScan::Records {
                tail: Tail::Clean,
                ..
            }
        ));
    }

    #[test]
    fn flipped_body_byte_in_middle_is_corruption_with_offset() {
        let (mut b, starts) = segment(&[b"aaaa", b"bbbb", b"cccc"]);
        b[starts[1] + 26] ^= 0x40;
        let e = scan_segment(&b, true).unwrap_err();
        assert_eq!(e.offset, starts[1] as u64);
        assert_eq!(e.reason, "record CRC mismatch");
    }

    #[test]
    fn flipped_padding_byte_is_corruption() {
        let (mut b, starts) = segment(&[b"aaaa", b"bbbb", b"cccc"]);
        b[starts[0] + 30] = 1; // body ends at +28, padding to +32
        assert_eq!(scan_segment(&b, true).unwrap_err().offset, starts[0] as u64);
    }

    #[test]
    fn zeroed_sector_in_last_record_is_torn() {
        let (mut b, starts) = segment(&[b"a", &[5u8; 1200]]);
        b[1024..1536].fill(0);
        let s = scan_segment(&b, true).unwrap();
        assert_eq!(records(&s), 1);
        assert!(
            matches!(s, SegmentScan::Records { tail: Tail::Torn { offset, .. }, .. } if offset == starts[1] as u64)
        );
        // the same damage in a segment that is not the last is an error
        assert!(scan_segment(&b, false).is_err());
    }

    #[test]
    fn truncated_file_inside_record_is_torn() {
        let (b, starts) = segment(&[b"a", &[5u8; 300]]);
        let s = scan_segment(&b[..starts[1] + 100], true).unwrap();
        assert!(matches!(
            s,
            SegmentScan::Records {
                tail: Tail::Torn { .. },
                ..
            }
        ));
        assert_eq!(records(&s), 1);
    }

    #[test]
    fn truncated_or_zero_header_is_empty_torn_only_when_last() {
        let (b, _) = segment(&[b"a"]);
        assert_eq!(scan_segment(&b[..10], true), Ok(SegmentScan::EmptyTorn));
        assert_eq!(
            scan_segment(&vec![0; SIZE], true),
            Ok(SegmentScan::EmptyTorn)
        );
        assert_eq!(scan_segment(&b[..10], false).unwrap_err().offset, 0);
        let mut bad = b.clone();
        bad[3] ^= 1;
        assert_eq!(
            scan_segment(&bad, true).unwrap_err().reason,
            "bad segment magic"
        );
    }

    #[test]
    fn garbage_after_zero_header_is_torn_tail_in_last_segment() {
        let (mut b, _) = segment(&[b"a"]);
        b[2000] = 9;
        let s = scan_segment(&b, true).unwrap();
        assert!(matches!(
            s,
            SegmentScan::Records {
                tail: Tail::Torn {
                    offset: 96,
                    nonzero_end: 2001
                },
                ..
            }
        ));
        assert!(scan_segment(&b, false).is_err());
    }
}
