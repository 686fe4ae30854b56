//! The lean KV client (`grpc`) against a real etcd: what it puts is what a range and a txn
//! read back, etcd's refusals come back with etcd's code and message, and a call on a
//! connection whose server died fails instead of hanging.

use std::time::Duration;

use ketch_loadgen::connect::Dial;
use ketch_loadgen::grpc::KvConn;
use ketch_proto::etcdserverpb::request_op::Request;
use ketch_proto::etcdserverpb::response_op::Response;
use ketch_proto::etcdserverpb::{PutRequest, RangeRequest, RequestOp, TxnRequest};
use tonic::Code;

mod common;

fn put(key: &str, value: &str) -> PutRequest {
    PutRequest {
        key: key.as_bytes().to_vec().into(),
        value: value.as_bytes().to_vec().into(),
        prev_kv: true,
        ..Default::default()
    }
}

fn range(key: &str, end: &str) -> RangeRequest {
    RangeRequest {
        key: key.as_bytes().to_vec().into(),
        range_end: end.as_bytes().to_vec().into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn lean_kv_calls_round_trip_and_report_etcds_errors() {
    let etcd = common::etcd().await;
    let dial = Dial::plain(Duration::from_secs(5));
    let kv = KvConn::connect(&etcd.client_url, &dial).await.unwrap();

    let first = kv.put(&put("a", "1")).await.unwrap();
    let second = kv.put(&put("a", "2")).await.unwrap();
    let header = |h: Option<ketch_proto::etcdserverpb::ResponseHeader>| h.unwrap().revision;
    assert_eq!(header(second.header), header(first.header) + 1);
    assert_eq!(&second.prev_kv.unwrap().value[..], b"1");
    kv.put(&put("b", &"x".repeat(100_000))).await.unwrap();

    let all = kv.range(&range("a", "c")).await.unwrap();
    assert_eq!(all.count, 2);
    assert_eq!(&all.kvs[0].value[..], b"2");
    assert_eq!(
        all.kvs[1].value.len(),
        100_000,
        "a value larger than one h2 frame"
    );

    let txn = TxnRequest {
        success: vec![
            RequestOp {
                request: Some(Request::RequestPut(put("c", "3"))),
            },
            RequestOp {
                request: Some(Request::RequestRange(range("a", "d"))),
            },
        ],
        ..Default::default()
    };
    let answer = kv.txn(&txn).await.unwrap();
    assert!(answer.succeeded);
    match &answer.responses[1].response {
        Some(Response::ResponseRange(r)) => assert_eq!(r.count, 3),
        other => panic!("second txn answer {other:?}"),
    }

    // etcd's refusal, as etcd sends it: code and message.
    let refused = kv.put(&put("", "v")).await.unwrap_err();
    assert_eq!(refused.code, Code::InvalidArgument);
    assert_eq!(refused.message, "etcdserver: key is not provided");
    assert_eq!(
        refused.to_string(),
        "InvalidArgument: etcdserver: key is not provided"
    );
    // The connection still serves after a refused call.
    assert_eq!(kv.range(&range("c", "")).await.unwrap().count, 1);

    drop(etcd);
    let dead = tokio::time::timeout(Duration::from_secs(10), kv.range(&range("a", "")))
        .await
        .expect("a call on a dead connection returns");
    assert!(dead.is_err(), "a call answered after etcd stopped");
}

/// etcd on fixed ports and data dir, killed and started again: the same `KvConn` serves
/// again after the restart (a call in between fails), as a gRPC client reconnects.
#[tokio::test]
async fn a_connection_dials_again_after_the_server_restarts() {
    use std::process::{Command, Stdio};
    let tmp = tempfile::tempdir().unwrap();
    let port = |l: std::net::TcpListener| l.local_addr().unwrap().port();
    let client = port(std::net::TcpListener::bind("127.0.0.1:0").unwrap());
    let peer = port(std::net::TcpListener::bind("127.0.0.1:0").unwrap());
    let (cu, pu) = (
        format!("http://127.0.0.1:{client}"),
        format!("http://127.0.0.1:{peer}"),
    );
    let flags = ketch_loadgen::compare::member_flags("restart", &tmp.path().join("data"), &cu, &pu);
    let start = || {
        Command::new(common::etcd_bin())
            .args(&flags)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting etcd")
    };
    /// Retries `put` until it succeeds (the server is starting) or 20 s pass.
    async fn put_until_ok(kv: &KvConn, key: &str) -> Result<(), String> {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            match kv.put(&put(key, "v")).await {
                Ok(_) => return Ok(()),
                Err(e) if std::time::Instant::now() > deadline => return Err(e.to_string()),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
    let mut etcd = start();
    let dial = Dial::plain(Duration::from_secs(5));
    let kv = loop {
        match KvConn::connect(&cu, &dial).await {
            Ok(kv) => break kv,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    put_until_ok(&kv, "before").await.unwrap();

    etcd.kill().unwrap();
    etcd.wait().unwrap();
    assert!(
        kv.put(&put("down", "v")).await.is_err(),
        "a put with etcd down"
    );
    let mut etcd = start();
    put_until_ok(&kv, "after")
        .await
        .expect("the connection serves again after the restart");
    let got = kv.range(&range("after", "")).await.unwrap();
    assert_eq!(got.count, 1);
    assert_eq!(kv.range(&range("before", "")).await.unwrap().count, 1);
    etcd.kill().unwrap();
    etcd.wait().unwrap();
}
