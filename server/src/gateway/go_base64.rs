//! Where Go's `base64.StdEncoding` first refuses a string, for the message etcd's gateway
//! answers when a bytes field is not base64: `illegal base64 data at input byte N` (encoding/json
//! decodes `[]byte` fields with StdEncoding). Go's decoder skips `\r` and `\n`, requires
//! padding, accepts non-zero trailing bits, and names the offset each kind of error is found
//! at, which this walk follows quantum by quantum. Pure.

/// Go's error text for `offset`.
pub fn error_text(offset: usize) -> String {
    format!("illegal base64 data at input byte {offset}")
}

/// `input` decoded as Go's StdEncoding decodes it, or the offset Go reports.
pub fn decode(input: &[u8]) -> Result<Vec<u8>, usize> {
    let mut out = Vec::with_capacity(input.len() / 4 * 3 + 3);
    let mut si = 0;
    loop {
        let q = quantum(input, si)?;
        // Four 6-bit symbols make three bytes; a padded quantum of n symbols makes n - 1
        // (its unread symbols are zero).
        let bits = q
            .symbols
            .iter()
            .fold(0u32, |acc, &s| (acc << 6) | u32::from(s));
        if q.len > 0 {
            out.extend_from_slice(&bits.to_be_bytes()[1..q.len]);
        }
        match q.next {
            Some(next) => si = next,
            None => return Ok(out),
        }
    }
}

/// `bytes` as StdEncoding text, with padding (the form prost-reflect decodes).
pub fn encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// One quantum's symbols (alphabet indices) and count; `next` is where the following quantum
/// starts, None when the input ended with this one.
struct Quantum {
    symbols: [u8; 4],
    len: usize,
    next: Option<usize>,
}

fn symbol(b: u8) -> Option<u8> {
    match b {
        b'A'..=b'Z' => Some(b - b'A'),
        b'a'..=b'z' => Some(b - b'a' + 26),
        b'0'..=b'9' => Some(b - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

fn skip_newlines(input: &[u8], mut si: usize) -> usize {
    while si < input.len() && matches!(input[si], b'\r' | b'\n') {
        si += 1;
    }
    si
}

/// One quantum from `si`, as Go's `decodeQuantum` reads it; Err is the offset Go reports.
fn quantum(input: &[u8], mut si: usize) -> Result<Quantum, usize> {
    let mut q = Quantum {
        symbols: [0; 4],
        len: 0,
        next: None,
    };
    while q.len < 4 {
        if si == input.len() {
            return match q.len {
                0 => Ok(q),
                // Padding is required: a short final quantum is an error where it began.
                j => Err(si - j),
            };
        }
        let b = input[si];
        si += 1;
        if let Some(s) = symbol(b) {
            q.symbols[q.len] = s;
            q.len += 1;
            continue;
        }
        if matches!(b, b'\r' | b'\n') {
            continue;
        }
        if b != b'=' || q.len < 2 {
            // Not in the alphabet, or padding too early.
            return Err(si - 1);
        }
        if q.len == 2 {
            // "==" expected: the second '=' after any newlines.
            si = skip_newlines(input, si);
            if si == input.len() {
                return Err(input.len());
            }
            if input[si] != b'=' {
                return Err(si - 1);
            }
            si += 1;
        }
        si = skip_newlines(input, si);
        // Anything after the padding is an error.
        return if si < input.len() { Err(si) } else { Ok(q) };
    }
    q.next = Some(si);
    Ok(q)
}

#[cfg(test)]
mod tests {
    //! Offsets as Go's `base64.StdEncoding.DecodeString` reports them, worked through its
    //! `decodeQuantum`; etcd 3.4.23's gateway answered `illegal base64 data at input byte 3`
    //! for the key "not base64!" (the conformance suite's gateway/bad-base64 scenario).

    use super::*;

    #[test]
    fn valid_strings_decode_as_go_decodes_them() {
        let cases: &[(&str, &[u8])] = &[
            ("", b""),
            ("YQ==", b"a"),
            ("YWI=", b"ab"),
            ("YWJj", b"abc"),
            ("YWJjZA==", b"abcd"),
            ("YW\nJj", b"abc"),
            ("YWJj\r\n", b"abc"),
            ("YQ=\n=", b"a"),
            // Non-zero bits after the last byte are accepted (StdEncoding is not strict).
            ("YR==", b"a"),
            ("//79", &[0xff, 0xfe, 0xfd]),
        ];
        for (s, want) in cases {
            assert_eq!(decode(s.as_bytes()).as_deref(), Ok(*want), "{s:?}");
        }
    }

    #[test]
    fn encoding_is_padded_std_and_round_trips() {
        for bytes in [
            &b""[..],
            b"a",
            b"ab",
            b"abc",
            b"abcd",
            &[0xff, 0xfe, 0xfd, 0],
        ] {
            let text = encode(bytes);
            assert_eq!(text.len() % 4, 0, "{text}");
            assert_eq!(decode(text.as_bytes()).as_deref(), Ok(bytes), "{text}");
        }
        assert_eq!(encode(b"ab"), "YWI=");
    }

    #[test]
    fn errors_are_reported_where_go_reports_them() {
        let cases: &[(&str, usize)] = &[
            ("not base64!", 3), // the space
            ("YQ= ", 2),        // a space where the second '=' belongs: the first '=' is blamed
            ("YQ", 0),          // unpadded: the quantum's start
            ("YWJjZ", 4),       // one symbol left over
            ("Y", 0),           //
            ("a!bc", 1),        // not in the alphabet
            ("=YWJ", 0),        // padding first
            ("Y===", 1),        // padding after one symbol
            ("YQ=", 3),         // one '=' of two, at the end
            ("YWI=x", 4),       // garbage after padding
            ("YQ==YQ==", 4),    // padding mid-string
            ("YWJj-A==", 4),    // URL alphabet
        ];
        for (s, offset) in cases {
            assert_eq!(decode(s.as_bytes()), Err(*offset), "{s:?}");
        }
        assert_eq!(error_text(3), "illegal base64 data at input byte 3");
    }
}
