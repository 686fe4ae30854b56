//! etcd's gRPC services on the client port. Services not written yet (Watch, Lease, Auth and
//! parts of Cluster and Maintenance) answer `Unimplemented` through the generated defaults.

mod cluster;
mod kv;
mod maintenance;

use std::sync::Arc;

use ketch_proto::cluster_server::ClusterServer;
use ketch_proto::kv_server::KvServer;
use ketch_proto::maintenance_server::MaintenanceServer;
use tonic::service::Routes;

use crate::node::Node;

/// gRPC allows this much above --max-request-bytes for framing, as etcd does, so that an
/// oversize request reaches etcd's own "request is too large" check.
const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

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
}
