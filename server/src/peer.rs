//! The peer port (`--listen-peer-urls`): where the other members' raft RPCs arrive. Runs on
//! the raft executor (shard 0), since every peer request goes to the raft core. The wire and
//! the client side live in `ketch-raft`'s transport (docs/cluster.md); this module binds the
//! listeners from the configuration and runs one server per listener until told to stop.
//! An `https://` listener serves TLS with the `--peer-*` certificate (see `tls::peer_tls`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use ketch_config::Config;
use ketch_raft::{PeerSide, StateStore};
use rustls::ServerConfig;

/// One peer listen address and, for an `https://` URL, the TLS it serves.
pub struct PeerAddr {
    pub addr: SocketAddr,
    pub tls: Option<Arc<ServerConfig>>,
}

/// A bound peer listener and the TLS it serves.
pub struct PeerListener {
    listener: glommio::net::TcpListener,
    tls: Option<Arc<ServerConfig>>,
}

/// The socket addresses of `--listen-peer-urls` (duplicates removed); https ones serve `tls`
/// (which `tls::peer_tls` has built whenever an https peer URL is listed).
pub fn listen_addrs(
    config: &Config,
    tls: Option<&Arc<ServerConfig>>,
) -> anyhow::Result<Vec<PeerAddr>> {
    let mut out: Vec<PeerAddr> = Vec::new();
    for url in &config.listen_peer_urls {
        let addr = crate::resolve_listen_url(url, "listen-peer-url")?;
        // glommio's listener sets SO_REUSEPORT: bind once without it, so a port already
        // taken (by another member, say) fails here as it fails etcd.
        crate::shards::probe_port(addr)?;
        if out.iter().any(|p| p.addr == addr) {
            continue;
        }
        let tls = if url.is_tls() {
            let tls = tls.with_context(|| {
                format!(
                    "cannot listen on TLS for {}: KeyFile and CertFile are not presented",
                    url.host_port()
                )
            })?;
            Some(tls.clone())
        } else {
            None
        };
        out.push(PeerAddr { addr, tls });
    }
    Ok(out)
}

/// Binds every peer address on the current (raft) executor, before raft starts, so that a
/// bind failure stops startup (with etcd's wording).
pub fn bind(addrs: &[PeerAddr]) -> anyhow::Result<Vec<PeerListener>> {
    addrs
        .iter()
        .map(|PeerAddr { addr, tls }| {
            let listener = crate::shards::bind_one(*addr)
                .map_err(|e| anyhow::anyhow!("listen tcp {addr}: bind: {e}"))?;
            Ok(PeerListener {
                listener,
                tls: tls.clone(),
            })
        })
        .collect()
}

/// Serves peer RPCs (and the forwarded lease calls, for `node`) on `listeners` for `raft` until `stop` is closed or sent to; then closes
/// the listeners and their connections. `recv_dir` holds snapshots while they arrive
/// (`<member-dir>/peer-recv`; not the `snap/` directory).
pub async fn serve_peers<S: StateStore>(
    member: PeerSide<S>,
    node: std::sync::Arc<crate::node::Node>,
    listeners: Vec<PeerListener>,
    cluster_id: u64,
    recv_dir: PathBuf,
    stop: flume::Receiver<()>,
) {
    let servers: Vec<_> = listeners
        .into_iter()
        .map(|PeerListener { listener, tls }| {
            let stop = stop.clone();
            let stopped = async move {
                let _ = stop.recv_async().await;
            };
            let app: std::rc::Rc<dyn ketch_raft::transport::PeerApp> =
                std::rc::Rc::new(crate::grpc::LeasePeerApp { node: node.clone() });
            glommio::spawn_local(ketch_raft::transport::serve_peers_with_app(
                member.clone(),
                listener,
                tls,
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
