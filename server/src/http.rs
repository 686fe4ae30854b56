//! One client port, two protocols: gRPC (HTTP/2, `content-type: application/grpc*`) goes to
//! tonic's routes; everything else is etcd's plain HTTP surface (`/health`, `/version`,
//! `/metrics`), answered with etcd's bodies, statuses and method rules.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::grpc::GrpcRoutes;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use tonic::body::Body;

#[path = "gateway/mod.rs"]
mod gateway;

use crate::node::Node;
use crate::version::{ETCD_CLUSTER_VERSION, ETCD_COMPAT_VERSION};

/// How long `/health` waits for a ReadIndex round before answering unhealthy (etcd 3.4 uses a
/// one-second budget for its health probe request).
const HEALTH_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct ClientService {
    pub routes: GrpcRoutes,
    pub node: Arc<Node>,
}

/// Connections never leave their shard (see `rt::LocalExec`), so handler futures need not be
/// `Send`: `/health` awaits a glommio timer.
type BoxFuture = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>>>>;

impl hyper::service::Service<Request<Incoming>> for ClientService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        if is_grpc(&req) {
            let routes = self.routes.clone();
            Box::pin(async move {
                let mut resp = routes.call(req.map(Body::new)).await;
                grpc_go_oversize_status(resp.headers_mut());
                Ok(resp)
            })
        } else {
            let node = self.node.clone();
            let routes = self.routes.clone();
            Box::pin(async move { Ok(plain_http(&node, &routes, req).await) })
        }
    }
}

/// tonic refuses a request above the decode limit with OutOfRange and its own wording; etcd
/// (grpc-go) answers ResourceExhausted "grpc: received message larger than max (N vs. M)".
/// The refusal is a trailers-only response, so its status sits in the headers.
fn grpc_go_oversize_status(headers: &mut http::HeaderMap) {
    const TONIC_PREFIX: &str = "Error, decoded message length too large: found ";
    let Some(message) = headers.get("grpc-message").and_then(|v| v.to_str().ok()) else {
        return;
    };
    let message = percent_decode(message);
    let Some(rest) = message.strip_prefix(TONIC_PREFIX) else {
        return;
    };
    let numbers: Vec<&str> = rest
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .collect();
    if let [found, limit] = numbers[..] {
        let text = format!("grpc: received message larger than max ({found} vs. {limit})");
        headers.insert("grpc-status", http::HeaderValue::from_static("8"));
        if let Ok(v) = http::HeaderValue::from_str(&text) {
            headers.insert("grpc-message", v);
        }
    }
}

/// grpc-message is percent-encoded (gRPC over HTTP/2 spec).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn is_grpc(req: &Request<Incoming>) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// etcd's HTTP handlers sit behind a CORS wrapper that adds these headers to every answer.
fn respond(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(
            "access-control-allow-headers",
            "accept, content-type, authorization",
        )
        .header(
            "access-control-allow-methods",
            "POST, GET, OPTIONS, PUT, DELETE",
        )
        .header("access-control-allow-origin", "*")
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::new(Full::new(body.into())))
        .expect("static response parts are valid")
}

/// Go's `http.Error` body and headers, as etcd's handlers produce them.
pub(crate) fn go_error(status: StatusCode, text: &str) -> Response<Body> {
    let mut resp = respond(status, "text/plain; charset=utf-8", format!("{text}\n"));
    resp.headers_mut().insert(
        "x-content-type-options",
        header::HeaderValue::from_static("nosniff"),
    );
    resp
}

fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut resp = go_error(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
    resp.headers_mut()
        .insert(header::ALLOW, header::HeaderValue::from_static(allow));
    resp
}

async fn plain_http(node: &Node, routes: &GrpcRoutes, req: Request<Incoming>) -> Response<Body> {
    let get_only = |ok: fn() -> Response<Body>| {
        if req.method() == Method::GET {
            ok()
        } else {
            method_not_allowed("GET")
        }
    };
    match req.uri().path() {
        "/version" => get_only(|| {
            respond(
                StatusCode::OK,
                "application/json",
                format!(
                    "{{\"etcdserver\":\"{ETCD_COMPAT_VERSION}\",\"etcdcluster\":\"{ETCD_CLUSTER_VERSION}\"}}"
                ),
            )
        }),
        "/health" => {
            if req.method() != Method::GET {
                return method_not_allowed("GET");
            }
            health(node).await
        }
        "/metrics" => respond(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            crate::metrics::render(node).await,
        ),
        path if path.starts_with("/v3/") || path.starts_with("/v3beta/") => {
            gateway::handle(routes, req).await
        }
        _ => go_error(StatusCode::NOT_FOUND, "404 page not found"),
    }
}

/// Healthy when the member has a leader and a ReadIndex round completes in time, as etcd's
/// `/health` checks for a leader and serves a linearizable request.
async fn health(node: &Node) -> Response<Body> {
    let healthy = node.raft.status().leader_id != 0
        && matches!(
            glommio::timer::timeout(HEALTH_TIMEOUT, async {
                // Through raft directly: a learner is healthy too, though it refuses
                // clients' linearizable reads.
                node.raft
                    .linearizable_read_barrier()
                    .await
                    .map_err(|_| glommio::GlommioError::<()>::TimedOut(HEALTH_TIMEOUT))
            })
            .await,
            Ok(())
        );
    if healthy {
        respond(
            StatusCode::OK,
            "text/plain; charset=utf-8",
            r#"{"health":"true"}"#,
        )
    } else {
        respond(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain; charset=utf-8",
            r#"{"health":"false"}"#,
        )
    }
}
