//! Test certificates made at test time with rcgen: a CA that issues leaf certificates (PEM
//! files with their keys) for servers, clients and cluster members.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

/// A certificate authority: its certificate (PEM) and what signs with its key.
pub struct TestCa {
    pub pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A leaf's certificate and key files.
pub struct LeafFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestCa {
    /// A self-signed CA named `cn`.
    pub fn new(cn: &str) -> TestCa {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::default();
        params.distinguished_name = name(cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).expect("self-signing the CA");
        TestCa {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// Writes the CA certificate to `dir/<file>` and returns its path.
    pub fn write(&self, dir: &Path, file: &str) -> PathBuf {
        write_file(dir, file, &self.pem)
    }

    /// A cluster member's certificate: `cn`, the SANs given (IPs become IP SANs), usable as
    /// both server and client certificate (a member dials its peers with it too), written as
    /// `<stem>.pem` and `<stem>-key.pem` in `dir`.
    pub fn issue_member(&self, dir: &Path, stem: &str, cn: &str, sans: &[&str]) -> LeafFiles {
        use ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
        let key = KeyPair::generate().expect("leaf key");
        let mut params =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("SANs");
        params.distinguished_name = name(cn);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ServerAuth, ClientAuth];
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("signing a leaf");
        LeafFiles {
            cert: write_file(dir, &format!("{stem}.pem"), &cert.pem()),
            key: write_file(dir, &format!("{stem}-key.pem"), &key.serialize_pem()),
        }
    }
}

fn name(cn: &str) -> DistinguishedName {
    let mut n = DistinguishedName::new();
    n.push(DnType::CommonName, cn);
    n
}

fn write_file(dir: &Path, file: &str, text: &str) -> PathBuf {
    let path = dir.join(file);
    std::fs::write(&path, text).expect("writing a PEM file");
    path
}
