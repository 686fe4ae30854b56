//! Peer-traffic fault injection for three-member scenarios: one `faultproxy::FaultProxy` per
//! member, listening on the member's advertised peer port and forwarding to its real peer port.
//! Every connection another member dials *to* member i passes through proxy i. In etcd's
//! transport a member receives a peer's messages over connections it dialed itself and sends
//! over connections the peer dialed, so faulting proxy i mostly cuts what member i *sends*
//! (its stream traffic) and what others *post* to it: a one-way partition of member i.
//! Faulting every proxy partitions every member from every other.

use std::net::SocketAddr;

use crate::faultproxy::{Fault, FaultProxy};
use crate::servers::Cluster;

/// The proxies of one cluster, indexed like its members.
pub struct PeerProxies {
    proxies: Vec<FaultProxy>,
}

impl PeerProxies {
    /// Starts one proxy per member (advertised peer port -> listen peer port).
    pub async fn start(cluster: &Cluster) -> Result<PeerProxies, String> {
        let mut proxies = Vec::with_capacity(cluster.members.len());
        for m in &cluster.members {
            let listen = SocketAddr::from(([127, 0, 0, 1], m.config.advertised_peer_port));
            let upstream = SocketAddr::from(([127, 0, 0, 1], m.config.peer_port));
            let proxy = FaultProxy::start(listen, upstream)
                .await
                .map_err(|e| e.to_string())?;
            proxies.push(proxy);
        }
        Ok(PeerProxies { proxies })
    }

    /// Sets the fault on member `i`'s proxy.
    pub fn set(&self, i: usize, fault: Fault) {
        self.proxies[i].set_fault(fault);
    }

    /// Sets the fault on every proxy.
    pub fn set_all(&self, fault: Fault) {
        for p in &self.proxies {
            p.set_fault(fault);
        }
    }
}
