//! The JSON gateway over HTTP/1.1: base64 bytes, int64 as strings, errors as JSON, and the
//! responses to malformed JSON, wrong methods and unknown paths.

use serde_json::{Value, json};

use crate::drivers::gateway::{b64, unb64};
use crate::scenario::{Area, Ctx, Res, Scenario, Topology, sc};
use crate::{check, check_eq};

macro_rules! entries {
    ($($name:literal, $f:ident, $fast:expr, $about:literal;)*) => {
        vec![$(sc($name, Area::Gateway, Topology::Single, $about, $fast, |c| Box::pin($f(c)))),*]
    };
}

pub fn scenarios() -> Vec<Scenario> {
    entries![
        "gateway/put-range", put_range, true, "put and range with base64 bytes and int64 strings";
        "gateway/deleterange", deleterange, false, "deleterange with prev_kv";
        "gateway/txn", txn, false, "a txn with a compare and both branches";
        "gateway/lease-grant-revoke", lease, false, "lease grant, timetolive, revoke";
        "gateway/compaction", compaction, false, "kv/compaction then a read below it fails with code 11";
        "gateway/cluster-member-list", member_list, false, "cluster/member/list";
        "gateway/maintenance-status", maintenance_status, false, "maintenance/status";
        "gateway/malformed-json", malformed_json, true, "truncated JSON is 400 with code 3";
        "gateway/bad-base64", bad_base64, false, "a key that is not base64 is 400";
        "gateway/wrong-method", wrong_method, true, "GET on a POST endpoint is 405";
        "gateway/unknown-path", unknown_path, false, "an unknown /v3 path is 404";
        "gateway/empty-key-error", empty_key_error, false, "an empty key gives etcd's error as JSON";
        "gateway/unknown-field-ignored", unknown_field, false, "unknown JSON fields are ignored";
    ]
}

async fn post(c: &mut Ctx, path: &str, body: Value) -> Res<(u16, Value)> {
    let r = c.http("POST", path, Some(&body.to_string())).await?;
    Ok((r.status, r.json()))
}

async fn put_range(c: &mut Ctx) -> Res {
    let (s, _) = post(
        c,
        "/v3/kv/put",
        json!({"key": b64("foo"), "value": b64("bar")}),
    )
    .await?;
    check_eq!(s, 200, "put status");
    let (s, v) = post(c, "/v3/kv/range", json!({"key": b64("foo")})).await?;
    check_eq!(s, 200, "range status");
    check_eq!(v["count"], json!("1"), "count is a string");
    check_eq!(v["kvs"][0]["value"], json!(b64("bar")), "value is base64");
    check_eq!(v["kvs"][0]["version"], json!("1"), "version");
    check_eq!(
        v["header"]["revision"],
        json!(c.r(1).to_string()),
        "revision"
    );
    Ok(())
}

async fn deleterange(c: &mut Ctx) -> Res {
    for k in ["a", "b"] {
        post(c, "/v3/kv/put", json!({"key": b64(k), "value": b64("1")})).await?;
    }
    let (s, v) = post(
        c,
        "/v3/kv/deleterange",
        json!({"key": b64("a"), "range_end": b64("c"), "prev_kv": true}),
    )
    .await?;
    check_eq!(s, 200, "status");
    check_eq!(v["deleted"], json!("2"), "deleted");
    check_eq!(v["prev_kvs"].as_array().map(Vec::len), Some(2), "prev_kvs");
    Ok(())
}

async fn txn(c: &mut Ctx) -> Res {
    post(c, "/v3/kv/put", json!({"key": b64("k"), "value": b64("v")})).await?;
    let body = json!({
        "compare": [{"key": b64("k"), "result": "EQUAL", "target": "VALUE", "value": b64("v")}],
        "success": [{"request_put": {"key": b64("k"), "value": b64("w")}}],
        "failure": [{"request_range": {"key": b64("k")}}],
    });
    let (s, v) = post(c, "/v3/kv/txn", body).await?;
    check_eq!(s, 200, "status");
    check_eq!(v["succeeded"], json!(true), "succeeded");
    let (_, v) = post(c, "/v3/kv/range", json!({"key": b64("k")})).await?;
    check_eq!(
        unb64(v["kvs"][0]["value"].as_str().unwrap_or("")),
        b"w".to_vec(),
        "value after txn"
    );
    Ok(())
}

async fn lease(c: &mut Ctx) -> Res {
    let (s, v) = post(c, "/v3/lease/grant", json!({"TTL": "60"})).await?;
    check_eq!((s, v["TTL"].clone()), (200, json!("60")), "grant");
    let id = v["ID"].as_str().unwrap_or("0").to_string();
    post(
        c,
        "/v3/kv/put",
        json!({"key": b64("k"), "value": b64("v"), "lease": id}),
    )
    .await?;
    let (s, v) = post(c, "/v3/lease/timetolive", json!({"ID": id, "keys": true})).await?;
    check_eq!(
        (s, v["keys"].clone()),
        (200, json!([b64("k")])),
        "timetolive keys"
    );
    let (s, _) = post(c, "/v3/lease/revoke", json!({"ID": id})).await?;
    check_eq!(s, 200, "revoke");
    let (_, v) = post(c, "/v3/kv/range", json!({"key": b64("k")})).await?;
    check!(
        v.get("kvs").is_none() && v.get("count").is_none(),
        "key gone after revoke: {v}"
    );
    Ok(())
}

async fn compaction(c: &mut Ctx) -> Res {
    for v in ["1", "2", "3"] {
        post(c, "/v3/kv/put", json!({"key": b64("k"), "value": b64(v)})).await?;
    }
    let (s, _) = post(
        c,
        "/v3/kv/compaction",
        json!({"revision": c.r(2).to_string()}),
    )
    .await?;
    check_eq!(s, 200, "compaction");
    let (s, v) = post(
        c,
        "/v3/kv/range",
        json!({"key": b64("k"), "revision": c.r(1).to_string()}),
    )
    .await?;
    check_eq!(
        (s, v["code"].clone()),
        (400, json!(11)),
        "read below compaction"
    );
    check_eq!(
        v["error"],
        json!("etcdserver: mvcc: required revision has been compacted"),
        "error"
    );
    Ok(())
}

async fn member_list(c: &mut Ctx) -> Res {
    let (s, v) = post(c, "/v3/cluster/member/list", json!({})).await?;
    check_eq!(s, 200, "status");
    check_eq!(v["members"].as_array().map(Vec::len), Some(1), "members");
    check!(v["members"][0]["ID"].is_string(), "member ID is a string");
    Ok(())
}

async fn maintenance_status(c: &mut Ctx) -> Res {
    let (s, v) = post(c, "/v3/maintenance/status", json!({})).await?;
    check_eq!(s, 200, "status");
    check!(
        v["version"].is_string() && v["leader"].is_string() && v["dbSize"].is_string(),
        "status fields: {v}"
    );
    Ok(())
}

async fn malformed_json(c: &mut Ctx) -> Res {
    let r = c.http("POST", "/v3/kv/range", Some("{\"key\":")).await?;
    check_eq!(r.status, 400, "status");
    check_eq!(
        r.json(),
        json!({"error": "unexpected EOF", "message": "unexpected EOF", "code": 3}),
        "body"
    );
    Ok(())
}

async fn bad_base64(c: &mut Ctx) -> Res {
    let (s, v) = post(c, "/v3/kv/range", json!({"key": "not base64!"})).await?;
    check_eq!((s, v["code"].clone()), (400, json!(3)), "(status, code)");
    Ok(())
}

async fn wrong_method(c: &mut Ctx) -> Res {
    let r = c.http("GET", "/v3/kv/range", None).await?;
    check_eq!(
        (r.status, r.body.trim()),
        (405, "Method Not Allowed"),
        "GET /v3/kv/range"
    );
    let r = c.http("PUT", "/v3/kv/put", Some("{}")).await?;
    check_eq!(r.status, 405, "PUT /v3/kv/put");
    Ok(())
}

async fn unknown_path(c: &mut Ctx) -> Res {
    let r = c.http("POST", "/v3/nope", Some("{}")).await?;
    check_eq!(
        (r.status, r.body.trim()),
        (404, "Not Found"),
        "unknown path"
    );
    Ok(())
}

async fn empty_key_error(c: &mut Ctx) -> Res {
    let (s, v) = post(c, "/v3/kv/put", json!({"key": "", "value": b64("v")})).await?;
    let want = json!({"error": "etcdserver: key is not provided", "message": "etcdserver: key is not provided", "code": 3});
    check_eq!((s, v), (400, want), "empty key");
    Ok(())
}

async fn unknown_field(c: &mut Ctx) -> Res {
    post(c, "/v3/kv/put", json!({"key": b64("k"), "value": b64("v")})).await?;
    let (s, v) = post(c, "/v3/kv/range", json!({"key": b64("k"), "wat": 1})).await?;
    check_eq!(
        (s, v["count"].clone()),
        (200, json!("1")),
        "unknown field ignored"
    );
    Ok(())
}
