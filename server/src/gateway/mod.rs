//! etcd's JSON gateway (grpc-gateway) on the client port: `POST /v3/...` and `/v3beta/...`.
//! As in etcd, where the gateway is a gRPC client of its own server, each request is
//! transcoded to a gRPC call and sent through the same tonic routes the gRPC port serves, so
//! behaviour, validation and errors are those of the gRPC API. Route table in `routes`,
//! JSON rules in `json`; this file is the HTTP adapter.

mod go_base64;
mod go_json;
mod json;
mod routes;

use std::pin::Pin;
use std::task::{Context, Poll};

use crate::grpc::GrpcRoutes;
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Body as _, Frame, Incoming};
use prost_reflect::MessageDescriptor;
use tonic::body::Body;

use routes::{Route, Shape};

/// The largest JSON request body read for a unary call, or one pending streamed request (etcd's own limit is the gRPC one,
/// --max-request-bytes plus framing, which the routes still apply to the encoded message).
const MAX_JSON_BODY_BYTES: usize = 64 * 1024 * 1024;
/// Requests of a streaming call (watch, keep-alive) queued towards the gRPC stream.
const STREAM_REQUEST_CAPACITY: usize = 16;

/// Answers a gateway request by calling the gRPC `routes`.
pub async fn handle(routes: &GrpcRoutes, req: Request<Incoming>) -> Response<Body> {
    // etcd's CORS wrapper answers every preflight itself, before any route lookup.
    if req.method() == Method::OPTIONS {
        return cors_builder(StatusCode::OK)
            .body(Body::empty())
            .expect("static response parts are valid");
    }
    let Some(route) = routes::lookup(req.uri().path()) else {
        return crate::http::go_error(StatusCode::NOT_FOUND, "Not Found");
    };
    if req.method() != Method::POST {
        return crate::http::go_error(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
    }
    match route.shape {
        Shape::Unary | Shape::ServerStream => unary_request(routes, route, req).await,
        Shape::Bidi => bidi(routes, route, req).await,
    }
}

async fn unary_request(
    routes: &GrpcRoutes,
    route: Route,
    req: Request<Incoming>,
) -> Response<Body> {
    let authorization = req.headers().get(header::AUTHORIZATION).cloned();
    let body = match read_body(req.into_body()).await {
        Ok(b) => b,
        Err(e) => return error_json(tonic::Code::InvalidArgument, &e),
    };
    let frame = match json::first_value(&body)
        .and_then(|v| json::request_frame(&json::message(route.request), v))
    {
        Ok(f) => f,
        Err(e) => return error_json(tonic::Code::InvalidArgument, &e),
    };
    let grpc = call(routes, route, authorization, Body::new(Full::new(frame))).await;
    let resp_desc = json::message(route.response);
    if route.shape == Shape::ServerStream {
        return streamed(grpc, resp_desc, None);
    }
    unary_response(grpc, &resp_desc).await
}

async fn read_body(body: Incoming) -> Result<Bytes, String> {
    let limited = http_body_util::Limited::new(body, MAX_JSON_BODY_BYTES);
    match limited.collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) => Err(e.to_string()),
    }
}

/// Sends one gRPC request through the routes, as an HTTP/2 gRPC client would. The HTTP
/// `Authorization` header becomes the call's `authorization` metadata, where etcd's
/// grpc-gateway puts it and where auth looks for a token (an empty one included). No client
/// certificate name is passed on: etcd ignores it for gateway calls.
async fn call(
    routes: &GrpcRoutes,
    route: Route,
    authorization: Option<http::HeaderValue>,
    body: Body,
) -> Response<Body> {
    let mut builder = Request::builder();
    if let Some(v) = authorization {
        builder = builder.header(header::AUTHORIZATION, v);
    }
    let req = builder
        .method(Method::POST)
        .version(http::Version::HTTP_2)
        .uri(route.grpc_path())
        .header(header::CONTENT_TYPE, "application/grpc")
        .header(header::TE, "trailers")
        .body(body)
        .expect("static request parts are valid");
    let mut resp = routes.call(req).await;
    // The gRPC port's rewrite of tonic's oversize refusal into grpc-go's status and wording.
    super::grpc_go_oversize_status(resp.headers_mut());
    resp
}

/// A unary answer: the one message, or the status from the trailers (or from the headers of
/// a trailers-only answer).
async fn unary_response(grpc: Response<Body>, desc: &MessageDescriptor) -> Response<Body> {
    if let Some(status) = failed_status(grpc.headers()) {
        return status_json(&status);
    }
    let collected = match grpc.into_body().collect().await {
        Ok(c) => c,
        Err(s) => return status_json(&s),
    };
    let trailers = collected.trailers().cloned().unwrap_or_default();
    if let Some(status) = failed_status(&trailers) {
        return status_json(&status);
    }
    let mut data = BytesMut::from(&collected.to_bytes()[..]);
    let Some(payload) = json::next_frame(&mut data) else {
        return error_json(tonic::Code::Internal, "gateway: no response message");
    };
    match json::response_json(desc, payload) {
        Ok(body) => json_response(StatusCode::OK, body),
        Err(e) => error_json(tonic::Code::Internal, &e),
    }
}

fn failed_status(headers: &HeaderMap) -> Option<tonic::Status> {
    tonic::Status::from_header_map(headers).filter(|s| s.code() != tonic::Code::Ok)
}

/// A bidirectional call: concatenated JSON requests in, `{"result":...}` lines out. As on
/// etcd, a malformed first request fails the call before any answer; the gRPC stream stays
/// open after the HTTP body ends (etcd keeps serving a watch after the client's half-close)
/// until the client goes away.
async fn bidi(routes: &GrpcRoutes, route: Route, req: Request<Incoming>) -> Response<Body> {
    let desc = json::message(route.request);
    let authorization = req.headers().get(header::AUTHORIZATION).cloned();
    let mut body = req.into_body();
    let mut buf = BytesMut::new();
    let (tx, rx) = flume::bounded::<Bytes>(STREAM_REQUEST_CAPACITY);
    // The first request decides between an error answer and a stream.
    let first = loop {
        let (values, err) = json::drain_values(&mut buf);
        if let Some(e) = err {
            return error_json(tonic::Code::Unknown, &e);
        }
        if !values.is_empty() {
            break Some(values);
        }
        if buf.len() > MAX_JSON_BODY_BYTES {
            return error_json(tonic::Code::Unknown, "http: request body too large");
        }
        match body.frame().await {
            Some(Ok(f)) => {
                if let Ok(d) = f.into_data() {
                    buf.extend_from_slice(&d);
                }
            }
            Some(Err(e)) => return error_json(tonic::Code::Unknown, &e.to_string()),
            None => break None,
        }
    };
    let mut pending = Vec::new();
    for v in first.into_iter().flatten() {
        match json::object_or_error(v).and_then(|v| json::request_frame(&desc, v)) {
            Ok(f) => pending.push(f),
            Err(e) => return error_json(tonic::Code::Unknown, &e),
        }
    }
    glommio::spawn_local(pump_requests(body, buf, desc, pending, tx.clone())).detach();
    let requests = rx.into_stream().map_ok_frames();
    let grpc = call(
        routes,
        route,
        authorization,
        Body::new(StreamBody::new(requests)),
    )
    .await;
    // The answer holds a sender, which keeps the gRPC request stream open while it is read.
    streamed(grpc, json::message(route.response), Some(tx))
}

/// Feeds the rest of a streamed HTTP body to the gRPC request stream, one frame per JSON value.
async fn pump_requests(
    mut body: Incoming,
    mut buf: BytesMut,
    desc: MessageDescriptor,
    first: Vec<Bytes>,
    tx: flume::Sender<Bytes>,
) {
    for frame in first {
        if tx.send_async(frame).await.is_err() {
            return;
        }
    }
    while let Some(Ok(f)) = body.frame().await {
        let Ok(d) = f.into_data() else { continue };
        buf.extend_from_slice(&d);
        let (values, err) = json::drain_values(&mut buf);
        for v in values {
            let Ok(frame) = json::object_or_error(v).and_then(|v| json::request_frame(&desc, v))
            else {
                return;
            };
            if tx.send_async(frame).await.is_err() {
                return;
            }
        }
        // A malformed or oversized request ends the request side, as a decode error does in
        // grpc-gateway; answers already under way keep flowing.
        if err.is_some() || buf.len() > MAX_JSON_BODY_BYTES {
            return;
        }
    }
}

trait FrameStream {
    fn map_ok_frames(self) -> FramesOf<Self>
    where
        Self: Sized;
}

impl<S: futures_lite::Stream<Item = Bytes>> FrameStream for S {
    fn map_ok_frames(self) -> FramesOf<Self> {
        FramesOf(self)
    }
}

/// A stream of gRPC frames as an HTTP body's data frames.
struct FramesOf<S>(S);

impl<S: futures_lite::Stream<Item = Bytes> + Unpin> futures_lite::Stream for FramesOf<S> {
    type Item = Result<Frame<Bytes>, tonic::Status>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.0)
            .poll_next(cx)
            .map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

/// A streaming answer: each gRPC message as a `{"result":...}` line; a failed status before
/// any message is an error answer, after one an `{"error":{...}}` line (grpc-gateway v1).
fn streamed(
    grpc: Response<Body>,
    desc: MessageDescriptor,
    keep_open: Option<flume::Sender<Bytes>>,
) -> Response<Body> {
    if let Some(status) = failed_status(grpc.headers()) {
        return status_json(&status);
    }
    let lines = ResultLines {
        inner: grpc.into_body(),
        buf: BytesMut::new(),
        desc,
        done: false,
        _keep_open: keep_open,
    };
    json_builder(StatusCode::OK)
        .body(Body::new(StreamBody::new(lines)))
        .expect("static response parts are valid")
}

struct ResultLines {
    inner: Body,
    buf: BytesMut,
    desc: MessageDescriptor,
    done: bool,
    _keep_open: Option<flume::Sender<Bytes>>,
}

impl ResultLines {
    fn line_of(&self, payload: Bytes) -> Bytes {
        let mut out = b"{\"result\":".to_vec();
        match json::response_json(&self.desc, payload) {
            Ok(j) => out.extend_from_slice(&j),
            Err(_) => out.extend_from_slice(b"{}"),
        }
        out.extend_from_slice(b"}\n");
        out.into()
    }
}

impl futures_lite::Stream for ResultLines {
    type Item = Result<Frame<Bytes>, tonic::Status>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(payload) = json::next_frame(&mut self.buf) {
                let line = self.line_of(payload);
                return Poll::Ready(Some(Ok(Frame::data(line))));
            }
            if self.done {
                return Poll::Ready(None);
            }
            let frame = match Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => {
                    self.done = true;
                    continue;
                }
                Poll::Ready(Some(Err(s))) => {
                    self.done = true;
                    return Poll::Ready(Some(Ok(Frame::data(stream_error_line(&s)))));
                }
                Poll::Ready(Some(Ok(f))) => f,
            };
            match frame.into_data() {
                Ok(d) => self.buf.extend_from_slice(&d),
                Err(f) => {
                    self.done = true;
                    if let Some(s) = f.trailers_ref().and_then(failed_status) {
                        return Poll::Ready(Some(Ok(Frame::data(stream_error_line(&s)))));
                    }
                }
            }
        }
    }
}

/// grpc-gateway v1's in-stream error object.
fn stream_error_line(s: &tonic::Status) -> Bytes {
    let http = http_status_of(s.code());
    let body = serde_json::json!({"error": {
        "grpc_code": s.code() as i32,
        "http_code": http.as_u16(),
        "message": s.message(),
        "http_status": http.canonical_reason().unwrap_or(""),
    }});
    let mut out = serde_json::to_vec(&body).expect("json values serialize");
    out.push(b'\n');
    out.into()
}

fn status_json(s: &tonic::Status) -> Response<Body> {
    error_json(s.code(), s.message())
}

/// grpc-gateway's error body: `{"error","message","code"}` with the mapped HTTP status.
fn error_json(code: tonic::Code, message: &str) -> Response<Body> {
    let body = serde_json::to_vec(&ErrorBody {
        error: message,
        message,
        code: code as i32,
    })
    .expect("error bodies serialize");
    json_response(http_status_of(code), body)
}

#[derive(serde::Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: &'a str,
    code: i32,
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response<Body> {
    json_builder(status)
        .body(Body::new(Full::new(Bytes::from(body))))
        .expect("static response parts are valid")
}

/// etcd's CORS wrapper adds these headers to every HTTP answer, the gateway's included.
fn json_builder(status: StatusCode) -> http::response::Builder {
    cors_builder(status).header(header::CONTENT_TYPE, "application/json")
}

fn cors_builder(status: StatusCode) -> http::response::Builder {
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
}

/// grpc-gateway v1's `HTTPStatusFromCode`.
fn http_status_of(code: tonic::Code) -> StatusCode {
    use tonic::Code as C;
    match code {
        C::Ok => StatusCode::OK,
        C::Cancelled => StatusCode::REQUEST_TIMEOUT,
        C::Unknown | C::Internal | C::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
        C::InvalidArgument | C::OutOfRange => StatusCode::BAD_REQUEST,
        C::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        C::NotFound => StatusCode::NOT_FOUND,
        C::AlreadyExists | C::Aborted => StatusCode::CONFLICT,
        C::PermissionDenied => StatusCode::FORBIDDEN,
        C::Unauthenticated => StatusCode::UNAUTHORIZED,
        C::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        C::FailedPrecondition => StatusCode::PRECONDITION_FAILED,
        C::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        C::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
    }
}
