//! A fault-injecting TCP proxy placed between cluster members (there is no Docker or netem
//! here, so partitions and delays are made in user space).
//!
//! Each accepted connection is forwarded to `upstream` through two pipes (one per direction).
//! A pipe is a reader task and a writer task joined by a bounded queue of chunks, so a slow
//! side never makes the proxy buffer more than `PIPE_QUEUE_CHUNKS * CHUNK_BYTES` per direction.
//! The fault is read on every chunk, so it changes at runtime:
//!
//! - `None`: forward.
//! - `Blackhole`: accept and read, forward nothing, both directions (bytes vanish, as packets do
//!   in a partition). A connection that lost bytes is corrupt, so it is closed when the
//!   blackhole lifts; the peers then reconnect. Connections accepted during the blackhole are
//!   never connected upstream.
//! - `Refuse`: close the listening socket (new connects get "connection refused") and close
//!   every open connection, as when the member's process is gone. Lifting it rebinds the port.
//! - `Delay(d)`: every chunk is held `d` after it was read; order is preserved.
//! - `Drop(p)`: each new connection, and each open one when the fault is set, is reset (RST)
//!   with probability `p`.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

/// Bytes read from a socket at once, and the unit of delay.
pub const CHUNK_BYTES: usize = 16 * 1024;
/// Chunks queued per direction between reader and writer (bounds memory per connection).
pub const PIPE_QUEUE_CHUNKS: usize = 64;
/// How long to wait for the upstream to accept a connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause between attempts to rebind the listening port after `Refuse` is lifted.
pub const REBIND_RETRY: Duration = Duration::from_millis(20);

/// The fault applied to traffic through the proxy.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fault {
    None,
    Blackhole,
    Refuse,
    Delay(Duration),
    Drop(f64),
}

#[derive(Debug, thiserror::Error)]
pub enum FaultProxyError {
    #[error("fault proxy cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
}

/// Counters since the proxy started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Bytes written to the upstream (client to server).
    pub bytes_to_upstream: u64,
    /// Bytes written back to clients (server to client).
    pub bytes_to_client: u64,
    /// Bytes read and discarded by a blackhole.
    pub bytes_blackholed: u64,
    pub connections_accepted: u64,
    /// Connections closed or reset by a fault.
    pub connections_killed: u64,
}

#[derive(Default)]
struct Counters {
    bytes_to_upstream: AtomicU64,
    bytes_to_client: AtomicU64,
    bytes_blackholed: AtomicU64,
    connections_accepted: AtomicU64,
    connections_killed: AtomicU64,
}

struct Shared {
    upstream: SocketAddr,
    counters: Counters,
    rng: Mutex<StdRng>,
}

impl Shared {
    fn roll(&self, probability: f64) -> bool {
        let mut rng = self.rng.lock().expect("rng lock is never poisoned");
        rng.random_bool(probability.clamp(0.0, 1.0))
    }
}

/// A running proxy; dropping it stops it and closes every connection.
pub struct FaultProxy {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    fault_tx: watch::Sender<Fault>,
    shutdown_tx: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Listen on `listen` (port 0 picks a free one) and forward to `upstream`.
    pub async fn start(listen: SocketAddr, upstream: SocketAddr) -> Result<Self, FaultProxyError> {
        Self::start_seeded(listen, upstream, rand::random()).await
    }

    /// As `start`, with the seed of the `Drop` coin flips.
    pub async fn start_seeded(
        listen: SocketAddr,
        upstream: SocketAddr,
        seed: u64,
    ) -> Result<Self, FaultProxyError> {
        let bind_err = |source| FaultProxyError::Bind {
            addr: listen,
            source,
        };
        let listener = TcpListener::bind(listen).await.map_err(bind_err)?;
        let local_addr = listener.local_addr().map_err(bind_err)?;
        let shared = Arc::new(Shared {
            upstream,
            counters: Counters::default(),
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
        });
        let (fault_tx, fault_rx) = watch::channel(Fault::None);
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let task = tokio::spawn(accept_loop(
            listener,
            local_addr,
            Arc::clone(&shared),
            fault_rx,
            shutdown_rx,
        ));
        Ok(Self {
            local_addr,
            shared,
            fault_tx,
            shutdown_tx,
            task: Some(task),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn upstream(&self) -> SocketAddr {
        self.shared.upstream
    }

    /// Change the fault; it applies to the next chunk and to open connections at once.
    pub fn set_fault(&self, fault: Fault) {
        self.fault_tx.send_replace(fault);
    }

    pub fn fault(&self) -> Fault {
        *self.fault_tx.borrow()
    }

    pub fn stats(&self) -> ProxyStats {
        let c = &self.shared.counters;
        ProxyStats {
            bytes_to_upstream: c.bytes_to_upstream.load(Ordering::Relaxed),
            bytes_to_client: c.bytes_to_client.load(Ordering::Relaxed),
            bytes_blackholed: c.bytes_blackholed.load(Ordering::Relaxed),
            connections_accepted: c.connections_accepted.load(Ordering::Relaxed),
            connections_killed: c.connections_killed.load(Ordering::Relaxed),
        }
    }

    /// Stop listening and close every connection; returns when all are closed.
    pub async fn stop(mut self) {
        self.shutdown_tx.send_replace(true);
        if let Some(task) = self.task.take() {
            // The accept loop owns the connections: when it returns they are aborted.
            let _ = task.await;
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shutdown_tx.send_replace(true);
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    mut fault_rx: watch::Receiver<Fault>,
    mut shutdown_rx: watch::Receiver<bool>,
) {
    let mut listener = Some(listener);
    let mut connections = JoinSet::new();
    while !*shutdown_rx.borrow() {
        while connections.try_join_next().is_some() {}
        let fault = *fault_rx.borrow_and_update();
        if fault == Fault::Refuse {
            // Closing the socket makes connects fail with "connection refused".
            listener = None;
        } else if listener.is_none() {
            listener = TcpListener::bind(local_addr).await.ok();
            if listener.is_none() {
                tokio::time::sleep(REBIND_RETRY).await;
                continue;
            }
        }
        tokio::select! {
            accepted = accept(listener.as_ref()) => {
                if let Ok((stream, _)) = accepted {
                    shared.counters.connections_accepted.fetch_add(1, Ordering::Relaxed);
                    connections.spawn(serve(stream, Arc::clone(&shared), fault_rx.clone()));
                }
            }
            changed = fault_rx.changed() => if changed.is_err() { break },
            _ = shutdown_rx.changed() => {}
        }
    }
    connections.shutdown().await;
}

async fn accept(listener: Option<&TcpListener>) -> io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

/// How a fault ends a connection.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kill {
    Close,
    Reset,
}

async fn serve(mut client: TcpStream, shared: Arc<Shared>, mut fault_rx: watch::Receiver<Fault>) {
    let at_accept = *fault_rx.borrow_and_update();
    let kill = match at_accept {
        Fault::Drop(p) if shared.roll(p) => Some(Kill::Reset),
        Fault::Refuse => Some(Kill::Close),
        Fault::Blackhole => {
            swallow(&mut client, &shared, &mut fault_rx).await;
            Some(Kill::Close)
        }
        _ => None,
    };
    if let Some(kill) = kill {
        end(&client, kill, &shared);
        return;
    }
    let connect = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(shared.upstream)).await;
    let Ok(Ok(mut server)) = connect else {
        end(&client, Kill::Reset, &shared);
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let poisoned = AtomicBool::new(false);
    let kill = {
        let (cr, cw) = client.split();
        let (sr, sw) = server.split();
        let c = &shared.counters;
        let up = pipe(cr, sw, fault_rx.clone(), &c.bytes_to_upstream, c, &poisoned);
        let down = pipe(sr, cw, fault_rx.clone(), &c.bytes_to_client, c, &poisoned);
        tokio::select! {
            _ = async { tokio::join!(up, down) } => None,
            kill = watch_faults(&mut fault_rx, &shared, &poisoned) => Some(kill),
        }
    };
    if let Some(kill) = kill {
        end(&client, kill, &shared);
        end(&server, kill, &shared);
    }
}

/// Read and discard until the blackhole lifts or the client leaves.
async fn swallow(client: &mut TcpStream, shared: &Shared, fault_rx: &mut watch::Receiver<Fault>) {
    let mut buf = vec![0u8; CHUNK_BYTES];
    loop {
        tokio::select! {
            read = client.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    shared.counters.bytes_blackholed.fetch_add(n as u64, Ordering::Relaxed);
                }
            },
            changed = fault_rx.changed() => {
                if changed.is_err() || *fault_rx.borrow() != Fault::Blackhole {
                    return;
                }
            }
        }
    }
}

/// Wait for a fault change that ends this connection.
async fn watch_faults(
    fault_rx: &mut watch::Receiver<Fault>,
    shared: &Shared,
    poisoned: &AtomicBool,
) -> Kill {
    loop {
        if fault_rx.changed().await.is_err() {
            return Kill::Close;
        }
        match *fault_rx.borrow_and_update() {
            Fault::Refuse => return Kill::Close,
            Fault::Drop(p) if shared.roll(p) => return Kill::Reset,
            Fault::Blackhole => {}
            // Bytes were lost mid-stream: the connection is corrupt, make the peers reconnect.
            _ if poisoned.load(Ordering::Relaxed) => return Kill::Close,
            _ => {}
        }
    }
}

fn end(stream: &TcpStream, kill: Kill, shared: &Shared) {
    shared
        .counters
        .connections_killed
        .fetch_add(1, Ordering::Relaxed);
    if kill == Kill::Reset {
        // Zero linger turns the close (when the stream is dropped) into a RST.
        let _ = stream.set_zero_linger();
    }
}

/// Forward one direction: a reader stamps chunks with their release time into a bounded
/// queue; a writer releases them in order.
async fn pipe(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    fault_rx: watch::Receiver<Fault>,
    forwarded: &AtomicU64,
    counters: &Counters,
    poisoned: &AtomicBool,
) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(PIPE_QUEUE_CHUNKS);
    let blackholed = |n: usize| {
        counters
            .bytes_blackholed
            .fetch_add(n as u64, Ordering::Relaxed);
        poisoned.store(true, Ordering::Relaxed);
    };
    let reader = async {
        let mut buf = vec![0u8; CHUNK_BYTES];
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let release = match *fault_rx.borrow() {
                Fault::Blackhole => {
                    blackholed(n);
                    continue;
                }
                Fault::Delay(d) => Instant::now() + d,
                _ => Instant::now(),
            };
            if tx.send((release, buf[..n].to_vec())).await.is_err() {
                break;
            }
        }
        drop(tx);
    };
    let writer = async {
        while let Some((release, chunk)) = rx.recv().await {
            tokio::time::sleep_until(release).await;
            // A blackhole that began while the chunk waited swallows it too.
            if *fault_rx.borrow() == Fault::Blackhole {
                blackholed(chunk.len());
                continue;
            }
            if to.write_all(&chunk).await.is_err() {
                break;
            }
            forwarded.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        }
        rx.close();
        // Pass the half-close on, so the far side sees EOF as it would without the proxy.
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}
