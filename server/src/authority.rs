//! Accepts the `:authority` that etcd 3.4's clients send for an `http://` endpoint.
//!
//! etcdctl 3.4 (grpc-go 1.26 under clientv3) dials a single endpoint for `endpoint status`,
//! `endpoint hashkv`, `defrag` and `move-leader`, and sends the endpoint as it was given,
//! scheme included, as the HTTP/2 `:authority`: `http://127.0.0.1:2379`. That is not an
//! authority (RFC 3986 §3.2), and h2 resets such a stream with PROTOCOL_ERROR before hyper or
//! tonic sees it; h2's maintainers declined to relax the check (hyperium/h2#525). etcd's Go
//! server ignores `:authority`, so the same command works against etcd.
//!
//! [`AuthorityFilter`] sits on the client port's inbound bytes, below hyper. It reads the
//! first header block of an HTTP/2 connection (grpc-go keeps one authority per connection):
//! - a valid authority, or none, or an HTTP/1 connection: every byte passes unchanged from then
//!   on, and the filter costs nothing more;
//! - an invalid one: the connection is rewritten. Each header block is decoded with a mirror
//!   of the client's HPACK table and sent on as literals without indexing, with the authority
//!   replaced by the one inside the URL (`127.0.0.1:2379`), or left out when there is none.
//!   h2's own table then stays empty, so the client's indexed references never reach it.
//!
//! Malformed input is not judged here: the filter gives up and passes the bytes as they came,
//! and h2 answers them as it would have. Once a connection is being rewritten that is no
//! longer possible (h2's table is empty while the client's is not), so such input, or a
//! header block over `HEADER_BLOCK_MAX_BYTES`, closes the connection, as h2 closes one on a
//! malformed header block.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures_lite::io::{AsyncBufRead, AsyncRead, AsyncWrite};
use http::uri::{Authority, Uri};

const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER_BYTES: usize = 9;
const FRAME_HEADERS: u8 = 0x1;
const FRAME_CONTINUATION: u8 = 0x9;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;
const PRIORITY_BYTES: usize = 5;

/// Largest frame payload the rewritten frames use: HTTP/2's initial SETTINGS_MAX_FRAME_SIZE,
/// which the client port (hyper's default) does not raise.
const FRAME_PAYLOAD_MAX_BYTES: usize = 16_384;
/// The dynamic table size the client may use: HTTP/2's initial SETTINGS_HEADER_TABLE_SIZE,
/// which the client port (h2's default) does not change.
const HEADER_TABLE_MAX_BYTES: usize = 4_096;
/// Largest header block, encoded or decoded (names, values and 32 bytes per field, as HPACK
/// counts them), the filter handles. Four times the client port's header list limit (hyper's
/// 16 KiB): a rewritten block this large still fits the few CONTINUATION frames h2 accepts,
/// so h2 refuses its stream (431) rather than the connection.
const HEADER_BLOCK_MAX_BYTES: usize = 64 * 1024;

/// What the filter does with the bytes that follow.
enum Phase {
    /// Checking the client preface; this many of its bytes matched so far.
    Preface(usize),
    /// Reading HTTP/2 frames.
    Frames,
    /// Passing every byte unchanged.
    Passthrough,
    /// A rewritten connection met input it cannot rewrite. h2's table is empty while the
    /// client's is not, so passing the bytes on would be misread: the connection is closed,
    /// as h2 closes one on a malformed header block.
    Failed,
}

/// A header block being assembled from a HEADERS frame and its CONTINUATION frames.
struct HeaderBlock {
    stream_id: u32,
    end_stream: bool,
    priority: Option<[u8; PRIORITY_BYTES]>,
    fragment: Vec<u8>,
    /// The frames as they came, passed on unchanged if the block needs no rewrite.
    raw: Vec<u8>,
}

/// The filter's pure core: bytes from the client in, bytes for hyper out.
pub struct AuthorityFilter {
    phase: Phase,
    /// Whether this connection's header blocks are rewritten (its first one carried an invalid
    /// authority).
    rewriting: bool,
    head: [u8; FRAME_HEADER_BYTES],
    head_len: usize,
    /// Payload bytes of a passed-on frame still to come.
    skip_bytes: usize,
    /// Payload of the HEADERS or CONTINUATION frame being read, and its full length.
    payload: Vec<u8>,
    payload_len: usize,
    block: Option<HeaderBlock>,
    decoder: loona_hpack::Decoder<'static>,
}

impl Default for AuthorityFilter {
    fn default() -> Self {
        let mut decoder = loona_hpack::Decoder::new();
        decoder.set_max_allowed_table_size(HEADER_TABLE_MAX_BYTES);
        AuthorityFilter {
            phase: Phase::Preface(0),
            rewriting: false,
            head: [0; FRAME_HEADER_BYTES],
            head_len: 0,
            skip_bytes: 0,
            payload: Vec::new(),
            payload_len: 0,
            block: None,
            decoder,
        }
    }
}

impl AuthorityFilter {
    /// True once every further byte passes unchanged.
    pub fn is_passthrough(&self) -> bool {
        matches!(self.phase, Phase::Passthrough)
    }

    /// True once the connection must be closed (see [`Phase::Failed`]).
    pub fn has_failed(&self) -> bool {
        matches!(self.phase, Phase::Failed)
    }

    /// Takes bytes read from the client and appends to `out` what hyper should read. Bytes of
    /// an unfinished frame header or header block are kept until the rest arrives.
    pub fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        while !input.is_empty() {
            let taken = match self.phase {
                Phase::Passthrough => {
                    out.extend_from_slice(input);
                    input.len()
                }
                Phase::Failed => return,
                Phase::Preface(matched) => self.feed_preface(matched, input, out),
                Phase::Frames => self.feed_frames(input, out),
            };
            input = &input[taken..];
        }
    }

    fn feed_preface(&mut self, matched: usize, input: &[u8], out: &mut Vec<u8>) -> usize {
        let n = (PREFACE.len() - matched).min(input.len());
        if input[..n] != PREFACE[matched..matched + n] {
            // Not HTTP/2 with prior knowledge (HTTP/1.1: the gateway, /health, /metrics).
            self.phase = Phase::Passthrough;
            return 0;
        }
        out.extend_from_slice(&input[..n]);
        self.phase = match matched + n {
            done if done == PREFACE.len() => Phase::Frames,
            partial => Phase::Preface(partial),
        };
        n
    }

    /// Consumes part of `input` in the frames phase; returns how many bytes it took.
    fn feed_frames(&mut self, input: &[u8], out: &mut Vec<u8>) -> usize {
        if self.skip_bytes > 0 {
            let n = self.skip_bytes.min(input.len());
            out.extend_from_slice(&input[..n]);
            self.skip_bytes -= n;
            return n;
        }
        if self.head_len < FRAME_HEADER_BYTES {
            let n = (FRAME_HEADER_BYTES - self.head_len).min(input.len());
            self.head[self.head_len..self.head_len + n].copy_from_slice(&input[..n]);
            self.head_len += n;
            if self.head_len == FRAME_HEADER_BYTES {
                self.on_frame_header(out);
            }
            return n;
        }
        let n = (self.payload_len - self.payload.len()).min(input.len());
        self.payload.extend_from_slice(&input[..n]);
        if self.payload.len() == self.payload_len {
            self.on_header_frame(out);
        }
        n
    }

    fn on_frame_header(&mut self, out: &mut Vec<u8>) {
        let len = u32::from_be_bytes([0, self.head[0], self.head[1], self.head[2]]) as usize;
        let kind = self.head[3];
        let block_open = self.block.is_some();
        if block_open && kind != FRAME_CONTINUATION {
            // Only CONTINUATION may follow an unfinished header block: h2's error to give.
            return self.give_up(out);
        }
        if kind != FRAME_HEADERS && kind != FRAME_CONTINUATION {
            out.extend_from_slice(&self.head);
            self.head_len = 0;
            self.skip_bytes = len;
            return;
        }
        let block_bytes = self.block.as_ref().map_or(0, |b| b.raw.len());
        if len > FRAME_PAYLOAD_MAX_BYTES || block_bytes + len > HEADER_BLOCK_MAX_BYTES {
            // Over the frame size h2 allows, or over the block size handled here.
            return self.give_up(out);
        }
        self.payload.clear();
        self.payload_len = len;
        if len == 0 {
            self.on_header_frame(out);
        }
    }

    /// A whole HEADERS or CONTINUATION frame has arrived (its header in `head`, its payload in
    /// `payload`).
    fn on_header_frame(&mut self, out: &mut Vec<u8>) {
        let flags = self.head[4];
        let stream_id =
            u32::from_be_bytes([self.head[5], self.head[6], self.head[7], self.head[8]])
                & 0x7fff_ffff;
        let fragment = if self.head[3] == FRAME_HEADERS {
            let Some((priority, fragment)) = headers_fragment(flags, &self.payload) else {
                return self.give_up(out);
            };
            self.block = Some(HeaderBlock {
                stream_id,
                end_stream: flags & FLAG_END_STREAM != 0,
                priority,
                fragment: Vec::new(),
                raw: Vec::new(),
            });
            fragment
        } else {
            &self.payload[..]
        };
        let block = self
            .block
            .as_mut()
            .expect("a header frame opens or continues a block");
        if block.stream_id != stream_id {
            return self.give_up(out);
        }
        block.fragment.extend_from_slice(fragment);
        block.raw.extend_from_slice(&self.head);
        block.raw.extend_from_slice(&self.payload);
        self.head_len = 0;
        self.payload.clear();
        self.payload_len = 0;
        if flags & FLAG_END_HEADERS != 0 {
            let block = self.block.take().expect("checked above");
            self.finish_block(block, out);
        }
    }

    fn finish_block(&mut self, block: HeaderBlock, out: &mut Vec<u8>) {
        let Some(fields) = decode_block(&mut self.decoder, &block.fragment) else {
            self.block = Some(block);
            return self.give_up(out);
        };
        if !self.rewriting {
            let invalid = fields
                .iter()
                .any(|(name, value)| name == b":authority" && !is_authority(value));
            if !invalid {
                out.extend_from_slice(&block.raw);
                self.phase = Phase::Passthrough;
                return;
            }
            tracing::debug!("client sent a URL as :authority; rewriting its header blocks");
            self.rewriting = true;
        }
        let literals = encode_literals(&fields);
        write_header_frames(&block, &literals, out);
    }

    /// Passes on what the filter holds, unchanged, and everything after it: h2 judges it.
    /// Once the connection is rewritten that would be misread (see [`Phase::Failed`]).
    fn give_up(&mut self, out: &mut Vec<u8>) {
        if self.rewriting {
            self.phase = Phase::Failed;
            return;
        }
        if let Some(block) = self.block.take() {
            out.extend_from_slice(&block.raw);
        }
        out.extend_from_slice(&self.head[..self.head_len]);
        out.extend_from_slice(&self.payload);
        self.head_len = 0;
        self.payload = Vec::new();
        self.phase = Phase::Passthrough;
    }
}

/// The header block fragment of a HEADERS frame's payload, and its priority fields; None
/// when the padding does not fit.
fn headers_fragment(flags: u8, payload: &[u8]) -> Option<(Option<[u8; 5]>, &[u8])> {
    let mut rest = payload;
    let mut pad = 0;
    if flags & FLAG_PADDED != 0 {
        let (&len, tail) = rest.split_first()?;
        pad = len as usize;
        rest = tail;
    }
    let mut priority = None;
    if flags & FLAG_PRIORITY != 0 {
        let (fields, tail) = rest.split_first_chunk::<PRIORITY_BYTES>()?;
        priority = Some(*fields);
        rest = tail;
    }
    let end = rest.len().checked_sub(pad)?;
    Some((priority, &rest[..end]))
}

/// Decodes a header block, updating the mirror of the client's table; None when it is not
/// valid HPACK or decodes to more than `HEADER_BLOCK_MAX_BYTES`.
fn decode_block(
    decoder: &mut loona_hpack::Decoder<'static>,
    fragment: &[u8],
) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut fields = Vec::new();
    let mut decoded_bytes = 0;
    decoder
        .decode_with_cb(fragment, |name, value| {
            decoded_bytes += name.len() + value.len() + 32;
            if decoded_bytes <= HEADER_BLOCK_MAX_BYTES {
                fields.push((name.into_owned(), value.into_owned()));
            }
        })
        .ok()?;
    (decoded_bytes <= HEADER_BLOCK_MAX_BYTES).then_some(fields)
}

fn is_authority(value: &[u8]) -> bool {
    Authority::try_from(value).is_ok()
}

/// The authority inside a URL sent as `:authority` (`http://127.0.0.1:2379` gives
/// `127.0.0.1:2379`); None when there is no valid one.
fn authority_in_url(value: &[u8]) -> Option<Vec<u8>> {
    let uri = Uri::try_from(value).ok()?;
    let authority = uri.authority()?.as_str().as_bytes();
    (!authority.is_empty() && is_authority(authority)).then(|| authority.to_vec())
}

/// The fields as HPACK literals without indexing, each with a literal name; an invalid
/// `:authority` is replaced by the one inside it, or left out.
fn encode_literals(fields: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        let fixed;
        let value = if name == b":authority" && !is_authority(value) {
            match authority_in_url(value) {
                Some(authority) => {
                    fixed = authority;
                    &fixed
                }
                None => continue,
            }
        } else {
            value
        };
        out.push(0x00);
        encode_string(name, &mut out);
        encode_string(value, &mut out);
    }
    out
}

/// An HPACK string literal without Huffman coding (RFC 7541 §5.2).
fn encode_string(s: &[u8], out: &mut Vec<u8>) {
    loona_hpack::encoder::encode_integer_into(s.len(), 7, 0x00, out)
        .expect("writing to a Vec does not fail");
    out.extend_from_slice(s);
}

/// The rewritten block as one HEADERS frame, followed by CONTINUATION frames when it does not
/// fit in one; the stream, END_STREAM and priority are the original's, padding is dropped.
fn write_header_frames(block: &HeaderBlock, fragment: &[u8], out: &mut Vec<u8>) {
    let priority_bytes = if block.priority.is_some() {
        PRIORITY_BYTES
    } else {
        0
    };
    let first_len = fragment.len().min(FRAME_PAYLOAD_MAX_BYTES - priority_bytes);
    let (first, mut rest) = fragment.split_at(first_len);
    let mut flags = if block.end_stream { FLAG_END_STREAM } else { 0 };
    if block.priority.is_some() {
        flags |= FLAG_PRIORITY;
    }
    if rest.is_empty() {
        flags |= FLAG_END_HEADERS;
    }
    write_frame_header(
        priority_bytes + first.len(),
        FRAME_HEADERS,
        flags,
        block.stream_id,
        out,
    );
    if let Some(priority) = block.priority {
        out.extend_from_slice(&priority);
    }
    out.extend_from_slice(first);
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(rest.len().min(FRAME_PAYLOAD_MAX_BYTES));
        let flags = if tail.is_empty() { FLAG_END_HEADERS } else { 0 };
        write_frame_header(chunk.len(), FRAME_CONTINUATION, flags, block.stream_id, out);
        out.extend_from_slice(chunk);
        rest = tail;
    }
}

fn write_frame_header(len: usize, kind: u8, flags: u8, stream_id: u32, out: &mut Vec<u8>) {
    assert!(
        len <= FRAME_PAYLOAD_MAX_BYTES,
        "frame payload {len} over the limit"
    );
    out.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream_id.to_be_bytes());
}

/// The client port's buffered reader with [`AuthorityFilter`] on its inbound bytes; writes go
/// straight through.
pub struct FixAuthority<S> {
    io: S,
    /// None once the filter passes everything: reads then go straight to `io`.
    filter: Option<Box<AuthorityFilter>>,
    /// Filtered bytes not yet read; `out[read..]` is still to go.
    out: Vec<u8>,
    read: usize,
}

impl<S> FixAuthority<S> {
    pub fn new(io: S) -> FixAuthority<S> {
        FixAuthority {
            io,
            filter: Some(Box::default()),
            out: Vec::new(),
            read: 0,
        }
    }
}

impl<S: AsyncBufRead + Unpin> AsyncBufRead for FixAuthority<S> {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        let this = self.get_mut();
        while this.read == this.out.len() {
            let Some(filter) = this.filter.as_mut() else {
                return Pin::new(&mut this.io).poll_fill_buf(cx);
            };
            let input = ready!(Pin::new(&mut this.io).poll_fill_buf(cx))?;
            if input.is_empty() {
                // End of stream: a partial frame the filter holds is incomplete anyway.
                return Poll::Ready(Ok(&[]));
            }
            let n = input.len();
            this.out.clear();
            this.read = 0;
            filter.feed(input, &mut this.out);
            Pin::new(&mut this.io).consume(n);
            if filter.has_failed() {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "a header block that cannot be rewritten",
                )));
            }
            if filter.is_passthrough() {
                this.filter = None;
            }
        }
        Poll::Ready(Ok(&this.out[this.read..]))
    }

    fn consume(self: Pin<&mut Self>, amt: usize) {
        let this = self.get_mut();
        if this.read < this.out.len() {
            this.read = (this.read + amt).min(this.out.len());
            if this.read == this.out.len() && this.filter.is_none() {
                this.out = Vec::new();
                this.read = 0;
            }
        } else {
            Pin::new(&mut this.io).consume(amt);
        }
    }
}

impl<S: AsyncBufRead + Unpin> AsyncRead for FixAuthority<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let available = ready!(self.as_mut().poll_fill_buf(cx))?;
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Poll::Ready(Ok(n))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FixAuthority<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    //! The filter against etcdctl's own bytes and hand-built streams: what h2 decodes from its
    //! output (a fresh HPACK decoder, as h2 has) must be the client's fields with only the
    //! authority fixed, whatever the read sizes; everything else must pass byte for byte.

    use super::*;

    /// The first bytes etcdctl 3.4.23 sent for `endpoint status` with
    /// `--endpoints=http://127.0.0.1:46390` (captured on loopback): the preface, SETTINGS,
    /// WINDOW_UPDATE, the HEADERS of `/etcdserverpb.Maintenance/Status` (Huffman-coded,
    /// inserted into the client's table), its DATA, then SETTINGS ack and PING.
    const ETCDCTL_STATUS: &str = "505249202a20485454502f322e300d0a0d0a534d0d0a0d0a00000004000000\
        00000000000401000000000000770104000000018386459760a924882d9dcb6571afa066a925a87510ac6e\
        48d36a3f41909d29aee30c044eae05c0b86e34e32f835f8b1d75d0620d263d4c4d65647a8b9acac8b4c760\
        2bb2caecff40027465864d833505b11f40899acac8b24d494f6a7f8669f7d979e05b408d25062d49587599\
        6ee5b1063d5f03332e3400000500010000000100000000000000040800000000000000003900000806000000\
        000002041010090e0707";

    type Fields = Vec<(Vec<u8>, Vec<u8>)>;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    struct Frame {
        kind: u8,
        flags: u8,
        stream_id: u32,
        payload: Vec<u8>,
    }

    fn frame_bytes(kind: u8, flags: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
        out.extend_from_slice(&[kind, flags]);
        out.extend_from_slice(&stream_id.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    /// A header block as a HEADERS frame and as many CONTINUATION frames as it needs.
    fn block_frames(stream_id: u32, block: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let chunks: Vec<&[u8]> = block.chunks(FRAME_PAYLOAD_MAX_BYTES).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            let kind = if i == 0 {
                FRAME_HEADERS
            } else {
                FRAME_CONTINUATION
            };
            let flags = if i + 1 == chunks.len() {
                FLAG_END_HEADERS
            } else {
                0
            };
            out.extend(frame_bytes(kind, flags, stream_id, chunk));
        }
        out
    }

    /// The frames after the preface.
    fn frames(stream: &[u8]) -> Vec<Frame> {
        assert_eq!(
            &stream[..PREFACE.len()],
            PREFACE,
            "output starts with the preface"
        );
        let mut rest = &stream[PREFACE.len()..];
        let mut out = Vec::new();
        while !rest.is_empty() {
            let len = u32::from_be_bytes([0, rest[0], rest[1], rest[2]]) as usize;
            out.push(Frame {
                kind: rest[3],
                flags: rest[4],
                stream_id: u32::from_be_bytes([rest[5], rest[6], rest[7], rest[8]]),
                payload: rest[9..9 + len].to_vec(),
            });
            rest = &rest[9 + len..];
        }
        out
    }

    fn filtered(input: &[u8], read_bytes: usize) -> (Vec<u8>, AuthorityFilter) {
        let mut filter = AuthorityFilter::default();
        let mut out = Vec::new();
        for chunk in input.chunks(read_bytes) {
            filter.feed(chunk, &mut out);
        }
        (out, filter)
    }

    /// Decodes the header blocks in `stream` as h2 would: one decoder across the connection.
    fn header_blocks(stream: &[u8]) -> Vec<Fields> {
        let mut decoder = loona_hpack::Decoder::new();
        let mut blocks = Vec::new();
        let mut block = Vec::new();
        for f in frames(stream) {
            match f.kind {
                FRAME_HEADERS => {
                    let (_, fragment) = headers_fragment(f.flags, &f.payload).unwrap();
                    block = fragment.to_vec();
                }
                FRAME_CONTINUATION => block.extend_from_slice(&f.payload),
                _ => continue,
            }
            if f.flags & FLAG_END_HEADERS != 0 {
                blocks.push(decoder.decode(&block).expect("output decodes"));
            }
        }
        blocks
    }

    fn with_authority(fields: &Fields, authority: Option<&[u8]>) -> Fields {
        fields
            .iter()
            .filter_map(|(n, v)| match (n.as_slice(), authority) {
                (b":authority", None) => None,
                (b":authority", Some(a)) => Some((n.clone(), a.to_vec())),
                _ => Some((n.clone(), v.clone())),
            })
            .collect()
    }

    fn headers_stream(blocks: &[(u8, Vec<u8>)]) -> Vec<u8> {
        let mut stream = PREFACE.to_vec();
        stream.extend(frame_bytes(0x4, 0, 0, &[])); // SETTINGS
        for (i, (flags, block)) in blocks.iter().enumerate() {
            let id = 1 + 2 * i as u32;
            stream.extend(frame_bytes(FRAME_HEADERS, *flags, id, block));
            stream.extend(frame_bytes(0x0, FLAG_END_STREAM, id, b"\0\0\0\0\0")); // DATA
        }
        stream
    }

    #[test]
    fn etcdctl_url_authority_becomes_its_host_and_port_whatever_the_read_sizes() {
        let input = hex(ETCDCTL_STATUS);
        let sent = header_blocks(&input);
        assert_eq!(sent.len(), 1);
        assert!(sent[0].contains(&(b":authority".to_vec(), b"http://127.0.0.1:46390".to_vec())));
        let (whole, filter) = filtered(&input, input.len());
        assert!(!filter.is_passthrough(), "the connection stays rewritten");
        assert_eq!(
            header_blocks(&whole),
            vec![with_authority(&sent[0], Some(b"127.0.0.1:46390"))]
        );
        // Every other frame is unchanged, in order.
        let others = |s: &[u8]| -> Vec<(u8, u8, u32, Vec<u8>)> {
            frames(s)
                .into_iter()
                .filter(|f| f.kind != FRAME_HEADERS)
                .map(|f| (f.kind, f.flags, f.stream_id, f.payload))
                .collect()
        };
        assert_eq!(others(&whole), others(&input));
        assert_eq!(others(&input).len(), 5);
        for read_bytes in [1, 2, 7, 9, 10, 64] {
            assert_eq!(
                filtered(&input, read_bytes).0,
                whole,
                "reads of {read_bytes} bytes"
            );
        }
    }

    #[test]
    fn later_requests_naming_the_indexed_url_get_the_fixed_authority_too() {
        // grpc-go's next request on the connection refers to the fields the first one put in
        // its table: indexed representations, 62 being the newest entry.
        let first = hex(ETCDCTL_STATUS);
        let mut mirror = loona_hpack::Decoder::new();
        let sent = header_blocks(&first);
        let fragment = {
            let f = frames(&first)
                .into_iter()
                .find(|f| f.kind == FRAME_HEADERS)
                .unwrap();
            headers_fragment(f.flags, &f.payload).unwrap().1.to_vec()
        };
        mirror.decode(&fragment).unwrap();
        let mut second = vec![0x83, 0x86]; // :method POST, :scheme http
        for index in 62u8..127 {
            if mirror.decode(&[0x80 | index]).is_err() {
                break;
            }
            second.push(0x80 | index);
        }
        let second_fields = mirror.decode(&second).unwrap();
        assert!(
            second_fields.contains(&(b":authority".to_vec(), b"http://127.0.0.1:46390".to_vec()))
        );
        let mut input = first.clone();
        input.extend(frame_bytes(FRAME_HEADERS, FLAG_END_HEADERS, 3, &second));
        let (out, _) = filtered(&input, 5);
        let fixed = Some(&b"127.0.0.1:46390"[..]);
        assert_eq!(
            header_blocks(&out),
            vec![
                with_authority(&sent[0], fixed),
                with_authority(&second_fields, fixed)
            ]
        );
    }

    #[test]
    fn a_valid_authority_passes_byte_for_byte_and_ends_inspection() {
        let mut encoder = loona_hpack::Encoder::new();
        let fields: [(&[u8], &[u8]); 4] = [
            (b":method", b"POST"),
            (b":scheme", b"http"),
            (b":path", b"/etcdserverpb.KV/Range"),
            (b":authority", b"127.0.0.1:2379"),
        ];
        let block = encoder.encode(fields);
        let input = headers_stream(&[(FLAG_END_HEADERS, block.clone()), (FLAG_END_HEADERS, block)]);
        for read_bytes in [1, 3, input.len()] {
            let (out, filter) = filtered(&input, read_bytes);
            assert_eq!(out, input, "reads of {read_bytes} bytes");
            assert!(filter.is_passthrough());
        }
    }

    #[test]
    fn http1_requests_pass_unchanged_from_the_first_byte() {
        let input = b"POST /v3/kv/range HTTP/1.1\r\nHost: h\r\ncontent-length: 2\r\n\r\n{}";
        let (out, filter) = filtered(input, 1);
        assert_eq!(out, input);
        assert!(filter.is_passthrough());
    }

    #[test]
    fn padded_prioritised_and_continued_blocks_keep_stream_flags_and_priority() {
        let mut encoder = loona_hpack::Encoder::new();
        let fields: Fields = [
            (&b":method"[..], &b"POST"[..]),
            (b":scheme", b"http"),
            (b":authority", b"http://localhost:2379"),
            (b":path", b"/etcdserverpb.Maintenance/Defragment"),
        ]
        .iter()
        .map(|(n, v)| (n.to_vec(), v.to_vec()))
        .collect();
        let block = encoder.encode(fields.iter().map(|(n, v)| (&n[..], &v[..])));
        let (head, tail) = block.split_at(7);
        let priority = [0x80, 0, 0, 0, 15];
        let mut payload = vec![3]; // pad length
        payload.extend_from_slice(&priority);
        payload.extend_from_slice(head);
        payload.extend_from_slice(&[0, 0, 0]);
        let mut input = PREFACE.to_vec();
        input.extend(frame_bytes(
            FRAME_HEADERS,
            FLAG_PADDED | FLAG_PRIORITY | FLAG_END_STREAM,
            1,
            &payload,
        ));
        input.extend(frame_bytes(FRAME_CONTINUATION, FLAG_END_HEADERS, 1, tail));
        let (out, _) = filtered(&input, 4);
        let out_frames = frames(&out);
        assert_eq!(out_frames.len(), 1, "one HEADERS frame, padding dropped");
        let f = &out_frames[0];
        assert_eq!((f.kind, f.stream_id), (FRAME_HEADERS, 1));
        assert_eq!(f.flags, FLAG_PRIORITY | FLAG_END_STREAM | FLAG_END_HEADERS);
        assert_eq!(f.payload[..PRIORITY_BYTES], priority);
        assert_eq!(
            header_blocks(&out),
            vec![with_authority(&fields, Some(b"localhost:2379"))]
        );
    }

    #[test]
    fn a_rewritten_block_larger_than_a_frame_continues_in_continuation_frames() {
        let big = vec![b'x'; 40_000];
        let fields: Fields = vec![
            (b":authority".to_vec(), b"http://127.0.0.1:2379".to_vec()),
            (b"x-big".to_vec(), big),
        ];
        let block =
            loona_hpack::Encoder::new().encode(fields.iter().map(|(n, v)| (&n[..], &v[..])));
        let mut input = PREFACE.to_vec();
        input.extend(block_frames(1, &block));
        let (out, _) = filtered(&input, 1000);
        let kinds: Vec<(u8, u8, usize)> = frames(&out)
            .iter()
            .map(|f| (f.kind, f.flags, f.payload.len()))
            .collect();
        assert_eq!(kinds.len(), 3);
        assert_eq!(kinds[0], (FRAME_HEADERS, 0, FRAME_PAYLOAD_MAX_BYTES));
        assert_eq!(kinds[1], (FRAME_CONTINUATION, 0, FRAME_PAYLOAD_MAX_BYTES));
        assert_eq!(
            (kinds[2].0, kinds[2].1),
            (FRAME_CONTINUATION, FLAG_END_HEADERS)
        );
        assert_eq!(
            header_blocks(&out),
            vec![with_authority(&fields, Some(b"127.0.0.1:2379"))]
        );
    }

    #[test]
    fn an_invalid_authority_with_none_inside_is_left_out() {
        // A unix-socket URL, and the form etcd 3.5.0's client sent (`#initially=[...]`).
        for authority in [
            &b"unix:///run/etcd.sock"[..],
            b"#initially=[http://127.0.0.1:2379]",
        ] {
            let fields: Fields = vec![
                (b":method".to_vec(), b"POST".to_vec()),
                (b":authority".to_vec(), authority.to_vec()),
            ];
            let block =
                loona_hpack::Encoder::new().encode(fields.iter().map(|(n, v)| (&n[..], &v[..])));
            let (out, _) = filtered(&headers_stream(&[(FLAG_END_HEADERS, block)]), 16);
            assert_eq!(header_blocks(&out), vec![with_authority(&fields, None)]);
        }
    }

    #[test]
    fn blocks_it_cannot_decode_pass_as_they_came_for_h2_to_refuse() {
        // Index 0 is not a valid HPACK index; a size update above SETTINGS_HEADER_TABLE_SIZE
        // is refused too.
        for block in [vec![0x80], vec![0x3f, 0xe1, 0x7f]] {
            let input = headers_stream(&[(FLAG_END_HEADERS, block)]);
            let (out, filter) = filtered(&input, 2);
            assert_eq!(out, input);
            assert!(filter.is_passthrough());
        }
    }

    #[test]
    fn a_frame_other_than_continuation_inside_a_header_block_passes_as_it_came() {
        let block = loona_hpack::Encoder::new()
            .encode([(&b":authority"[..], &b"http://127.0.0.1:2379"[..])]);
        // DATA, or the HEADERS of another stream, while stream 1's block is unfinished.
        for (kind, stream_id) in [(0x0, 1), (FRAME_HEADERS, 3)] {
            let mut input = PREFACE.to_vec();
            input.extend(frame_bytes(FRAME_HEADERS, 0, 1, &block));
            input.extend(frame_bytes(kind, FLAG_END_HEADERS, stream_id, &block));
            let (out, filter) = filtered(&input, 3);
            assert_eq!(out, input);
            assert!(filter.is_passthrough());
        }
    }

    #[test]
    fn a_header_frame_over_the_frame_size_passes_as_it_came() {
        let big = vec![b'x'; FRAME_PAYLOAD_MAX_BYTES];
        let block = loona_hpack::Encoder::new().encode([
            (&b":authority"[..], &b"http://127.0.0.1:2379"[..]),
            (b"x-big", &big[..]),
        ]);
        assert!(block.len() > FRAME_PAYLOAD_MAX_BYTES);
        let input = headers_stream(&[(FLAG_END_HEADERS, block)]);
        let (out, filter) = filtered(&input, 4096);
        assert_eq!(out, input, "h2 refuses it (FRAME_SIZE_ERROR) as before");
        assert!(filter.is_passthrough());
    }

    #[test]
    fn a_rewritten_connection_that_cannot_be_rewritten_further_fails() {
        // After etcdctl's first request the connection is rewritten; a later block that does
        // not decode (index 0), or one over the block limit, cannot be passed on to h2, whose
        // table is empty: the filter fails and the adapter closes the connection.
        let big = vec![b'x'; HEADER_BLOCK_MAX_BYTES];
        let oversized = loona_hpack::Encoder::new().encode([(&b"x-big"[..], &big[..])]);
        for bad in [vec![0x80], oversized] {
            let mut input = hex(ETCDCTL_STATUS);
            input.extend(block_frames(3, &bad));
            let (_, filter) = filtered(&input, 1000);
            assert!(filter.has_failed());
            let mut io = FixAuthority::new(futures_lite::io::Cursor::new(input));
            let read = futures_lite::future::block_on(futures_lite::io::AsyncReadExt::read_to_end(
                &mut io,
                &mut Vec::new(),
            ));
            assert_eq!(read.unwrap_err().kind(), io::ErrorKind::InvalidData);
        }
    }
}
