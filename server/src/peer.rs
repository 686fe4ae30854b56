//! The peer port (`--listen-peer-urls`): where the other members' raft RPCs arrive. Runs on
//! the raft executor (shard 0), since every peer request goes to the raft core. The wire and
//! the client side live in `ketch-raft`'s transport (docs/cluster.md); this module binds the
//! listeners from the configuration and runs one server per listener until told to stop.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use anyhow::Context;
use ketch_config::Config;
use ketch_raft::{PeerNetwork, RaftNode, StateStore};

/// openraft's network for `start`: HTTP/2 to each member's first peer URL.
pub fn network(member_id: u64, cluster_id: u64) -> PeerNetwork {
    PeerNetwork::new(member_id, cluster_id)
}

/// The socket addresses of `--listen-peer-urls` (IPv4 first, duplicates removed).
pub fn listen_addrs(config: &Config) -> anyhow::Result<Vec<SocketAddr>> {
    let mut out = Vec::new();
    for url in &config.listen_peer_urls {
        let host_port = url.host_port();
        let mut addrs: Vec<SocketAddr> = host_port
            .to_socket_addrs()
            .with_context(|| format!("resolving --listen-peer-urls {host_port}"))?
            .collect();
        addrs.sort_by_key(|a| !a.is_ipv4());
        let addr = *addrs
            .first()
            .with_context(|| format!("{host_port} resolves to nothing"))?;
        if !out.contains(&addr) {
            out.push(addr);
        }
    }
    Ok(out)
}

/// Binds every peer address on the current (raft) executor. Call before `ketch_raft::start`
/// returns control to peers, so that a bind failure stops startup.
pub fn bind(addrs: &[SocketAddr]) -> anyhow::Result<Vec<glommio::net::TcpListener>> {
    addrs
        .iter()
        .map(|a| {
            glommio::net::TcpListener::bind(a)
                .map_err(|e| anyhow::anyhow!("binding the peer port {a}: {e}"))
        })
        .collect()
}

/// Serves peer RPCs on `listeners` for `raft_node` until `stop` is closed or sent to; then
/// closes the listeners and their connections. `recv_dir` holds snapshots while they arrive
/// (e.g. `<member-dir>/peer-recv`; not the `snap/` directory).
pub async fn serve_peers<S: StateStore>(
    raft_node: &RaftNode<S>,
    listeners: Vec<glommio::net::TcpListener>,
    cluster_id: u64,
    recv_dir: PathBuf,
    stop: flume::Receiver<()>,
) {
    let servers: Vec<_> = listeners
        .into_iter()
        .map(|listener| {
            let stop = stop.clone();
            let stopped = async move {
                let _ = stop.recv_async().await;
            };
            glommio::spawn_local(ketch_raft::serve_peers(
                raft_node.raft.clone(),
                listener,
                cluster_id,
                recv_dir.clone(),
                stopped,
            ))
            .detach()
        })
        .collect();
    for server in servers {
        if let Some(Err(e)) = server.await {
            tracing::error!("peer port: {e}");
        }
    }
}
