//! Limits and bad input over gRPC: empty keys, request size limits, invalid lease IDs,
//! inverted ranges, negative limits.

use etcd_client::{GetOptions, PutOptions};
use serde_json::json;

use crate::drivers::grpc;
use crate::scenario::{Area, Ctx, Res, Scenario, Topology, expect_grpc_err, ok, sc};
use crate::{check, check_eq};

macro_rules! entries {
    ($($name:literal, $f:ident, $fast:expr, $about:literal;)*) => {
        vec![$(sc($name, Area::Limits, Topology::Single, $about, $fast, |c| Box::pin($f(c)))),*]
    };
}

pub fn scenarios() -> Vec<Scenario> {
    entries![
        "limits/empty-key-put", empty_key_put, true, "put with an empty key is InvalidArgument";
        "limits/empty-key-get", empty_key_get, false, "range with an empty key is InvalidArgument";
        "limits/empty-key-delete", empty_key_delete, false, "delete with an empty key is InvalidArgument";
        "limits/request-too-large", request_too_large, true, "a put above --max-request-bytes (1.5 MiB) is rejected";
        "limits/message-too-large", message_too_large, false, "a message above the gRPC receive limit is ResourceExhausted";
        "limits/lease-id-zero-and-negative", lease_ids, false, "revoke/timetolive/put with lease 0 and -1";
        "limits/inverted-range", inverted_range, false, "range_end < key returns nothing";
        "limits/negative-limit", negative_limit, false, "a negative limit means no limit";
        "limits/ctl-missing-args", ctl_missing_args, false, "etcdctl usage errors exit 1 without touching the server";
    ]
}

async fn empty_key_put(c: &mut Ctx) -> Res {
    let mut cl = c.client().await?;
    let r = cl.put("", "v", None).await;
    c.record("put ''", grpc::result_json(&r, grpc::put_json));
    expect_grpc_err(&r, "InvalidArgument", "etcdserver: key is not provided")?;
    c.ctl_err("put '' v", "etcdserver: key is not provided")
        .await?;
    Ok(())
}

async fn empty_key_get(c: &mut Ctx) -> Res {
    let mut cl = c.client().await?;
    let r = cl.get("", None).await;
    c.record("get ''", grpc::result_json(&r, grpc::get_json));
    expect_grpc_err(&r, "InvalidArgument", "etcdserver: key is not provided")
}

async fn empty_key_delete(c: &mut Ctx) -> Res {
    let mut cl = c.client().await?;
    let r = cl.delete("", None).await;
    c.record("delete ''", grpc::result_json(&r, grpc::del_json));
    expect_grpc_err(&r, "InvalidArgument", "etcdserver: key is not provided")
}

async fn request_too_large(c: &mut Ctx) -> Res {
    let mut cl = c.client().await?;
    let r = cl
        .put("k", vec![b'x'; 1024 * 1024 + 600 * 1024], None)
        .await;
    c.record("put 1.6 MiB", grpc::result_json(&r, grpc::put_json));
    expect_grpc_err(&r, "InvalidArgument", "etcdserver: request is too large")?;
    let r = ok(
        cl.put("k", vec![b'x'; 1024 * 1024 + 256 * 1024], None)
            .await,
        "put 1.25 MiB",
    )?;
    c.record("put 1.25 MiB", grpc::put_json(&r));
    Ok(())
}

async fn message_too_large(c: &mut Ctx) -> Res {
    let mut cl = c.client().await?;
    let r = cl.put("k", vec![b'x'; 3 * 1024 * 1024], None).await;
    let code = r.as_ref().err().map(grpc::err_code);
    c.record("put 3 MiB", json!({"code": code}));
    check_eq!(code.as_deref(), Some("ResourceExhausted"), "code");
    Ok(())
}

async fn lease_ids(c: &mut Ctx) -> Res {
    let mut cl = c.client().await?;
    let r = cl.lease_revoke(0).await;
    c.record(
        "revoke 0",
        grpc::result_json(&r, |x| grpc::header_json(x.header())),
    );
    expect_grpc_err(&r, "NotFound", "etcdserver: requested lease not found")?;
    let r = ok(cl.lease_time_to_live(0, None).await, "timetolive 0")?;
    c.record("timetolive 0", json!({"ttl": r.ttl()}));
    check_eq!(r.ttl(), -1, "ttl of lease 0");
    let r = cl
        .put("k", "v", Some(PutOptions::new().with_lease(-1)))
        .await;
    c.record("put lease -1", grpc::result_json(&r, grpc::put_json));
    expect_grpc_err(&r, "NotFound", "etcdserver: requested lease not found")?;
    let r = cl.lease_revoke(-1).await;
    c.record(
        "revoke -1",
        grpc::result_json(&r, |x| grpc::header_json(x.header())),
    );
    expect_grpc_err(&r, "NotFound", "etcdserver: requested lease not found")
}

async fn inverted_range(c: &mut Ctx) -> Res {
    let mut cl = c.client().await?;
    for k in ["a", "b", "c"] {
        ok(cl.put(k, "v", None).await, "put")?;
    }
    let r = ok(
        cl.get("c", Some(GetOptions::new().with_range("a"))).await,
        "get c..a",
    )?;
    c.record("get c..a", grpc::get_json(&r));
    check_eq!((r.kvs().len(), r.count()), (0, 0), "(kvs, count)");
    Ok(())
}

async fn negative_limit(c: &mut Ctx) -> Res {
    let mut cl = c.client().await?;
    for k in ["a", "b", "c"] {
        ok(cl.put(k, "v", None).await, "put")?;
    }
    let r = ok(
        cl.get("a", Some(GetOptions::new().with_range("z").with_limit(-1)))
            .await,
        "get limit -1",
    )?;
    c.record("limit -1", grpc::get_json(&r));
    check_eq!((r.kvs().len(), r.more()), (3, false), "(kvs, more)");
    Ok(())
}

async fn ctl_missing_args(c: &mut Ctx) -> Res {
    c.ctl_err(
        "put",
        "put command needs 1 argument and input from stdin or 2 arguments",
    )
    .await?;
    c.ctl_err(
        "get",
        "get command needs one argument as key and an optional argument as range_end",
    )
    .await?;
    let out = c.ctl("get --nosuchflag k").await?;
    check!(
        !out.ok() && out.stderr.contains("unknown flag: --nosuchflag"),
        "unknown flag: {:?}",
        out.stderr
    );
    Ok(())
}
