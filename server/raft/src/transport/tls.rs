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

use super::allowed::NotAllowed;

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
    io: IO,
    remote: Option<SocketAddr>,
) -> Option<server::TlsStream<IO>>
where
    IO: AsyncBufRead + AsyncWrite + Unpin,
{
    match accept_or_refusal(config, io).await {
        Ok(stream) => Some(stream),
        Err(refusal) => {
            let remote = remote.map(|a| a.to_string()).unwrap_or_default();
            tracing::warn!(
                "rejected connection from \"{remote}\" (error \"{}\", ServerName \"{}\"{})",
                refusal.error,
                refusal.server_name,
                refusal.certificate
            );
            None
        }
    }
}

/// Why a handshake was refused: Go's wording of the error, and the name the client asked for.
#[derive(Debug)]
struct Refusal {
    error: String,
    server_name: String,
    /// `, IPAddresses [...], DNSNames [...]` of a verified certificate refused by
    /// `--peer-cert-allowed-*`, as etcd logs it; empty otherwise.
    certificate: String,
}

/// The server side of the handshake, or why it was refused.
async fn accept_or_refusal<IO>(
    config: Arc<ServerConfig>,
    mut io: IO,
) -> Result<server::TlsStream<IO>, Refusal>
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
    let result = futures_lite::future::or(handshake, timeout).await;
    result.map_err(|e| Refusal {
        error: handshake_error_text(&e),
        server_name,
        certificate: not_allowed(&e)
            .map(|n| {
                format!(
                    ", IPAddresses {:?}, DNSNames {:?}",
                    n.ip_addresses, n.dns_names
                )
            })
            .unwrap_or_default(),
    })
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

/// The `--peer-cert-allowed-*` refusal inside an I/O error, if that is what it is.
fn not_allowed(e: &io::Error) -> Option<&NotAllowed> {
    match tls_error(e)? {
        rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other)) => {
            other.0.downcast_ref::<NotAllowed>()
        }
        _ => None,
    }
}

/// etcd's (Go crypto/tls) wording for the handshake failures a server meets most.
pub fn handshake_error_text(e: &io::Error) -> String {
    use rustls::{CertificateError, Error as TlsError, InvalidMessage};
    if let Some(refusal) = not_allowed(e) {
        return refusal.to_string();
    }
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
    if let Some(refusal) = not_allowed(e) {
        return refusal.to_string();
    }
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
        A::CertificateUnknown => "unknown certificate".to_owned(),
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

#[cfg(test)]
mod tests {
    //! Both sides of a refused peer handshake read why, in Go's words: a real rustls client
    //! (`connect`) and server (`accept_or_refusal`) over loopback TCP on a glommio executor,
    //! with certificates from rcgen.

    use super::*;
    use crate::transport::allowed::{AllowedClientVerifier, AllowedPeer};
    use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    use rustls::RootCertStore;
    use rustls::server::WebPkiClientVerifier;
    use rustls_pki_types::PrivateKeyDer;

    struct Ca {
        der: CertificateDer<'static>,
        issuer: Issuer<'static, KeyPair>,
    }

    type Leaf = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

    /// A CA named `name` (distinct names: webpki picks the issuer by name).
    fn ca(name: &str) -> Ca {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).expect("CA");
        Ca {
            der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    fn leaf(ca: &Ca) -> Leaf {
        named_leaf(ca, "member")
    }

    /// A certificate for 127.0.0.1 and localhost with common name `cn`.
    fn named_leaf(ca: &Ca, cn: &str) -> Leaf {
        let key = KeyPair::generate().expect("key");
        let sans = vec!["127.0.0.1".to_owned(), "localhost".to_owned()];
        let mut params = CertificateParams::new(sans).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let cert = params.signed_by(&key, &ca.issuer).expect("sign");
        let key = PrivateKeyDer::try_from(key.serialize_der()).expect("key der");
        (vec![cert.der().clone()], key)
    }

    fn roots(ca: &Ca) -> Arc<RootCertStore> {
        let mut roots = RootCertStore::empty();
        roots.add(ca.der.clone()).expect("root");
        Arc::new(roots)
    }

    fn provider() -> Arc<CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    /// A peer listener serving `leaf` and requiring client certificates from `client_ca`.
    fn server_config(leaf: Leaf, client_ca: &Ca) -> Arc<ServerConfig> {
        let verifier = WebPkiClientVerifier::builder_with_provider(roots(client_ca), provider())
            .build()
            .expect("verifier");
        server_config_with(leaf, verifier)
    }

    /// [`server_config`] that also applies `allowed` to client certificates.
    fn server_config_allowing(
        leaf: Leaf,
        client_ca: &Ca,
        allowed: AllowedPeer,
    ) -> Arc<ServerConfig> {
        let inner = WebPkiClientVerifier::builder_with_provider(roots(client_ca), provider())
            .build()
            .expect("verifier");
        server_config_with(leaf, Arc::new(AllowedClientVerifier { inner, allowed }))
    }

    fn server_config_with(
        leaf: Leaf,
        verifier: Arc<dyn rustls::server::danger::ClientCertVerifier>,
    ) -> Arc<ServerConfig> {
        let config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_client_cert_verifier(verifier)
            .with_single_cert(leaf.0, leaf.1)
            .expect("server config");
        Arc::new(config)
    }

    /// A dialling member presenting `leaf` and trusting `server_ca`.
    fn client_config(leaf: Leaf, server_ca: &Ca) -> Arc<ClientConfig> {
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots(server_ca))
            .with_client_auth_cert(leaf.0, leaf.1)
            .expect("client config");
        Arc::new(config)
    }

    /// Runs one exchange: the client dials and sends a byte, the server echoes it. Returns
    /// the client's error text (from the handshake or the first read) and the server's (with
    /// the refused certificate's SANs when it has them).
    fn exchange(server: Arc<ServerConfig>, client: Arc<ClientConfig>) -> (String, String) {
        glommio::LocalExecutorBuilder::default()
            .io_memory(1 << 20)
            .spawn(move || async move {
                let listener = glommio::net::TcpListener::bind("127.0.0.1:0").expect("bind");
                let addr = listener.local_addr().expect("addr");
                let served = glommio::spawn_local(async move {
                    let stream = listener.accept().await.expect("accept");
                    match accept_or_refusal(server, stream.buffered()).await {
                        Ok(mut tls) => {
                            let mut byte = [0u8; 1];
                            let _ = tls.read_exact(&mut byte).await;
                            let _ = tls.write_all(&byte).await;
                            let _ = tls.flush().await;
                            "accepted".to_owned()
                        }
                        Err(refusal) => format!("{}{}", refusal.error, refusal.certificate),
                    }
                });
                let tcp = glommio::net::TcpStream::connect(addr)
                    .await
                    .expect("connect");
                let client_text = match connect(client, "127.0.0.1", tcp).await {
                    Err(e) => dial_error_text(&e),
                    Ok(mut tls) => {
                        let mut byte = [0u8; 1];
                        let sent = tls.write_all(b"x").await.and(tls.flush().await);
                        match sent.and(tls.read_exact(&mut byte).await) {
                            Ok(()) => "echoed".to_owned(),
                            Err(e) => dial_error_text(&e),
                        }
                    }
                };
                (client_text, served.await)
            })
            .expect("executor")
            .join()
            .expect("executor result")
    }

    #[test]
    fn members_of_one_ca_talk() {
        let ca = ca("peer-ca");
        let got = exchange(server_config(leaf(&ca), &ca), client_config(leaf(&ca), &ca));
        assert_eq!(got, ("echoed".to_owned(), "accepted".to_owned()));
    }

    #[test]
    fn a_client_certificate_from_another_ca_is_refused_and_both_sides_say_why() {
        let (ca, other) = (ca("peer-ca"), ca("other-ca"));
        let got = exchange(
            server_config(leaf(&ca), &ca),
            client_config(leaf(&other), &ca),
        );
        let server = "tls: failed to verify client certificate: x509: certificate signed by \
                      unknown authority";
        let client = "remote error: tls: unknown certificate authority";
        assert_eq!(got, (client.to_owned(), server.to_owned()));
    }

    #[test]
    fn a_server_certificate_from_another_ca_is_refused_and_both_sides_say_why() {
        let (ca, other) = (ca("peer-ca"), ca("other-ca"));
        let got = exchange(
            server_config(leaf(&other), &ca),
            client_config(leaf(&ca), &ca),
        );
        let client = "x509: certificate signed by unknown authority";
        // The alert reaches the server (not a bare EOF) because `connect` buffers its writes.
        let server = "remote error: tls: unknown certificate authority";
        assert_eq!(got, (client.to_owned(), server.to_owned()));
    }

    #[test]
    fn a_common_name_other_than_the_allowed_one_is_refused_with_its_sans() {
        let ca = ca("peer-ca");
        let allowed = AllowedPeer::CommonName("member".to_owned());
        let server = server_config_allowing(leaf(&ca), &ca, allowed.clone());
        let got = exchange(server, client_config(named_leaf(&ca, "intruder"), &ca));
        let refused = "client certificate authentication failed, IPAddresses [\"127.0.0.1\"], \
                       DNSNames [\"localhost\"]";
        // rustls sends certificate_unknown for a refusal of its verifier's own; Go (etcd) sends
        // bad_certificate.
        let client = "remote error: tls: unknown certificate";
        assert_eq!(got, (client.to_owned(), refused.to_owned()));
        let server = server_config_allowing(leaf(&ca), &ca, allowed);
        let got = exchange(server, client_config(named_leaf(&ca, "member"), &ca));
        assert_eq!(got, ("echoed".to_owned(), "accepted".to_owned()));
    }

    #[test]
    fn a_certificate_not_valid_for_the_allowed_hostname_is_refused() {
        let ca = ca("peer-ca");
        for (host, accepted) in [("localhost", true), ("member-0.example", false)] {
            let allowed = AllowedPeer::Hostname(host.to_owned());
            let server = server_config_allowing(leaf(&ca), &ca, allowed);
            let (_, server_text) = exchange(server, client_config(leaf(&ca), &ca));
            assert_eq!(server_text == "accepted", accepted, "{host}: {server_text}");
        }
    }

    #[test]
    fn hosts_of_peer_urls() {
        assert_eq!(host_of("127.0.0.1:2380"), "127.0.0.1");
        assert_eq!(host_of("[::1]:2380"), "::1");
        assert_eq!(host_of("member-0.example:2380"), "member-0.example");
    }
}
