//! Txn scenarios: every compare target and result, nesting, limits, duplicate keys, and the
//! compare-and-swap shapes Kubernetes uses.

use etcd_client::{
    Client, Compare, CompareOp, DeleteOptions, GetOptions, PutOptions, Txn, TxnOp, TxnResponse,
};

use crate::drivers::grpc;
use crate::scenario::{Area, Ctx, Res, Scenario, Topology, expect_ctl_ok, expect_grpc_err, ok, sc};
use crate::{check, check_eq};

macro_rules! entries {
    ($($name:literal, $f:ident, $fast:expr, $about:literal;)*) => {
        vec![$(sc($name, Area::Txn, Topology::Single, $about, $fast, |c| Box::pin($f(c)))),*]
    };
}

pub fn scenarios() -> Vec<Scenario> {
    entries![
        "txn/ctl-success", ctl_success, true, "etcdctl txn from stdin, success branch";
        "txn/ctl-failure", ctl_failure, false, "etcdctl txn failure branch and -w json";
        "txn/compare-value", compare_value, true, "value compared with =, !=, >, <";
        "txn/compare-version", compare_version, false, "version compares";
        "txn/compare-create-revision", compare_create, false, "create_revision compares";
        "txn/compare-mod-revision", compare_mod, false, "mod_revision compares";
        "txn/compare-lease", compare_lease, false, "lease compares";
        "txn/compare-missing-key", compare_missing, false, "compares against a key that does not exist";
        "txn/compare-range", compare_range, false, "a compare over a key range holds for every key";
        "txn/compares-are-anded", compares_anded, false, "all compares must hold";
        "txn/nested", nested, false, "a txn inside a txn, both branches";
        "txn/duplicate-put", duplicate_put, true, "two puts of one key are rejected";
        "txn/duplicate-put-delete", duplicate_put_delete, false, "put and delete-range over it are rejected";
        "txn/duplicate-across-branches", duplicate_across_branches, false, "same key in then and else is fine";
        "txn/get-and-put-same-key", get_and_put_same_key, false, "reads do not conflict; a get sees earlier puts";
        "txn/op-limit", op_limit, true, "128 ops pass, 129 are too many";
        "txn/empty", empty_txn, false, "a txn with nothing does not bump the revision";
        "txn/one-revision", one_revision, false, "every write of a txn shares one revision";
        "txn/k8s-create", k8s_create, true, "create if create_revision == 0, else get";
        "txn/k8s-update", k8s_update, false, "update if mod_revision matches, else get";
        "txn/k8s-delete", k8s_delete, false, "delete if mod_revision matches, else get";
        "txn/delete-prev-kv-in-txn", delete_prev_kv_in_txn, false, "delete with prev_kv inside a txn";
    ]
}

async fn run(c: &mut Ctx, cl: &mut Client, label: &str, txn: Txn) -> Res<TxnResponse> {
    let r = cl.txn(txn).await;
    c.record(label, grpc::result_json(&r, grpc::txn_json));
    ok(r, label)
}

async fn ctl_success(c: &mut Ctx) -> Res {
    c.ctl_ok("put k v", "OK").await?;
    let script = "value(\"k\") = \"v\"\n\nput k v2\nget k\n\nput other x\n\n";
    let out = c.ctl_at(0, "txn", Some(script)).await?;
    expect_ctl_ok(&out, "SUCCESS\n\nOK\n\nk\nv2")?;
    c.ctl_ok("get other", "").await?;
    Ok(())
}

async fn ctl_failure(c: &mut Ctx) -> Res {
    c.ctl_ok("put k v", "OK").await?;
    let script = "version(\"k\") > \"5\"\n\nput a 1\n\nget k\nput b 2\n\n";
    let out = c.ctl_at(0, "txn", Some(script)).await?;
    expect_ctl_ok(&out, "FAILURE\n\nk\nv\n\nOK")?;
    let script = "create(\"nokey\") = \"0\"\n\nput nokey a\n\n\n";
    let out = c.ctl_at(0, "txn -w json", Some(script)).await?;
    check!(
        out.stdout.contains("\"succeeded\":true"),
        "json output: {}",
        out.stdout
    );
    Ok(())
}

/// Puts the keys, then records whether each compare succeeds.
async fn compare_table(c: &mut Ctx, cases: Vec<(&str, Compare, bool)>) -> Res {
    let mut cl = c.client().await?;
    for (label, cmp, want) in cases {
        let r = run(c, &mut cl, label, Txn::new().when([cmp])).await?;
        check_eq!(r.succeeded(), want, label);
    }
    Ok(())
}

async fn compare_value(c: &mut Ctx) -> Res {
    c.ctl_ok("put k m", "OK").await?;
    compare_table(
        c,
        vec![
            ("= m", Compare::value("k", CompareOp::Equal, "m"), true),
            ("= x", Compare::value("k", CompareOp::Equal, "x"), false),
            ("!= x", Compare::value("k", CompareOp::NotEqual, "x"), true),
            ("> a", Compare::value("k", CompareOp::Greater, "a"), true),
            ("> z", Compare::value("k", CompareOp::Greater, "z"), false),
            ("< z", Compare::value("k", CompareOp::Less, "z"), true),
            ("< m", Compare::value("k", CompareOp::Less, "m"), false),
        ],
    )
    .await
}

async fn compare_version(c: &mut Ctx) -> Res {
    c.ctl_ok("put k 1", "OK").await?;
    c.ctl_ok("put k 2", "OK").await?;
    compare_table(
        c,
        vec![
            ("= 2", Compare::version("k", CompareOp::Equal, 2), true),
            ("!= 2", Compare::version("k", CompareOp::NotEqual, 2), false),
            ("> 1", Compare::version("k", CompareOp::Greater, 1), true),
            ("< 2", Compare::version("k", CompareOp::Less, 2), false),
        ],
    )
    .await
}

async fn compare_create(c: &mut Ctx) -> Res {
    c.ctl_ok("put k 1", "OK").await?;
    c.ctl_ok("put k 2", "OK").await?;
    let (r1, r2) = (c.r(1), c.r(2));
    compare_table(
        c,
        vec![
            (
                "= r1",
                Compare::create_revision("k", CompareOp::Equal, r1),
                true,
            ),
            (
                "= r2",
                Compare::create_revision("k", CompareOp::Equal, r2),
                false,
            ),
            (
                "< r2",
                Compare::create_revision("k", CompareOp::Less, r2),
                true,
            ),
            (
                "!= r1",
                Compare::create_revision("k", CompareOp::NotEqual, r1),
                false,
            ),
        ],
    )
    .await
}

async fn compare_mod(c: &mut Ctx) -> Res {
    c.ctl_ok("put k 1", "OK").await?;
    c.ctl_ok("put k 2", "OK").await?;
    let (r1, r2) = (c.r(1), c.r(2));
    compare_table(
        c,
        vec![
            (
                "= r2",
                Compare::mod_revision("k", CompareOp::Equal, r2),
                true,
            ),
            (
                "= r1",
                Compare::mod_revision("k", CompareOp::Equal, r1),
                false,
            ),
            (
                "> r1",
                Compare::mod_revision("k", CompareOp::Greater, r1),
                true,
            ),
            (
                "< r2",
                Compare::mod_revision("k", CompareOp::Less, r2),
                false,
            ),
        ],
    )
    .await
}

async fn compare_lease(c: &mut Ctx) -> Res {
    let mut cl = c.client().await?;
    let id = ok(cl.lease_grant(60, None).await, "grant")?.id();
    ok(
        cl.put("k", "v", Some(PutOptions::new().with_lease(id)))
            .await,
        "put",
    )?;
    ok(cl.put("plain", "v", None).await, "put")?;
    compare_table(
        c,
        vec![
            (
                "k lease = id",
                Compare::lease("k", CompareOp::Equal, id),
                true,
            ),
            (
                "k lease = 0",
                Compare::lease("k", CompareOp::Equal, 0),
                false,
            ),
            (
                "plain lease = 0",
                Compare::lease("plain", CompareOp::Equal, 0),
                true,
            ),
            (
                "k lease != 0",
                Compare::lease("k", CompareOp::NotEqual, 0),
                true,
            ),
        ],
    )
    .await
}

async fn compare_missing(c: &mut Ctx) -> Res {
    compare_table(
        c,
        vec![
            (
                "version = 0",
                Compare::version("nokey", CompareOp::Equal, 0),
                true,
            ),
            (
                "create = 0",
                Compare::create_revision("nokey", CompareOp::Equal, 0),
                true,
            ),
            (
                "mod = 0",
                Compare::mod_revision("nokey", CompareOp::Equal, 0),
                true,
            ),
            (
                "value = ''",
                Compare::value("nokey", CompareOp::Equal, ""),
                false,
            ),
            (
                "value != x",
                Compare::value("nokey", CompareOp::NotEqual, "x"),
                false,
            ),
            (
                "lease = 0",
                Compare::lease("nokey", CompareOp::Equal, 0),
                true,
            ),
        ],
    )
    .await
}

async fn compare_range(c: &mut Ctx) -> Res {
    for k in ["r/a", "r/b", "r/c"] {
        c.ctl_ok(&format!("put {k} 5"), "OK").await?;
    }
    c.ctl_ok("put r/c 6", "OK").await?;
    compare_table(
        c,
        vec![
            (
                "r/ prefix value = 5",
                Compare::value("r/", CompareOp::Equal, "5").with_prefix(),
                false,
            ),
            (
                "r/a..r/c value = 5",
                Compare::value("r/a", CompareOp::Equal, "5").with_range("r/c"),
                true,
            ),
            (
                "r/ prefix version > 0",
                Compare::version("r/", CompareOp::Greater, 0).with_prefix(),
                true,
            ),
            (
                "r/ prefix version = 1",
                Compare::version("r/", CompareOp::Equal, 1).with_prefix(),
                false,
            ),
        ],
    )
    .await
}

async fn compares_anded(c: &mut Ctx) -> Res {
    c.ctl_ok("put a 1", "OK").await?;
    c.ctl_ok("put b 2", "OK").await?;
    let mut cl = c.client().await?;
    let t = Txn::new()
        .when([
            Compare::value("a", CompareOp::Equal, "1"),
            Compare::value("b", CompareOp::Equal, "3"),
        ])
        .and_then([TxnOp::put("x", "then", None)])
        .or_else([TxnOp::put("x", "else", None)]);
    let r = run(c, &mut cl, "a=1 and b=3", t).await?;
    check!(!r.succeeded(), "both compares must hold");
    c.ctl_ok("get x --print-value-only", "else").await?;
    Ok(())
}

async fn nested(c: &mut Ctx) -> Res {
    c.ctl_ok("put k v", "OK").await?;
    let mut cl = c.client().await?;
    let inner_then = Txn::new()
        .when([Compare::value("k", CompareOp::Equal, "v")])
        .and_then([TxnOp::put("inner", "then", None), TxnOp::get("k", None)])
        .or_else([TxnOp::put("inner", "else", None)]);
    let inner_else = Txn::new().and_then([TxnOp::put("other", "x", None)]);
    let t = Txn::new()
        .when([Compare::version("k", CompareOp::Greater, 0)])
        .and_then([TxnOp::txn(inner_then), TxnOp::put("outer", "1", None)])
        .or_else([TxnOp::txn(inner_else)]);
    let r = run(c, &mut cl, "nested", t).await?;
    check!(r.succeeded(), "outer compare");
    c.ctl_ok("get '' --from-key", "inner\nthen\nk\nv\nouter\n1")
        .await?;
    Ok(())
}

async fn duplicate_put(c: &mut Ctx) -> Res {
    let mut cl = c.client().await?;
    let t = Txn::new().and_then([TxnOp::put("k", "1", None), TxnOp::put("k", "2", None)]);
    let r = cl.txn(t).await;
    c.record("put k twice", grpc::result_json(&r, grpc::txn_json));
    expect_grpc_err(
        &r,
        "InvalidArgument",
        "etcdserver: duplicate key given in txn request",
    )?;
    let script = "\nput k 1\nput k 2\n\n\n";
    let out = c.ctl_at(0, "txn", Some(script)).await?;
    crate::scenario::expect_ctl_err(&out, "etcdserver: duplicate key given in txn request")
}

async fn duplicate_put_delete(c: &mut Ctx) -> Res {
    let mut cl = c.client().await?;
    let del = TxnOp::delete("a", Some(DeleteOptions::new().with_range("z")));
    let t = Txn::new().and_then([TxnOp::put("k", "1", None), del]);
    let r = cl.txn(t).await;
    c.record(
        "put k + delete [a,z)",
        grpc::result_json(&r, grpc::txn_json),
    );
    expect_grpc_err(
        &r,
        "InvalidArgument",
        "etcdserver: duplicate key given in txn request",
    )
}

async fn duplicate_across_branches(c: &mut Ctx) -> Res {
    let mut cl = c.client().await?;
    let t = Txn::new()
        .when([Compare::version("k", CompareOp::Equal, 0)])
        .and_then([TxnOp::put("k", "then", None)])
        .or_else([TxnOp::put("k", "else", None)]);
    let r = run(c, &mut cl, "k in both branches", t).await?;
    check!(r.succeeded(), "k did not exist");
    c.ctl_ok("get k --print-value-only", "then").await?;
    Ok(())
}

async fn get_and_put_same_key(c: &mut Ctx) -> Res {
    c.ctl_ok("put k old", "OK").await?;
    let mut cl = c.client().await?;
    let t = Txn::new().and_then([
        TxnOp::get("k", None),
        TxnOp::put("k", "new", None),
        TxnOp::get("k", None),
    ]);
    let r = run(c, &mut cl, "get put get", t).await?;
    let values: Vec<Vec<u8>> = r
        .op_responses()
        .into_iter()
        .filter_map(|op| match op {
            etcd_client::TxnOpResponse::Get(g) => Some(g.kvs()[0].value().to_vec()),
            _ => None,
        })
        .collect();
    check_eq!(
        values,
        vec![b"old".to_vec(), b"new".to_vec()],
        "reads inside the txn"
    );
    Ok(())
}

async fn op_limit(c: &mut Ctx) -> Res {
    let mut cl = c.client().await?;
    let ops = |n: usize| {
        (0..n)
            .map(|i| TxnOp::put(format!("k{i:03}"), "v", None))
            .collect::<Vec<_>>()
    };
    let r = cl.txn(Txn::new().and_then(ops(128))).await;
    c.record(
        "128 ops",
        grpc::result_json(&r, |t| grpc::header_json(t.header())),
    );
    ok(r, "128 ops")?;
    let r = cl.txn(Txn::new().and_then(ops(129))).await;
    c.record("129 ops", grpc::result_json(&r, grpc::txn_json));
    expect_grpc_err(
        &r,
        "InvalidArgument",
        "etcdserver: too many operations in txn request",
    )
}

async fn empty_txn(c: &mut Ctx) -> Res {
    c.ctl_ok("put k v", "OK").await?;
    let mut cl = c.client().await?;
    let r = run(c, &mut cl, "empty", Txn::new()).await?;
    check!(r.succeeded(), "empty txn succeeds");
    check_eq!(r.header().map(|h| h.revision()), Some(c.r(1)), "revision");
    Ok(())
}

async fn one_revision(c: &mut Ctx) -> Res {
    let mut cl = c.client().await?;
    let t = Txn::new().and_then([
        TxnOp::put("a", "1", None),
        TxnOp::put("b", "1", None),
        TxnOp::put("c", "1", None),
    ]);
    run(c, &mut cl, "three puts", t).await?;
    let r = ok(
        cl.get("a", Some(GetOptions::new().with_range("z"))).await,
        "get",
    )?;
    c.record("get", grpc::get_json(&r));
    let revs: Vec<i64> = r.kvs().iter().map(|kv| kv.mod_revision()).collect();
    check_eq!(revs, vec![c.r(1); 3], "mod revisions");
    Ok(())
}

/// Kubernetes' create: put only if the key does not exist, else read it back.
fn k8s_create_txn(key: &str, value: &str) -> Txn {
    Txn::new()
        .when([Compare::mod_revision(key, CompareOp::Equal, 0)])
        .and_then([TxnOp::put(key, value, None)])
        .or_else([TxnOp::get(key, None)])
}

async fn k8s_create(c: &mut Ctx) -> Res {
    let mut cl = c.client().await?;
    let r = run(
        c,
        &mut cl,
        "create",
        k8s_create_txn("/registry/pods/a", "v1"),
    )
    .await?;
    check!(r.succeeded(), "first create");
    let r = run(
        c,
        &mut cl,
        "create again",
        k8s_create_txn("/registry/pods/a", "v2"),
    )
    .await?;
    check!(!r.succeeded(), "second create must fail");
    Ok(())
}

async fn k8s_update(c: &mut Ctx) -> Res {
    let mut cl = c.client().await?;
    run(
        c,
        &mut cl,
        "create",
        k8s_create_txn("/registry/pods/a", "v1"),
    )
    .await?;
    let update = |rev: i64, v: &str| {
        Txn::new()
            .when([Compare::mod_revision(
                "/registry/pods/a",
                CompareOp::Equal,
                rev,
            )])
            .and_then([TxnOp::put("/registry/pods/a", v, None)])
            .or_else([TxnOp::get("/registry/pods/a", None)])
    };
    let r = run(c, &mut cl, "update at r1", update(c.r(1), "v2")).await?;
    check!(r.succeeded(), "update with the current revision");
    let r = run(c, &mut cl, "stale update at r1", update(c.r(1), "v3")).await?;
    check!(!r.succeeded(), "stale update must fail");
    Ok(())
}

async fn k8s_delete(c: &mut Ctx) -> Res {
    let mut cl = c.client().await?;
    run(
        c,
        &mut cl,
        "create",
        k8s_create_txn("/registry/pods/a", "v1"),
    )
    .await?;
    let delete = |rev: i64| {
        Txn::new()
            .when([Compare::mod_revision(
                "/registry/pods/a",
                CompareOp::Equal,
                rev,
            )])
            .and_then([TxnOp::delete(
                "/registry/pods/a",
                Some(DeleteOptions::new().with_prev_key()),
            )])
            .or_else([TxnOp::get("/registry/pods/a", None)])
    };
    let r = run(c, &mut cl, "stale delete", delete(c.r(5))).await?;
    check!(!r.succeeded(), "delete with a wrong revision must fail");
    let r = run(c, &mut cl, "delete", delete(c.r(1))).await?;
    check!(r.succeeded(), "delete with the current revision");
    c.ctl_ok("get /registry/pods/a", "").await?;
    Ok(())
}

async fn delete_prev_kv_in_txn(c: &mut Ctx) -> Res {
    c.ctl_ok("put a 1", "OK").await?;
    c.ctl_ok("put b 2", "OK").await?;
    let mut cl = c.client().await?;
    let del = TxnOp::delete(
        "a",
        Some(DeleteOptions::new().with_range("c").with_prev_key()),
    );
    let r = run(
        c,
        &mut cl,
        "delete range prev_kv",
        Txn::new().and_then([del]),
    )
    .await?;
    match r.op_responses().first() {
        Some(etcd_client::TxnOpResponse::Delete(d)) => {
            check_eq!(
                (d.deleted(), d.prev_kvs().len()),
                (2, 2),
                "(deleted, prev_kvs)"
            )
        }
        other => {
            return Err(crate::scenario::ScenarioError::Check(format!(
                "unexpected {other:?}"
            )));
        }
    }
    Ok(())
}
