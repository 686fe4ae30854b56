//! Thread-per-core serving: one glommio executor per shard, each accepting on every client
//! address with SO_REUSEPORT so the kernel spreads connections over cores. Shard 0 also runs
//! raft. Shutdown: stop accepting everywhere, let in-flight requests finish (bounded), then
//! stop raft, which syncs the WAL.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use glommio::net::{TcpListener, TcpStream};
use glommio::{LocalExecutorBuilder, Placement};
use hyper_util::server::conn::auto;

use crate::authority::FixAuthority;
use crate::http::ClientService;
use crate::node::Node;
use crate::rt::{HyperIo, LocalExec};
use crate::tls::{ClientTls, WithClientCn};

/// The longest shutdown waits for in-flight requests before stopping raft anyway.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How often draining re-checks the in-flight count.
const DRAIN_POLL: Duration = Duration::from_millis(5);
/// How often a shard checks whether the member has published itself yet.
const PUBLISH_POLL: Duration = Duration::from_millis(10);
/// Bound of each shard's stop channel: one stop message is all it ever carries.
const STOP_CHANNEL_BOUND: usize = 1;
/// Pending-connection queue of each listener (the kernel caps it at net.core.somaxconn).
const LISTEN_BACKLOG: i32 = 4096;
/// How long a port found in use is tried again before giving up. A ketch that just exited
/// leaves its listening sockets to the kernel's io_uring teardown, which closes them 10-25 ms
/// later (results/2026-12-08-restart-ports-b894081); a member restarted at once (the tutorial's
/// "restart it") would otherwise fail "address already in use" where etcd starts.
pub const PORT_RELEASE_WAIT: Duration = Duration::from_secs(1);
/// Pause between binds of a port found in use.
const PORT_RELEASE_POLL: Duration = Duration::from_millis(10);
/// glommio refuses to start below this much lockable memory per executor, besides io_memory.
const GLOMMIO_BASE_MEMLOCK_BYTES: u64 = 512 << 10;

pub struct ShardPlan {
    pub shards: usize,
    pub io_memory_bytes: usize,
    pub client_addrs: Vec<ClientAddr>,
}

/// One client listen address and, when its URL is https, the TLS it speaks: http and https
/// listeners mix freely, as in etcd.
#[derive(Clone)]
pub struct ClientAddr {
    pub addr: SocketAddr,
    pub tls: Option<ClientTls>,
}

/// A bound client listener of one shard.
pub struct ClientListener {
    listener: TcpListener,
    tls: Option<ClientTls>,
}

/// Refuses to start when the memlock limit cannot hold every shard's io_uring buffers, with
/// the numbers and the ways out, instead of glommio's bare failure.
pub fn check_memlock(plan: &ShardPlan) -> anyhow::Result<()> {
    let limit = rlimit_memlock()?;
    let needed = plan.shards as u64 * (plan.io_memory_bytes as u64 + GLOMMIO_BASE_MEMLOCK_BYTES);
    if let Some(limit) = limit
        && limit < needed
    {
        bail!(
            "RLIMIT_MEMLOCK is {} KiB but {} shard(s) x ({} KiB io_memory + {} KiB) need {} KiB: \
             raise it (`ulimit -l`, systemd LimitMEMLOCK=) or lower --shards / --io-memory-bytes",
            limit >> 10,
            plan.shards,
            plan.io_memory_bytes >> 10,
            GLOMMIO_BASE_MEMLOCK_BYTES >> 10,
            needed >> 10
        );
    }
    Ok(())
}

fn rlimit_memlock() -> anyhow::Result<Option<u64>> {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own; the resource constant is valid.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut rl) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("getrlimit(RLIMIT_MEMLOCK)");
    }
    Ok((rl.rlim_cur != libc::RLIM_INFINITY).then_some(rl.rlim_cur))
}

/// Binds each address once without SO_REUSEPORT and lets go: a port held by anyone else
/// (another ketch included, which SO_REUSEPORT would otherwise share with) fails here, with
/// etcd's wording, before anything starts.
pub fn probe_bind(addrs: &[ClientAddr]) -> anyhow::Result<()> {
    for ClientAddr { addr, .. } in addrs {
        probe_port(*addr)?;
    }
    Ok(())
}

/// Binds `addr` without SO_REUSEPORT and lets go, so that no other socket holds it when the
/// shards bind it with SO_REUSEPORT (they would join a lingering socket's group and share
/// connections with it). A port in use is tried again for [`PORT_RELEASE_WAIT`]: sockets of
/// a ketch that just exited close moments later.
pub(crate) fn probe_port(addr: SocketAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + PORT_RELEASE_WAIT;
    loop {
        match StdListener::bind(addr) {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                std::thread::sleep(PORT_RELEASE_POLL);
            }
            // Go's wording, as etcd prints it.
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                anyhow::bail!("listen tcp {addr}: bind: address already in use")
            }
            Err(e) => anyhow::bail!("listen tcp {addr}: bind: {e}"),
        }
    }
}

pub fn executor(shard: usize, io_memory_bytes: usize) -> LocalExecutorBuilder {
    LocalExecutorBuilder::new(Placement::Unbound)
        .name(&format!("ketch-shard-{shard}"))
        .io_memory(io_memory_bytes)
}

pub type StopSender = flume::Sender<()>;

pub fn stop_channel() -> (StopSender, flume::Receiver<()>) {
    flume::bounded(STOP_CHANNEL_BOUND)
}

/// Binds every client address on the current shard the way Go's listener does for etcd
/// (SO_REUSEADDR, so a port whose old connections linger in TIME_WAIT can be reused) plus
/// SO_REUSEPORT, so every shard accepts on the same port.
pub fn bind_listeners(addrs: &[ClientAddr]) -> anyhow::Result<Vec<ClientListener>> {
    addrs
        .iter()
        .map(|ClientAddr { addr, tls }| {
            let listener =
                bind_one(*addr).map_err(|e| anyhow::anyhow!("listen tcp {addr}: bind: {e}"))?;
            Ok(ClientListener {
                listener,
                tls: tls.clone(),
            })
        })
        .collect()
}

pub(crate) fn bind_one(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    use std::os::fd::{FromRawFd, IntoRawFd};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    // SAFETY: the fd comes from `into_raw_fd` of a bound, listening socket we own; ownership
    // passes to the glommio listener, nothing else closes it.
    Ok(unsafe { TcpListener::from_raw_fd(socket.into_raw_fd()) })
}

/// Accepts on `listeners` until `stop` fires, then waits for in-flight requests.
pub async fn serve(
    node: Arc<Node>,
    routes: crate::grpc::GrpcRoutes,
    listeners: Vec<ClientListener>,
    stop: flume::Receiver<()>,
) {
    if !published_or_stopped(&node, &stop).await {
        return;
    }
    let service = ClientService {
        routes,
        node: node.clone(),
    };
    let accept_tasks: Vec<_> = listeners
        .into_iter()
        .map(|listener| glommio::spawn_local(accept_loop(Rc::new(listener), service.clone())))
        .collect();
    let _ = stop.recv_async().await;
    for task in accept_tasks {
        task.cancel().await;
    }
    drain(&node).await;
}

async fn accept_loop(listener: Rc<ClientListener>, service: ClientService) {
    loop {
        match listener.listener.accept().await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                let conn = serve_connection(stream, listener.tls.clone(), service.clone());
                glommio::spawn_local(conn).detach();
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Serves one accepted connection: HTTP/2 (gRPC) and HTTP/1.1 on the same port, inside TLS
/// when the listener is https. Errors are a client going away (or refused by the handshake,
/// which `tls::accept` logs); nothing to recover.
async fn serve_connection(stream: TcpStream, tls: Option<ClientTls>, service: ClientService) {
    let Some(tls) = tls else {
        let _ = auto::Builder::new(LocalExec)
            .serve_connection(HyperIo::new(FixAuthority::new(stream.buffered())), service)
            .await;
        return;
    };
    let remote = stream.peer_addr().ok();
    let Some(accepted) = crate::tls::accept(&tls, stream.buffered(), remote).await else {
        return;
    };
    let service = WithClientCn {
        inner: service,
        cn: accepted.client_cn,
    };
    // HyperIo reads through AsyncBufRead; the TLS stream only has AsyncRead.
    let io = HyperIo::new(FixAuthority::new(futures_lite::io::BufReader::new(
        accepted.stream,
    )));
    let _ = auto::Builder::new(LocalExec)
        .serve_connection(io, service)
        .await;
}

/// As etcd: clients are served once the member has published itself to the cluster
/// (connections wait in the listen backlog meanwhile). False when told to stop first.
async fn published_or_stopped(node: &Node, stop: &flume::Receiver<()>) -> bool {
    loop {
        if node.raft.is_published() {
            return true;
        }
        let stopped = futures_lite::future::or(
            async {
                glommio::timer::sleep(PUBLISH_POLL).await;
                false
            },
            async {
                let _ = stop.recv_async().await;
                true
            },
        )
        .await;
        if stopped {
            return false;
        }
    }
}

async fn drain(node: &Node) {
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    while node.inflight() > 0 && Instant::now() < deadline {
        glommio::timer::sleep(DRAIN_POLL).await;
    }
}
