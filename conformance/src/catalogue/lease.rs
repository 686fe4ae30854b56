//! Lease scenarios: grant (minimum TTL, too-large TTL, explicit IDs), keep-alive, time-to-live
//! with keys, expiry and revoke deleting keys, unknown lease errors, leases across a leader change.

use std::time::Duration;

use etcd_client::{LeaseGrantOptions, LeaseTimeToLiveOptions, PutOptions, WatchOptions};
use regex::Regex;
use serde_json::json;

use crate::catalogue::watch::collect;
use crate::drivers::grpc;
use crate::scenario::{Area, Ctx, Res, Scenario, ScenarioError, Topology, expect_grpc_err, ok, sc};
use crate::{check, check_eq};

macro_rules! entries {
    ($($name:literal, $topo:expr, $f:ident, $fast:expr, $about:literal;)*) => {
        vec![$(sc($name, Area::Lease, $topo, $about, $fast, |c| Box::pin($f(c)))),*]
    };
}

pub fn scenarios() -> Vec<Scenario> {
    use Topology::{Single, Three};
    entries![
        "lease/grant-min-ttl", Single, grant_min_ttl, true, "TTLs below the minimum are raised to 2 s";
        "lease/grant-too-large", Single, grant_too_large, true, "TTL above 9e9 s is OutOfRange";
        "lease/grant-with-id", Single, grant_with_id, false, "an explicit ID is used; reusing it fails";
        "lease/ctl-grant-format", Single, ctl_grant_format, false, "etcdctl lease grant output";
        "lease/keepalive", Single, keepalive, false, "keep-alive answers with the full TTL and resets it";
        "lease/keepalive-unknown", Single, keepalive_unknown, false, "keep-alive of an unknown lease answers TTL 0";
        "lease/timetolive-keys", Single, timetolive_keys, true, "time-to-live lists attached keys";
        "lease/timetolive-unknown", Single, timetolive_unknown, false, "time-to-live of an unknown lease is TTL -1";
        "lease/expiry-deletes-keys", Single, expiry_deletes_keys, false, "an expired lease deletes its keys (watch sees it)";
        "lease/revoke-deletes-keys", Single, revoke_deletes_keys, true, "revoke deletes attached keys in one revision";
        "lease/revoke-unknown", Single, revoke_unknown, false, "revoking an unknown lease is NotFound";
        "lease/list", Single, list, false, "leases lists every granted lease";
        "lease/put-after-revoke", Single, put_after_revoke, false, "a put with a revoked lease is NotFound";
        "lease/across-leader-change", Three, across_leader_change, false, "a lease and its keys survive a leader move";
    ]
}

async fn grant_min_ttl(c: &mut Ctx) -> Res {
    let mut cl = c.client().await?;
    for ttl in [1, 2, 5] {
        let r = ok(cl.lease_grant(ttl, None).await, "grant")?;
        c.record(
            format!("grant {ttl}"),
            json!({"ttl": r.ttl(), "error": r.error()}),
        );
        check_eq!(r.ttl(), ttl.max(2), format!("granted TTL for {ttl}"));
    }
    Ok(())
}

async fn grant_too_large(c: &mut Ctx) -> Res {
    let mut cl = c.client().await?;
    let r = cl.lease_grant(9_000_000_001, None).await;
    c.record(
        "grant 9000000001",
        grpc::result_json(&r, |x| json!({"ttl": x.ttl()})),
    );
    expect_grpc_err(&r, "OutOfRange", "etcdserver: too large lease TTL")?;
    let r = ok(cl.lease_grant(9_000_000_000, None).await, "grant max")?;
    c.record("grant 9000000000", json!({"ttl": r.ttl()}));
    c.ctl_err("lease grant 9999999999", "etcdserver: too large lease TTL")
        .await?;
    Ok(())
}

async fn grant_with_id(c: &mut Ctx) -> Res {
    let mut cl = c.client().await?;
    let r = ok(
        cl.lease_grant(30, Some(LeaseGrantOptions::new().with_id(0x1234)))
            .await,
        "grant",
    )?;
    c.record("grant id 0x1234", json!({"id": r.id(), "ttl": r.ttl()}));
    check_eq!(r.id(), 0x1234, "granted id");
    let r = cl
        .lease_grant(30, Some(LeaseGrantOptions::new().with_id(0x1234)))
        .await;
    c.record(
        "grant again",
        grpc::result_json(&r, |x| json!({"id": x.id()})),
    );
    expect_grpc_err(&r, "FailedPrecondition", "etcdserver: lease already exists")
}

async fn ctl_grant_format(c: &mut Ctx) -> Res {
    let out = c.ctl("lease grant 100").await?;
    let re = Regex::new(r"^lease [0-9a-f]{1,16} granted with TTL\(100s\)\n$").expect("regex");
    check!(
        out.ok() && re.is_match(&out.stdout),
        "lease grant printed {:?}",
        out.stdout
    );
    Ok(())
}

async fn keepalive(c: &mut Ctx) -> Res {
    let mut cl = c.client().await?;
    let id = ok(cl.lease_grant(10, None).await, "grant")?.id();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (mut keeper, mut stream) = ok(cl.lease_keep_alive(id).await, "keep_alive")?;
    ok(keeper.keep_alive().await, "send")?;
    let resp = tokio::time::timeout(Duration::from_secs(5), stream.message()).await;
    let resp = match resp {
        Ok(Ok(Some(r))) => r,
        other => {
            return Err(ScenarioError::Check(format!(
                "no keep-alive response: {other:?}"
            )));
        }
    };
    c.record("keepalive", json!({"id": resp.id(), "ttl": resp.ttl()}));
    check_eq!((resp.id(), resp.ttl()), (id, 10), "(id, ttl)");
    let ttl = ok(cl.lease_time_to_live(id, None).await, "ttl")?;
    check!(
        ttl.ttl() >= 9,
        "remaining TTL after keep-alive is {}",
        ttl.ttl()
    );
    c.ctl_ok(
        &format!("lease keep-alive --once {id:x}"),
        &format!("lease {id:016x} keepalived with TTL(10)"),
    )
    .await?;
    Ok(())
}

async fn keepalive_unknown(c: &mut Ctx) -> Res {
    let mut cl = c.client().await?;
    // The server answers TTL 0; etcd-client turns that first answer into an error.
    let r = cl.lease_keep_alive(0x777).await;
    c.record(
        "keepalive unknown",
        grpc::result_json(&r, |_| json!("stream")),
    );
    check!(
        matches!(&r, Err(etcd_client::Error::LeaseKeepAliveError(m)) if m == "lease not found"),
        "keep-alive of an unknown lease: {:?}",
        r.as_ref().err()
    );
    c.ctl_err(
        "lease keep-alive --once 777",
        "etcdserver: requested lease not found",
    )
    .await?;
    Ok(())
}

async fn timetolive_keys(c: &mut Ctx) -> Res {
    let mut cl = c.client().await?;
    let id = ok(cl.lease_grant(100, None).await, "grant")?.id();
    for k in ["b", "a"] {
        ok(
            cl.put(k, "v", Some(PutOptions::new().with_lease(id))).await,
            "put",
        )?;
    }
    let r = ok(
        cl.lease_time_to_live(id, Some(LeaseTimeToLiveOptions::new().with_keys()))
            .await,
        "ttl",
    )?;
    let keys: Vec<String> = r.keys().iter().map(|k| grpc::bytes_text(k)).collect();
    c.record(
        "timetolive",
        json!({"id": r.id(), "granted_ttl": r.granted_ttl(), "keys": keys}),
    );
    check_eq!(r.granted_ttl(), 100, "granted ttl");
    let mut sorted = keys.clone();
    sorted.sort();
    check_eq!(sorted, vec!["a".to_string(), "b".to_string()], "keys");
    check!((98..=100).contains(&r.ttl()), "remaining ttl {}", r.ttl());
    let out = c.ctl(&format!("lease timetolive {id:x} --keys")).await?;
    let re = Regex::new(
        r"granted with TTL\(100s\), remaining\((99|100)s\), attached keys\(\[(a b|b a)\]\)",
    )
    .expect("regex");
    check!(
        re.is_match(&out.stdout),
        "timetolive printed {:?}",
        out.stdout
    );
    Ok(())
}

async fn timetolive_unknown(c: &mut Ctx) -> Res {
    let mut cl = c.client().await?;
    let r = ok(cl.lease_time_to_live(0x1234, None).await, "ttl")?;
    c.record(
        "timetolive unknown",
        json!({"ttl": r.ttl(), "granted_ttl": r.granted_ttl()}),
    );
    check_eq!(r.ttl(), -1, "ttl");
    c.ctl_ok(
        "lease timetolive 1234",
        "lease 0000000000001234 already expired",
    )
    .await?;
    Ok(())
}

async fn expiry_deletes_keys(c: &mut Ctx) -> Res {
    let mut cl = c.client().await?;
    let id = ok(cl.lease_grant(2, None).await, "grant")?.id();
    for k in ["e/a", "e/b"] {
        ok(
            cl.put(k, "v", Some(PutOptions::new().with_lease(id))).await,
            "put",
        )?;
    }
    let mut stream = ok(
        cl.watch("e/", Some(WatchOptions::new().with_prefix()))
            .await,
        "watch",
    )?;
    let created = collect(c, &mut stream, 0, false).await?;
    check!(created[0].created(), "created");
    // Expiry takes the TTL plus up to a leader tick; the watch waits up to WATCH_WAIT per response.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let resps = collect(c, &mut stream, 2, false).await?;
    let deletes = resps
        .iter()
        .flat_map(|r| r.events())
        .filter(|e| e.event_type() == etcd_client::EventType::Delete)
        .count();
    check_eq!(deletes, 2, "delete events");
    let r = ok(
        cl.get("e/", Some(etcd_client::GetOptions::new().with_prefix()))
            .await,
        "get",
    )?;
    check_eq!(r.count(), 0, "keys left");
    Ok(())
}

async fn revoke_deletes_keys(c: &mut Ctx) -> Res {
    let mut cl = c.client().await?;
    let id = ok(cl.lease_grant(100, None).await, "grant")?.id();
    for k in ["a", "b"] {
        ok(
            cl.put(k, "v", Some(PutOptions::new().with_lease(id))).await,
            "put",
        )?;
    }
    ok(cl.put("c", "v", None).await, "put")?;
    let r = ok(cl.lease_revoke(id).await, "revoke")?;
    c.record("revoke", grpc::header_json(r.header()));
    check_eq!(
        r.header().map(|h| h.revision()),
        Some(c.r(4)),
        "one revision for the revoke"
    );
    c.ctl_ok("get '' --from-key --keys-only", "c").await?;
    Ok(())
}

async fn revoke_unknown(c: &mut Ctx) -> Res {
    let mut cl = c.client().await?;
    let r = cl.lease_revoke(0x1234).await;
    c.record(
        "revoke unknown",
        grpc::result_json(&r, |x| grpc::header_json(x.header())),
    );
    expect_grpc_err(&r, "NotFound", "etcdserver: requested lease not found")?;
    c.ctl_err(
        "lease revoke 1234",
        "failed to revoke lease (etcdserver: requested lease not found)",
    )
    .await?;
    Ok(())
}

async fn list(c: &mut Ctx) -> Res {
    let mut cl = c.client().await?;
    let mut ids = Vec::new();
    for i in 1..=3 {
        let r = cl.lease_grant(60, Some(LeaseGrantOptions::new().with_id(i)));
        ids.push(ok(r.await, "grant")?.id());
    }
    let r = ok(cl.leases().await, "leases")?;
    let mut got: Vec<i64> = r.leases().iter().map(|l| l.id()).collect();
    got.sort_unstable();
    c.record("leases", json!(got));
    check_eq!(got, ids, "lease ids");
    c.ctl_ok(
        "lease list",
        "found 3 leases\n0000000000000001\n0000000000000002\n0000000000000003",
    )
    .await?;
    Ok(())
}

async fn put_after_revoke(c: &mut Ctx) -> Res {
    let mut cl = c.client().await?;
    let id = ok(cl.lease_grant(60, None).await, "grant")?.id();
    ok(cl.lease_revoke(id).await, "revoke")?;
    let r = cl
        .put("k", "v", Some(PutOptions::new().with_lease(id)))
        .await;
    c.record(
        "put with revoked lease",
        grpc::result_json(&r, grpc::put_json),
    );
    expect_grpc_err(&r, "NotFound", "etcdserver: requested lease not found")
}

async fn across_leader_change(c: &mut Ctx) -> Res {
    let mut cl = c.client().await?;
    let id = ok(cl.lease_grant(30, None).await, "grant")?.id();
    ok(
        cl.put("k", "v", Some(PutOptions::new().with_lease(id)))
            .await,
        "put",
    )?;
    let leader = crate::catalogue::members::leader_index(c).await?;
    let target = (leader + 1) % 3;
    let target_id = ok(c.client_at(target).await?.status().await, "status")?
        .header()
        .map(|h| h.member_id())
        .unwrap_or(0);
    let mut leader_client = c.client_at(leader).await?;
    let r = leader_client.move_leader(target_id).await;
    c.record("move leader", grpc::result_json(&r, |_| json!("ok")));
    ok(r, "move leader")?;
    let now = crate::catalogue::members::leader_index(c).await?;
    check_eq!(now, target, "new leader");
    let r = ok(
        cl.lease_time_to_live(id, Some(LeaseTimeToLiveOptions::new().with_keys()))
            .await,
        "ttl",
    )?;
    c.record(
        "after move",
        json!({"granted_ttl": r.granted_ttl(), "keys": r.keys().len()}),
    );
    check!(
        r.ttl() > 20,
        "lease kept its TTL across the leader change: {}",
        r.ttl()
    );
    check_eq!(r.keys().len(), 1, "attached keys");
    let mut on_new = c.client_at(target).await?;
    let (mut keeper, mut stream) = ok(on_new.lease_keep_alive(id).await, "keep_alive")?;
    ok(keeper.keep_alive().await, "send")?;
    let resp = tokio::time::timeout(Duration::from_secs(5), stream.message()).await;
    check!(
        matches!(&resp, Ok(Ok(Some(r))) if r.ttl() == 30),
        "keep-alive on the new leader: {resp:?}"
    );
    Ok(())
}
