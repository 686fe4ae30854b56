//! etcd's `--peer-cert-allowed-cn` / `--peer-cert-allowed-hostname`: once a peer's certificate
//! chain has verified, the certificate must also carry the allowed common name, or be valid for
//! the allowed host name (Go's `VerifyPeerCertificate`, which etcd 3.4 sets on the server and
//! the client side alike). Verifier wrappers for both sides, and the refusal with the
//! certificate's SANs, which etcd logs with its "rejected connection" line.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, OtherError};
use rustls::{Error as TlsError, SignatureScheme};

/// What a peer's certificate must show besides a verified chain (one of the two, as etcd
/// refuses both together).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedPeer {
    /// The subject's common name equals this.
    CommonName(String),
    /// The certificate is valid for this host (DNS SAN, or IP SAN for an address).
    Hostname(String),
}

/// A verified certificate that `AllowedPeer` refused. Its text is etcd's; the SANs are what
/// etcd logs after the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("client certificate authentication failed")]
pub struct NotAllowed {
    pub ip_addresses: Vec<String>,
    pub dns_names: Vec<String>,
}

impl AllowedPeer {
    /// Checks a certificate whose chain has verified.
    pub fn check(&self, end_entity: &CertificateDer<'_>) -> Result<(), TlsError> {
        let allowed = match self {
            AllowedPeer::CommonName(cn) => common_name(end_entity).as_deref() == Some(cn),
            AllowedPeer::Hostname(host) => valid_for_host(end_entity, host),
        };
        if allowed {
            return Ok(());
        }
        let refusal = sans(end_entity);
        Err(TlsError::InvalidCertificate(CertificateError::Other(
            OtherError(Arc::new(refusal)),
        )))
    }
}

fn valid_for_host(end_entity: &CertificateDer<'_>, host: &str) -> bool {
    let Ok(name) = ServerName::try_from(host) else {
        return false;
    };
    let Ok(cert) = rustls::server::ParsedCertificate::try_from(end_entity) else {
        return false;
    };
    rustls::client::verify_server_name(&cert, &name).is_ok()
}

/// The subject's common name (the last CN attribute, as Go's `pkix.Name` keeps it).
pub fn common_name(der: &CertificateDer<'_>) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    cert.subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok())
        .last()
        .map(str::to_owned)
}

/// The certificate's IP and DNS SANs, as etcd logs them.
fn sans(der: &CertificateDer<'_>) -> NotAllowed {
    use x509_parser::extensions::GeneralName;
    let mut out = NotAllowed {
        ip_addresses: Vec::new(),
        dns_names: Vec::new(),
    };
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return out;
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return out;
    };
    for name in &san.value.general_names {
        match name {
            GeneralName::DNSName(d) => out.dns_names.push((*d).to_owned()),
            GeneralName::IPAddress(bytes) => {
                if let Some(ip) = ip_text(bytes) {
                    out.ip_addresses.push(ip);
                }
            }
            _ => {}
        }
    }
    out
}

fn ip_text(bytes: &[u8]) -> Option<String> {
    let ip = match bytes.len() {
        4 => std::net::IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?),
        16 => std::net::IpAddr::from(<[u8; 16]>::try_from(bytes).ok()?),
        _ => return None,
    };
    Some(ip.to_string())
}

/// The handshake-signature checks of a verifier wrapper: its `inner` verifier's, unchanged
/// (only the certificate itself gets the extra check).
macro_rules! delegate_signature_checks {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, TlsError> {
            self.inner.verify_tls12_signature(message, cert, dss)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, TlsError> {
            self.inner.verify_tls13_signature(message, cert, dss)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.inner.supported_verify_schemes()
        }
    };
}

/// A client-certificate verifier that also applies [`AllowedPeer`].
#[derive(Debug)]
pub struct AllowedClientVerifier {
    pub inner: Arc<dyn ClientCertVerifier>,
    pub allowed: AllowedPeer,
}

impl ClientCertVerifier for AllowedClientVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, TlsError> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        self.allowed.check(end_entity)?;
        Ok(verified)
    }

    delegate_signature_checks!();
}

/// A server-certificate verifier that also applies [`AllowedPeer`] (etcd's peer client checks
/// the member it dials the same way).
#[derive(Debug)]
pub struct AllowedServerVerifier {
    pub inner: Arc<dyn ServerCertVerifier>,
    pub allowed: AllowedPeer,
}

impl ServerCertVerifier for AllowedServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        let verified = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        self.allowed.check(end_entity)?;
        Ok(verified)
    }

    delegate_signature_checks!();
}
