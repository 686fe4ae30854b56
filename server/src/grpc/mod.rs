//! etcd's gRPC services on the client port. Services not written yet (parts of Cluster and
//! Maintenance) answer `Unimplemented` through the generated defaults.

pub mod auth;
mod cluster;
mod kv;
mod lease;
mod maintenance;
pub mod watch;

use std::sync::Arc;

use ketch_proto::auth_server::AuthServer;
use ketch_proto::cluster_server::ClusterServer;
use ketch_proto::kv_server::KvServer;
use ketch_proto::lease_server::LeaseServer;
use ketch_proto::maintenance_server::MaintenanceServer;
use ketch_proto::watch_server::WatchServer;
use tonic::service::Routes;

use crate::node::Node;
pub use lease::LeasePeerApp;

/// gRPC allows this much above --max-request-bytes for framing, as etcd does, so that an
/// oversize request reaches etcd's own "request is too large" check.
pub(crate) const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

pub fn routes(node: &Arc<Node>) -> Routes {
    let max_recv = node.limits.max_request_bytes + GRPC_OVERHEAD_BYTES;
    Routes::new(
        KvServer::new(kv::KvService { node: node.clone() }).max_decoding_message_size(max_recv),
    )
    .add_service(ClusterServer::new(cluster::ClusterService {
        node: node.clone(),
    }))
    .add_service(MaintenanceServer::new(maintenance::MaintenanceService {
        node: node.clone(),
    }))
    .add_service(WatchServer::new(watch::WatchService { node: node.clone() }))
    .add_service(LeaseServer::new(lease::LeaseService { node: node.clone() }))
    .add_service(AuthServer::new(auth::AuthService { node: node.clone() }))
}
