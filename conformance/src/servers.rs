//! Starting and stopping real etcd-compatible servers (etcd or ketch) on loopback.
//!
//! Every member gets fresh temp data dirs and free loopback ports (found by binding
//! 127.0.0.1:0), is started with etcd's own flags, and is stopped by PID: a `Member` kills
//! its process with SIGKILL on drop, so a panicking scenario never leaks a server.

use std::net::TcpListener;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use thiserror::Error;

/// How often a starting member is polled for health.
const HEALTH_POLL_INTERVAL: Duration = Duration::from_millis(100);
/// One `/health` request may take this long before it counts as "not healthy yet".
const HEALTH_REQUEST_TIMEOUT: Duration = Duration::from_millis(1500);

/// Errors of the server boundary.
#[derive(Debug, Error)]
pub enum ServerError {
    #[error("{kind} binary not found at {path}")]
    BinaryMissing { kind: String, path: String },
    #[error("{kind} did not become healthy within {secs}s (member {member}); log tail: {log}")]
    NotHealthy {
        kind: String,
        secs: u64,
        member: String,
        log: String,
    },
    #[error("{kind} member {member} exited during startup ({status}); log tail: {log}")]
    Exited {
        kind: String,
        member: String,
        status: String,
        log: String,
    },
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// Which server implementation a binary is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServerKind {
    Etcd,
    Ketch,
}

impl std::fmt::Display for ServerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ServerKind::Etcd => "etcd",
            ServerKind::Ketch => "ketch",
        })
    }
}

/// A binary to start, and how long to wait for it.
#[derive(Clone, Debug)]
pub struct ServerSpec {
    pub kind: ServerKind,
    pub bin: PathBuf,
    pub ready_timeout: Duration,
}

/// Loopback ports for the servers that tests start, one range per harness: below the
/// kernel's ephemeral range (32768-60999 on these machines), so no outgoing connection takes
/// one between its pick and the server's bind, and disjoint, so harnesses running side by
/// side do not pick the same port. ketch binds its ports with SO_REUSEPORT: two servers that
/// both found a port free would share it, each taking part of the other's connections (seen
/// once: an etcdctl put answered 412 by another member's peer port).
///
/// This suite's servers.
pub const PORT_RANGE: Range<u16> = 25_000..30_000;
/// The server crate's process tests (`server/tests`).
pub const SERVER_TESTS_PORTS: Range<u16> = 20_000..25_000;
/// The raft crate's cluster tests (`server/raft/tests`).
pub const RAFT_TESTS_PORTS: Range<u16> = 30_000..32_768;

/// Returns a loopback port from [`PORT_RANGE`] that was free a moment ago.
pub fn free_port() -> std::io::Result<u16> {
    free_port_in(PORT_RANGE)
}

/// Returns a loopback port from `range` that was free a moment ago: picks walk the range
/// from a point that differs per process (nextest runs each test in a process of its own),
/// and a counter keeps one process's picks apart.
pub fn free_port_in(range: Range<u16>) -> std::io::Result<u16> {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    static START: OnceLock<u32> = OnceLock::new();
    let span = u32::from(range.end - range.start);
    let start = *START.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        std::process::id().wrapping_mul(7_919) ^ nanos
    });
    for _ in 0..span {
        // Steps of 97 (prime to every span used here) visit each port once.
        let step = NEXT.fetch_add(1, Ordering::Relaxed).wrapping_mul(97);
        let port = range.start + (start.wrapping_add(step) % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        format!("no free loopback port in {range:?}"),
    ))
}

/// One member's fixed identity: what it is started with, each time.
#[derive(Clone, Debug)]
pub struct MemberConfig {
    pub name: String,
    pub client_port: u16,
    /// The port the member listens on for peers.
    pub peer_port: u16,
    /// The port other members dial (differs from `peer_port` when a fault proxy sits between).
    pub advertised_peer_port: u16,
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
}

impl MemberConfig {
    pub fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }
    pub fn advertised_peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.advertised_peer_port)
    }
    pub fn listen_peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }
}

/// A running (or stopped) member process.
pub struct Member {
    pub config: MemberConfig,
    /// The flags it was last started with, reused by `restart`.
    args: Vec<String>,
    child: Option<Child>,
}

impl Member {
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Sends a signal to this member's PID (the only process this code ever signals).
    pub fn signal(&self, signal: Signal) -> std::io::Result<()> {
        let Some(pid) = self.pid() else {
            return Ok(());
        };
        let pid = Pid::from_raw(i32::try_from(pid).expect("pid fits i32"));
        kill(pid, signal).map_err(std::io::Error::from)
    }

    /// True once the process has exited by itself (reaped here); false while running.
    pub fn has_exited(&mut self) -> bool {
        match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(Some(_))) => {
                self.child = None;
                true
            }
            Some(_) => false,
            None => true,
        }
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, wait up to `grace`, then SIGKILL.
    pub fn terminate(&mut self, grace: Duration) {
        let _ = self.signal(Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        while let Some(child) = self.child.as_mut() {
            if matches!(child.try_wait(), Ok(Some(_))) || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
    }

    pub fn log_tail(&self) -> String {
        log_tail(&self.config.log_path)
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        // A stopped (SIGSTOP) process still dies of SIGKILL.
        self.kill();
    }
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(3);
    lines[start..].join(" | ")
}

/// A set of members of one cluster, started by this process.
pub struct Cluster {
    pub spec: ServerSpec,
    pub members: Vec<Member>,
    pub token: String,
    /// Holds every data dir and log; removed when the cluster is dropped.
    pub dir: tempfile::TempDir,
}

/// Options for starting a cluster.
#[derive(Clone, Debug, Default)]
pub struct ClusterOptions {
    pub size: usize,
    /// Extra flags given to every member (e.g. `--snapshot-count=20`).
    pub extra_flags: Vec<String>,
    /// Leave a port gap per member for a fault proxy: peers dial `advertised_peer_port`.
    pub proxied_peers: bool,
}

impl Cluster {
    /// Starts `opts.size` members and waits until each one answers `/health` with true.
    pub async fn start(spec: &ServerSpec, opts: &ClusterOptions) -> Result<Cluster, ServerError> {
        let mut cluster = Cluster::spawn(spec, opts)?;
        cluster.wait_all_healthy().await?;
        Ok(cluster)
    }

    /// Starts `opts.size` members without waiting for them.
    pub fn spawn(spec: &ServerSpec, opts: &ClusterOptions) -> Result<Cluster, ServerError> {
        if !spec.bin.exists() {
            return Err(ServerError::BinaryMissing {
                kind: spec.kind.to_string(),
                path: spec.bin.display().to_string(),
            });
        }
        let dir = tempfile::Builder::new()
            .prefix("ketch-conformance-")
            .tempdir()?;
        let configs = member_configs(dir.path(), opts)?;
        let token = format!("conformance-{}", configs[0].client_port);
        let initial_cluster = configs
            .iter()
            .map(|c| format!("{}={}", c.name, c.advertised_peer_url()))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Cluster {
            spec: spec.clone(),
            members: Vec::new(),
            token,
            dir,
        };
        for config in configs {
            let mut args = member_args(&config, &initial_cluster, &cluster.token, "new");
            args.extend(opts.extra_flags.iter().cloned());
            let child = spawn(&spec.bin, &args, &config.log_path)?;
            cluster.members.push(Member {
                config,
                args,
                child: Some(child),
            });
        }
        Ok(cluster)
    }

    /// Waits for every member to be healthy, within the spec's ready timeout overall.
    pub async fn wait_all_healthy(&mut self) -> Result<(), ServerError> {
        let timeout = self.spec.ready_timeout;
        for i in 0..self.members.len() {
            self.wait_healthy(i, timeout).await?;
        }
        Ok(())
    }

    pub fn client_urls(&self) -> Vec<String> {
        self.members.iter().map(|m| m.config.client_url()).collect()
    }

    pub fn kind(&self) -> ServerKind {
        self.spec.kind
    }

    /// Polls `/health` on member `i` until it says true, the process exits, or time runs out.
    pub async fn wait_healthy(&mut self, i: usize, timeout: Duration) -> Result<(), ServerError> {
        let deadline = Instant::now() + timeout;
        let url_port = self.members[i].config.client_port;
        loop {
            if let Some(child) = self.members[i].child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                let member = &self.members[i];
                return Err(ServerError::Exited {
                    kind: self.spec.kind.to_string(),
                    member: member.config.name.clone(),
                    status: status.to_string(),
                    log: member.log_tail(),
                });
            }
            if health_ok(url_port).await {
                return Ok(());
            }
            if Instant::now() > deadline {
                let member = &self.members[i];
                return Err(ServerError::NotHealthy {
                    kind: self.spec.kind.to_string(),
                    secs: timeout.as_secs(),
                    member: member.config.name.clone(),
                    log: member.log_tail(),
                });
            }
            tokio::time::sleep(HEALTH_POLL_INTERVAL).await;
        }
    }

    /// Restarts a stopped member with the flags and data dir it had (`--initial-cluster-state new`
    /// is ignored by etcd once the data dir exists).
    pub fn restart(&mut self, i: usize) -> Result<(), ServerError> {
        let member = &mut self.members[i];
        member.kill();
        member.child = Some(spawn(
            &self.spec.bin,
            &member.args,
            &member.config.log_path,
        )?);
        Ok(())
    }

    /// Starts a new member that joins an existing cluster (after a MemberAdd).
    pub fn start_joining(
        &mut self,
        config: MemberConfig,
        initial_cluster: &str,
    ) -> Result<usize, ServerError> {
        let args = member_args(&config, initial_cluster, &self.token, "existing");
        let child = spawn(&self.spec.bin, &args, &config.log_path)?;
        self.members.push(Member {
            config,
            args,
            child: Some(child),
        });
        Ok(self.members.len() - 1)
    }

    /// A fresh config for a member to be added later.
    pub fn new_member_config(&self, name: &str) -> Result<MemberConfig, ServerError> {
        let peer_port = free_port()?;
        Ok(MemberConfig {
            name: name.to_string(),
            client_port: free_port()?,
            peer_port,
            advertised_peer_port: peer_port,
            data_dir: self.dir.path().join(format!("{name}.data")),
            log_path: self.dir.path().join(format!("{name}.log")),
        })
    }
}

fn member_configs(dir: &Path, opts: &ClusterOptions) -> Result<Vec<MemberConfig>, ServerError> {
    let mut configs = Vec::with_capacity(opts.size);
    for i in 0..opts.size {
        let name = format!("m{}", i + 1);
        let peer_port = free_port()?;
        let advertised = if opts.proxied_peers {
            free_port()?
        } else {
            peer_port
        };
        configs.push(MemberConfig {
            client_port: free_port()?,
            peer_port,
            advertised_peer_port: advertised,
            data_dir: dir.join(format!("{name}.data")),
            log_path: dir.join(format!("{name}.log")),
            name,
        });
    }
    Ok(configs)
}

/// etcd's flags for one member; ketch takes the same.
fn member_args(c: &MemberConfig, initial_cluster: &str, token: &str, state: &str) -> Vec<String> {
    vec![
        format!("--name={}", c.name),
        format!("--data-dir={}", c.data_dir.display()),
        format!("--listen-client-urls={}", c.client_url()),
        format!("--advertise-client-urls={}", c.client_url()),
        format!("--listen-peer-urls={}", c.listen_peer_url()),
        format!("--initial-advertise-peer-urls={}", c.advertised_peer_url()),
        format!("--initial-cluster={initial_cluster}"),
        format!("--initial-cluster-token={token}"),
        format!("--initial-cluster-state={state}"),
    ]
}

fn spawn(bin: &Path, args: &[String], log_path: &Path) -> Result<Child, ServerError> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)?;
    let child = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()?;
    Ok(child)
}

/// True when `GET /health` on the client port answers `"health":"true"`.
pub async fn health_ok(client_port: u16) -> bool {
    let addr = format!("127.0.0.1:{client_port}");
    let fut = crate::drivers::gateway::request(&addr, "GET", "/health", None);
    match tokio::time::timeout(HEALTH_REQUEST_TIMEOUT, fut).await {
        Ok(Ok(resp)) => resp.status == 200 && resp.body.contains("\"true\""),
        _ => false,
    }
}
