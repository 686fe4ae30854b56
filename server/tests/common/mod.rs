//! Shared helpers for ketch's process-level tests: free loopback ports, a ketch (or etcd)
//! process guard that kills by PID on drop, and health waiting.

#![allow(dead_code)]

pub mod pki;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A loopback port that was free a moment ago, from the server tests' own range (see
/// `ketch_conformance::servers`: below the ephemeral range, apart from the other harnesses').
pub fn free_port() -> u16 {
    use ketch_conformance::servers::{SERVER_TESTS_PORTS, free_port_in};
    free_port_in(SERVER_TESTS_PORTS).expect("a free loopback port for a test server")
}

/// One member's name, ports and `--initial-cluster`.
pub struct Member<'a> {
    pub name: &'a str,
    pub client_port: u16,
    pub peer_port: u16,
    pub initial_cluster: &'a str,
}

pub struct ServerProcess {
    pub child: Child,
    pub client_port: u16,
    pub peer_port: u16,
    pub data_dir: PathBuf,
    pub log: PathBuf,
}

impl ServerProcess {
    /// Starts `bin` (ketch or etcd) as a one-member cluster on fresh loopback ports with etcd's
    /// flags, logging to `<data_dir>.log`.
    pub fn start(bin: &Path, data_dir: &Path, extra: &[&str]) -> ServerProcess {
        Self::start_on(bin, data_dir, free_port(), free_port(), extra)
    }

    pub fn start_on(
        bin: &Path,
        data_dir: &Path,
        client_port: u16,
        peer_port: u16,
        extra: &[&str],
    ) -> ServerProcess {
        let cluster = format!("default=http://127.0.0.1:{peer_port}");
        let member = Member {
            name: "default",
            client_port,
            peer_port,
            initial_cluster: &cluster,
        };
        Self::start_member(bin, data_dir, &member, extra, &[])
    }

    /// Starts one member of a cluster (`--initial-cluster-state new`) with `env` added.
    pub fn start_member(
        bin: &Path,
        data_dir: &Path,
        m: &Member<'_>,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> ServerProcess {
        let client = format!("http://127.0.0.1:{}", m.client_port);
        let peer = format!("http://127.0.0.1:{}", m.peer_port);
        let log = data_dir.with_extension("log");
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("opening server log");
        let child = Command::new(bin)
            .args(["--name", m.name, "--data-dir"])
            .arg(data_dir)
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args(["--initial-cluster", m.initial_cluster])
            .args(extra)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("cloning log handle"))
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        ServerProcess {
            child,
            client_port: m.client_port,
            peer_port: m.peer_port,
            data_dir: data_dir.to_path_buf(),
            log,
        }
    }

    /// Starts `n` members named m0.. under `dir` on fresh ports, waits until all are healthy.
    pub fn start_cluster(
        bin: &Path,
        dir: &Path,
        n: usize,
        env: &[(&str, &str)],
    ) -> Vec<ServerProcess> {
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let cluster: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, p))| format!("m{i}=http://127.0.0.1:{p}"))
            .collect();
        let cluster = cluster.join(",");
        let mut members: Vec<ServerProcess> = ports
            .iter()
            .enumerate()
            .map(|(i, (c, p))| {
                let name = format!("m{i}");
                let member = Member {
                    name: &name,
                    client_port: *c,
                    peer_port: *p,
                    initial_cluster: &cluster,
                };
                Self::start_member(bin, &dir.join(&name), &member, &[], env)
            })
            .collect();
        for m in &mut members {
            m.wait_healthy(Duration::from_secs(30));
        }
        members
    }

    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    /// Polls `/health` until it answers `{"health":"true"}` or `timeout` passes.
    pub fn wait_healthy(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "server exited with {status} during startup; log:\n{}",
                    self.log_tail()
                );
            }
            if http_get(self.client_port, "/health")
                .is_some_and(|b| b.contains("\"health\":\"true\""))
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "server not healthy after {timeout:?}; log:\n{}",
            self.log_tail()
        );
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and returns the exit code.
    pub fn terminate(&mut self, timeout: Duration) -> Option<i32> {
        // SAFETY: kill(2) on the PID of a child we spawned and have not reaped.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A minimal HTTP/1.1 GET on loopback; `None` if the connection or request fails.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

pub fn ketch_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ketch"))
}

/// Starts `bin` (ketch or etcd) as a fresh one-member cluster, runs `script` against its
/// endpoint, kills it and returns what the script recorded.
pub fn transcript_of(bin: &Path, dir: &Path, script: impl FnOnce(&str) -> String) -> String {
    let mut server = ServerProcess::start(bin, dir, &[]);
    server.wait_healthy(Duration::from_secs(20));
    let t = script(&server.endpoint());
    server.kill9();
    t
}

/// Every etcdctl call is bounded: a hung server fails the test instead of stalling CI.
const ETCDCTL_TIMEOUT_SECS: &str = "20";

/// Runs etcdctl (API v3) against `endpoint` with `input` on its stdin and waits for it, at most
/// `ETCDCTL_TIMEOUT_SECS` (then `timeout` ends it and the exit code is 124).
pub fn etcdctl_output<S: AsRef<std::ffi::OsStr>>(
    endpoint: &str,
    args: &[S],
    input: Option<&str>,
) -> std::process::Output {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("timeout")
        .args([ETCDCTL_TIMEOUT_SECS, "etcdctl"])
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running etcdctl (apt-get install etcd-client)");
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin
        .write_all(input.unwrap_or("").as_bytes())
        .expect("writing etcdctl stdin");
    drop(stdin);
    child.wait_with_output().expect("waiting for etcdctl")
}

/// Where Debian's etcd-server package installs etcd 3.4.23, the oracle.
pub const ETCD_BIN: &str = "/usr/bin/etcd";

/// Runs `transcript(server binary, data dir)` against ketch, then against etcd (dirs under
/// `tmp`), requires the two identical and returns ketch's.
pub fn same_transcript_as_etcd(tmp: &Path, transcript: impl Fn(&Path, &Path) -> String) -> String {
    let etcd_bin = require_etcd(ETCD_BIN);
    let ketch = transcript(&ketch_bin(), &tmp.join("ketch"));
    let etcd = transcript(etcd_bin, &tmp.join("etcd"));
    assert_eq!(
        ketch, etcd,
        "ketch transcript:\n{ketch}\netcd transcript:\n{etcd}"
    );
    ketch
}

/// The etcd binary the comparisons run against; a missing etcd fails the test (it is the
/// oracle) with the way to install it.
pub fn require_etcd(path: &str) -> &Path {
    let p = Path::new(path);
    assert!(
        p.exists(),
        "{path} not found: apt-get install -y etcd-server etcd-client"
    );
    p
}
