//! `--cacert`, `--cert` and `--key` against a real etcd serving TLS with client-certificate
//! auth: certificates are generated here (a CA, a server certificate for 127.0.0.1, a client
//! certificate); the loadgen must run put and range over TLS, and must fail to connect with no
//! TLS flags or with the CA but no client certificate.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use ketch_loadgen::compare::{free_port, member_flags};
use ketch_loadgen::report::Summary;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};

mod common;

/// How long the TLS etcd may take to accept a put.
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// PEM files of a CA, a server certificate for 127.0.0.1 and a client certificate.
struct Pki {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

fn leaf(
    dir: &Path,
    name: &str,
    sans: &[&str],
    usage: ExtendedKeyUsagePurpose,
    issuer: &Issuer<'_, KeyPair>,
) -> (PathBuf, PathBuf) {
    let key = KeyPair::generate().unwrap();
    let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
    let mut params = CertificateParams::new(sans).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![usage];
    let cert = params.signed_by(&key, issuer).unwrap();
    let (c, k) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}-key.pem")),
    );
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c, k)
}

fn make_pki(dir: &Path) -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "loadgen test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, ca_cert.pem()).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let (server_cert, server_key) = leaf(
        dir,
        "server",
        &["127.0.0.1", "localhost"],
        ExtendedKeyUsagePurpose::ServerAuth,
        &issuer,
    );
    let (client_cert, client_key) = leaf(
        dir,
        "client",
        &[],
        ExtendedKeyUsagePurpose::ClientAuth,
        &issuer,
    );
    Pki {
        ca,
        server_cert,
        server_key,
        client_cert,
        client_key,
    }
}

/// A TLS etcd child, killed by PID on drop.
struct Etcd {
    child: Child,
    endpoint: String,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_tls_etcd(dir: &Path, pki: &Pki) -> Etcd {
    let client = free_port(&[]).unwrap();
    let peer = free_port(&[client]).unwrap();
    let cu = format!("https://127.0.0.1:{client}");
    let pu = format!("http://127.0.0.1:{peer}");
    let child = Command::new(common::etcd_bin())
        .args(member_flags("tls", &dir.join("data"), &cu, &pu))
        .arg("--cert-file")
        .arg(&pki.server_cert)
        .arg("--key-file")
        .arg(&pki.server_key)
        .arg("--trusted-ca-file")
        .arg(&pki.ca)
        .arg("--client-cert-auth")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("etcd.log")).unwrap())
        .spawn()
        .expect("starting etcd");
    Etcd {
        child,
        endpoint: format!("127.0.0.1:{client}"),
    }
}

fn loadgen(endpoint: &str, tls: &[&Path], args: &[&str]) -> Output {
    let flags = ["--cacert", "--cert", "--key"];
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ketch-loadgen"));
    cmd.args(["--endpoints", endpoint, "--dial-timeout", "2s", "--json"]);
    for (flag, path) in flags.iter().zip(tls) {
        cmd.arg(flag).arg(path);
    }
    cmd.args(args).output().expect("running ketch-loadgen")
}

/// Waits until the server takes a put over TLS (it needs an election first).
fn wait_ready(e: &Etcd, pki: &Pki) {
    let deadline = Instant::now() + READY_TIMEOUT;
    let tls = [&*pki.ca, &*pki.client_cert, &*pki.client_key];
    loop {
        let out = loadgen(&e.endpoint, &tls, &["--total", "1", "put"]);
        if out.status.success() {
            let s: Summary = serde_json::from_slice(&out.stdout).unwrap();
            if s.op("put").is_some_and(|p| p.errors == 0) {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "TLS etcd not ready: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn loadgen_speaks_tls_with_a_client_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = make_pki(tmp.path());
    let etcd = start_tls_etcd(tmp.path(), &pki);
    wait_ready(&etcd, &pki);
    let tls = [&*pki.ca, &*pki.client_cert, &*pki.client_key];

    let out = loadgen(
        &etcd.endpoint,
        &tls,
        &["--clients", "4", "--conns", "2", "--total", "200", "put"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s: Summary = serde_json::from_slice(&out.stdout).unwrap();
    let put = s.op("put").unwrap();
    assert_eq!((put.requests, put.errors), (200, 0));

    let https = format!("https://{}", etcd.endpoint);
    let out = loadgen(&https, &tls, &["--total", "50", "range", "a", "z"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s: Summary = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s.op("range").unwrap().requests, 50);

    // Plain HTTP/2 to a TLS port, and TLS without the client certificate the server requires:
    // both must fail to connect, not report a run.
    let plain = loadgen(&etcd.endpoint, &[], &["--total", "10", "put"]);
    assert!(
        !plain.status.success(),
        "plain dial to a TLS port succeeded"
    );
    let no_cert = loadgen(&etcd.endpoint, &[&pki.ca], &["--total", "10", "put"]);
    assert!(
        !no_cert.status.success(),
        "TLS without a client certificate succeeded"
    );
    let half = loadgen(&etcd.endpoint, &[&pki.ca, &pki.client_cert], &["put"]);
    let stderr = String::from_utf8_lossy(&half.stderr);
    assert!(!half.status.success() && stderr.contains("--cert and --key go together"));
}
