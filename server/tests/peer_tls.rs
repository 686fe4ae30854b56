//! TLS on the peer port, end to end with real processes: a CA and member certificates made
//! with rcgen at test time; a three-member ketch cluster with https peer URLs and
//! `--peer-client-cert-auth` takes a write through one member that real etcdctl then reads
//! linearizably from the others; raw connects show the peer port refuses plaintext and TLS
//! clients without a certificate (with etcd's "rejected connection" lines) and serves a member
//! certificate; a fourth member added with `member add` and a certificate from the CA joins
//! over TLS and serves the data, a fifth holding a certificate from another CA cannot join (it
//! exits with etcd's error, stays `unstarted`, the running members log the refused
//! handshakes) while the cluster keeps serving. Also the startup errors for https peer
//! URLs without certificates, for http/https mixed in one member's URLs and for both
//! `--peer-cert-allowed-*` flags, compared with etcd 3.4.23 started with the same flags.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::pki::{LeafFiles, TestCa};
use common::{Member, ServerProcess, free_port, ketch_bin, require_etcd};

const ETCD: &str = "/usr/bin/etcd";
const ETCDCTL: &str = "/usr/bin/etcdctl";
const HEALTH_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a server may take to write an expected log line, or a failing one to exit.
const LOG_TIMEOUT: Duration = Duration::from_secs(10);
const EXIT_TIMEOUT: Duration = Duration::from_secs(20);
/// `member add` right after startup may be refused until the members have heard each other.
const MEMBER_ADD_TIMEOUT: Duration = Duration::from_secs(15);
const IO_TIMEOUT: Duration = Duration::from_secs(5);
const TOKEN: &str = "peer-tls-test";

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// The peer TLS flags of a member presenting `leaf` and trusting `ca`.
fn peer_tls_flags(leaf: &LeafFiles, ca: &Path) -> Vec<String> {
    [
        "--peer-cert-file",
        s(&leaf.cert),
        "--peer-key-file",
        s(&leaf.key),
        "--peer-trusted-ca-file",
        s(ca),
        "--peer-client-cert-auth",
        "--initial-cluster-token",
        TOKEN,
    ]
    .iter()
    .map(|a| a.to_string())
    .collect()
}

/// Starts member `name` with https peer URLs on `peer_port` (given last, they replace the
/// helper's http ones) and `flags`.
fn start_https_member(
    dir: &Path,
    name: &str,
    ports: (u16, u16),
    cluster: &str,
    flags: &[String],
) -> ServerProcess {
    let peer = format!("https://127.0.0.1:{}", ports.1);
    let mut extra = vec![
        "--listen-peer-urls",
        &peer,
        "--initial-advertise-peer-urls",
        &peer,
    ];
    extra.extend(flags.iter().map(String::as_str));
    let member = Member {
        name,
        client_port: ports.0,
        peer_port: ports.1,
        initial_cluster: cluster,
    };
    ServerProcess::start_member(&ketch_bin(), &dir.join(name), &member, &extra, &[])
}

fn etcdctl(server: &ServerProcess, args: &[&str]) -> Output {
    Command::new(ETCDCTL)
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", &server.endpoint()])
        .args(["--dial-timeout", "2s", "--command-timeout", "5s"])
        .args(args)
        .output()
        .expect("running etcdctl")
}

fn stdout_of(out: &Output) -> String {
    assert!(
        out.status.success(),
        "etcdctl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn log_of(server: &ServerProcess) -> String {
    std::fs::read_to_string(&server.log).unwrap_or_default()
}

/// Waits until one of `servers` has logged a line containing every one of `needles`.
fn wait_for_log_line(servers: &[&ServerProcess], needles: &[&str]) -> String {
    let deadline = Instant::now() + LOG_TIMEOUT;
    loop {
        for server in servers {
            let log = log_of(server);
            if let Some(line) = log.lines().find(|l| needles.iter().all(|n| l.contains(n))) {
                return line.to_owned();
            }
        }
        assert!(
            Instant::now() < deadline,
            "no log line with {needles:?}; last lines:\n{}",
            servers[0].log_tail()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The exit code of a server expected to stop by itself.
fn exit_code(server: &mut ServerProcess) -> Option<i32> {
    let deadline = Instant::now() + EXIT_TIMEOUT;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = server.child.try_wait() {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "server still running after {EXIT_TIMEOUT:?}; log:\n{}",
        server.log_tail()
    );
}

/// A rustls client trusting `ca`, presenting `leaf` when given.
fn tls_client(ca: &Path, leaf: Option<&LeafFiles>) -> Arc<rustls::ClientConfig> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("CA file") {
        roots.add(cert.expect("CA PEM")).expect("adding the CA");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots);
    let config = match leaf {
        Some(leaf) => {
            let certs = CertificateDer::pem_file_iter(&leaf.cert)
                .expect("cert file")
                .collect::<Result<Vec<_>, _>>()
                .expect("cert PEM");
            let key = PrivateKeyDer::from_pem_file(&leaf.key).expect("key PEM");
            builder
                .with_client_auth_cert(certs, key)
                .expect("client cert")
        }
        None => builder.with_no_client_auth(),
    };
    Arc::new(config)
}

/// `GET /members` on a peer port: over TLS with `tls`, else plaintext. What the peer answered
/// (possibly nothing) or the I/O error that ended the exchange.
fn get_members(peer_port: u16, tls: Option<Arc<rustls::ClientConfig>>) -> Result<String, String> {
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", peer_port)).expect("connecting");
    tcp.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    let request = "GET /members HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    let mut answer = Vec::new();
    let result = match tls {
        None => tcp
            .write_all(request.as_bytes())
            .and_then(|()| tcp.read_to_end(&mut answer)),
        Some(config) => {
            let name = rustls_pki_types::ServerName::try_from("127.0.0.1").expect("name");
            let conn = rustls::ClientConnection::new(config, name).expect("TLS client");
            let mut stream = rustls::StreamOwned::new(conn, tcp);
            stream
                .write_all(request.as_bytes())
                .and_then(|()| stream.read_to_end(&mut answer))
        }
    };
    let text = String::from_utf8_lossy(&answer).into_owned();
    match result {
        Ok(_) => Ok(text),
        // ketch may close without close_notify once it has answered.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !answer.is_empty() => Ok(text),
        Err(e) => Err(e.to_string()),
    }
}

struct Cluster {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    members: Vec<ServerProcess>,
    certs: Vec<LeafFiles>,
    cluster: String,
}

/// Three members m0..m2 with https peer URLs, certificates from one CA and client-cert-auth.
fn start_tls_cluster(ca: &TestCa) -> Cluster {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_path = ca.write(dir.path(), "ca.pem");
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
    let cluster: Vec<String> = ports
        .iter()
        .enumerate()
        .map(|(i, (_, p))| format!("m{i}=https://127.0.0.1:{p}"))
        .collect();
    let cluster = cluster.join(",");
    let certs: Vec<LeafFiles> = (0..3)
        .map(|i| {
            let name = format!("m{i}");
            ca.issue_member(dir.path(), &name, &name, &["127.0.0.1", "localhost"])
        })
        .collect();
    let mut members: Vec<ServerProcess> = (0..3)
        .map(|i| {
            let flags = peer_tls_flags(&certs[i], &ca_path);
            start_https_member(dir.path(), &format!("m{i}"), ports[i], &cluster, &flags)
        })
        .collect();
    for m in &mut members {
        m.wait_healthy(HEALTH_TIMEOUT);
    }
    Cluster {
        _dir: dir,
        ca: ca_path,
        members,
        certs,
        cluster,
    }
}

/// A write through m0 is read linearizably from m1 and m2 (at least one of them a follower,
/// which asks the leader for the read index over the TLS peer link).
fn check_write_and_linearizable_reads(c: &Cluster, key: &str, value: &str) {
    assert_eq!(
        stdout_of(&etcdctl(&c.members[0], &["put", key, value])),
        "OK\n"
    );
    for m in &c.members[1..] {
        let got = stdout_of(&etcdctl(m, &["get", key, "--consistency", "l"]));
        assert_eq!(
            got,
            format!("{key}\n{value}\n"),
            "read from {}",
            m.endpoint()
        );
    }
}

fn check_peer_port_refuses_plaintext_and_anonymous_tls(c: &Cluster) {
    let m0 = &c.members[0];
    let plain = get_members(m0.peer_port, None);
    assert_eq!(plain, Ok(String::new()), "plaintext must get no answer");
    wait_for_log_line(
        &[m0],
        &[
            "rejected connection from \"127.0.0.1:",
            "(error \"tls: first record does not look like a TLS handshake\"",
        ],
    );
    let anonymous = get_members(m0.peer_port, Some(tls_client(&c.ca, None)));
    assert!(anonymous.is_err(), "no client certificate: {anonymous:?}");
    wait_for_log_line(
        &[m0],
        &["(error \"tls: client didn't provide a certificate\""],
    );
    let member = get_members(m0.peer_port, Some(tls_client(&c.ca, Some(&c.certs[1]))))
        .expect("a member certificate is served");
    assert!(member.starts_with("HTTP/1.1 200"), "{member}");
    assert_eq!(
        member.matches("\"peerURLs\":[\"https://127.0.0.1:").count(),
        3
    );
}

/// Adds member `name` with `member add` (retried while the cluster calls itself unhealthy,
/// right after startup), then starts it with `--initial-cluster-state existing` and a
/// certificate from `issuer`, trusting the cluster's CA.
fn add_and_start_member(c: &Cluster, name: &str, issuer: &TestCa) -> (ServerProcess, String) {
    let dir = c.members[0]
        .data_dir
        .parent()
        .expect("cluster dir")
        .to_path_buf();
    let ports = (free_port(), free_port());
    let peer_url = format!("https://127.0.0.1:{}", ports.1);
    let deadline = Instant::now() + MEMBER_ADD_TIMEOUT;
    loop {
        let added = etcdctl(
            &c.members[0],
            &["member", "add", name, "--peer-urls", &peer_url],
        );
        if added.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "member add: {}",
            String::from_utf8_lossy(&added.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let cert = issuer.issue_member(&dir, name, name, &["127.0.0.1", "localhost"]);
    let mut flags = peer_tls_flags(&cert, &c.ca);
    flags.extend(["--initial-cluster-state".to_owned(), "existing".to_owned()]);
    let cluster = format!("{},{name}={peer_url}", c.cluster);
    let member = start_https_member(&dir, name, ports, &cluster, &flags);
    (member, peer_url)
}

/// m3, with a certificate from the cluster's CA, joins over TLS: it becomes healthy, reads
/// what was written before it joined, and is listed as started.
fn check_member_of_the_ca_joins(c: &Cluster, ca: &TestCa, key: &str, value: &str) -> ServerProcess {
    let (mut m3, peer_url) = add_and_start_member(c, "m3", ca);
    m3.wait_healthy(HEALTH_TIMEOUT);
    let got = stdout_of(&etcdctl(&m3, &["get", key, "--consistency", "l"]));
    assert_eq!(got, format!("{key}\n{value}\n"));
    let list = stdout_of(&etcdctl(&c.members[1], &["member", "list"]));
    let m3_line = list
        .lines()
        .find(|l| l.contains(&peer_url))
        .expect("m3 listed");
    assert!(m3_line.contains(", started, m3, "), "{list}");
    m3
}

/// m4 is added, then started with a certificate from `stranger` (it trusts the cluster's CA):
/// every running member refuses its handshake, so it cannot fetch the members and exits.
fn check_stranger_cannot_join(c: &Cluster, stranger: &TestCa) {
    let (mut m4, peer_url) = add_and_start_member(c, "m4", stranger);
    assert_eq!(exit_code(&mut m4), Some(1), "log:\n{}", m4.log_tail());
    let log = log_of(&m4);
    assert!(
        log.contains(
            "cannot fetch cluster info from peer urls: could not retrieve cluster information \
             from the given URLs"
        ),
        "{log}"
    );
    assert!(log.contains("Get \"https://127.0.0.1:"), "{log}");
    assert!(log.contains("/members\": remote error: tls: "), "{log}");
    let members: Vec<&ServerProcess> = c.members.iter().collect();
    wait_for_log_line(
        &members,
        &[
            "rejected connection from \"127.0.0.1:",
            "(error \"tls: failed to verify client certificate: x509: certificate signed by \
             unknown authority\", ServerName \"\")",
        ],
    );
    let list = stdout_of(&etcdctl(&c.members[1], &["member", "list"]));
    let m4_line = list
        .lines()
        .find(|l| l.contains(&peer_url))
        .expect("m4 listed");
    assert!(m4_line.contains(", unstarted, "), "{list}");
}

#[test]
fn members_talk_over_peer_tls_and_refuse_other_cas() {
    let started = Instant::now();
    let ca = TestCa::new("ketch-peer-ca");
    let c = start_tls_cluster(&ca);
    check_write_and_linearizable_reads(&c, "greeting", "hello-over-tls");
    check_peer_port_refuses_plaintext_and_anonymous_tls(&c);
    let _m3 = check_member_of_the_ca_joins(&c, &ca, "greeting", "hello-over-tls");
    check_stranger_cannot_join(&c, &TestCa::new("some-other-ca"));
    // The cluster keeps serving, through another member this time.
    assert_eq!(
        stdout_of(&etcdctl(&c.members[1], &["put", "after", "join"])),
        "OK\n"
    );
    let got = stdout_of(&etcdctl(
        &c.members[2],
        &["get", "after", "--consistency", "l"],
    ));
    assert_eq!(got, "after\njoin\n");
    eprintln!("peer TLS cluster test took {:?}", started.elapsed());
}

/// What a server started with `peer_urls` (listen, advertise, initial cluster) and `extra`
/// logs before exiting, and its exit code.
fn startup_failure(bin: &Path, dir: &Path, peer_urls: [&str; 3], extra: &[&str]) -> (i32, String) {
    let [listen, advertise, cluster] = peer_urls;
    let cluster = format!("x={cluster}");
    let member = Member {
        name: "x",
        client_port: free_port(),
        peer_port: free_port(),
        initial_cluster: &cluster,
    };
    let mut args = vec![
        "--listen-peer-urls",
        listen,
        "--initial-advertise-peer-urls",
        advertise,
    ];
    args.extend_from_slice(extra);
    let mut server = ServerProcess::start_member(bin, dir, &member, &args, &[]);
    let code = exit_code(&mut server).expect("exit code");
    (code, log_of(&server))
}

#[test]
fn peer_url_scheme_errors_match_etcd() {
    let etcd = require_etcd(ETCD).to_path_buf();
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new("ketch-peer-ca");
    let leaf = ca.issue_member(tmp.path(), "x", "x", &["127.0.0.1"]);
    let port = free_port();
    let http = format!("http://127.0.0.1:{port}");
    let https = format!("https://127.0.0.1:{port}");
    let cert_flags = [
        "--peer-cert-file",
        s(&leaf.cert),
        "--peer-key-file",
        s(&leaf.key),
    ];
    let mut allowed_flags = cert_flags.to_vec();
    allowed_flags.extend([
        "--peer-cert-allowed-cn",
        "x",
        "--peer-cert-allowed-hostname",
        "x.example",
    ]);
    let cases: [([&str; 3], &[&str], String); 3] = [
        (
            [&https, &https, &https],
            &[],
            format!(
                "cannot listen on TLS for 127.0.0.1:{port}: KeyFile and CertFile are not presented"
            ),
        ),
        (
            [&https, &https, &http],
            &cert_flags,
            format!(
                "--initial-cluster has x={http} but missing from --initial-advertise-peer-urls={https}"
            ),
        ),
        (
            [&https, &https, &https],
            &allowed_flags,
            "AllowedCN and AllowedHostname are mutually exclusive (cn=\"x\", hostname=\"x.example\")"
                .to_owned(),
        ),
    ];
    for (i, (urls, extra, expected)) in cases.iter().enumerate() {
        for (name, bin) in [("ketch", ketch_bin()), ("etcd", etcd.clone())] {
            let dir = tmp.path().join(format!("{name}-{i}"));
            let (code, log) = startup_failure(&bin, &dir, *urls, extra);
            assert_eq!(code, 1, "{name} {urls:?}: {log}");
            assert!(log.contains(expected.as_str()), "{name} {urls:?}: {log}");
        }
    }
}
