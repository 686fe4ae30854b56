//! Membership scenarios on three members: list, add, add learner, promote before and after
//! catch-up, update, remove (the removed member stops), and the error cases.

use std::time::{Duration, Instant};

use etcd_client::{Client, Member, MemberAddOptions};
use serde_json::{Value, json};

use crate::drivers::grpc;
use crate::scenario::{Area, Ctx, Res, Scenario, ScenarioError, Topology, expect_grpc_err, ok, sc};
use crate::{check, check_eq};

/// How long a joining learner has to catch up before promote must succeed.
const CATCH_UP_WAIT: Duration = Duration::from_secs(20);
/// How long a fresh cluster may answer "unhealthy cluster" to membership changes.
const RECONFIG_WAIT: Duration = Duration::from_secs(15);

macro_rules! entries {
    ($($name:literal, $f:ident, $fast:expr, $about:literal;)*) => {
        vec![$(sc($name, Area::Members, Topology::Three, $about, $fast, |c| Box::pin($f(c)))),*]
    };
}

pub fn scenarios() -> Vec<Scenario> {
    entries![
        "members/list", list, true, "three started voters with their URLs";
        "members/ctl-list-table", ctl_list_table, false, "etcdctl member list -w table";
        "members/add-unstarted", add_unstarted, false, "an added member is listed unstarted, then removed";
        "members/add-learner", add_learner, false, "a learner is listed as learner";
        "members/promote-before-catch-up", promote_before, false, "promoting a learner that never started fails";
        "members/promote-after-catch-up", promote_after, false, "a started learner catches up and is promoted";
        "members/promote-voter", promote_voter, false, "promoting a voter fails";
        "members/update", update, false, "update replaces peer URLs";
        "members/remove-follower-stops", remove_follower, false, "a removed member is gone and its process exits";
        "members/remove-unknown", remove_unknown, false, "removing an unknown ID is NotFound";
        "members/update-unknown", update_unknown, false, "updating an unknown ID is NotFound";
        "members/add-existing-peer-url", add_existing, false, "adding an existing peer URL fails";
        "members/add-bad-url", add_bad_url, false, "adding an invalid URL fails";
    ]
}

/// etcd refuses membership changes until every member has been connected for a few seconds
/// ("etcdserver: unhealthy cluster"); retry such a call until RECONFIG_WAIT has passed.
macro_rules! retry_unhealthy {
    ($call:expr) => {{
        let deadline = Instant::now() + RECONFIG_WAIT;
        loop {
            let r = $call;
            match &r {
                Err(e)
                    if grpc::err_message(e) == "etcdserver: unhealthy cluster"
                        && Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                _ => break r,
            }
        }
    }};
}

fn member_json(m: &Member) -> Value {
    json!({"id": m.id(), "name": m.name(), "peer_urls": m.peer_urls(), "client_urls": m.client_urls(), "is_learner": m.is_learner()})
}

/// Members sorted by name (IDs differ between servers, names do not).
async fn members(c: &mut Ctx, cl: &mut Client, label: &str) -> Res<Vec<Member>> {
    let r = ok(cl.member_list().await, "member list")?;
    let mut list: Vec<Member> = r.members().to_vec();
    list.sort_by(|a, b| (a.name(), a.peer_urls()).cmp(&(b.name(), b.peer_urls())));
    c.record(label, Value::Array(list.iter().map(member_json).collect()));
    Ok(list)
}

/// The index of the current leader among the suite's members.
pub async fn leader_index(c: &mut Ctx) -> Res<usize> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut ids = Vec::new();
        let mut leader = 0;
        for i in 0..c.endpoints.len() {
            match c.client_at(i).await {
                Ok(mut cl) => match cl.status().await {
                    Ok(s) => {
                        ids.push(s.header().map(|h| h.member_id()).unwrap_or(0));
                        leader = leader.max(s.leader());
                    }
                    Err(_) => ids.push(0),
                },
                Err(_) => ids.push(0),
            }
        }
        if let Some(i) = ids.iter().position(|id| *id == leader && leader != 0) {
            return Ok(i);
        }
        if Instant::now() > deadline {
            return Err(ScenarioError::Check("no leader within 10 s".into()));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn free_url() -> Res<String> {
    Ok(format!("http://127.0.0.1:{}", crate::servers::free_port()?))
}

async fn list(c: &mut Ctx) -> Res {
    let mut cl = c.client().await?;
    let list = members(c, &mut cl, "members").await?;
    let names: Vec<&str> = list.iter().map(Member::name).collect();
    check_eq!(names, vec!["m1", "m2", "m3"], "names");
    check!(
        list.iter()
            .all(|m| !m.is_learner() && m.client_urls().len() == 1),
        "voters with client URLs"
    );
    let out = c.ctl("member list").await?;
    check_eq!(out.stdout.lines().count(), 3, "etcdctl member list lines");
    check!(
        out.stdout
            .lines()
            .all(|l| l.contains(", started, m") && l.ends_with(", false")),
        "member list: {}",
        out.stdout
    );
    Ok(())
}

async fn ctl_list_table(c: &mut Ctx) -> Res {
    let out = c.ctl("member list -w table").await?;
    check!(
        out.stdout.contains("STATUS") && out.stdout.contains("IS LEARNER"),
        "table: {}",
        out.stdout
    );
    check_eq!(out.stdout.lines().count(), 7, "table lines");
    Ok(())
}

async fn add_unstarted(c: &mut Ctx) -> Res {
    let mut cl = c.client().await?;
    let url = free_url()?;
    let r = ok(
        retry_unhealthy!(cl.member_add([url.as_str()], None).await),
        "member add",
    )?;
    let id = r.member().map(Member::id).unwrap_or(0);
    c.record(
        "added",
        json!({"name": r.member().map(Member::name), "members": r.member_list().len()}),
    );
    let list = members(c, &mut cl, "after add").await?;
    check_eq!(list.len(), 4, "members after add");
    check_eq!(list[0].name(), "", "an unstarted member has no name");
    ok(retry_unhealthy!(cl.member_remove(id).await), "remove")?;
    check_eq!(
        members(c, &mut cl, "after remove").await?.len(),
        3,
        "members after remove"
    );
    Ok(())
}

async fn add_learner(c: &mut Ctx) -> Res {
    let mut cl = c.client().await?;
    let url = free_url()?;
    let r = ok(
        retry_unhealthy!(
            cl.member_add(
                [url.as_str()],
                Some(MemberAddOptions::new().with_is_learner())
            )
            .await
        ),
        "add learner",
    )?;
    check!(
        r.member().is_some_and(Member::is_learner),
        "added member is a learner"
    );
    let list = members(c, &mut cl, "after add").await?;
    check_eq!(
        list.iter().filter(|m| m.is_learner()).count(),
        1,
        "learners"
    );
    Ok(())
}

async fn promote_before(c: &mut Ctx) -> Res {
    let mut cl = c.client().await?;
    let url = free_url()?;
    let r = ok(
        retry_unhealthy!(
            cl.member_add(
                [url.as_str()],
                Some(MemberAddOptions::new().with_is_learner())
            )
            .await
        ),
        "add learner",
    )?;
    let id = r.member().map(Member::id).unwrap_or(0);
    let r = retry_unhealthy!(cl.member_promote(id).await);
    c.record(
        "promote unstarted learner",
        grpc::result_json(&r, |_| json!("ok")),
    );
    expect_grpc_err(
        &r,
        "FailedPrecondition",
        "etcdserver: can only promote a learner member which is in sync with leader",
    )
}

async fn promote_after(c: &mut Ctx) -> Res {
    let mut cl = c.client().await?;
    for i in 0..100 {
        ok(cl.put(format!("k{i}"), "v", None).await, "put")?;
    }
    let cluster = c.cluster()?;
    let config = cluster.new_member_config("m4")?;
    let peer = config.advertised_peer_url();
    let mut initial: Vec<String> = cluster
        .members
        .iter()
        .map(|m| format!("{}={}", m.config.name, m.config.advertised_peer_url()))
        .collect();
    initial.push(format!("m4={peer}"));
    let r = ok(
        retry_unhealthy!(
            cl.member_add(
                [peer.as_str()],
                Some(MemberAddOptions::new().with_is_learner())
            )
            .await
        ),
        "add learner",
    )?;
    let id = r.member().map(Member::id).unwrap_or(0);
    let cluster = c.cluster()?;
    let idx = cluster.start_joining(config, &initial.join(","))?;
    cluster
        .wait_healthy(idx, CATCH_UP_WAIT)
        .await
        .map_err(|e| ScenarioError::Check(e.to_string()))?;
    let deadline = Instant::now() + CATCH_UP_WAIT;
    loop {
        let r = retry_unhealthy!(cl.member_promote(id).await);
        if r.is_ok() || Instant::now() > deadline {
            c.record("promote", grpc::result_json(&r, |_| json!("ok")));
            ok(r, "promote after catch-up")?;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let list = members(c, &mut cl, "after promote").await?;
    check!(list.iter().all(|m| !m.is_learner()), "no learner left");
    check_eq!(list.len(), 4, "members");
    Ok(())
}

async fn promote_voter(c: &mut Ctx) -> Res {
    let mut cl = c.client().await?;
    let list = members(c, &mut cl, "members").await?;
    let r = retry_unhealthy!(cl.member_promote(list[1].id()).await);
    c.record("promote voter", grpc::result_json(&r, |_| json!("ok")));
    expect_grpc_err(
        &r,
        "FailedPrecondition",
        "etcdserver: can only promote a learner member",
    )
}

async fn update(c: &mut Ctx) -> Res {
    let mut cl = c.client().await?;
    let list = members(c, &mut cl, "before").await?;
    let m3 = &list[2];
    let mut urls: Vec<String> = m3.peer_urls().to_vec();
    urls.push(free_url()?);
    let r = retry_unhealthy!(cl.member_update(m3.id(), urls.clone()).await);
    c.record("update", grpc::result_json(&r, |_| json!("ok")));
    ok(r, "update")?;
    let after = members(c, &mut cl, "after").await?;
    let mut got = after[2].peer_urls().to_vec();
    got.sort();
    urls.sort();
    check_eq!(got, urls, "peer URLs");
    Ok(())
}

async fn remove_follower(c: &mut Ctx) -> Res {
    let leader = leader_index(c).await?;
    let victim = (leader + 1) % 3;
    let mut cl = c.client_at(leader).await?;
    let id = ok(c.client_at(victim).await?.status().await, "status")?
        .header()
        .map(|h| h.member_id())
        .unwrap_or(0);
    let r = retry_unhealthy!(cl.member_remove(id).await);
    c.record(
        "remove",
        grpc::result_json(&r, |x| json!({"members": x.members().len()})),
    );
    ok(r, "remove")?;
    check_eq!(members(c, &mut cl, "after").await?.len(), 2, "members");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let member = &mut c.cluster()?.members[victim];
        if member.has_exited() {
            break;
        }
        check!(
            Instant::now() < deadline,
            "removed member still running after 15 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    c.record("removed member exited", json!(true));
    ok(
        cl.put("after", "remove", None).await,
        "write with two members",
    )?;
    Ok(())
}

async fn remove_unknown(c: &mut Ctx) -> Res {
    let mut cl = c.client().await?;
    let r = retry_unhealthy!(cl.member_remove(0x1234).await);
    c.record("remove unknown", grpc::result_json(&r, |_| json!("ok")));
    expect_grpc_err(&r, "NotFound", "etcdserver: member not found")
}

async fn update_unknown(c: &mut Ctx) -> Res {
    let mut cl = c.client().await?;
    let r = retry_unhealthy!(cl.member_update(0x1234, [free_url()?]).await);
    c.record("update unknown", grpc::result_json(&r, |_| json!("ok")));
    expect_grpc_err(&r, "NotFound", "etcdserver: member not found")
}

async fn add_existing(c: &mut Ctx) -> Res {
    let mut cl = c.client().await?;
    let list = members(c, &mut cl, "members").await?;
    let url = list[0].peer_urls()[0].clone();
    let r = retry_unhealthy!(cl.member_add([url.as_str()], None).await);
    c.record("add existing", grpc::result_json(&r, |_| json!("ok")));
    expect_grpc_err(
        &r,
        "FailedPrecondition",
        "etcdserver: Peer URLs already exists",
    )
}

async fn add_bad_url(c: &mut Ctx) -> Res {
    let mut cl = c.client().await?;
    let r = retry_unhealthy!(cl.member_add(["not a url"], None).await);
    c.record("add bad url", grpc::result_json(&r, |_| json!("ok")));
    expect_grpc_err(
        &r,
        "InvalidArgument",
        "etcdserver: given member URLs are invalid",
    )
}
