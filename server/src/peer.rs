//! The peer port (`--listen-peer-urls`): where the other members' raft RPCs arrive. Runs on
//! the raft executor (shard 0), since every peer request goes to the raft core. The wire and
//! the client side live in `ketch-raft`'s transport (docs/cluster.md); this module binds the
//! listeners from the configuration and runs one server per listener until told to stop.

use std::net::SocketAddr;
use std::path::PathBuf;

use ketch_config::Config;
use ketch_raft::{KetchRaft, StateStore};

/// The socket addresses of `--listen-peer-urls` (duplicates removed).
pub fn listen_addrs(config: &Config) -> anyhow::Result<Vec<SocketAddr>> {
    let mut out = Vec::new();
    for url in &config.listen_peer_urls {
        if url.is_tls() {
            anyhow::bail!(
                "--listen-peer-urls {}: peer TLS is not supported yet",
                url.host_port()
            );
        }
        let addr = crate::resolve_listen_url(url, "listen-peer-url")?;
        // glommio's listener sets SO_REUSEPORT: bind once without it, so a port already
        // taken (by another member, say) fails here as it fails etcd.
        std::net::TcpListener::bind(addr)
            .map_err(|e| anyhow::anyhow!("listen tcp {addr}: bind: {e}"))?;
        if !out.contains(&addr) {
            out.push(addr);
        }
    }
    Ok(out)
}

/// Binds every peer address on the current (raft) executor, before raft starts, so that a
/// bind failure stops startup (with etcd's wording).
pub fn bind(addrs: &[SocketAddr]) -> anyhow::Result<Vec<glommio::net::TcpListener>> {
    addrs
        .iter()
        .map(|a| {
            crate::shards::bind_one(*a).map_err(|e| anyhow::anyhow!("listen tcp {a}: bind: {e}"))
        })
        .collect()
}

/// Serves peer RPCs (and the forwarded lease calls, for `node`) on `listeners` for `raft` until `stop` is closed or sent to; then closes
/// the listeners and their connections. `recv_dir` holds snapshots while they arrive
/// (`<member-dir>/peer-recv`; not the `snap/` directory).
pub async fn serve_peers<S: StateStore>(
    raft: KetchRaft<S>,
    node: std::sync::Arc<crate::node::Node>,
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
            let app: std::rc::Rc<dyn ketch_raft::transport::PeerApp> =
                std::rc::Rc::new(crate::grpc::LeasePeerApp { node: node.clone() });
            glommio::spawn_local(ketch_raft::transport::serve_peers_with_app(
                raft.clone(),
                listener,
                cluster_id,
                recv_dir.clone(),
                Some(app),
                stopped,
            ))
        })
        .collect();
    for server in servers {
        if let Err(e) = server.await {
            tracing::error!("peer port: {e}");
        }
    }
}

/// How often a member checks whether it was removed from the cluster.
const REMOVAL_CHECK: std::time::Duration = std::time::Duration::from_millis(100);

/// Stops the process (as SIGTERM does) once this member, having been a member, is no longer
/// in the membership: etcd's removed member shuts itself down the same way.
pub async fn stop_when_removed(node: std::sync::Arc<crate::node::Node>) {
    let mut was_member = false;
    loop {
        glommio::timer::sleep(REMOVAL_CHECK).await;
        let is_member = node.raft.membership().get(node.member_id).is_some();
        if (was_member && !is_member) || node.raft.is_removed(node.member_id) {
            tracing::error!("the member has been permanently removed from the cluster");
            let _ =
                nix::sys::signal::kill(nix::unistd::getpid(), nix::sys::signal::Signal::SIGTERM);
            return;
        }
        was_member |= is_member;
    }
}
