//! KV scenarios: put/get/del with every etcdctl flag, ranges, sorting, revisions, odd keys.

use etcd_client::{DeleteOptions, GetOptions, PutOptions, SortOrder, SortTarget};
use serde_json::json;

use crate::drivers::grpc;
use crate::scenario::{Area, Ctx, Res, Scenario, Topology, expect_grpc_err, ok, sc};
use crate::{check, check_eq};

macro_rules! entries {
    ($($name:literal, $f:ident, $fast:expr, $about:literal;)*) => {
        vec![$(sc($name, Area::Kv, Topology::Single, $about, $fast, |c| Box::pin($f(c)))),*]
    };
}

pub fn scenarios() -> Vec<Scenario> {
    entries![
        "kv/put-get-basic", put_get_basic, true, "put then get one key, get a missing key";
        "kv/put-prev-kv", put_prev_kv, true, "put --prev-kv prints the previous pair";
        "kv/put-ignore-value", put_ignore_value, false, "put --ignore-value keeps the value; missing key errors";
        "kv/put-lease-ignore-lease", put_lease_ignore_lease, false, "put --lease attaches; --ignore-lease keeps it";
        "kv/put-unknown-lease", put_unknown_lease, true, "put --lease with an unknown lease is NotFound";
        "kv/put-from-stdin", put_from_stdin, false, "put with the value on stdin";
        "kv/put-empty-value", put_empty_value, false, "a key with an empty value exists";
        "kv/get-print-value-only", get_print_value_only, false, "get --print-value-only";
        "kv/get-keys-only", get_keys_only, false, "get --keys-only prints keys with empty values";
        "kv/get-prefix", get_prefix, true, "get --prefix stops at the prefix end";
        "kv/get-from-key", get_from_key, false, "get --from-key returns keys >= key";
        "kv/get-range-end", get_range_end, false, "get key range_end is half open";
        "kv/get-limit-more-count", get_limit_more_count, true, "limit sets more and keeps the full count";
        "kv/get-count-only", get_count_only, false, "count_only returns a count and no kvs";
        "kv/sort-key-descend", sort_key_descend, false, "--sort-by=KEY --order=DESCEND";
        "kv/sort-version", sort_version, false, "--sort-by=VERSION (ascending by default)";
        "kv/sort-create", sort_create, false, "--sort-by=CREATE --order=DESCEND";
        "kv/sort-modify", sort_modify, false, "--sort-by=MODIFY";
        "kv/sort-value-descend", sort_value_descend, false, "--sort-by=VALUE --order=DESCEND";
        "kv/order-descend-limit", order_descend_limit, false, "--order=DESCEND alone sorts by key, with --limit";
        "kv/get-rev-history", get_rev_history, true, "get --rev reads old values";
        "kv/get-rev-future", get_rev_future, false, "get --rev beyond the store is OutOfRange";
        "kv/get-serializable", get_serializable, false, "get --consistency=s on one member";
        "kv/min-max-mod-revision", min_max_mod_revision, false, "min/max_mod_revision filters";
        "kv/min-max-create-revision", min_max_create_revision, false, "min/max_create_revision filters";
        "kv/del-single-prev-kv", del_single_prev_kv, true, "del --prev-kv prints the count and pairs";
        "kv/del-missing", del_missing, false, "del of a missing key prints 0 and does not bump the revision";
        "kv/del-prefix", del_prefix, false, "del --prefix";
        "kv/del-from-key", del_from_key, false, "del --from-key";
        "kv/del-range", del_range, false, "del key range_end";
        "kv/versions-generations", versions_generations, true, "version and create_revision across delete/recreate";
        "kv/large-value", large_value, false, "a 1 MiB value round-trips";
        "kv/binary-keys", binary_keys, false, "keys and values with NUL and 0xff bytes";
        "kv/utf8-keys", utf8_keys, false, "multi-byte UTF-8 keys sort by bytes";
        "kv/many-keys", many_keys, false, "1000 keys: count, limit pages, prefix";
        "kv/k8s-list-pagination", k8s_list_pagination, false, "paging with limit and from-key at a fixed revision";
    ]
}

async fn put_get_basic(c: &mut Ctx) -> Res {
    c.ctl_ok("put foo bar", "OK").await?;
    c.ctl_ok("get foo", "foo\nbar").await?;
    c.ctl_ok("get missing", "").await?;
    let mut cl = c.client().await?;
    let r = ok(cl.get("foo", None).await, "get foo")?;
    c.record("grpc get foo", grpc::get_json(&r));
    check_eq!(r.kvs().len(), 1, "kvs");
    check_eq!(r.kvs()[0].create_revision(), c.r(1), "create_revision");
    check_eq!(r.kvs()[0].version(), 1, "version");
    Ok(())
}

async fn put_prev_kv(c: &mut Ctx) -> Res {
    c.ctl_ok("put foo bar --prev-kv", "OK").await?;
    c.ctl_ok("put foo bar2 --prev-kv", "OK\nfoo\nbar").await?;
    let mut cl = c.client().await?;
    let r = ok(
        cl.put("foo", "bar3", Some(PutOptions::new().with_prev_key()))
            .await,
        "put",
    )?;
    c.record("grpc put prev_kv", grpc::put_json(&r));
    check_eq!(
        r.prev_key().map(|kv| kv.value().to_vec()),
        Some(b"bar2".to_vec()),
        "prev value"
    );
    Ok(())
}

async fn put_ignore_value(c: &mut Ctx) -> Res {
    c.ctl_ok("put k v", "OK").await?;
    c.ctl_ok("put k --ignore-value", "OK").await?;
    c.ctl_ok("get k", "k\nv").await?;
    c.ctl_err("put nokey --ignore-value", "etcdserver: key not found")
        .await?;
    let mut cl = c.client().await?;
    let r = cl
        .put("nokey", "", Some(PutOptions::new().with_ignore_value()))
        .await;
    c.record(
        "grpc ignore_value missing",
        grpc::result_json(&r, grpc::put_json),
    );
    expect_grpc_err(&r, "InvalidArgument", "etcdserver: key not found")
}

async fn put_lease_ignore_lease(c: &mut Ctx) -> Res {
    let mut cl = c.client().await?;
    let lease = ok(cl.lease_grant(100, None).await, "lease grant")?.id();
    c.ctl_ok(&format!("put k v --lease={lease:x}"), "OK")
        .await?;
    c.ctl_ok("put k v2 --ignore-lease", "OK").await?;
    let r = ok(cl.get("k", None).await, "get")?;
    c.record("get", grpc::get_json(&r));
    check_eq!(r.kvs()[0].lease(), lease, "lease kept");
    check_eq!(r.kvs()[0].value(), b"v2", "value");
    let r = cl
        .put("k2", "v", Some(PutOptions::new().with_ignore_lease()))
        .await;
    c.record(
        "ignore_lease missing",
        grpc::result_json(&r, grpc::put_json),
    );
    expect_grpc_err(&r, "InvalidArgument", "etcdserver: key not found")
}

async fn put_unknown_lease(c: &mut Ctx) -> Res {
    c.ctl_err(
        "put k v --lease=1234",
        "etcdserver: requested lease not found",
    )
    .await?;
    let mut cl = c.client().await?;
    let r = cl
        .put("k", "v", Some(PutOptions::new().with_lease(0x1234)))
        .await;
    c.record("grpc", grpc::result_json(&r, grpc::put_json));
    expect_grpc_err(&r, "NotFound", "etcdserver: requested lease not found")?;
    c.ctl_ok("get k", "").await?;
    Ok(())
}

async fn put_from_stdin(c: &mut Ctx) -> Res {
    let out = c.ctl_at(0, "put k", Some("from stdin")).await?;
    crate::scenario::expect_ctl_ok(&out, "OK")?;
    c.ctl_ok("get k --print-value-only", "from stdin").await?;
    Ok(())
}

async fn put_empty_value(c: &mut Ctx) -> Res {
    c.ctl_ok("put k ''", "OK").await?;
    c.ctl_ok("get k", "k\n").await?;
    let mut cl = c.client().await?;
    let r = ok(cl.get("k", None).await, "get")?;
    c.record("get", grpc::get_json(&r));
    check_eq!(r.count(), 1, "count");
    Ok(())
}

async fn seed_abc(c: &mut Ctx) -> Res {
    // a: create 2, mod 5, version 2; b: create 3, mod 7, version 3; c: create 4, version 1.
    for (k, v) in [
        ("a", "3"),
        ("b", "1"),
        ("c", "2"),
        ("a", "33"),
        ("b", "11"),
        ("b", "111"),
    ] {
        c.ctl_ok(&format!("put {k} {v}"), "OK").await?;
    }
    Ok(())
}

async fn get_print_value_only(c: &mut Ctx) -> Res {
    seed_abc(c).await?;
    c.ctl_ok("get a z --print-value-only", "33\n111\n2").await?;
    Ok(())
}

async fn get_keys_only(c: &mut Ctx) -> Res {
    seed_abc(c).await?;
    c.ctl_ok("get a z --keys-only", "a\n\nb\n\nc").await?;
    let mut cl = c.client().await?;
    let r = ok(
        cl.get(
            "a",
            Some(GetOptions::new().with_range("z").with_keys_only()),
        )
        .await,
        "get",
    )?;
    c.record("grpc keys_only", grpc::get_json(&r));
    check!(
        r.kvs().iter().all(|kv| kv.value().is_empty()),
        "keys_only returned values"
    );
    check_eq!(r.kvs()[1].version(), 3, "keys_only keeps metadata");
    Ok(())
}

async fn get_prefix(c: &mut Ctx) -> Res {
    for k in ["fo", "foo", "foo/a", "foo/b", "fop", "g"] {
        c.ctl_ok(&format!("put {k} 1"), "OK").await?;
    }
    c.ctl_ok("get foo --prefix --keys-only", "foo\n\nfoo/a\n\nfoo/b")
        .await?;
    c.ctl_ok("get foo/ --prefix --print-value-only", "1\n1")
        .await?;
    c.ctl_ok(
        "get '' --prefix --keys-only",
        "fo\n\nfoo\n\nfoo/a\n\nfoo/b\n\nfop\n\ng",
    )
    .await?;
    Ok(())
}

async fn get_from_key(c: &mut Ctx) -> Res {
    for k in ["a", "b", "c"] {
        c.ctl_ok(&format!("put {k} 1"), "OK").await?;
    }
    c.ctl_ok("get b --from-key --keys-only", "b\n\nc").await?;
    c.ctl_ok("get '' --from-key --keys-only", "a\n\nb\n\nc")
        .await?;
    Ok(())
}

async fn get_range_end(c: &mut Ctx) -> Res {
    for k in ["a", "b", "c", "d"] {
        c.ctl_ok(&format!("put {k} 1"), "OK").await?;
    }
    c.ctl_ok("get b d --keys-only", "b\n\nc").await?;
    c.ctl_ok("get d b", "").await?;
    Ok(())
}

async fn get_limit_more_count(c: &mut Ctx) -> Res {
    let mut cl = c.client().await?;
    for i in 0..5 {
        ok(cl.put(format!("k{i}"), "v", None).await, "put")?;
    }
    let r = ok(
        cl.get("k", Some(GetOptions::new().with_prefix().with_limit(2)))
            .await,
        "get",
    )?;
    c.record("limit 2", grpc::get_json(&r));
    check_eq!(
        (r.kvs().len(), r.more(), r.count()),
        (2, true, 5),
        "(kvs, more, count)"
    );
    let r = ok(
        cl.get("k", Some(GetOptions::new().with_prefix().with_limit(5)))
            .await,
        "get",
    )?;
    c.record("limit 5", grpc::get_json(&r));
    check_eq!(
        (r.kvs().len(), r.more(), r.count()),
        (5, false, 5),
        "(kvs, more, count)"
    );
    c.ctl_ok("get k --prefix --limit=1", "k0\nv").await?;
    Ok(())
}

async fn get_count_only(c: &mut Ctx) -> Res {
    let mut cl = c.client().await?;
    for i in 0..3 {
        ok(cl.put(format!("k{i}"), "v", None).await, "put")?;
    }
    let r = ok(
        cl.get("k", Some(GetOptions::new().with_prefix().with_count_only()))
            .await,
        "get",
    )?;
    c.record("count_only", grpc::get_json(&r));
    check_eq!((r.kvs().len(), r.count()), (0, 3), "(kvs, count)");
    Ok(())
}

async fn sort_key_descend(c: &mut Ctx) -> Res {
    seed_abc(c).await?;
    c.ctl_ok(
        "get a z --sort-by=KEY --order=DESCEND --keys-only",
        "c\n\nb\n\na",
    )
    .await?;
    Ok(())
}

async fn sort_version(c: &mut Ctx) -> Res {
    seed_abc(c).await?;
    c.ctl_ok("get a z --sort-by=VERSION --keys-only", "c\n\na\n\nb")
        .await?;
    let mut cl = c.client().await?;
    let opts = GetOptions::new()
        .with_range("z")
        .with_sort(SortTarget::Version, SortOrder::Descend);
    let r = ok(cl.get("a", Some(opts)).await, "get")?;
    c.record("grpc version descend", grpc::get_json(&r));
    let keys: Vec<&[u8]> = r.kvs().iter().map(|kv| kv.key()).collect();
    check_eq!(keys, vec![&b"b"[..], b"a", b"c"], "order");
    Ok(())
}

async fn sort_create(c: &mut Ctx) -> Res {
    seed_abc(c).await?;
    c.ctl_ok(
        "get a z --sort-by=CREATE --order=DESCEND --keys-only",
        "c\n\nb\n\na",
    )
    .await?;
    Ok(())
}

async fn sort_modify(c: &mut Ctx) -> Res {
    seed_abc(c).await?;
    c.ctl_ok("get a z --sort-by=MODIFY --print-value-only", "2\n33\n111")
        .await?;
    Ok(())
}

async fn sort_value_descend(c: &mut Ctx) -> Res {
    seed_abc(c).await?;
    c.ctl_ok(
        "get a z --sort-by=VALUE --order=DESCEND --print-value-only",
        "33\n2\n111",
    )
    .await?;
    Ok(())
}

async fn order_descend_limit(c: &mut Ctx) -> Res {
    seed_abc(c).await?;
    c.ctl_ok("get a z --order=DESCEND --limit=2", "c\n2\nb\n111")
        .await?;
    Ok(())
}

async fn get_rev_history(c: &mut Ctx) -> Res {
    c.ctl_ok("put k v1", "OK").await?;
    c.ctl_ok("put k v2", "OK").await?;
    c.ctl_ok("del k", "1").await?;
    let (r1, r2, r3) = (c.r(1), c.r(2), c.r(3));
    c.ctl_ok(&format!("get k --rev={r1}"), "k\nv1").await?;
    c.ctl_ok(&format!("get k --rev={r2}"), "k\nv2").await?;
    c.ctl_ok(&format!("get k --rev={r3}"), "").await?;
    Ok(())
}

async fn get_rev_future(c: &mut Ctx) -> Res {
    c.ctl_ok("put k v", "OK").await?;
    let future = c.r(10);
    c.ctl_err(
        &format!("get k --rev={future}"),
        "etcdserver: mvcc: required revision is a future revision",
    )
    .await?;
    let mut cl = c.client().await?;
    let r = cl
        .get("k", Some(GetOptions::new().with_revision(future)))
        .await;
    c.record("grpc", grpc::result_json(&r, grpc::get_json));
    expect_grpc_err(
        &r,
        "OutOfRange",
        "etcdserver: mvcc: required revision is a future revision",
    )
}

async fn get_serializable(c: &mut Ctx) -> Res {
    c.ctl_ok("put k v", "OK").await?;
    c.ctl_ok("get k --consistency=s", "k\nv").await?;
    let mut cl = c.client().await?;
    let r = ok(
        cl.get("k", Some(GetOptions::new().with_serializable()))
            .await,
        "get",
    )?;
    c.record("grpc serializable", grpc::get_json(&r));
    check_eq!(r.count(), 1, "count");
    Ok(())
}

async fn min_max_mod_revision(c: &mut Ctx) -> Res {
    seed_abc(c).await?;
    let mut cl = c.client().await?;
    // mod revisions: c=r(3), a=r(4), b=r(6).
    let opts = GetOptions::new()
        .with_range("z")
        .with_min_mod_revision(c.r(4));
    let r = ok(cl.get("a", Some(opts)).await, "get min_mod")?;
    c.record("min_mod", grpc::get_json(&r));
    check_eq!(r.kvs().len(), 2, "min_mod kvs");
    let opts = GetOptions::new()
        .with_range("z")
        .with_max_mod_revision(c.r(4));
    let r = ok(cl.get("a", Some(opts)).await, "get max_mod")?;
    c.record("max_mod", grpc::get_json(&r));
    check_eq!(r.kvs().len(), 2, "max_mod kvs");
    // The filters apply after the count: count stays 3.
    check_eq!(r.count(), 3, "max_mod count");
    Ok(())
}

async fn min_max_create_revision(c: &mut Ctx) -> Res {
    seed_abc(c).await?;
    let mut cl = c.client().await?;
    let opts = GetOptions::new()
        .with_range("z")
        .with_min_create_revision(c.r(2));
    let r = ok(cl.get("a", Some(opts)).await, "get min_create")?;
    c.record("min_create", grpc::get_json(&r));
    check_eq!(r.kvs().len(), 2, "min_create kvs");
    let opts = GetOptions::new()
        .with_range("z")
        .with_max_create_revision(c.r(1));
    let r = ok(cl.get("a", Some(opts)).await, "get max_create")?;
    c.record("max_create", grpc::get_json(&r));
    check_eq!(r.kvs().len(), 1, "max_create kvs");
    Ok(())
}

async fn del_single_prev_kv(c: &mut Ctx) -> Res {
    c.ctl_ok("put k v", "OK").await?;
    c.ctl_ok("del k --prev-kv", "1\nk\nv").await?;
    c.ctl_ok("get k", "").await?;
    Ok(())
}

async fn del_missing(c: &mut Ctx) -> Res {
    c.ctl_ok("put k v", "OK").await?;
    c.ctl_ok("del nope", "0").await?;
    let mut cl = c.client().await?;
    let r = ok(cl.delete("nope", None).await, "del")?;
    c.record("grpc del missing", grpc::del_json(&r));
    check_eq!(
        r.header().map(|h| h.revision()),
        Some(c.r(1)),
        "revision unchanged"
    );
    Ok(())
}

async fn del_prefix(c: &mut Ctx) -> Res {
    for k in ["a", "a/1", "a/2", "b"] {
        c.ctl_ok(&format!("put {k} 1"), "OK").await?;
    }
    c.ctl_ok("del a/ --prefix", "2").await?;
    c.ctl_ok("get '' --from-key --keys-only", "a\n\nb").await?;
    Ok(())
}

async fn del_from_key(c: &mut Ctx) -> Res {
    for k in ["a", "b", "c"] {
        c.ctl_ok(&format!("put {k} 1"), "OK").await?;
    }
    c.ctl_ok("del b --from-key --prev-kv", "2\nb\n1\nc\n1")
        .await?;
    c.ctl_ok("get '' --from-key --keys-only", "a").await?;
    Ok(())
}

async fn del_range(c: &mut Ctx) -> Res {
    for k in ["a", "b", "c"] {
        c.ctl_ok(&format!("put {k} 1"), "OK").await?;
    }
    c.ctl_ok("del a c", "2").await?;
    let mut cl = c.client().await?;
    let r = ok(
        cl.delete(
            "a",
            Some(DeleteOptions::new().with_range("z").with_prev_key()),
        )
        .await,
        "del",
    )?;
    c.record("grpc del range", grpc::del_json(&r));
    check_eq!(r.deleted(), 1, "deleted");
    check_eq!(
        r.header().map(|h| h.revision()),
        Some(c.r(5)),
        "one revision for a range delete"
    );
    Ok(())
}

async fn versions_generations(c: &mut Ctx) -> Res {
    let mut cl = c.client().await?;
    for v in ["1", "2"] {
        ok(cl.put("k", v, None).await, "put")?;
    }
    ok(cl.delete("k", None).await, "del")?;
    ok(cl.put("k", "3", None).await, "put")?;
    let r = ok(cl.get("k", None).await, "get")?;
    c.record("after recreate", grpc::get_json(&r));
    let kv = &r.kvs()[0];
    check_eq!(
        (kv.create_revision(), kv.mod_revision(), kv.version()),
        (c.r(4), c.r(4), 1),
        "(create, mod, version)"
    );
    let r = ok(
        cl.get("k", Some(GetOptions::new().with_revision(c.r(2))))
            .await,
        "get old",
    )?;
    c.record("at r2", grpc::get_json(&r));
    let kv = &r.kvs()[0];
    check_eq!(
        (kv.create_revision(), kv.version()),
        (c.r(1), 2),
        "(create, version) at r2"
    );
    Ok(())
}

async fn large_value(c: &mut Ctx) -> Res {
    let value: Vec<u8> = (0..1024 * 1024).map(|i: u32| (i % 251) as u8).collect();
    let mut cl = c.client().await?;
    let r = ok(cl.put("big", value.clone(), None).await, "put 1 MiB")?;
    c.record("put", grpc::put_json(&r));
    let r = ok(cl.get("big", None).await, "get")?;
    c.record("get", grpc::get_json(&r));
    check!(
        r.kvs()[0].value() == value.as_slice(),
        "value differs after round-trip"
    );
    Ok(())
}

async fn binary_keys(c: &mut Ctx) -> Res {
    let mut cl = c.client().await?;
    let keys: [&[u8]; 4] = [b"\x00", b"\x00\x01", b"a\xffb", b"\xff\xff"];
    for k in keys {
        ok(cl.put(k, [0u8, 255, 10], None).await, "put")?;
    }
    let r = ok(
        cl.get(vec![0u8], Some(GetOptions::new().with_from_key()))
            .await,
        "get all",
    )?;
    c.record("all", grpc::get_json(&r));
    let got: Vec<&[u8]> = r.kvs().iter().map(|kv| kv.key()).collect();
    check_eq!(got, keys.to_vec(), "byte order");
    check!(
        r.kvs().iter().all(|kv| kv.value() == [0u8, 255, 10]),
        "values differ"
    );
    let r = ok(
        cl.get(vec![0xffu8], Some(GetOptions::new().with_prefix()))
            .await,
        "prefix ff",
    )?;
    c.record("prefix 0xff", grpc::get_json(&r));
    check_eq!(r.count(), 1, "prefix 0xff count");
    c.ctl_ok("get '' --from-key --hex --keys-only --limit=1", "\\x00\n")
        .await?;
    Ok(())
}

async fn utf8_keys(c: &mut Ctx) -> Res {
    for k in ["é", "z", "日本", "a"] {
        c.ctl_ok(&format!("put {k} {k}"), "OK").await?;
    }
    c.ctl_ok("get '' --from-key --print-value-only", "a\nz\né\n日本")
        .await?;
    Ok(())
}

async fn many_keys(c: &mut Ctx) -> Res {
    let mut cl = c.client().await?;
    for i in 0..1000 {
        ok(
            cl.put(format!("many/{i:04}"), format!("{i}"), None).await,
            "put",
        )?;
    }
    let r = ok(
        cl.get(
            "many/",
            Some(GetOptions::new().with_prefix().with_count_only()),
        )
        .await,
        "count",
    )?;
    c.record("count", grpc::get_json(&r));
    check_eq!(r.count(), 1000, "count");
    let opts = GetOptions::new()
        .with_prefix()
        .with_limit(10)
        .with_sort(SortTarget::Key, SortOrder::Descend);
    let r = ok(cl.get("many/", Some(opts)).await, "last 10")?;
    c.record("last 10", grpc::get_json(&r));
    check_eq!(r.kvs()[0].key(), b"many/0999", "first of descending page");
    check_eq!(
        r.header().map(|h| h.revision()),
        Some(c.r(1000)),
        "revision"
    );
    Ok(())
}

async fn k8s_list_pagination(c: &mut Ctx) -> Res {
    let mut cl = c.client().await?;
    for i in 0..7 {
        ok(
            cl.put(format!("/registry/pods/p{i}"), "x", None).await,
            "put",
        )?;
    }
    let rev = c.r(7);
    ok(
        cl.put("/registry/pods/p9", "late", None).await,
        "put after list start",
    )?;
    let mut start = b"/registry/pods/".to_vec();
    let mut pages = Vec::new();
    loop {
        let opts = GetOptions::new()
            .with_range("/registry/pods0")
            .with_limit(3)
            .with_revision(rev);
        let r = ok(cl.get(start.clone(), Some(opts)).await, "page")?;
        c.record("page", grpc::get_json(&r));
        pages.push(r.kvs().len());
        let Some(last) = r.kvs().last() else { break };
        start = last.key().to_vec();
        start.push(0);
        if !r.more() {
            break;
        }
    }
    check_eq!(pages, vec![3, 3, 1], "page sizes at the list revision");
    c.record("pages", json!(pages));
    Ok(())
}
