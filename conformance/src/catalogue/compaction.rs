//! Compaction scenarios: reads and watches below, at and above the compacted revision,
//! physical compaction, and the compaction error cases.

use etcd_client::{CompactionOptions, GetOptions, WatchOptions};

use crate::catalogue::watch::collect;
use crate::drivers::grpc;
use crate::scenario::{Area, Ctx, Res, Scenario, Topology, expect_grpc_err, ok, sc};
use crate::{check, check_eq};

macro_rules! entries {
    ($($name:literal, $f:ident, $fast:expr, $about:literal;)*) => {
        vec![$(sc($name, Area::Compaction, Topology::Single, $about, $fast, |c| Box::pin($f(c)))),*]
    };
}

pub fn scenarios() -> Vec<Scenario> {
    entries![
        "compaction/ctl-compact", ctl_compact, true, "etcdctl compaction prints the revision";
        "compaction/read-below", read_below, true, "a read below the compacted revision is OutOfRange";
        "compaction/read-at", read_at, false, "a read at the compacted revision is served";
        "compaction/read-above", read_above, false, "reads above the compacted revision see history";
        "compaction/compact-again", compact_again, false, "compacting at or below the last compaction fails";
        "compaction/compact-future", compact_future, false, "compacting a future revision fails";
        "compaction/physical", physical, false, "etcdctl compaction --physical waits and then reads fail below";
        "compaction/keeps-latest", keeps_latest, false, "the latest version of each live key survives";
        "compaction/watch-below", watch_below, true, "a watch from below the compaction is canceled with compact_revision";
        "compaction/watch-at", watch_at, false, "a watch from the compacted revision replays from there";
        "compaction/watch-above", watch_above, false, "a watch from above the compaction replays history";
    ]
}

/// Writes k=v1..v5 (revisions r1..r5) and compacts at r3.
async fn history_compacted(c: &mut Ctx) -> Res<etcd_client::Client> {
    let mut cl = c.client().await?;
    for i in 1..=5 {
        ok(cl.put("k", format!("v{i}"), None).await, "put")?;
    }
    let r = cl.compact(c.r(3), None).await;
    c.record(
        "compact r3",
        grpc::result_json(&r, |x| grpc::header_json(x.header())),
    );
    ok(r, "compact")?;
    Ok(cl)
}

async fn ctl_compact(c: &mut Ctx) -> Res {
    for i in 1..=3 {
        c.ctl_ok(&format!("put k v{i}"), "OK").await?;
    }
    let rev = c.r(2);
    c.ctl_ok(
        &format!("compaction {rev}"),
        &format!("compacted revision {rev}"),
    )
    .await?;
    Ok(())
}

async fn read_below(c: &mut Ctx) -> Res {
    let mut cl = history_compacted(c).await?;
    let r = cl
        .get("k", Some(GetOptions::new().with_revision(c.r(2))))
        .await;
    c.record("get r2", grpc::result_json(&r, grpc::get_json));
    expect_grpc_err(
        &r,
        "OutOfRange",
        "etcdserver: mvcc: required revision has been compacted",
    )?;
    let rev = c.r(1);
    c.ctl_err(
        &format!("get k --rev={rev}"),
        "etcdserver: mvcc: required revision has been compacted",
    )
    .await?;
    Ok(())
}

async fn read_at(c: &mut Ctx) -> Res {
    let mut cl = history_compacted(c).await?;
    let r = ok(
        cl.get("k", Some(GetOptions::new().with_revision(c.r(3))))
            .await,
        "get r3",
    )?;
    c.record("get r3", grpc::get_json(&r));
    check_eq!(r.kvs()[0].value(), b"v3", "value at the compacted revision");
    Ok(())
}

async fn read_above(c: &mut Ctx) -> Res {
    let mut cl = history_compacted(c).await?;
    let r = ok(
        cl.get("k", Some(GetOptions::new().with_revision(c.r(4))))
            .await,
        "get r4",
    )?;
    c.record("get r4", grpc::get_json(&r));
    check_eq!(r.kvs()[0].value(), b"v4", "value at r4");
    Ok(())
}

async fn compact_again(c: &mut Ctx) -> Res {
    let mut cl = history_compacted(c).await?;
    for rev in [c.r(3), c.r(2)] {
        let r = cl.compact(rev, None).await;
        c.record(
            "compact again",
            grpc::result_json(&r, |x| grpc::header_json(x.header())),
        );
        expect_grpc_err(
            &r,
            "OutOfRange",
            "etcdserver: mvcc: required revision has been compacted",
        )?;
    }
    Ok(())
}

async fn compact_future(c: &mut Ctx) -> Res {
    let mut cl = c.client().await?;
    ok(cl.put("k", "v", None).await, "put")?;
    let r = cl.compact(c.r(100), None).await;
    c.record(
        "compact future",
        grpc::result_json(&r, |x| grpc::header_json(x.header())),
    );
    expect_grpc_err(
        &r,
        "OutOfRange",
        "etcdserver: mvcc: required revision is a future revision",
    )?;
    let rev = c.r(100);
    c.ctl_err(
        &format!("compaction {rev}"),
        "etcdserver: mvcc: required revision is a future revision",
    )
    .await?;
    Ok(())
}

async fn physical(c: &mut Ctx) -> Res {
    let mut cl = c.client().await?;
    for i in 1..=50 {
        ok(
            cl.put(format!("k{}", i % 5), format!("v{i}"), None).await,
            "put",
        )?;
    }
    let rev = c.r(40);
    c.ctl_ok(
        &format!("compaction --physical {rev}"),
        &format!("compacted revision {rev}"),
    )
    .await?;
    let r = cl
        .compact(c.r(45), Some(CompactionOptions::new().with_physical()))
        .await;
    c.record(
        "grpc physical",
        grpc::result_json(&r, |x| grpc::header_json(x.header())),
    );
    ok(r, "physical compact")?;
    let r = cl
        .get("k1", Some(GetOptions::new().with_revision(c.r(44))))
        .await;
    c.record("get below", grpc::result_json(&r, grpc::get_json));
    expect_grpc_err(
        &r,
        "OutOfRange",
        "etcdserver: mvcc: required revision has been compacted",
    )
}

async fn keeps_latest(c: &mut Ctx) -> Res {
    let mut cl = c.client().await?;
    for (k, v) in [("a", "1"), ("b", "1"), ("a", "2"), ("c", "1")] {
        ok(cl.put(k, v, None).await, "put")?;
    }
    ok(cl.delete("b", None).await, "del")?;
    ok(cl.put("d", "1", None).await, "put")?;
    ok(cl.compact(c.r(6), None).await, "compact")?;
    let r = ok(
        cl.get("a", Some(GetOptions::new().with_range("z"))).await,
        "get",
    )?;
    c.record("after compaction", grpc::get_json(&r));
    let keys: Vec<&[u8]> = r.kvs().iter().map(|kv| kv.key()).collect();
    check_eq!(keys, vec![&b"a"[..], b"c", b"d"], "live keys");
    check_eq!(r.kvs()[0].version(), 2, "a's version survives");
    check_eq!(
        r.kvs()[0].create_revision(),
        c.r(1),
        "a's create revision survives"
    );
    Ok(())
}

async fn watch_below(c: &mut Ctx) -> Res {
    let mut cl = history_compacted(c).await?;
    let opts = WatchOptions::new().with_start_revision(c.r(2));
    let mut stream = ok(cl.watch("k", Some(opts)).await, "watch")?;
    let resps = collect(c, &mut stream, 0, true).await?;
    let canceled = resps.iter().find(|r| r.canceled());
    check!(
        canceled.is_some(),
        "expected a canceled response, got {} responses",
        resps.len()
    );
    let r = canceled.expect("checked");
    check_eq!(r.compact_revision(), c.r(3), "compact_revision");
    Ok(())
}

async fn watch_at(c: &mut Ctx) -> Res {
    let mut cl = history_compacted(c).await?;
    let opts = WatchOptions::new().with_start_revision(c.r(3));
    let mut stream = ok(cl.watch("k", Some(opts)).await, "watch")?;
    let resps = collect(c, &mut stream, 3, false).await?;
    let revs: Vec<i64> = resps
        .iter()
        .flat_map(|r| {
            r.events()
                .iter()
                .filter_map(|e| e.kv().map(|kv| kv.mod_revision()))
        })
        .collect();
    check_eq!(revs, vec![c.r(3), c.r(4), c.r(5)], "event revisions");
    Ok(())
}

async fn watch_above(c: &mut Ctx) -> Res {
    let mut cl = history_compacted(c).await?;
    let opts = WatchOptions::new()
        .with_start_revision(c.r(4))
        .with_prev_key();
    let mut stream = ok(cl.watch("k", Some(opts)).await, "watch")?;
    let resps = collect(c, &mut stream, 2, false).await?;
    let first = resps.iter().flat_map(|r| r.events()).next();
    let prev = first
        .and_then(|e| e.prev_kv())
        .map(|kv| kv.value().to_vec());
    check_eq!(prev, Some(b"v3".to_vec()), "prev_kv of the first event");
    Ok(())
}
