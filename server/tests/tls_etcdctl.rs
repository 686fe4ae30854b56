//! TLS on the client port, with etcd 3.4.23 as the oracle: certificates made with rcgen (a CA,
//! a server certificate for 127.0.0.1/localhost, a client certificate from that CA and one from
//! another CA), ketch and etcd started with the same TLS flags on mixed http/https listeners,
//! and real etcdctl 3.4 (and curl when installed) run against both: outputs, exit codes,
//! refusals and the servers' "rejected connection" log lines must match. Also `--auto-tls`,
//! and the startup errors for bad certificate flags.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{ServerProcess, free_port, ketch_bin, require_etcd};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

const ETCD: &str = "/usr/bin/etcd";
const ETCDCTL: &str = "/usr/bin/etcdctl";
const HEALTH_TIMEOUT: Duration = Duration::from_secs(20);
/// etcdctl gives up on a refused endpoint after its command timeout; short, so the refusal
/// cases take seconds, long enough for a debug ketch to answer the accepted ones.
const ETCDCTL_TIMEOUTS: [&str; 4] = ["--dial-timeout", "1s", "--command-timeout", "2s"];
/// A bad-flags server must have exited by then (etcd takes about a second to get there).
const STARTUP_FAILURE_TIMEOUT: Duration = Duration::from_secs(15);

/// PEM files for one test: CA, server pair, client pair from the CA, client pair from another CA.
struct Certs {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
    stranger_cert: PathBuf,
    stranger_key: PathBuf,
}

fn new_ca(name: &str) -> (rcgen::Certificate, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().expect("CA key");
    let mut params = CertificateParams::default();
    params.distinguished_name = common_name(name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let cert = params.self_signed(&key).expect("self-signing the CA");
    (cert, Issuer::new(params, key))
}

fn common_name(cn: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, cn);
    name
}

/// A leaf certificate and key signed by `issuer`, written as `<stem>.pem` and `<stem>-key.pem`.
fn leaf(
    dir: &Path,
    stem: &str,
    cn: &str,
    sans: &[&str],
    usages: Vec<ExtendedKeyUsagePurpose>,
    issuer: &Issuer<'_, KeyPair>,
) -> (PathBuf, PathBuf) {
    let key = KeyPair::generate().expect("leaf key");
    let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
    let mut params = CertificateParams::new(sans).expect("SANs");
    params.distinguished_name = common_name(cn);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = usages;
    let cert = params.signed_by(&key, issuer).expect("signing a leaf");
    (
        write(dir, &format!("{stem}.pem"), &cert.pem()),
        write(dir, &format!("{stem}-key.pem"), &key.serialize_pem()),
    )
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("writing a PEM file");
    path
}

fn make_certs(dir: &Path) -> Certs {
    use ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
    let (ca_cert, ca) = new_ca("ketch-test-ca");
    let (_, other_ca) = new_ca("some-other-ca");
    let sans = ["127.0.0.1", "localhost"];
    let (server_cert, server_key) = leaf(
        dir,
        "server",
        "server",
        &sans,
        vec![ServerAuth, ClientAuth],
        &ca,
    );
    let (client_cert, client_key) = leaf(dir, "alice", "alice", &[], vec![ClientAuth], &ca);
    let (stranger_cert, stranger_key) =
        leaf(dir, "mallory", "mallory", &[], vec![ClientAuth], &other_ca);
    Certs {
        ca: write(dir, "ca.pem", &ca_cert.pem()),
        server_cert,
        server_key,
        client_cert,
        client_key,
        stranger_cert,
        stranger_key,
    }
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// A one-member server listening on plain `http_port` and TLS `https_port`, advertising the
/// https URL; healthy on the http port before it returns.
fn start_mixed(bin: &Path, dir: &Path, https_port: u16, tls_flags: &[&str]) -> ServerProcess {
    let http_port = free_port();
    let listen = format!("http://127.0.0.1:{http_port},https://127.0.0.1:{https_port}");
    let advertise = format!("https://127.0.0.1:{https_port}");
    let mut extra = vec![
        "--listen-client-urls",
        &listen,
        "--advertise-client-urls",
        &advertise,
    ];
    extra.extend_from_slice(tls_flags);
    let mut server = ServerProcess::start_on(bin, dir, http_port, free_port(), &extra);
    server.wait_healthy(HEALTH_TIMEOUT);
    server
}

fn etcdctl(endpoint: &str, args: &[&str]) -> Output {
    Command::new(ETCDCTL)
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", endpoint])
        .args(ETCDCTL_TIMEOUTS)
        .args(args)
        .output()
        .expect("running etcdctl")
}

/// One transcript entry: the command's label, exit code, stdout, and the last stderr line
/// (etcdctl's `Error: ...`, or `endpoint health`'s verdict) with what differs by run masked.
fn entry(label: &str, out: &Output, masks: &[(String, &str)]) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().last().unwrap_or("");
    let text = format!(
        "## {label}\nexit {:?}\n{}{last}\n",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout)
    );
    mask(&text, masks)
}

fn mask(text: &str, masks: &[(String, &str)]) -> String {
    let mut text = text.to_owned();
    for (from, to) in masks {
        text = text.replace(from.as_str(), to);
    }
    let took = regex::Regex::new(r"took = [0-9.]+[µmn]?s").expect("regex");
    let id = regex::Regex::new(r"(?m)^[0-9a-f]{1,16}, ").expect("regex");
    let text = took.replace_all(&text, "took = <t>");
    id.replace_all(&text, "<member-id>, ").into_owned()
}

fn port_masks(server: &ServerProcess, https_port: u16) -> Vec<(String, &'static str)> {
    vec![
        (format!(":{https_port}"), ":<https>"),
        (format!(":{}", server.client_port), ":<http>"),
        (format!(":{}", server.peer_port), ":<peer>"),
    ]
}

/// etcdctl's (and curl's) TLS flags for a client that trusts `ca` and presents `cert`.
fn client_args<'a>(ca: &'a Path, cert: &'a Path, key: &'a Path) -> [&'a str; 6] {
    ["--cacert", s(ca), "--cert", s(cert), "--key", s(key)]
}

fn with<'a>(tls: &[&'a str], args: &[&'a str]) -> Vec<&'a str> {
    [tls, args].concat()
}

/// The client-cert-auth script: accepted commands with the CA's client certificate, then each
/// refusal etcd gives, and the http listener next to the https one.
fn client_cert_auth_transcript(server: &ServerProcess, https_port: u16, certs: &Certs) -> String {
    let https = format!("https://127.0.0.1:{https_port}");
    let http = format!("http://127.0.0.1:{}", server.client_port);
    let good = client_args(&certs.ca, &certs.client_cert, &certs.client_key);
    let stranger = client_args(&certs.ca, &certs.stranger_cert, &certs.stranger_key);
    let masks = port_masks(server, https_port);
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        ("put", https.clone(), with(&good, &["put", "foo", "bar"])),
        ("get", https.clone(), with(&good, &["get", "foo"])),
        (
            "endpoint health",
            https.clone(),
            with(&good, &["endpoint", "health"]),
        ),
        (
            "member list",
            https.clone(),
            with(&good, &["member", "list"]),
        ),
        (
            "no client cert",
            https.clone(),
            with(&["--cacert", s(&certs.ca)], &["get", "foo"]),
        ),
        (
            "client cert of another CA",
            https.clone(),
            with(&stranger, &["get", "foo"]),
        ),
        (
            "server cert not trusted",
            https.clone(),
            with(&[], &["get", "foo"]),
        ),
        (
            "plain http to the https port",
            format!("http://127.0.0.1:{https_port}"),
            with(&[], &["get", "foo"]),
        ),
        (
            "http listener, no cert",
            http.clone(),
            with(&[], &["get", "foo"]),
        ),
        (
            "https to the http listener",
            format!("https://127.0.0.1:{}", server.client_port),
            with(&good, &["get", "foo"]),
        ),
    ];
    cases
        .iter()
        .map(|(label, endpoint, args)| entry(label, &etcdctl(endpoint, args), &masks))
        .collect()
}

/// curl's exit code and body for `/health` over https (with and without a client
/// certificate) and over http to the https port; empty when curl is not installed.
fn curl_transcript(https_port: u16, certs: &Certs) -> String {
    if Command::new("curl").arg("--version").output().is_err() {
        eprintln!("curl not installed: the curl cases are skipped");
        return String::new();
    }
    let url = format!("https://127.0.0.1:{https_port}/health");
    let plain = format!("http://127.0.0.1:{https_port}/health");
    let cases: [(&str, Vec<&str>); 3] = [
        (
            "curl with client cert",
            with(
                &client_args(&certs.ca, &certs.client_cert, &certs.client_key),
                &[&url],
            ),
        ),
        (
            "curl without client cert",
            vec!["--cacert", s(&certs.ca), &url],
        ),
        ("curl http to the https port", vec![&plain]),
    ];
    cases
        .iter()
        .map(|(label, args)| {
            let out = Command::new("curl")
                .args(["-sS", "--max-time", "5"])
                .args(args)
                .output()
                .expect("running curl");
            format!(
                "## {label}\nexit {}\n{}\n",
                curl_exit(out.status.code()),
                String::from_utf8_lossy(&out.stdout)
            )
        })
        .collect()
}

/// curl's exit code, with 55 (send failed) and 56 (receive failed) as one: when the server
/// refuses the handshake with an alert, curl fails on whichever comes first. etcd gives either
/// (20 tries: 4 x 56, 16 x 55); ketch reads the client's request out before closing, so curl
/// always reads the alert (56, "alert certificate required").
fn curl_exit(code: Option<i32>) -> String {
    match code {
        Some(55 | 56) => "55|56 (alert)".to_owned(),
        other => format!("{other:?}"),
    }
}

fn tls_flags(certs: &Certs) -> Vec<&str> {
    vec![
        "--cert-file",
        s(&certs.server_cert),
        "--key-file",
        s(&certs.server_key),
        "--trusted-ca-file",
        s(&certs.ca),
        "--client-cert-auth",
    ]
}

/// Starts `bin` with client-cert-auth, runs the etcdctl and curl scripts, returns the
/// transcript and the server log.
fn run_client_cert_auth(bin: &Path, dir: &Path, certs: &Certs) -> (String, String) {
    let https_port = free_port();
    let mut server = start_mixed(bin, dir, https_port, &tls_flags(certs));
    let mut transcript = client_cert_auth_transcript(&server, https_port, certs);
    transcript += &curl_transcript(https_port, certs);
    server.kill9();
    let log = std::fs::read_to_string(&server.log).expect("server log");
    (transcript, mask(&log, &port_masks(&server, https_port)))
}

/// The server's "rejected connection" lines.
fn rejections(log: &str) -> String {
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("rejected connection"))
        .collect();
    lines.join("\n")
}

#[test]
fn etcdctl_with_client_certs_matches_etcd() {
    let etcd = require_etcd(ETCD).to_path_buf();
    let tmp = tempfile::tempdir().expect("tempdir");
    let certs = make_certs(tmp.path());
    let started = Instant::now();
    let ((ketch, ketch_log), (etcd, etcd_log)) = std::thread::scope(|scope| {
        let k = scope.spawn(|| run_client_cert_auth(&ketch_bin(), &tmp.path().join("k"), &certs));
        let e = scope.spawn(|| run_client_cert_auth(&etcd, &tmp.path().join("e"), &certs));
        (k.join().expect("ketch run"), e.join().expect("etcd run"))
    });
    println!(
        "ketch transcript:\n{ketch}\n(both runs took {:?})",
        started.elapsed()
    );
    assert_eq!(
        ketch, etcd,
        "ketch (left) and etcd (right) differ under TLS"
    );
    assert!(
        ketch.contains("## get\nexit Some(0)\nfoo\nbar\n"),
        "{ketch}"
    );
    assert!(
        ketch.contains("## no client cert\nexit Some(1)\nError: context deadline exceeded"),
        "{ketch}"
    );
    for reason in [
        "tls: client didn't provide a certificate",
        "tls: failed to verify client certificate: x509: certificate signed by unknown authority",
        "tls: first record does not look like a TLS handshake",
        "remote error: tls: bad certificate",
    ] {
        let line = format!("(error \"{reason}");
        let (etcd_seen, ketch_seen) = (rejections(&etcd_log), rejections(&ketch_log));
        assert!(
            etcd_seen.contains(&line),
            "etcd never logged {reason}:\n{etcd_seen}"
        );
        assert!(
            ketch_seen.contains(&line),
            "ketch never logged {reason}:\n{ketch_seen}"
        );
    }
    for line in [
        "rejected connection from \"127.0.0.1:",
        "serving client requests on 127.0.0.1:<https>",
        "serving insecure client requests on 127.0.0.1:<http>, this is strongly discouraged!",
    ] {
        assert!(etcd_log.contains(line), "etcd never logged {line}");
        assert!(ketch_log.contains(line), "ketch never logged {line}");
    }
}

/// Starts `bin` with `--auto-tls`, runs put/get with verification skipped and one get that
/// verifies, and returns the transcript and the generated files' permissions.
fn run_auto_tls(bin: &Path, dir: &Path) -> (String, u32) {
    let https_port = free_port();
    let mut server = start_mixed(bin, dir, https_port, &["--auto-tls"]);
    let https = format!("https://127.0.0.1:{https_port}");
    let skip = ["--insecure-transport=false", "--insecure-skip-tls-verify"];
    let masks = port_masks(&server, https_port);
    let cases: [(&str, Vec<&str>); 3] = [
        (
            "put, verification skipped",
            [&skip[..], &["put", "k", "v"]].concat(),
        ),
        (
            "get, verification skipped",
            [&skip[..], &["get", "k"]].concat(),
        ),
        ("get, verified", vec!["get", "k"]),
    ];
    let transcript = cases
        .iter()
        .map(|(label, args)| entry(label, &etcdctl(&https, args), &masks))
        .collect();
    server.kill9();
    let key = dir.join("fixtures/client/key.pem");
    let cert = dir.join("fixtures/client/cert.pem");
    assert!(cert.exists(), "{} missing", cert.display());
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&key)
            .expect("generated key")
            .permissions(),
    );
    (transcript, mode & 0o777)
}

#[test]
fn auto_tls_matches_etcd() {
    let etcd = require_etcd(ETCD).to_path_buf();
    let tmp = tempfile::tempdir().expect("tempdir");
    let (ketch, etcd) = std::thread::scope(|scope| {
        let k = scope.spawn(|| run_auto_tls(&ketch_bin(), &tmp.path().join("k")));
        let e = scope.spawn(|| run_auto_tls(&etcd, &tmp.path().join("e")));
        (k.join().expect("ketch run"), e.join().expect("etcd run"))
    });
    println!("ketch transcript:\n{}", ketch.0);
    assert_eq!(
        ketch, etcd,
        "ketch (left) and etcd (right) differ under --auto-tls"
    );
    assert!(
        ketch
            .0
            .contains("## get, verification skipped\nexit Some(0)\nk\nv\n")
    );
    assert!(ketch.0.contains("## get, verified\nexit Some(1)\n"));
    assert_eq!(ketch.1, 0o600, "the generated key must be private");
}

/// Starts `bin` with bad TLS flags and returns its exit code and log; the server must exit on
/// its own.
fn failed_start(bin: &Path, dir: &Path, flags: &[&str]) -> (Option<i32>, String) {
    let mut server = ServerProcess::start(bin, dir, flags);
    let deadline = Instant::now() + STARTUP_FAILURE_TIMEOUT;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = server.child.try_wait() {
            let log = std::fs::read_to_string(&server.log).expect("server log");
            return (status.code(), log);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!(
        "{} kept running with {flags:?}:\n{}",
        bin.display(),
        server.log_tail()
    );
}

#[test]
fn bad_tls_flags_stop_startup_like_etcd() {
    let etcd = require_etcd(ETCD).to_path_buf();
    let tmp = tempfile::tempdir().expect("tempdir");
    let certs = make_certs(tmp.path());
    let not_pem = write(tmp.path(), "not-pem.txt", "hello\n");
    let missing = tmp.path().join("missing.pem");
    let https = "https://127.0.0.1:1";
    let listen = |port: u16| format!("https://127.0.0.1:{port}");
    let cases: Vec<(Vec<String>, String)> = vec![
        (
            vec![],
            format!(
                "TLS key/cert (--cert-file, --key-file) must be provided for client url {https} with HTTPS scheme"
            ),
        ),
        (
            vec![
                "--cert-file".into(),
                s(&missing).into(),
                "--key-file".into(),
                s(&certs.server_key).into(),
            ],
            format!("open {}: no such file or directory", s(&missing)),
        ),
        (
            vec![
                "--cert-file".into(),
                s(&certs.server_cert).into(),
                "--key-file".into(),
                s(&certs.client_key).into(),
            ],
            "tls: private key does not match public key".into(),
        ),
        (
            vec![
                "--cert-file".into(),
                s(&not_pem).into(),
                "--key-file".into(),
                s(&certs.server_key).into(),
            ],
            "tls: failed to find any PEM data in certificate input".into(),
        ),
        (
            vec!["--cert-file".into(), s(&certs.server_cert).into()],
            format!(
                "KeyFile and CertFile must both be present[key: , cert: {}]",
                s(&certs.server_cert)
            ),
        ),
    ];
    std::thread::scope(|scope| {
        for (i, (flags, message)) in cases.iter().enumerate() {
            for (name, bin) in [("ketch", ketch_bin()), ("etcd", etcd.clone())] {
                let dir = tmp.path().join(format!("{name}-{i}"));
                scope.spawn(move || {
                    let port = free_port();
                    let url = listen(port);
                    let mut all = vec![
                        "--listen-client-urls",
                        &url,
                        "--advertise-client-urls",
                        &url,
                    ];
                    all.extend(flags.iter().map(String::as_str));
                    let (code, log) = failed_start(&bin, &dir, &all);
                    let log = log.replace(&format!(":{port}"), ":1");
                    assert_eq!(code, Some(1), "{name} {flags:?}:\n{log}");
                    assert!(
                        log.contains(message.as_str()),
                        "{name} {flags:?} did not say {message}:\n{log}"
                    );
                    assert!(
                        !log.contains("serving client requests"),
                        "{name} served with {flags:?}"
                    );
                });
            }
        }
    });
}
