//! Peer-traffic fault injection for three-member scenarios: one fault proxy per member,
//! listening on the member's advertised peer port and forwarding to its real peer port, so
//! every connection another member dials to it passes through the proxy.

use crate::servers::Cluster;

/// The proxies of one cluster, indexed like its members.
pub struct PeerProxies {
    // TODO(faultproxy): hold one `faultproxy::FaultProxy` handle per member once that API lands.
    _members: usize,
}

impl PeerProxies {
    /// Starts one proxy per member (advertised peer port -> listen peer port).
    pub async fn start(cluster: &Cluster) -> Result<PeerProxies, String> {
        let _ = cluster;
        Err("TODO(faultproxy): faultproxy::FaultProxy is not available yet".to_string())
    }
}
