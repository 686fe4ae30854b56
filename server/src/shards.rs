//! Thread-per-core serving: one glommio executor per shard, each accepting on every client
//! address with SO_REUSEPORT so the kernel spreads connections over cores. Shard 0 also runs
//! raft. Shutdown: stop accepting everywhere, let in-flight requests finish (bounded), then
//! stop raft, which syncs the WAL.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use glommio::net::TcpListener;
use glommio::{LocalExecutorBuilder, Placement};
use hyper_util::server::conn::auto;

use crate::http::ClientService;
use crate::node::Node;
use crate::rt::{HyperIo, LocalExec};

/// The longest shutdown waits for in-flight requests before stopping raft anyway.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How often draining re-checks the in-flight count.
const DRAIN_POLL: Duration = Duration::from_millis(5);
/// Bound of each shard's stop channel: one stop message is all it ever carries.
const STOP_CHANNEL_BOUND: usize = 1;
/// glommio refuses to start below this much lockable memory per executor, besides io_memory.
const GLOMMIO_BASE_MEMLOCK_BYTES: u64 = 512 << 10;

pub struct ShardPlan {
    pub shards: usize,
    pub io_memory_bytes: usize,
    pub client_addrs: Vec<SocketAddr>,
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
pub fn probe_bind(addrs: &[SocketAddr]) -> anyhow::Result<()> {
    for addr in addrs {
        StdListener::bind(addr).map_err(|e| anyhow::anyhow!("listen tcp {addr}: bind: {e}"))?;
    }
    Ok(())
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

/// Accepts on every client address until `stop` fires, then waits for in-flight requests.
pub async fn serve(node: Arc<Node>, routes: tonic::service::Routes, addrs: Vec<SocketAddr>, stop: flume::Receiver<()>) -> anyhow::Result<()> {
    let service = ClientService { routes, node: node.clone() };
    let mut accept_tasks = Vec::with_capacity(addrs.len());
    for addr in &addrs {
        let listener = TcpListener::bind(addr).map_err(|e| anyhow::anyhow!("listen tcp {addr}: bind: {e}"))?;
        accept_tasks.push(glommio::spawn_local(accept_loop(Rc::new(listener), service.clone())));
    }
    let _ = stop.recv_async().await;
    for task in accept_tasks {
        task.cancel().await;
    }
    drain(&node).await;
    Ok(())
}

async fn accept_loop(listener: Rc<TcpListener>, service: ClientService) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                let service = service.clone();
                glommio::spawn_local(async move {
                    let io = HyperIo(stream.buffered());
                    // Errors here are a client going away mid-request; nothing to recover.
                    let _ = auto::Builder::new(LocalExec)
                        .serve_connection(io, service)
                        .await;
                })
                .detach();
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

async fn drain(node: &Node) {
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    while node.inflight() > 0 && Instant::now() < deadline {
        glommio::timer::sleep(DRAIN_POLL).await;
    }
}
