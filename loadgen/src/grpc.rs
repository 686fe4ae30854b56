//! A lean unary gRPC client for the calls a load run makes in bulk (KV Range, Put, Txn): one
//! HTTP/2 connection per `--conns` on the h2 crate directly, etcd's protobuf messages encoded
//! with prost. etcd-client's stack (tonic, a tower buffer and balancer, hyper) cost the tool
//! 18-29 us of CPU per request on this machine kind, against about 6 us for a bare h2
//! client, so on 2 shared cores it was the tool, not the server, that set the ceiling of a
//! read benchmark. Watch and lease streams, status and compaction stay on etcd-client.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::uri::{Authority, PathAndQuery, Scheme};
use ketch_proto::etcdserverpb::{
    PutRequest, PutResponse, RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};
use prost::Message;
use tokio::net::TcpStream;
use tonic::Code;

use crate::connect::{Dial, endpoint_url};

const RANGE: &str = "/etcdserverpb.KV/Range";
const PUT: &str = "/etcdserverpb.KV/Put";
const TXN: &str = "/etcdserverpb.KV/Txn";

/// The gRPC frame header: a compression flag and the message length (big-endian u32).
const FRAME_HEADER_BYTES: usize = 5;
/// Receive windows: a large range answer streams without waiting on window updates.
const STREAM_WINDOW_BYTES: u32 = 4 << 20;
const CONNECTION_WINDOW_BYTES: u32 = 16 << 20;

/// A failed call, as the error table shows it: the gRPC code and message (etcd's own text,
/// e.g. `etcdserver: request timed out`), or the transport's error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallError {
    pub code: Code,
    pub message: String,
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.code, self.message)
    }
}

impl CallError {
    fn new(code: Code, message: impl Into<String>) -> Self {
        CallError {
            code,
            message: message.into(),
        }
    }
}

fn transport(e: h2::Error) -> CallError {
    let code = match e.reason() {
        Some(h2::Reason::CANCEL) => Code::Cancelled,
        Some(h2::Reason::REFUSED_STREAM) => Code::Unavailable,
        Some(h2::Reason::ENHANCE_YOUR_CALM) => Code::ResourceExhausted,
        Some(h2::Reason::INADEQUATE_SECURITY) => Code::PermissionDenied,
        _ => Code::Unavailable,
    };
    CallError::new(code, e.to_string())
}

/// One HTTP/2 connection to an endpoint; cheap to clone (calls share the connection). A
/// call that finds the connection broken (the server went away) fails, and the next call
/// dials again, as gRPC clients reconnect: a run goes on through a member's restart.
#[derive(Clone)]
pub struct KvConn {
    inner: Arc<Inner>,
}

struct Inner {
    endpoint: String,
    timeout: Duration,
    /// TLS with ALPN h2, built once from the dial's PEM files; `None` for plain HTTP/2.
    tls: Option<Arc<rustls::ClientConfig>>,
    scheme: Scheme,
    authority: Authority,
    /// The live connection and its number; `None` once a call found it broken.
    live: std::sync::Mutex<Option<(u64, h2::client::SendRequest<Bytes>)>>,
    /// Serialises re-dials; holds when the last failed dial allows the next.
    redial: tokio::sync::Mutex<Instant>,
}

/// Wait between failed re-dials, so that clients of a dead endpoint do not spin.
const REDIAL_PAUSE: Duration = Duration::from_millis(100);

impl KvConn {
    /// Connects to `endpoint` (`host:port` or a URL), over TLS when `dial` has it.
    pub async fn connect(endpoint: &str, dial: &Dial) -> Result<KvConn> {
        let url: http::Uri = endpoint_url(endpoint, dial.is_tls())
            .parse()
            .with_context(|| format!("endpoint {endpoint}"))?;
        let authority = url
            .authority()
            .cloned()
            .with_context(|| format!("endpoint {endpoint}: no host:port"))?;
        let scheme = url.scheme().cloned().unwrap_or(Scheme::HTTP);
        let tls = dial.rustls_config()?;
        if tls.is_none() && scheme == Scheme::HTTPS {
            bail!("connecting to {endpoint}: https endpoint without TLS files");
        }
        let inner = Inner {
            endpoint: endpoint.to_string(),
            timeout: dial.timeout,
            tls,
            scheme,
            authority,
            live: std::sync::Mutex::new(None),
            redial: tokio::sync::Mutex::new(Instant::now()),
        };
        let send = inner.open().await?;
        *inner.live.lock().expect("live lock") = Some((0, send));
        Ok(KvConn {
            inner: Arc::new(inner),
        })
    }

    pub async fn range(&self, req: &RangeRequest) -> Result<RangeResponse, CallError> {
        self.unary(RANGE, req).await
    }

    pub async fn put(&self, req: &PutRequest) -> Result<PutResponse, CallError> {
        self.unary(PUT, req).await
    }

    pub async fn txn(&self, req: &TxnRequest) -> Result<TxnResponse, CallError> {
        self.unary(TXN, req).await
    }

    /// One unary call: the request message in one DATA frame that ends the stream, then the
    /// answer's headers, its one message and the trailers with `grpc-status`.
    async fn unary<Q: Message, R: Message + Default>(
        &self,
        path: &'static str,
        req: &Q,
    ) -> Result<R, CallError> {
        let uri = http::Uri::builder()
            .scheme(self.inner.scheme.clone())
            .authority(self.inner.authority.clone())
            .path_and_query(PathAndQuery::from_static(path))
            .build()
            .map_err(|e| CallError::new(Code::Internal, e.to_string()))?;
        let request = http::Request::post(uri)
            .header(http::header::CONTENT_TYPE, "application/grpc")
            .header(http::header::TE, "trailers")
            .body(())
            .map_err(|e| CallError::new(Code::Internal, e.to_string()))?;
        let (number, send) = self.inner.connection().await?;
        // Before the request is out, any error is the connection's; after, a stream's reset
        // leaves the connection in service.
        let broken = |e: h2::Error| self.inner.broken(number, e);
        let mut send = send.ready().await.map_err(broken)?;
        let (answer, mut body_out) = send.send_request(request, false).map_err(broken)?;
        body_out
            .send_data(encode_frame(req), true)
            .map_err(broken)?;
        let answer = answer.await.map_err(|e| self.inner.failed(number, e))?;
        let (head, mut body) = answer.into_parts();
        if head.status != http::StatusCode::OK {
            return Err(CallError::new(
                http_status_code(head.status),
                format!("HTTP status {}", head.status),
            ));
        }
        // A trailers-only answer (an error before any message) has the status in its headers.
        if let Some(status) = grpc_status(&head.headers) {
            return Err(status.err().unwrap_or_else(|| {
                CallError::new(Code::Internal, "OK status without a response message")
            }));
        }
        let mut message = BytesMut::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.map_err(|e| self.inner.failed(number, e))?;
            let _ = body.flow_control().release_capacity(chunk.len());
            message.extend_from_slice(&chunk);
        }
        let trailers = body
            .trailers()
            .await
            .map_err(|e| self.inner.failed(number, e))?;
        match trailers.as_ref().and_then(grpc_status) {
            Some(Ok(())) => {}
            Some(Err(e)) => return Err(e),
            None => return Err(CallError::new(Code::Internal, "no grpc-status in trailers")),
        }
        decode_frame(message.freeze())
    }
}

impl Inner {
    /// Dials the endpoint: TCP (no Nagle), TLS when configured, the HTTP/2 handshake.
    async fn open(&self) -> Result<h2::client::SendRequest<Bytes>> {
        let fut = async {
            let tcp = TcpStream::connect(self.authority.as_str()).await?;
            tcp.set_nodelay(true)?;
            let send = match &self.tls {
                Some(config) => {
                    let name = rustls_pki_types::ServerName::try_from(self.authority.host())
                        .context("TLS server name")?
                        .to_owned();
                    let tls = tokio_rustls::TlsConnector::from(config.clone())
                        .connect(name, tcp)
                        .await?;
                    handshake(tls).await?
                }
                None => handshake(tcp).await?,
            };
            Ok::<_, anyhow::Error>(send)
        };
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(r) => r.with_context(|| format!("connecting to {}", self.endpoint)),
            Err(_) => bail!(
                "connecting to {}: no answer within {:?}",
                self.endpoint,
                self.timeout
            ),
        }
    }

    /// The live connection, dialling a new one if the last was found broken (one dial at a
    /// time; after a failed dial, the next waits `REDIAL_PAUSE`).
    async fn connection(&self) -> Result<(u64, h2::client::SendRequest<Bytes>), CallError> {
        if let Some(live) = self.live.lock().expect("live lock").clone() {
            return Ok(live);
        }
        // Boxed: the dial's future (TLS included) is large, and every call's future would
        // carry it inline.
        Box::pin(self.dial_again()).await
    }

    async fn dial_again(&self) -> Result<(u64, h2::client::SendRequest<Bytes>), CallError> {
        let mut next_dial = self.redial.lock().await;
        if let Some(live) = self.live.lock().expect("live lock").clone() {
            return Ok(live);
        }
        tokio::time::sleep_until((*next_dial).into()).await;
        match self.open().await {
            Ok(send) => {
                static DIALS: AtomicU64 = AtomicU64::new(1);
                let live = (DIALS.fetch_add(1, Ordering::Relaxed), send);
                *self.live.lock().expect("live lock") = Some(live.clone());
                Ok(live)
            }
            Err(e) => {
                *next_dial = Instant::now() + REDIAL_PAUSE;
                Err(CallError::new(Code::Unavailable, format!("{e:#}")))
            }
        }
    }

    /// Connection `number` failed with `e`: the next call dials again.
    fn broken(&self, number: u64, e: h2::Error) -> CallError {
        let mut live = self.live.lock().expect("live lock");
        if live.as_ref().is_some_and(|(n, _)| *n == number) {
            *live = None;
        }
        transport(e)
    }

    /// A call on connection `number` failed with `e` once sent: the connection is dropped
    /// when the error is the connection's (I/O, GOAWAY), not a reset of this call's stream.
    fn failed(&self, number: u64, e: h2::Error) -> CallError {
        if e.is_io() || e.is_go_away() || !e.is_reset() {
            return self.broken(number, e);
        }
        transport(e)
    }
}

async fn handshake<T>(io: T) -> Result<h2::client::SendRequest<Bytes>>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (send, connection) = h2::client::Builder::new()
        .initial_window_size(STREAM_WINDOW_BYTES)
        .initial_connection_window_size(CONNECTION_WINDOW_BYTES)
        .handshake(io)
        .await?;
    // The connection ends when every handle is dropped or the peer goes away; calls then
    // fail with the transport's error.
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(send)
}

/// `conns` connections, connection `i` to `targets[i % targets.len()]`.
pub async fn connect_all(targets: &[String], conns: usize, dial: &Dial) -> Result<Vec<KvConn>> {
    assert!(!targets.is_empty() && conns > 0);
    let mut out = Vec::with_capacity(conns);
    for i in 0..conns {
        out.push(KvConn::connect(&targets[i % targets.len()], dial).await?);
    }
    Ok(out)
}

/// `msg` as one uncompressed gRPC frame.
pub fn encode_frame<M: Message>(msg: &M) -> Bytes {
    let len = msg.encoded_len();
    let mut buf = BytesMut::with_capacity(FRAME_HEADER_BYTES + len);
    buf.put_u8(0);
    buf.put_u32(u32::try_from(len).expect("a request message under 4 GiB"));
    msg.encode(&mut buf).expect("capacity reserved above");
    buf.freeze()
}

/// The one message of a unary answer's body.
pub fn decode_frame<R: Message + Default>(mut body: Bytes) -> Result<R, CallError> {
    let bad = |what: String| CallError::new(Code::Internal, what);
    if body.len() < FRAME_HEADER_BYTES {
        return Err(bad(format!("response of {} bytes, no message", body.len())));
    }
    let compressed = body.get_u8();
    if compressed != 0 {
        return Err(bad("compressed response (none was asked for)".into()));
    }
    let len = body.get_u32() as usize;
    if body.len() != len {
        return Err(bad(format!(
            "response frame says {len} bytes, body has {}",
            body.len()
        )));
    }
    R::decode(body).map_err(|e| bad(format!("decoding the response: {e}")))
}

/// `grpc-status` (and `grpc-message`) of a header map: `None` when absent.
fn grpc_status(headers: &http::HeaderMap) -> Option<Result<(), CallError>> {
    let status = headers.get("grpc-status")?;
    let code = status
        .to_str()
        .ok()
        .and_then(|s| s.parse::<i32>().ok())
        .map(Code::from_i32)
        .unwrap_or(Code::Unknown);
    if code == Code::Ok {
        return Some(Ok(()));
    }
    let message = headers
        .get("grpc-message")
        .map(|m| percent_decode(m.as_bytes()))
        .unwrap_or_default();
    Some(Err(CallError::new(code, message)))
}

/// gRPC's percent-encoding of `grpc-message` undone (invalid escapes are kept as they are).
pub fn percent_decode(raw: &[u8]) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match (raw[i], raw.get(i + 1).copied(), raw.get(i + 2).copied()) {
            (b'%', Some(h), Some(l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push(hex(h).unwrap() << 4 | hex(l).unwrap());
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// gRPC's mapping of an HTTP status that is not 200 to a code.
fn http_status_code(status: http::StatusCode) -> Code {
    match status.as_u16() {
        400 => Code::Internal,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::Unimplemented,
        429 | 502 | 503 | 504 => Code::Unavailable,
        _ => Code::Unknown,
    }
}

/// A rustls client config for h2 (ALPN) from PEM files: the CA that signed the servers'
/// certificates and, optionally, a client certificate with its key.
pub fn rustls_config(
    ca_pem: &[u8],
    identity: Option<(&[u8], &[u8])>,
) -> Result<Arc<rustls::ClientConfig>> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        roots
            .add(cert.context("reading the CA certificate")?)
            .context("adding the CA certificate")?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_root_certificates(roots);
    let mut config = match identity {
        Some((cert, key)) => {
            let chain = CertificateDer::pem_slice_iter(cert)
                .collect::<Result<Vec<_>, _>>()
                .context("reading the client certificate")?;
            let key = PrivateKeyDer::from_pem_slice(key).context("reading the client key")?;
            builder
                .with_client_auth_cert(chain, key)
                .context("client certificate")?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}
