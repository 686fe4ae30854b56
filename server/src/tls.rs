//! TLS as etcd 3.4 serves it. On the client port: a rustls `ServerConfig` built from
//! `--cert-file`/`--key-file`/`--trusted-ca-file`/`--client-cert-auth`/`--auto-tls`, the
//! handshake of one accepted connection (logging refusals with etcd's "rejected connection"
//! wording; the handshake itself is shared with the peer port, in
//! `ketch_raft::transport::tls`), and the client certificate's common name handed to request
//! handlers. On the peer port: the same server rules from the `--peer-*` flags, plus the
//! `ClientConfig` a member dials its peers with (it presents the peer certificate and verifies
//! theirs against `--peer-trusted-ca-file`; under `--peer-auto-tls` it verifies nothing).
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
use futures_lite::io::{AsyncBufRead, AsyncWrite};
use futures_rustls::server::TlsStream;
use ketch_config::{Config, EtcdUrl, TlsConfig};
use ketch_raft::transport::allowed::AllowedPeer;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// ALPN protocols offered, best first: gRPC needs h2; curl and browsers may ask for http/1.1.
const ALPN_PROTOCOLS: [&[u8]; 2] = [b"h2", b"http/1.1"];
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
    let (cert_file, key_file) = cert_and_key_files(
        tls,
        &config.data_dir,
        &config.listen_client_urls,
        Side::Client,
    )?;
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

/// Which port a TLS setup is for: names the auto-tls fixtures directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Client,
    Peer,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Peer => "peer",
        }
    }
}

/// The certificate and key to serve: the given files, or under auto-tls without them a
/// self-signed pair in `<data-dir>/fixtures/<client|peer>` for the hosts of `urls`.
fn cert_and_key_files(
    tls: &TlsConfig,
    data_dir: &Path,
    urls: &[EtcdUrl],
    side: Side,
) -> anyhow::Result<(PathBuf, PathBuf)> {
    if tls.auto_tls && tls.cert_file.is_empty() && tls.key_file.is_empty() {
        let dir = data_dir.join("fixtures").join(side.name());
        let mut hosts: Vec<String> = urls.iter().map(|u| u.hostname().to_owned()).collect();
        hosts.sort();
        hosts.dedup();
        return self_signed_files(&dir, &hosts, side);
    }
    if tls.auto_tls {
        tracing::warn!("ignoring {} auto TLS since certs given", side.name());
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

/// The peer port's TLS setup (`--peer-*` flags): what https peer listeners serve, and what
/// this member dials https peers with (raft, forwarding, the join's `/members` fetch).
pub struct PeerTls {
    /// `None` when every `--listen-peer-urls` is http.
    pub server: Option<Arc<ServerConfig>>,
    /// `None` without any peer TLS flag: then https peers cannot be dialled.
    pub client: Option<Arc<ClientConfig>>,
}

/// Builds the peer TLS setup from the flags, with etcd's rules and wording: an https peer
/// listener needs a certificate (or `--peer-auto-tls`); certificate files next to only http
/// listeners are ignored for serving (with etcd's warning) but still used to dial peers.
pub fn peer_tls(config: &Config) -> anyhow::Result<PeerTls> {
    let tls = &config.peer_tls;
    let allowed = allowed_peer(tls)?;
    let https = config.listen_peer_urls.iter().find(|u| u.is_tls());
    let dials_with_tls = tls.is_enabled() || !tls.trusted_ca_file.is_empty();
    if https.is_none() && !dials_with_tls {
        return Ok(PeerTls {
            server: None,
            client: None,
        });
    }
    if let Some(url) = https {
        if !tls.is_enabled() {
            bail!(
                "cannot listen on TLS for {}: KeyFile and CertFile are not presented",
                url.host_port()
            );
        }
    } else if !tls.cert_file.is_empty() || !tls.key_file.is_empty() {
        for url in &config.listen_peer_urls {
            tracing::warn!(
                "The scheme of peer url {url} is HTTP while peer key/cert files are presented. \
                 Ignored peer key/cert files."
            );
        }
    }
    let files = if tls.is_enabled() {
        let files =
            cert_and_key_files(tls, &config.data_dir, &config.listen_peer_urls, Side::Peer)?;
        Some(files)
    } else {
        None
    };
    log_peer_tls(tls, files.as_ref());
    if !tls.crl_file.is_empty() {
        tracing::warn!("--peer-crl-file is not supported yet by ketch; ignored");
    }
    let server = match (&files, https) {
        (Some((cert, key)), Some(_)) => Some(Arc::new(server_config_allowing(
            tls,
            cert,
            key,
            allowed.as_ref(),
        )?)),
        _ => None,
    };
    let self_signed = tls.auto_tls && tls.cert_file.is_empty();
    let client = peer_client_config(tls, files.as_ref(), self_signed, allowed)?;
    Ok(PeerTls {
        server,
        client: Some(Arc::new(client)),
    })
}

/// `--peer-cert-allowed-cn` or `--peer-cert-allowed-hostname` (not both, as etcd).
fn allowed_peer(tls: &TlsConfig) -> anyhow::Result<Option<AllowedPeer>> {
    match (tls.allowed_cn.as_str(), tls.allowed_hostname.as_str()) {
        ("", "") => Ok(None),
        (cn, "") => Ok(Some(AllowedPeer::CommonName(cn.to_owned()))),
        ("", host) => Ok(Some(AllowedPeer::Hostname(host.to_owned()))),
        (cn, host) => bail!(
            "AllowedCN and AllowedHostname are mutually exclusive (cn={cn:?}, hostname={host:?})"
        ),
    }
}

fn log_peer_tls(tls: &TlsConfig, files: Option<&(PathBuf, PathBuf)>) {
    let (cert, key) = files
        .map(|(c, k)| (c.display().to_string(), k.display().to_string()))
        .unwrap_or_default();
    tracing::info!(
        "peerTLS: cert = {cert}, key = {key}, trusted-ca = {}, client-cert-auth = {}, crl-file = {}",
        tls.trusted_ca_file,
        tls.client_cert_auth,
        tls.crl_file
    );
}

/// How this member dials https peers: it presents its peer certificate (when it has one) and
/// verifies the peer's against `--peer-trusted-ca-file` (else the system roots, as Go does),
/// or, for a self-signed `--peer-auto-tls` setup, not at all (etcd sets InsecureSkipVerify for
/// self-signed certificates).
fn peer_client_config(
    tls: &TlsConfig,
    files: Option<&(PathBuf, PathBuf)>,
    self_signed: bool,
    allowed: Option<AllowedPeer>,
) -> anyhow::Result<ClientConfig> {
    use ketch_raft::transport::allowed::AllowedServerVerifier;
    use ketch_raft::transport::tls::AcceptAnyServerCert;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = match (self_signed, allowed) {
        (true, _) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyServerCert::new(provider))),
        (false, None) => builder.with_root_certificates(trusted_roots(tls)?),
        (false, Some(allowed)) => {
            let roots = Arc::new(trusted_roots(tls)?);
            let inner =
                rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider)
                    .build()
                    .context("building the server certificate verifier")?;
            let verifier = AllowedServerVerifier { inner, allowed };
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
        }
    };
    match files {
        Some((cert, key)) => {
            let certs = read_certs(cert, "certificate")?;
            builder
                .with_client_auth_cert(certs, read_key(key)?)
                .map_err(tls_config_error)
        }
        None => Ok(builder.with_no_client_auth()),
    }
}

/// rustls' configuration errors in Go's words where etcd shows them.
fn tls_config_error(e: rustls::Error) -> anyhow::Error {
    match e {
        rustls::Error::InconsistentKeys(_) => {
            anyhow::anyhow!("tls: private key does not match public key")
        }
        e => anyhow::anyhow!("tls: {e}"),
    }
}

/// The rustls configuration for the given files and client-certificate rules.
pub fn server_config(
    tls: &TlsConfig,
    cert_file: &Path,
    key_file: &Path,
) -> anyhow::Result<ServerConfig> {
    server_config_allowing(tls, cert_file, key_file, None)
}

/// [`server_config`], refusing verified client certificates that `allowed` does not accept.
fn server_config_allowing(
    tls: &TlsConfig,
    cert_file: &Path,
    key_file: &Path,
    allowed: Option<&AllowedPeer>,
) -> anyhow::Result<ServerConfig> {
    use ketch_raft::transport::allowed::AllowedClientVerifier;
    let certs = read_certs(cert_file, "certificate")?;
    let key = read_key(key_file)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = if tls.client_cert_auth || !tls.trusted_ca_file.is_empty() {
        let roots = Arc::new(trusted_roots(tls)?);
        let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider)
            .build()
            .context("building the client certificate verifier")?;
        match allowed {
            None => builder.with_client_cert_verifier(verifier),
            Some(allowed) => builder.with_client_cert_verifier(Arc::new(AllowedClientVerifier {
                inner: verifier,
                allowed: allowed.clone(),
            })),
        }
    } else {
        builder.with_no_client_auth()
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(tls_config_error)?;
    config.alpn_protocols = ALPN_PROTOCOLS.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// The CAs the other side's certificate must chain to: `--trusted-ca-file`, else the system
/// roots (as Go verifies with a nil ClientCAs or RootCAs pool).
fn trusted_roots(tls: &TlsConfig) -> anyhow::Result<RootCertStore> {
    let file = if tls.trusted_ca_file.is_empty() {
        let found = SYSTEM_ROOT_FILES.iter().find(|f| Path::new(f).exists());
        PathBuf::from(found.context(
            "verifying certificates without a trusted CA file needs the system roots, and none \
             were found",
        )?)
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
fn self_signed_files(
    dir: &Path,
    hosts: &[String],
    side: Side,
) -> anyhow::Result<(PathBuf, PathBuf)> {
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
        "generated a self-signed {} certificate in {}",
        side.name(),
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

/// Runs the server side of the handshake on an accepted connection. A refusal is logged like
/// etcd's "rejected connection" line and returned as `None` (see
/// `ketch_raft::transport::tls::accept`).
pub async fn accept<IO>(tls: &ClientTls, io: IO, remote: Option<SocketAddr>) -> Option<Accepted<IO>>
where
    IO: AsyncBufRead + AsyncWrite + Unpin,
{
    let stream = ketch_raft::transport::tls::accept(tls.config.clone(), io, remote).await?;
    let client_cn = if tls.cn_for_auth {
        peer_common_name(&stream).map(ClientCertCn)
    } else {
        None
    };
    Some(Accepted { stream, client_cn })
}

/// The subject common name of the client's (verified) end-entity certificate. Go keeps the
/// last CN attribute of the subject, so this does too.
fn peer_common_name<IO>(stream: &TlsStream<IO>) -> Option<String> {
    let certs = stream.get_ref().1.peer_certificates()?;
    ketch_raft::transport::allowed::common_name(certs.first()?)
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
