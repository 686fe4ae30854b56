//! A minimal HTTP/1.1 client over a raw TCP stream, for the JSON gateway and `/health`.
//!
//! It sends one request with `Connection: close` and reads until EOF, so it needs no
//! connection pool; chunked bodies are decoded. Raw access matters here: the suite also sends
//! malformed JSON and wrong methods, which a typed client would refuse to produce.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A whole request may take this long.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Responses larger than this are cut (the suite never needs more).
const MAX_RESPONSE_BYTES: u64 = 16 * 1024 * 1024;

/// What came back.
#[derive(Clone, Debug, serde::Serialize)]
pub struct HttpResponse {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

impl HttpResponse {
    /// The body parsed as JSON (Null when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// Sends `method path` with an optional body to `addr` (host:port).
pub async fn request(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> std::io::Result<HttpResponse> {
    tokio::time::timeout(REQUEST_TIMEOUT, request_inner(addr, method, path, body))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "http request timed out"))?
}

async fn request_inner(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> std::io::Result<HttpResponse> {
    let mut stream = TcpStream::connect(addr).await?;
    let body = body.unwrap_or("");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    // One write: a server that answers before reading a separately-sent body and then closes
    // would make the kernel reset the connection, losing its answer.
    let request = [head.as_bytes(), body.as_bytes()].concat();
    stream.write_all(&request).await?;
    let mut raw = Vec::new();
    match stream.take(MAX_RESPONSE_BYTES).read_to_end(&mut raw).await {
        Ok(_) => {}
        // A reset after a complete answer still leaves that answer usable.
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset && !raw.is_empty() => {}
        Err(e) => return Err(e),
    }
    parse_response(&raw)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "bad http response"))
}

/// Parses status line, headers and (possibly chunked) body.
pub fn parse_response(raw: &[u8]) -> Option<HttpResponse> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let rest = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let mut chunked = false;
    let mut content_type = String::new();
    for line in lines {
        let (name, value) = line.split_once(':')?;
        let name = name.trim().to_ascii_lowercase();
        let value = value.trim();
        if name == "transfer-encoding" && value.eq_ignore_ascii_case("chunked") {
            chunked = true;
        }
        if name == "content-type" {
            content_type = value.to_string();
        }
    }
    let body = if chunked {
        decode_chunked(rest)?
    } else {
        rest.to_vec()
    };
    Some(HttpResponse {
        status,
        content_type,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn decode_chunked(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

/// Base64 of bytes, as the gateway encodes `bytes` fields.
pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Decodes a base64 field of a gateway response (empty on error).
pub fn unb64(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_chunked_and_plain_bodies() {
        let plain = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{\"a\":1}";
        let r = parse_response(plain).expect("plain");
        assert_eq!((r.status, r.body.as_str()), (200, "{\"a\":1}"));
        let chunked = b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        let r = parse_response(chunked).expect("chunked");
        assert_eq!((r.status, r.body.as_str()), (404, "abcde"));
    }
}
