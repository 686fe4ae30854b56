//! TLS handshakes shared by the peer port and the client port: the server side of one accepted
//! connection (refusals logged with etcd's "rejected connection" line and Go's wording of the
//! reason), the client side of a dial to an `https://` peer URL, and a server-certificate
//! verifier that accepts any certificate, for `--peer-auto-tls` (etcd's peer client skips
//! verification of self-signed peers too). The rustls configurations themselves are built from
//! the flags by the server binary (`server/src/tls.rs`).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_lite::io::{AsyncBufRead, AsyncRead, AsyncWrite};
use futures_rustls::{LazyConfigAcceptor, TlsConnector, client, server};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::Acceptor;
use rustls::{ClientConfig, DigitallySignedStruct, ServerConfig, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

/// How long a peer or client may take to finish its handshake before the connection is
/// dropped, so a silent or slow one cannot hold a connection task forever.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Bounds of [`close_gently`]: how long, how many reads of how many bytes.
const LINGER_TIMEOUT: Duration = Duration::from_millis(200);
const LINGER_READS_MAX: usize = 16;
const LINGER_READ_BYTES: usize = 4096;
/// TLS record type of a handshake message: what the first byte of a TLS client must be.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// Runs the server side of the handshake on an accepted connection. A refusal (no client
/// certificate, unknown CA, not TLS at all, the client rejecting our certificate, a timeout)
/// is logged like etcd's "rejected connection" line and returned as `None`.
pub async fn accept<IO>(
    config: Arc<ServerConfig>,
    mut io: IO,
    remote: Option<SocketAddr>,
) -> Option<server::TlsStream<IO>>
where
    IO: AsyncBufRead + AsyncWrite + Unpin,
{
    let mut server_name = String::new();
    let handshake = async {
        refuse_non_tls(&mut io).await?;
        let start = LazyConfigAcceptor::new(Acceptor::default(), io).await?;
        server_name = start.client_hello().server_name().unwrap_or("").to_owned();
        match start.into_stream(config).into_fallible().await {
            Ok(stream) => Ok(stream),
            Err((e, io)) => {
                close_gently(io).await;
                Err(e)
            }
        }
    };
    let timeout = async {
        glommio::timer::sleep(HANDSHAKE_TIMEOUT).await;
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "tls: handshake timed out",
        ))
    };
    match futures_lite::future::or(handshake, timeout).await {
        Ok(stream) => Some(stream),
        Err(e) => {
            let remote = remote.map(|a| a.to_string()).unwrap_or_default();
            tracing::warn!(
                "rejected connection from \"{remote}\" (error \"{}\", ServerName \"{server_name}\")",
                handshake_error_text(&e)
            );
            None
        }
    }
}

/// Closes a refused connection the way the client can read why: rustls has queued its alert,
/// so send FIN and read what the client still sends (its first request, racing the alert)
/// until it closes, for a bounded time. Dropping the socket with that request unread would
/// send RST instead, and the client could lose the alert.
async fn close_gently<IO: AsyncRead + AsyncWrite + Unpin>(mut io: IO) {
    use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
    let drain = async {
        let _ = io.close().await;
        let mut buf = [0u8; LINGER_READ_BYTES];
        for _ in 0..LINGER_READS_MAX {
            if matches!(io.read(&mut buf).await, Ok(0) | Err(_)) {
                break;
            }
        }
    };
    futures_lite::future::or(drain, glommio::timer::sleep(LINGER_TIMEOUT)).await;
}

/// Fails a connection whose first byte cannot start a TLS handshake (plain HTTP or gRPC sent
/// to an https port) before rustls answers it: Go closes such a connection without a TLS
/// alert, so a plain HTTP client sees an empty reply from etcd, not alert bytes.
async fn refuse_non_tls<IO: AsyncBufRead + Unpin>(io: &mut IO) -> io::Result<()> {
    let first = futures_lite::io::AsyncBufReadExt::fill_buf(io).await?;
    match first.first() {
        None => Err(io::ErrorKind::UnexpectedEof.into()),
        Some(&TLS_HANDSHAKE_RECORD) => Ok(()),
        Some(_) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
        )),
    }
}

/// The rustls error inside an I/O error, if there is one.
fn tls_error(e: &io::Error) -> Option<&rustls::Error> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
}

/// etcd's (Go crypto/tls) wording for the handshake failures a server meets most.
pub fn handshake_error_text(e: &io::Error) -> String {
    use rustls::{CertificateError, Error as TlsError, InvalidMessage};
    let Some(tls) = tls_error(e) else {
        return match e.kind() {
            io::ErrorKind::UnexpectedEof => "EOF".to_owned(),
            _ => e.to_string(),
        };
    };
    match tls {
        TlsError::NoCertificatesPresented => "tls: client didn't provide a certificate".to_owned(),
        TlsError::InvalidCertificate(CertificateError::UnknownIssuer) => {
            "tls: failed to verify client certificate: x509: certificate signed by unknown \
             authority"
                .to_owned()
        }
        TlsError::InvalidCertificate(other) => {
            format!("tls: failed to verify client certificate: {other:?}")
        }
        TlsError::InvalidMessage(InvalidMessage::InvalidContentType)
        | TlsError::InvalidMessage(InvalidMessage::UnknownProtocolVersion) => {
            "tls: first record does not look like a TLS handshake".to_owned()
        }
        TlsError::AlertReceived(alert) => remote_alert_text(*alert),
        other => format!("tls: {other}"),
    }
}

/// Go's wording for a failed dial to a TLS peer: the server's certificate refused here, or the
/// peer refusing ours (its alert).
pub fn dial_error_text(e: &io::Error) -> String {
    use rustls::{CertificateError, Error as TlsError};
    match tls_error(e) {
        Some(TlsError::InvalidCertificate(CertificateError::UnknownIssuer)) => {
            "x509: certificate signed by unknown authority".to_owned()
        }
        Some(TlsError::InvalidCertificate(other)) => format!("x509: {other:?}"),
        Some(TlsError::AlertReceived(alert)) => remote_alert_text(*alert),
        Some(other) => format!("tls: {other}"),
        None => e.to_string(),
    }
}

/// Go's text for an alert the other side sent (`remote error: tls: bad certificate`).
fn remote_alert_text(alert: rustls::AlertDescription) -> String {
    use rustls::AlertDescription as A;
    let what = match alert {
        A::BadCertificate => "bad certificate".to_owned(),
        A::UnknownCA => "unknown certificate authority".to_owned(),
        A::CertificateRequired => "certificate required".to_owned(),
        A::HandshakeFailure => "handshake failure".to_owned(),
        A::CertificateExpired => "expired certificate".to_owned(),
        other => format!("{other:?}"),
    };
    format!("remote error: tls: {what}")
}

/// The host of `host:port` (`[::1]:2380` gives `::1`): what a peer's certificate must name.
pub fn host_of(host_port: &str) -> &str {
    let host = host_port
        .rsplit_once(':')
        .map_or(host_port, |(host, _)| host);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// Runs the client side of the handshake to a peer at `host` (the host of its `https://` peer
/// URL: an IP address is checked against the certificate's IP SANs, a name against its DNS
/// SANs), within [`HANDSHAKE_TIMEOUT`]. Writes go through a buffer so that when this side
/// refuses the peer's certificate, the alert rustls queues is still sent (glommio's socket
/// takes a write only on a later poll, which a failed handshake never makes): the peer then
/// logs why ("remote error: tls: ...") instead of an EOF.
pub async fn connect<IO>(
    config: Arc<ClientConfig>,
    host: &str,
    io: IO,
) -> io::Result<client::TlsStream<futures::io::BufWriter<IO>>>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let name = ServerName::try_from(host.to_owned())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{host}: {e}")))?;
    let io = futures::io::BufWriter::new(io);
    let handshake = async {
        match TlsConnector::from(config)
            .connect(name, io)
            .into_fallible()
            .await
        {
            Ok(stream) => Ok(stream),
            Err((e, io)) => {
                close_gently(io).await;
                Err(e)
            }
        }
    };
    match glommio::timer::timeout(HANDSHAKE_TIMEOUT, async { Ok(handshake.await) }).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "tls: handshake timed out",
        )),
    }
}

/// A server-certificate verifier that takes any certificate (still checking the handshake
/// signatures), as etcd's peer client does for `--peer-auto-tls` self-signed peers: the
/// connection is encrypted, not authenticated.
#[derive(Debug)]
pub struct AcceptAnyServerCert {
    provider: Arc<CryptoProvider>,
}

impl AcceptAnyServerCert {
    pub fn new(provider: Arc<CryptoProvider>) -> AcceptAnyServerCert {
        AcceptAnyServerCert { provider }
    }
}

impl ServerCertVerifier for AcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
