//! etcd's gRPC services on the client port. Services not written yet (parts of Cluster and
//! Maintenance) answer `Unimplemented` through the generated defaults.

pub mod auth;
mod cluster;
mod kv;
mod lease;
mod maintenance;
pub mod watch;

use std::convert::Infallible;
use std::sync::Arc;

use http::{Request, Response};
use ketch_proto::auth_server::AuthServer;
use ketch_proto::cluster_server::ClusterServer;
use ketch_proto::kv_server::KvServer;
use ketch_proto::lease_server::LeaseServer;
use ketch_proto::maintenance_server::MaintenanceServer;
use ketch_proto::watch_server::WatchServer;
use tonic::body::Body;
use tower::Service;

use crate::node::Node;
pub use lease::LeasePeerApp;

/// gRPC allows this much above --max-request-bytes for framing, as etcd does, so that an
/// oversize request reaches etcd's own "request is too large" check.
pub(crate) const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

pub fn routes(node: &Arc<Node>) -> GrpcRoutes {
    let max_recv = node.limits.max_request_bytes + GRPC_OVERHEAD_BYTES;
    GrpcRoutes {
        kv: KvServer::new(kv::KvService { node: node.clone() }).max_decoding_message_size(max_recv),
        cluster: ClusterServer::new(cluster::ClusterService { node: node.clone() }),
        maintenance: MaintenanceServer::new(maintenance::MaintenanceService { node: node.clone() }),
        watch: WatchServer::new(watch::WatchService { node: node.clone() }),
        lease: LeaseServer::new(lease::LeaseService { node: node.clone() }),
        auth: AuthServer::new(auth::AuthService { node: node.clone() }),
    }
}

/// etcd's six gRPC services, chosen by the service name in the request's path
/// (`/etcdserverpb.KV/Range`: `etcdserverpb.KV`). tonic's own `Routes` matches every
/// request through axum's router (path patterns, URL parameters), whose own code took 1.6%
/// of the server's samples under serializable ranges (session 6's profile, noted in
/// results/2026-12-08-compare-4a3802d/NOTES.md); the services themselves are tonic's.
#[derive(Clone)]
pub struct GrpcRoutes {
    kv: KvServer<kv::KvService>,
    cluster: ClusterServer<cluster::ClusterService>,
    maintenance: MaintenanceServer<maintenance::MaintenanceService>,
    watch: WatchServer<watch::WatchService>,
    lease: LeaseServer<lease::LeaseService>,
    auth: AuthServer<auth::AuthService>,
}

impl GrpcRoutes {
    /// Answers one gRPC call; an unknown service is answered `Unimplemented`, as tonic's
    /// `Routes` answers it.
    pub async fn call(&self, req: Request<Body>) -> Response<Body> {
        let service = req
            .uri()
            .path()
            .strip_prefix('/')
            .and_then(|p| p.split_once('/'));
        let name = service.map_or("", |(name, _)| name);
        if name == name_of(&self.kv) {
            call(self.kv.clone(), req).await
        } else if name == name_of(&self.watch) {
            call(self.watch.clone(), req).await
        } else if name == name_of(&self.lease) {
            call(self.lease.clone(), req).await
        } else if name == name_of(&self.cluster) {
            call(self.cluster.clone(), req).await
        } else if name == name_of(&self.maintenance) {
            call(self.maintenance.clone(), req).await
        } else if name == name_of(&self.auth) {
            call(self.auth.clone(), req).await
        } else {
            tonic::Status::unimplemented("").into_http()
        }
    }
}

/// The gRPC service name a generated server answers (`etcdserverpb.KV`, ...).
fn name_of<S: tonic::server::NamedService>(_: &S) -> &'static str {
    S::NAME
}

async fn call<S>(mut service: S, req: Request<Body>) -> Response<Body>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
{
    let ready = std::future::poll_fn(|cx| service.poll_ready(cx)).await;
    let answer = match ready {
        Ok(()) => service.call(req).await,
        Err(never) => match never {},
    };
    match answer {
        Ok(resp) => resp,
        Err(never) => match never {},
    }
}
