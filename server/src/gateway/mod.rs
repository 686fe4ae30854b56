//! etcd's JSON gateway (grpc-gateway) on the client port: `POST /v3/...` and `/v3beta/...`
//! mapped onto the same services the gRPC API uses.

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use tonic::body::Body;

use crate::node::Node;

/// Answers a gateway request. Until the gateway exists every path is unknown, as on a server
/// without it.
pub async fn handle(_node: &Node, _req: Request<Incoming>) -> Response<Body> {
    crate::http::go_error(StatusCode::NOT_FOUND, "404 page not found")
}
