//! Client certificates as identities (`--client-cert-auth` with auth on), etcd 3.4.23 as the
//! oracle: certificates with common names `root`, `alice` (a user with a prefix role) and
//! `ghost` (no such user) from a test CA (rcgen); the same etcdctl commands over https with
//! each certificate, with a token besides (the token wins), and without any credential over
//! the plain listener, must print the same and exit alike on ketch and on etcd.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

mod auth_support;

use auth_support::{BASE_SETUP, FAST_BCRYPT, etcdctl, run_all};
use common::{ServerProcess, free_port, same_transcript_as_etcd};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair,
};

/// The common names of the client certificates made for the test.
const CLIENT_NAMES: [&str; 3] = ["root", "alice", "ghost"];

/// Writes `<name>.pem` and `<name>-key.pem` for a certificate with common name `name`,
/// signed by `ca`, usable for `usages`.
fn leaf(
    dir: &Path,
    name: &str,
    sans: &[&str],
    usages: Vec<ExtendedKeyUsagePurpose>,
    ca: &Issuer<'_, KeyPair>,
) {
    let key = KeyPair::generate().expect("key");
    let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
    let mut params = CertificateParams::new(sans).expect("SANs");
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    params.extended_key_usages = usages;
    let cert = params.signed_by(&key, ca).expect("signing");
    std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).expect("writing a cert");
    std::fs::write(dir.join(format!("{name}-key.pem")), key.serialize_pem()).expect("key");
}

/// A CA (`ca.pem`), a server certificate for 127.0.0.1 (`server.pem`) and one client
/// certificate per name in `CLIENT_NAMES`.
fn make_certs(dir: &Path) {
    use ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut params = CertificateParams::default();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = params.self_signed(&ca_key).expect("self-signing");
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).expect("writing the CA");
    let ca = Issuer::new(params, ca_key);
    leaf(
        dir,
        "server",
        &["127.0.0.1"],
        vec![ServerAuth, ClientAuth],
        &ca,
    );
    for name in CLIENT_NAMES {
        leaf(dir, name, &[], vec![ClientAuth], &ca);
    }
}

fn path_str(p: PathBuf) -> String {
    p.to_str().expect("utf-8 path").to_string()
}

fn transcript(bin: &Path, dir: &Path, certs: &Path) -> String {
    let (http_port, https_port) = (free_port(), free_port());
    let listen = format!("http://127.0.0.1:{http_port},https://127.0.0.1:{https_port}");
    let advertise = format!("https://127.0.0.1:{https_port}");
    let cert = |n: &str| path_str(certs.join(format!("{n}.pem")));
    let key = |n: &str| path_str(certs.join(format!("{n}-key.pem")));
    let (server_cert, server_key, ca) = (cert("server"), key("server"), cert("ca"));
    let flags = [
        "--listen-client-urls",
        &listen,
        "--advertise-client-urls",
        &advertise,
        "--cert-file",
        &server_cert,
        "--key-file",
        &server_key,
        "--trusted-ca-file",
        &ca,
        "--client-cert-auth",
        FAST_BCRYPT[0],
        FAST_BCRYPT[1],
    ];
    let mut server = ServerProcess::start_on(bin, dir, http_port, free_port(), &flags);
    server.wait_healthy(Duration::from_secs(20));
    let http = format!("127.0.0.1:{http_port}");
    let https = format!("https://127.0.0.1:{https_port}");
    let extra: &[&[&str]] = &[
        &["put", "secret", "s"],
        &["auth", "enable"],
        &["get", "secret"],
    ];
    let mut t = run_all(&http, BASE_SETUP) + &run_all(&http, extra);
    let as_cn = |name: &str, rest: &[&str]| -> String {
        let (cert, key) = (cert(name), key(name));
        let tls = ["--cacert", ca.as_str(), "--cert", &cert, "--key", &key];
        etcdctl(&https, &[&tls[..], rest].concat(), None)
    };
    for name in CLIENT_NAMES {
        t += &format!("## as CN {name}\n");
        t += &as_cn(name, &["get", "secret"]);
        t += &as_cn(name, &["put", "app/x", name]);
        t += &as_cn(name, &["user", "list"]);
    }
    t += "## CN alice with root's password: the token wins\n";
    t += &as_cn("alice", &["--user", "root:rootpw", "get", "secret"]);
    t += "## CN root with alice's password\n";
    t += &as_cn("root", &["--user", "alice:alicepw", "get", "secret"]);
    server.kill9();
    t
}

#[test]
fn client_certificate_names_are_users_as_in_etcd() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let certs = tmp.path().join("certs");
    std::fs::create_dir(&certs).expect("certs dir");
    make_certs(&certs);
    let ketch = same_transcript_as_etcd(tmp.path(), |bin, dir| transcript(bin, dir, &certs));
    for expected in [
        "Error: etcdserver: permission denied",
        "Error: etcdserver: user name not found",
        "Error: etcdserver: user name is empty",
        "secret\ns\n",
    ] {
        assert!(
            ketch.contains(expected),
            "missing {expected:?} in:\n{ketch}"
        );
    }
}
