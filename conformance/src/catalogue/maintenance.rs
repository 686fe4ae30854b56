//! Maintenance scenarios: status, health, hashkv (equal across members), defrag, alarms,
//! snapshot save, move-leader, and the HTTP /version, /health and /metrics endpoints.

use std::time::Duration;

use etcd_client::{AlarmAction, AlarmOptions, AlarmType};
use serde_json::json;

use crate::drivers::grpc;
use crate::scenario::{Area, Ctx, Res, Scenario, ScenarioError, Topology, ok, sc};
use crate::{check, check_eq};

macro_rules! entries {
    ($($name:literal, $topo:expr, $f:ident, $fast:expr, $about:literal;)*) => {
        vec![$(sc($name, Area::Maintenance, $topo, $about, $fast, |c| Box::pin($f(c)))),*]
    };
}

pub fn scenarios() -> Vec<Scenario> {
    use Topology::{Single, Three};
    entries![
        "maintenance/status", Single, status, true, "status: version, leader is self, db size, raft index";
        "maintenance/ctl-endpoint-health", Single, ctl_endpoint_health, false, "etcdctl endpoint health";
        "maintenance/ctl-endpoint-status-cluster", Three, ctl_status_cluster, false, "endpoint status --cluster: three members, one leader";
        "maintenance/hashkv-equal-across-members", Three, hashkv_equal, true, "hashkv at one revision is equal on every member";
        "maintenance/hashkv-stable", Single, hashkv_stable, false, "hashkv at a past revision does not change with new writes";
        "maintenance/defrag", Single, defrag, false, "defragment via gRPC and etcdctl; data intact";
        "maintenance/alarm-list-empty", Single, alarm_list, false, "no alarms on a fresh member; disarm of nothing";
        "maintenance/snapshot-save", Single, snapshot_save, false, "etcdctl snapshot save + snapshot status";
        "maintenance/snapshot-grpc", Single, snapshot_grpc, false, "the snapshot stream ends with remaining_bytes 0";
        "maintenance/move-leader", Three, move_leader, false, "etcdctl move-leader to a follower";
        "maintenance/move-leader-from-follower", Three, move_leader_follower, false, "move-leader sent to a follower fails";
        "maintenance/http-version", Single, http_version, false, "GET /version";
        "maintenance/http-health", Single, http_health, false, "GET /health";
        "maintenance/http-metrics", Single, http_metrics, false, "GET /metrics has etcd's core metric names";
    ]
}

async fn status(c: &mut Ctx) -> Res {
    let mut cl = c.client().await?;
    ok(cl.put("k", "v", None).await, "put")?;
    let s = ok(cl.status().await, "status")?;
    let me = s.header().map(|h| h.member_id()).unwrap_or(0);
    c.record("status", json!({"server_version": s.version(), "leader": s.leader(), "member_id": me, "db_size": s.db_size(), "raft_index": s.raft_index(), "is_learner": s.is_learner()}));
    check!(s.version().starts_with("3."), "version {}", s.version());
    check_eq!(s.leader(), me, "a single member leads itself");
    check!(
        s.db_size() > 0 && s.raft_index() > 0,
        "db size and raft index are positive"
    );
    let out = c.ctl("endpoint status -w json").await?;
    check!(
        out.ok() && out.stdout.contains("\"leader\""),
        "endpoint status json: {}",
        out.stdout
    );
    Ok(())
}

async fn ctl_endpoint_health(c: &mut Ctx) -> Res {
    let out = c.ctl("endpoint health").await?;
    // etcdctl 3.4 prints the health line on stderr.
    let want = format!(
        "{} is healthy: successfully committed proposal: took = ",
        c.endpoints[0]
    );
    check!(
        out.ok() && out.stderr.starts_with(&want),
        "endpoint health: {:?} {:?}",
        out.stdout,
        out.stderr
    );
    Ok(())
}

async fn ctl_status_cluster(c: &mut Ctx) -> Res {
    let out = c.ctl("endpoint status --cluster -w json").await?;
    let v: serde_json::Value = serde_json::from_str(&out.stdout)
        .map_err(|e| ScenarioError::Check(format!("json: {e}")))?;
    let list = v.as_array().cloned().unwrap_or_default();
    check_eq!(list.len(), 3, "endpoints");
    let leaders: Vec<u64> = list
        .iter()
        .filter_map(|e| e["Status"]["leader"].as_u64())
        .collect();
    check!(
        leaders.windows(2).all(|w| w[0] == w[1]),
        "every member names the same leader"
    );
    Ok(())
}

async fn hashkv_equal(c: &mut Ctx) -> Res {
    let mut cl = c.client().await?;
    for i in 0..50 {
        ok(
            cl.put(format!("k{}", i % 7), format!("v{i}"), None).await,
            "put",
        )?;
    }
    let rev = c.r(50);
    let mut hashes = Vec::new();
    for i in 0..3 {
        let mut m = c.client_at(i).await?;
        // A follower may not have applied rev yet; wait for it.
        let mut last = None;
        for _ in 0..50 {
            last = Some(m.hash_kv(rev).await);
            if matches!(last, Some(Ok(_))) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let r = ok(last.expect("tried"), "hashkv")?;
        hashes.push(r.hash());
        c.record(format!("hashkv m{}", i + 1), json!({"compact_revision": r.compact_version(), "header_revision": r.header().map(|h| h.revision())}));
    }
    check!(
        hashes.windows(2).all(|w| w[0] == w[1]),
        "hashes differ: {hashes:?}"
    );
    Ok(())
}

async fn hashkv_stable(c: &mut Ctx) -> Res {
    let mut cl = c.client().await?;
    for i in 0..10 {
        ok(cl.put(format!("k{i}"), "v", None).await, "put")?;
    }
    let before = ok(cl.hash_kv(c.r(10)).await, "hashkv")?.hash();
    for i in 0..10 {
        ok(cl.put(format!("k{i}"), "w", None).await, "put")?;
    }
    let after = ok(cl.hash_kv(c.r(10)).await, "hashkv")?.hash();
    let now = ok(cl.hash_kv(0).await, "hashkv latest")?.hash();
    c.record(
        "hashes equal/changed",
        json!({"stable": before == after, "latest_differs": now != before}),
    );
    check_eq!(before, after, "hash at r10");
    check!(now != before, "latest hash must reflect new writes");
    Ok(())
}

async fn defrag(c: &mut Ctx) -> Res {
    let mut cl = c.client().await?;
    for i in 0..100 {
        ok(cl.put(format!("k{i}"), vec![b'x'; 1000], None).await, "put")?;
    }
    ok(cl.compact(c.r(100), None).await, "compact")?;
    let r = cl.defragment().await;
    c.record("defragment", grpc::result_json(&r, |_| json!("ok")));
    ok(r, "defragment")?;
    let ep = c.endpoints[0].clone();
    c.ctl_ok(
        "defrag",
        &format!("Finished defragmenting etcd member[{ep}]"),
    )
    .await?;
    let r = ok(
        cl.get(
            "k",
            Some(
                etcd_client::GetOptions::new()
                    .with_prefix()
                    .with_count_only(),
            ),
        )
        .await,
        "count",
    )?;
    check_eq!(r.count(), 100, "keys after defrag");
    Ok(())
}

async fn alarm_list(c: &mut Ctx) -> Res {
    let mut cl = c.client().await?;
    let r = ok(
        cl.alarm(AlarmAction::Get, AlarmType::None, None).await,
        "alarm get",
    )?;
    c.record("alarms", json!(r.alarms().len()));
    check_eq!(r.alarms().len(), 0, "alarms");
    c.ctl_ok("alarm list", "").await?;
    let r = cl
        .alarm(
            AlarmAction::Deactivate,
            AlarmType::Nospace,
            Some(AlarmOptions::new()),
        )
        .await;
    c.record("disarm", grpc::result_json(&r, |x| json!(x.alarms().len())));
    ok(r, "disarm")?;
    c.ctl_ok("alarm disarm", "").await?;
    Ok(())
}

async fn snapshot_save(c: &mut Ctx) -> Res {
    for i in 0..5 {
        c.ctl_ok(&format!("put k{i} v"), "OK").await?;
    }
    let path = c.scratch_path("snap.db");
    let out = c.ctl(&format!("snapshot save {path}")).await?;
    check!(
        out.ok() && out.stdout.contains(&format!("Snapshot saved at {path}")),
        "snapshot save: {:?} {:?}",
        out.stdout,
        out.stderr
    );
    let out = c.ctl(&format!("snapshot status {path} -w json")).await?;
    let v: serde_json::Value = serde_json::from_str(&out.stdout)
        .map_err(|e| ScenarioError::Check(format!("status json: {e}")))?;
    check_eq!(v["revision"].as_i64(), Some(c.r(5)), "snapshot revision");
    check!(
        v["totalKey"].as_i64().unwrap_or(0) >= 5,
        "snapshot keys: {v}"
    );
    Ok(())
}

async fn snapshot_grpc(c: &mut Ctx) -> Res {
    let mut cl = c.client().await?;
    ok(cl.put("k", "v", None).await, "put")?;
    let mut stream = ok(cl.snapshot().await, "snapshot")?;
    let (mut bytes, mut last_remaining) = (0usize, u64::MAX);
    while let Some(msg) = ok(stream.message().await, "snapshot chunk")? {
        bytes += msg.blob().len();
        last_remaining = msg.remaining_bytes();
    }
    c.record(
        "snapshot",
        json!({"nonempty": bytes > 0, "last_remaining": last_remaining}),
    );
    check!(bytes > 0, "snapshot is empty");
    check_eq!(last_remaining, 0, "remaining bytes of the last chunk");
    Ok(())
}

async fn member_ids(c: &mut Ctx) -> Res<Vec<u64>> {
    let mut ids = Vec::new();
    for i in 0..c.endpoints.len() {
        let s = ok(c.client_at(i).await?.status().await, "status")?;
        ids.push(s.header().map(|h| h.member_id()).unwrap_or(0));
    }
    Ok(ids)
}

async fn move_leader(c: &mut Ctx) -> Res {
    let leader = crate::catalogue::members::leader_index(c).await?;
    let ids = member_ids(c).await?;
    let target = (leader + 1) % 3;
    let out = c
        .ctl_at(leader, &format!("move-leader {:x}", ids[target]), None)
        .await?;
    let want = format!(
        "Leadership transferred from {:x} to {:x}",
        ids[leader], ids[target]
    );
    crate::scenario::expect_ctl_ok(&out, &want)?;
    check_eq!(
        crate::catalogue::members::leader_index(c).await?,
        target,
        "new leader"
    );
    Ok(())
}

async fn move_leader_follower(c: &mut Ctx) -> Res {
    let leader = crate::catalogue::members::leader_index(c).await?;
    let ids = member_ids(c).await?;
    let follower = (leader + 1) % 3;
    let other = (leader + 2) % 3;
    let mut cl = c.client_at(follower).await?;
    let r = cl.move_leader(ids[other]).await;
    c.record(
        "move-leader via follower",
        grpc::result_json(&r, |_| json!("ok")),
    );
    crate::scenario::expect_grpc_err(&r, "FailedPrecondition", "etcdserver: not leader")
}

async fn http_version(c: &mut Ctx) -> Res {
    let r = c.http("GET", "/version", None).await?;
    let v = r.json();
    check!(
        r.status == 200 && v["etcdserver"].is_string() && v["etcdcluster"].is_string(),
        "/version: {} {}",
        r.status,
        r.body
    );
    Ok(())
}

async fn http_health(c: &mut Ctx) -> Res {
    let r = c.http("GET", "/health", None).await?;
    check_eq!(
        (r.status, r.json()),
        (200, json!({"health": "true"})),
        "/health"
    );
    Ok(())
}

async fn http_metrics(c: &mut Ctx) -> Res {
    let addr = c.endpoints[0].trim_start_matches("http://").to_string();
    let r = crate::drivers::gateway::request(&addr, "GET", "/metrics", None).await?;
    let names = [
        "etcd_server_has_leader 1",
        "etcd_mvcc_db_total_size_in_bytes",
        "etcd_disk_wal_fsync_duration_seconds_bucket",
        "etcd_server_proposals_committed_total",
    ];
    let present: Vec<bool> = names.iter().map(|n| r.body.contains(n)).collect();
    c.record(
        "metrics present",
        json!(
            names
                .iter()
                .zip(&present)
                .map(|(n, p)| json!({"name": n, "present": p}))
                .collect::<Vec<_>>()
        ),
    );
    check!(
        r.status == 200 && present.iter().all(|p| *p),
        "/metrics lacks some of {names:?}"
    );
    Ok(())
}
