//! TLS on the client port, as etcd 3.4 serves it: a rustls `ServerConfig` built from
//! `--cert-file`/`--key-file`/`--trusted-ca-file`/`--client-cert-auth`/`--auto-tls`, the
//! handshake of one accepted connection (logging refusals with etcd's "rejected connection"
//! wording), and the client certificate's common name handed to request handlers.
//!
//! etcd's rules, measured against etcd 3.4.23:
//! - a client certificate is required and verified when `--trusted-ca-file` or
//!   `--client-cert-auth` is given, and not asked for otherwise;
//! - `--client-cert-auth` without `--trusted-ca-file` verifies against the system roots;
//! - `--auto-tls` without `--cert-file` writes a self-signed certificate and key into
//!   `<data-dir>/fixtures/client` (kept across restarts) for the listen hosts;
//! - an https listen URL without certificates, a missing file, a file without PEM data or a key
//!   that does not match the certificate stop the server before it serves.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use futures_lite::io::{AsyncBufRead, AsyncRead, AsyncWrite};
use futures_rustls::{LazyConfigAcceptor, server::TlsStream};
use ketch_config::{Config, TlsConfig};
use rustls::server::{Acceptor, WebPkiClientVerifier};
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// ALPN protocols offered, best first: gRPC needs h2; curl and browsers may ask for http/1.1.
const ALPN_PROTOCOLS: [&[u8]; 2] = [b"h2", b"http/1.1"];
/// How long a client may take to finish its handshake before the connection is dropped, so a
/// silent or slow client cannot hold a connection task forever.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Where Go (and so etcd) looks for the system roots on Linux, first found wins.
const SYSTEM_ROOT_FILES: [&str; 4] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/pki/tls/cacert.pem",
];
/// etcd's self-signed certificates last one year.
const AUTO_TLS_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);

/// The verified client certificate's subject common name, in the request's extensions
/// (`req.extensions().get::<ClientCertCn>()`; tonic handlers see it through
/// `tonic::Request::extensions`). Present only under `--client-cert-auth`, which is when etcd
/// takes the common name as the user name for auth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertCn(pub String);

/// The client port's TLS setup: the configuration shared by every https listener of every
/// shard, and whether handlers get the client's common name.
#[derive(Clone)]
pub struct ClientTls {
    pub config: Arc<ServerConfig>,
    pub cn_for_auth: bool,
}

/// Builds the client port's TLS setup from the flags, or `None` when no listen URL is https.
/// Every error here is a startup error, worded as etcd words it.
pub fn client_tls(config: &Config) -> anyhow::Result<Option<ClientTls>> {
    let tls = &config.client_tls;
    let https_urls: Vec<String> = config
        .listen_client_urls
        .iter()
        .filter(|u| u.is_tls())
        .map(ToString::to_string)
        .collect();
    if https_urls.is_empty() {
        warn_ignored_files(config);
        return Ok(None);
    }
    if !tls.is_enabled() {
        bail!(
            "TLS key/cert (--cert-file, --key-file) must be provided for client url {} with \
             HTTPS scheme",
            https_urls[0]
        );
    }
    let (cert_file, key_file) = cert_and_key_files(config)?;
    tracing::info!(
        "ClientTLS: cert = {}, key = {}, trusted-ca = {}, client-cert-auth = {}, crl-file = {}",
        cert_file.display(),
        key_file.display(),
        tls.trusted_ca_file,
        tls.client_cert_auth,
        tls.crl_file
    );
    if !tls.crl_file.is_empty() {
        tracing::warn!("--client-crl-file is not supported yet by ketch; ignored");
    }
    let server_config = server_config(tls, &cert_file, &key_file)?;
    Ok(Some(ClientTls {
        config: Arc::new(server_config),
        cn_for_auth: tls.client_cert_auth,
    }))
}

fn warn_ignored_files(config: &Config) {
    let tls = &config.client_tls;
    if !tls.cert_file.is_empty() || !tls.key_file.is_empty() {
        for url in &config.listen_client_urls {
            tracing::warn!(
                "The scheme of client url {url} is HTTP while peer key/cert files are presented. \
                 Ignored key/cert files."
            );
        }
    }
}

/// The certificate and key to serve: the given files, or under `--auto-tls` without them a
/// self-signed pair in `<data-dir>/fixtures/client`.
fn cert_and_key_files(config: &Config) -> anyhow::Result<(PathBuf, PathBuf)> {
    let tls = &config.client_tls;
    if tls.auto_tls && tls.cert_file.is_empty() && tls.key_file.is_empty() {
        let dir = config.data_dir.join("fixtures").join("client");
        let mut hosts: Vec<String> = config
            .listen_client_urls
            .iter()
            .map(|u| u.hostname().to_owned())
            .collect();
        hosts.sort();
        hosts.dedup();
        return self_signed_files(&dir, &hosts);
    }
    if tls.cert_file.is_empty() || tls.key_file.is_empty() {
        bail!(
            "KeyFile and CertFile must both be present[key: {}, cert: {}]",
            tls.key_file,
            tls.cert_file
        );
    }
    Ok((PathBuf::from(&tls.cert_file), PathBuf::from(&tls.key_file)))
}

/// The rustls configuration for the given files and client-certificate rules.
pub fn server_config(
    tls: &TlsConfig,
    cert_file: &Path,
    key_file: &Path,
) -> anyhow::Result<ServerConfig> {
    let certs = read_certs(cert_file, "certificate")?;
    let key = read_key(key_file)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = if tls.client_cert_auth || !tls.trusted_ca_file.is_empty() {
        let roots = Arc::new(client_roots(tls)?);
        let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider)
            .build()
            .context("building the client certificate verifier")?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => {
            anyhow::anyhow!("tls: private key does not match public key")
        }
        e => anyhow::anyhow!("tls: {e}"),
    })?;
    config.alpn_protocols = ALPN_PROTOCOLS.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// The CAs client certificates must chain to: `--trusted-ca-file`, else the system roots (as
/// Go verifies with a nil ClientCAs pool).
fn client_roots(tls: &TlsConfig) -> anyhow::Result<RootCertStore> {
    let file = if tls.trusted_ca_file.is_empty() {
        let found = SYSTEM_ROOT_FILES.iter().find(|f| Path::new(f).exists());
        PathBuf::from(found.context("--client-cert-auth without --trusted-ca-file needs the system roots, and none were found")?)
    } else {
        PathBuf::from(&tls.trusted_ca_file)
    };
    let mut roots = RootCertStore::empty();
    for cert in read_certs(&file, "CA certificate")? {
        roots
            .add(cert)
            .with_context(|| format!("adding a CA certificate from {}", file.display()))?;
    }
    Ok(roots)
}

fn read_certs(path: &Path, what: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let pem = read_file(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("tls: parsing {what} PEM in {}", path.display()))?;
    if certs.is_empty() {
        bail!(
            "tls: failed to find any PEM data in certificate input ({})",
            path.display()
        );
    }
    Ok(certs)
}

fn read_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    let pem = read_file(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|_| {
        anyhow::anyhow!(
            "tls: failed to find any PEM data in key input ({})",
            path.display()
        )
    })
}

/// Reads a file with Go's `open <path>: <reason>` wording on failure.
fn read_file(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| anyhow::anyhow!("open {}: {}", path.display(), os_reason(&e)))
}

/// The OS reason of an I/O error in Go's lower-case form ("no such file or directory").
fn os_reason(e: &io::Error) -> String {
    let text = e.to_string();
    let reason = text.split(" (os error").next().unwrap_or(&text);
    let mut chars = reason.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => reason.to_owned(),
    }
}

/// etcd's `transport.SelfCert`: an existing pair in `dir` is reused; otherwise a self-signed
/// ECDSA certificate (organisation "etcd", one year, the listen hosts as SANs, server auth)
/// and its key (mode 0600) are written there. ring cannot sign with P-521, which etcd uses,
/// so the key is P-256.
fn self_signed_files(dir: &Path, hosts: &[String]) -> anyhow::Result<(PathBuf, PathBuf)> {
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    if cert_path.exists() && key_path.exists() {
        return Ok((cert_path, key_path));
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let (cert_pem, key_pem) = self_signed_pem(hosts)?;
    write_private(&key_path, key_pem.as_bytes())?;
    std::fs::write(&cert_path, cert_pem)
        .with_context(|| format!("writing {}", cert_path.display()))?;
    tracing::info!(
        "generated a self-signed client certificate in {}",
        dir.display()
    );
    Ok((cert_path, key_path))
}

/// A self-signed certificate and key, both PEM, for `hosts` (IP addresses become IP SANs).
pub fn self_signed_pem(hosts: &[String]) -> anyhow::Result<(String, String)> {
    use rcgen::{
        CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair,
        KeyUsagePurpose,
    };
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).context("generating a key")?;
    let mut params = CertificateParams::new(hosts.to_vec()).context("certificate hosts")?;
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "etcd");
    params.distinguished_name = name;
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("clock before 1970")?;
    params.not_before = rcgen::date_time_ymd(1970, 1, 1) + since_epoch;
    params.not_after = params.not_before + AUTO_TLS_VALIDITY;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params
        .self_signed(&key)
        .context("self-signing a certificate")?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))
}

/// A finished server-side handshake and the client's common name when handlers get it.
pub struct Accepted<IO> {
    pub stream: TlsStream<IO>,
    pub client_cn: Option<ClientCertCn>,
}

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
    tls: &ClientTls,
    mut io: IO,
    remote: Option<SocketAddr>,
) -> Option<Accepted<IO>>
where
    IO: AsyncBufRead + AsyncWrite + Unpin,
{
    let mut server_name = String::new();
    let handshake = async {
        refuse_non_tls(&mut io).await?;
        let start = LazyConfigAcceptor::new(Acceptor::default(), io).await?;
        server_name = start.client_hello().server_name().unwrap_or("").to_owned();
        match start.into_stream(tls.config.clone()).into_fallible().await {
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
        Ok(stream) => {
            let client_cn = if tls.cn_for_auth {
                peer_common_name(&stream).map(ClientCertCn)
            } else {
                None
            };
            Some(Accepted { stream, client_cn })
        }
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

/// The subject common name of the client's (verified) end-entity certificate. Go keeps the
/// last CN attribute of the subject, so this does too.
fn peer_common_name<IO>(stream: &TlsStream<IO>) -> Option<String> {
    let certs = stream.get_ref().1.peer_certificates()?;
    let (_, cert) = x509_parser::parse_x509_certificate(certs.first()?).ok()?;
    cert.subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok())
        .last()
        .map(str::to_owned)
}

/// etcd's (Go crypto/tls) wording for the handshake failures clients meet most.
pub fn handshake_error_text(e: &io::Error) -> String {
    use rustls::{AlertDescription, CertificateError, Error as TlsError, InvalidMessage};
    let Some(tls) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<TlsError>())
    else {
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
        TlsError::AlertReceived(AlertDescription::BadCertificate) => {
            "remote error: tls: bad certificate".to_owned()
        }
        TlsError::AlertReceived(alert) => format!("remote error: tls: {alert:?}"),
        other => format!("tls: {other}"),
    }
}

/// The client service with the connection's client common name put into every request's
/// extensions, where auth finds it (see [`ClientCertCn`]).
#[derive(Clone)]
pub struct WithClientCn<S> {
    pub inner: S,
    pub cn: Option<ClientCertCn>,
}

impl<S, B> hyper::service::Service<http::Request<B>> for WithClientCn<S>
where
    S: hyper::service::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn call(&self, mut req: http::Request<B>) -> Self::Future {
        if let Some(cn) = &self.cn {
            req.extensions_mut().insert(cn.clone());
        }
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    //! The client's common name reaches requests: a real rustls client with a CA-signed
    //! certificate handshakes over loopback TCP with `accept` on a glommio executor.

    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    use std::io::Write;

    struct Pki {
        _dir: tempfile::TempDir,
        tls: TlsConfig,
        ca_der: CertificateDer<'static>,
        client_chain: Vec<CertificateDer<'static>>,
        client_key: PrivateKeyDer<'static>,
    }

    fn signed(
        cn: &str,
        sans: &[&str],
        issuer: &Issuer<'_, KeyPair>,
    ) -> (rcgen::Certificate, KeyPair) {
        let key = KeyPair::generate().expect("key");
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(sans).expect("params");
        params.distinguished_name.push(DnType::CommonName, cn);
        (params.signed_by(&key, issuer).expect("sign"), key)
    }

    fn pki(client_cert_auth: bool) -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca_key = KeyPair::generate().expect("ca key");
        let mut ca_params = CertificateParams::default();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).expect("ca");
        let issuer = Issuer::new(ca_params, ca_key);
        let (server, server_key) = signed("server", &["localhost"], &issuer);
        let (client, client_key) = signed("alice", &[], &issuer);
        let write = |name: &str, text: String| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).expect("write");
            path.to_string_lossy().into_owned()
        };
        let tls = TlsConfig {
            cert_file: write("server.pem", server.pem()),
            key_file: write("server-key.pem", server_key.serialize_pem()),
            trusted_ca_file: write("ca.pem", ca.pem()),
            client_cert_auth,
            ..TlsConfig::default()
        };
        Pki {
            _dir: dir,
            tls,
            ca_der: ca.der().clone(),
            client_chain: vec![client.der().clone()],
            client_key: PrivateKeyDer::try_from(client_key.serialize_der()).expect("key der"),
        }
    }

    /// Handshakes a blocking rustls client presenting the client certificate.
    fn client_handshake(pki: &Pki, addr: SocketAddr) {
        let mut roots = RootCertStore::empty();
        roots.add(pki.ca_der.clone()).expect("root");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_client_auth_cert(pki.client_chain.clone(), pki.client_key.clone_key())
            .expect("client config");
        let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
        let mut conn = rustls::ClientConnection::new(Arc::new(config), name).expect("conn");
        let mut sock = std::net::TcpStream::connect(addr).expect("connect");
        let mut stream = rustls::Stream::new(&mut conn, &mut sock);
        stream.write_all(b"hello").expect("handshake and write");
        stream.flush().expect("flush");
    }

    /// The common name `accept` hands to handlers for a client presenting the CA's "alice".
    fn accepted_cn(client_cert_auth: bool) -> Option<ClientCertCn> {
        let pki = pki(client_cert_auth);
        let config = server_config(
            &pki.tls,
            Path::new(&pki.tls.cert_file),
            Path::new(&pki.tls.key_file),
        )
        .expect("server config");
        let tls = ClientTls {
            config: Arc::new(config),
            cn_for_auth: client_cert_auth,
        };
        glommio::LocalExecutorBuilder::default()
            .io_memory(1 << 20)
            .spawn(move || async move {
                let listener = glommio::net::TcpListener::bind("127.0.0.1:0").expect("bind");
                let addr = listener.local_addr().expect("addr");
                let client = std::thread::spawn(move || client_handshake(&pki, addr));
                let stream = listener.accept().await.expect("accept");
                let accepted = accept(&tls, stream.buffered(), None).await;
                client.join().expect("client thread");
                accepted.expect("handshake accepted").client_cn
            })
            .expect("executor")
            .join()
            .expect("executor result")
    }

    #[test]
    fn client_cn_reaches_handlers_under_client_cert_auth() {
        assert_eq!(accepted_cn(true), Some(ClientCertCn("alice".to_owned())));
    }

    #[test]
    fn client_cn_is_withheld_without_client_cert_auth() {
        // --trusted-ca-file alone still verifies the certificate (as etcd does), but etcd only
        // takes the common name as the user under --client-cert-auth.
        assert_eq!(accepted_cn(false), None);
    }

    /// A handler that answers with the common name it finds in the request.
    struct EchoCn;

    impl hyper::service::Service<http::Request<()>> for EchoCn {
        type Response = Option<ClientCertCn>;
        type Error = std::convert::Infallible;
        type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

        fn call(&self, req: http::Request<()>) -> Self::Future {
            std::future::ready(Ok(req.extensions().get::<ClientCertCn>().cloned()))
        }
    }

    #[test]
    fn with_client_cn_puts_the_name_in_request_extensions() {
        use hyper::service::Service;
        let alice = Some(ClientCertCn("alice".to_owned()));
        for cn in [alice, None] {
            let service = WithClientCn {
                inner: EchoCn,
                cn: cn.clone(),
            };
            let got = futures_lite::future::block_on(service.call(http::Request::new(())));
            assert_eq!(got.expect("infallible"), cn);
        }
    }

    #[test]
    fn io_errors_read_like_go() {
        let e = io::Error::from(io::ErrorKind::NotFound);
        assert_eq!(os_reason(&e), "entity not found");
        let e = std::fs::read("/nonexistent/ketch").expect_err("missing file");
        assert_eq!(os_reason(&e), "no such file or directory");
    }
}
