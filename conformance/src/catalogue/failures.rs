//! Failure scenarios on three members: killed, stopped, restarted and partitioned members,
//! lost quorum, a member that lags past a snapshot; with concurrent client histories checked
//! for linearizability (`checker::linearizability`) and watch streams checked for their
//! guarantees (`checker::watch`).

use std::time::{Duration, Instant};

use etcd_client::{Client, GetOptions, WatchOptions};
use nix::sys::signal::Signal;
use serde_json::json;

use crate::catalogue::members::leader_index;
use crate::catalogue::watch::{collect, to_record};
use crate::checker::linearizability::{CheckResult, History, Limits, check_history};
use crate::checker::watch as wcheck;
use crate::drivers::grpc;
use crate::faultproxy::Fault;
use crate::history::{WorkloadClient, spawn_workload};
use crate::scenario::{Area, Ctx, Res, Scenario, ScenarioError, Topology, ok, sc};
use crate::{check, check_eq};

/// A healthy three-member cluster must accept a write again within this after losing its leader.
const LEADER_LOSS_WRITE_WAIT: Duration = Duration::from_secs(15);
/// A restarted or healed member must serve the latest data within this.
const CATCH_UP_WAIT: Duration = Duration::from_secs(30);
/// Requests that are expected to fail get this long.
const SHORT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the concurrent workloads run.
const WORKLOAD_DURATION: Duration = Duration::from_secs(6);
/// Entries a lagging member misses: more than etcd's 5000 catch-up entries kept after a snapshot.
const LAG_WRITES: usize = 5500;

macro_rules! entries {
    ($($name:literal, $topo:expr, $f:ident, $fast:expr, $about:literal;)*) => {
        vec![$(sc($name, Area::Failures, $topo, $about, $fast, |c| Box::pin($f(c)))),*]
    };
}

pub fn scenarios() -> Vec<Scenario> {
    use Topology::{Three, ThreeProxied, ThreeWith};
    entries![
        "failures/kill-follower-keep-serving", Three, kill_follower, true, "SIGKILL a follower: the others serve reads and writes";
        "failures/dead-endpoint-refused", Three, dead_endpoint, false, "a killed member refuses connections (gRPC and etcdctl)";
        "failures/restart-catch-up", Three, restart_catch_up, true, "a restarted member catches up with writes it missed";
        "failures/kill-leader-time-to-write", Three, kill_leader, false, "SIGKILL the leader: time until a write succeeds";
        "failures/lose-quorum", Three, lose_quorum, false, "two members down: writes and linearizable reads fail, serializable reads served";
        "failures/sigstop-follower", Three, sigstop_follower, false, "SIGSTOP a follower, write, SIGCONT, it catches up";
        "failures/sigstop-leader", Three, sigstop_leader, false, "SIGSTOP the leader: a new leader; SIGCONT: the old one follows";
        "failures/lagging-member-snapshot", ThreeWith(&["--snapshot-count=100"]), lagging_snapshot, false, "a member down for 5500 entries catches up from a snapshot";
        "failures/partition-leader", ThreeProxied, partition_leader, false, "blackhole the leader's peer traffic: a new leader; heal: one history";
        "failures/partition-all-then-heal", ThreeProxied, partition_all, false, "every peer link blackholed: writes fail; healed: writes succeed";
        "failures/peer-delay", ThreeProxied, peer_delay, false, "100 ms on every peer link: writes slower but served";
        "failures/peer-connection-drops", ThreeProxied, peer_drops, false, "peer connections reset at random: writes still served";
        "failures/linearizable-kill-leader", Three, lin_kill_leader, true, "concurrent clients while the leader is killed: linearizable";
        "failures/linearizable-partition", ThreeProxied, lin_partition, false, "concurrent clients while a member is partitioned: linearizable";
        "failures/linearizable-sigstop", Three, lin_sigstop, false, "concurrent clients while a member is stopped: linearizable";
        "failures/watch-across-leader-kill", Three, watch_across_kill, false, "a watch on a survivor keeps its guarantees through a leader kill";
    ]
}

fn elapsed_ms(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// A client to member `i` whose requests give up after `timeout`.
async fn client_with_timeout(
    c: &Ctx,
    i: usize,
    timeout: Duration,
) -> Result<Client, etcd_client::Error> {
    let opts = etcd_client::ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(1))
        .with_timeout(timeout);
    Client::connect([c.endpoints[i].as_str()], Some(opts)).await
}

/// Retries a put through the given members until one succeeds; returns how long it took.
async fn write_until_ok(c: &Ctx, members: &[usize], key: &str, wait: Duration) -> Res<Duration> {
    let start = Instant::now();
    loop {
        for &i in members {
            if let Ok(mut cl) = client_with_timeout(c, i, Duration::from_secs(1)).await
                && cl.put(key, "v", None).await.is_ok()
            {
                return Ok(start.elapsed());
            }
        }
        if start.elapsed() > wait {
            return Err(ScenarioError::Check(format!(
                "no write succeeded within {}s",
                wait.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until member `i` serves (serializably) `key` with `value`.
async fn wait_caught_up(c: &Ctx, i: usize, key: &str, value: &str) -> Res<Duration> {
    let start = Instant::now();
    loop {
        if let Ok(mut cl) = client_with_timeout(c, i, Duration::from_secs(1)).await
            && let Ok(r) = cl
                .get(key, Some(GetOptions::new().with_serializable()))
                .await
            && r.kvs()
                .first()
                .is_some_and(|kv| kv.value() == value.as_bytes())
        {
            return Ok(start.elapsed());
        }
        if start.elapsed() > CATCH_UP_WAIT {
            return Err(ScenarioError::Check(format!(
                "member {} did not catch up within {}s",
                i + 1,
                CATCH_UP_WAIT.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn others(i: usize) -> Vec<usize> {
    (0..3).filter(|j| *j != i).collect()
}

async fn kill_follower(c: &mut Ctx) -> Res {
    let leader = leader_index(c).await?;
    let victim = (leader + 1) % 3;
    c.cluster()?.members[victim].kill();
    c.record("killed", json!({"role": "follower"}));
    for i in others(victim) {
        let mut cl = c.client_at(i).await?;
        let r = cl.put(format!("k{i}"), "v", None).await;
        c.record(
            format!("put via survivor {}", i - usize::from(i > victim)),
            grpc::result_json(&r, |_| json!("ok")),
        );
        ok(r, "put via a survivor")?;
        let r = ok(
            cl.get("k", Some(GetOptions::new().with_prefix())).await,
            "get",
        )?;
        check!(r.count() >= 1, "read via a survivor");
    }
    Ok(())
}

async fn dead_endpoint(c: &mut Ctx) -> Res {
    let victim = (leader_index(c).await? + 1) % 3;
    c.cluster()?.members[victim].kill();
    // The gRPC client may connect lazily; a request is what must fail.
    let r = match client_with_timeout(c, victim, SHORT_TIMEOUT).await {
        Ok(mut cl) => cl.get("k", None).await.map(|_| ()),
        Err(e) => Err(e),
    };
    c.record("request to the dead member", json!({"failed": r.is_err()}));
    check!(r.is_err(), "a request to a killed member must fail");
    let endpoint = c.endpoints[victim].clone();
    let args: Vec<String> = ["--dial-timeout=1s", "--command-timeout=2s", "get", "k"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let out = c.ctl_args(&endpoint, &args, None).await?;
    check!(
        out.code == Some(1) && out.stderr.contains("context deadline exceeded"),
        "etcdctl against a dead member: {:?}",
        out.stderr
    );
    Ok(())
}

async fn restart_catch_up(c: &mut Ctx) -> Res {
    let victim = (leader_index(c).await? + 1) % 3;
    c.cluster()?.members[victim].kill();
    let mut cl = c.client_at((victim + 1) % 3).await?;
    for i in 0..200 {
        ok(
            cl.put(format!("k{i:03}"), format!("{i}"), None).await,
            "put while down",
        )?;
    }
    let cluster = c.cluster()?;
    cluster.restart(victim)?;
    cluster
        .wait_healthy(victim, CATCH_UP_WAIT)
        .await
        .map_err(|e| ScenarioError::Check(e.to_string()))?;
    wait_caught_up(c, victim, "k199", "199").await?;
    let mut m = c.client_at(victim).await?;
    let r = ok(
        m.get("k", Some(GetOptions::new().with_prefix().with_count_only()))
            .await,
        "count on restarted",
    )?;
    c.record("restarted member count", json!(r.count()));
    check_eq!(r.count(), 200, "keys on the restarted member");
    Ok(())
}

async fn kill_leader(c: &mut Ctx) -> Res {
    let leader = leader_index(c).await?;
    c.cluster()?.members[leader].kill();
    let took = write_until_ok(c, &others(leader), "after-kill", LEADER_LOSS_WRITE_WAIT).await?;
    c.record(
        "time to next write",
        json!({"elapsed_ms": took.as_millis() as u64}),
    );
    eprintln!("  kill-leader: first write after {} ms", took.as_millis());
    let new_leader = leader_index(c).await?;
    check!(new_leader != leader, "a new leader among the survivors");
    Ok(())
}

async fn lose_quorum(c: &mut Ctx) -> Res {
    let leader = leader_index(c).await?;
    let survivor = (leader + 1) % 3;
    let mut cl = c.client_at(survivor).await?;
    ok(cl.put("k", "before", None).await, "put")?;
    wait_caught_up(c, survivor, "k", "before").await?;
    for i in others(survivor) {
        c.cluster()?.members[i].kill();
    }
    let mut short = client_with_timeout(c, survivor, Duration::from_secs(8))
        .await
        .map_err(|e| ScenarioError::Check(e.to_string()))?;
    let start = Instant::now();
    let w = short.put("k", "after", None).await;
    c.record(
        "write without quorum",
        json!({"error": w.as_ref().err().map(grpc::err_json), "elapsed_ms": elapsed_ms(start)}),
    );
    check!(w.is_err(), "a write without quorum must fail");
    let start = Instant::now();
    let r = short.get("k", None).await;
    c.record(
        "linearizable read without quorum",
        json!({"error": r.as_ref().err().map(grpc::err_json), "elapsed_ms": elapsed_ms(start)}),
    );
    check!(r.is_err(), "a linearizable read without quorum must fail");
    let r = ok(
        short
            .get("k", Some(GetOptions::new().with_serializable()))
            .await,
        "serializable read",
    )?;
    c.record("serializable read", grpc::get_json(&r));
    check_eq!(
        r.kvs().first().map(|kv| kv.value().to_vec()),
        Some(b"before".to_vec()),
        "serializable value"
    );
    let back = (survivor + 1) % 3;
    c.cluster()?.restart(back)?;
    let took = write_until_ok(c, &[survivor, back], "quorum-back", CATCH_UP_WAIT).await?;
    c.record(
        "write after quorum returns",
        json!({"elapsed_ms": took.as_millis() as u64}),
    );
    Ok(())
}

async fn stop_and_resume(c: &mut Ctx, victim: usize) -> Res {
    c.cluster()?.members[victim].signal(Signal::SIGSTOP)?;
    let took = write_until_ok(c, &others(victim), "during-stop", LEADER_LOSS_WRITE_WAIT).await;
    c.cluster()?.members[victim].signal(Signal::SIGCONT)?;
    let took = took?;
    c.record(
        "write while stopped",
        json!({"elapsed_ms": took.as_millis() as u64}),
    );
    wait_caught_up(c, victim, "during-stop", "v").await?;
    Ok(())
}

async fn sigstop_follower(c: &mut Ctx) -> Res {
    let victim = (leader_index(c).await? + 1) % 3;
    stop_and_resume(c, victim).await
}

async fn sigstop_leader(c: &mut Ctx) -> Res {
    let leader = leader_index(c).await?;
    stop_and_resume(c, leader).await?;
    let now = leader_index(c).await?;
    c.record("leader changed", json!(now != leader));
    check!(now != leader, "the stopped leader lost leadership");
    Ok(())
}

async fn lagging_snapshot(c: &mut Ctx) -> Res {
    let victim = (leader_index(c).await? + 1) % 3;
    c.cluster()?.members[victim].kill();
    let writer = (victim + 1) % 3;
    let endpoint = c.endpoints[writer].clone();
    let tasks: Vec<_> = (0..10)
        .map(|t| {
            let endpoint = endpoint.clone();
            tokio::spawn(async move {
                let mut cl = grpc::connect(&[endpoint]).await?;
                for i in (t..LAG_WRITES).step_by(10) {
                    cl.put(format!("lag/{i:05}"), format!("{i}"), None).await?;
                }
                Ok::<(), etcd_client::Error>(())
            })
        })
        .collect();
    for t in tasks {
        let r = t.await.map_err(|e| ScenarioError::Check(e.to_string()))?;
        ok(r, "lag writes")?;
    }
    c.record("writes while down", json!(LAG_WRITES));
    let cluster = c.cluster()?;
    cluster.restart(victim)?;
    cluster
        .wait_healthy(victim, CATCH_UP_WAIT)
        .await
        .map_err(|e| ScenarioError::Check(e.to_string()))?;
    let last = format!("lag/{:05}", LAG_WRITES - 1);
    wait_caught_up(c, victim, &last, &(LAG_WRITES - 1).to_string()).await?;
    let mut m = c.client_at(victim).await?;
    let r = ok(
        m.get(
            "lag/",
            Some(
                GetOptions::new()
                    .with_prefix()
                    .with_count_only()
                    .with_serializable(),
            ),
        )
        .await,
        "count",
    )?;
    c.record("lagging member count", json!(r.count()));
    check_eq!(r.count(), LAG_WRITES as i64, "keys on the lagging member");
    let rev = r.header().map(|h| h.revision()).unwrap_or(0);
    let h1 = ok(m.hash_kv(rev).await, "hashkv lagging")?.hash();
    let h2 = ok(
        c.client_at(writer).await?.hash_kv(rev).await,
        "hashkv writer",
    )?
    .hash();
    check_eq!(h1, h2, "hashkv of the caught-up member");
    Ok(())
}

fn proxies(c: &Ctx) -> Res<&crate::faults::PeerProxies> {
    c.proxies
        .as_ref()
        .ok_or_else(|| ScenarioError::Skip("needs peer proxies started by the suite".into()))
}

async fn partition_leader(c: &mut Ctx) -> Res {
    let leader = leader_index(c).await?;
    proxies(c)?.set(leader, Fault::Blackhole);
    let took = write_until_ok(
        c,
        &others(leader),
        "during-partition",
        LEADER_LOSS_WRITE_WAIT,
    )
    .await;
    proxies(c)?.set(leader, Fault::None);
    let took = took?;
    c.record(
        "write during partition",
        json!({"elapsed_ms": took.as_millis() as u64}),
    );
    wait_caught_up(c, leader, "during-partition", "v").await?;
    Ok(())
}

async fn partition_all(c: &mut Ctx) -> Res {
    let mut cl = c.client().await?;
    ok(cl.put("k", "before", None).await, "put")?;
    proxies(c)?.set_all(Fault::Blackhole);
    // Let the leader notice it lost its followers.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut short = client_with_timeout(c, 0, Duration::from_secs(5))
        .await
        .map_err(|e| ScenarioError::Check(e.to_string()))?;
    let w = short.put("k", "during", None).await;
    c.record("write while partitioned", json!({"failed": w.is_err()}));
    proxies(c)?.set_all(Fault::None);
    check!(w.is_err(), "a write with every peer link cut must fail");
    let took = write_until_ok(c, &[0, 1, 2], "healed", CATCH_UP_WAIT).await?;
    c.record(
        "write after heal",
        json!({"elapsed_ms": took.as_millis() as u64}),
    );
    Ok(())
}

async fn peer_delay(c: &mut Ctx) -> Res {
    let leader = leader_index(c).await?;
    proxies(c)?.set_all(Fault::Delay(Duration::from_millis(100)));
    let mut cl = c.client_at(leader).await?;
    let start = Instant::now();
    for i in 0..5 {
        ok(
            cl.put(format!("k{i}"), "v", None).await,
            "put with delayed peers",
        )?;
    }
    let per_write = start.elapsed() / 5;
    proxies(c)?.set_all(Fault::None);
    c.record(
        "delayed writes",
        json!({"elapsed_ms": per_write.as_millis() as u64}),
    );
    check!(
        per_write >= Duration::from_millis(90),
        "a write waits for a delayed follower: {per_write:?}"
    );
    Ok(())
}

async fn peer_drops(c: &mut Ctx) -> Res {
    let victim = (leader_index(c).await? + 1) % 3;
    proxies(c)?.set(victim, Fault::Drop(0.5));
    let mut cl = c.client_at((victim + 1) % 3).await?;
    for i in 0..20 {
        ok(
            cl.put(format!("k{i}"), "v", None).await,
            "put with dropping peer links",
        )?;
    }
    proxies(c)?.set(victim, Fault::None);
    wait_caught_up(c, victim, "k19", "v").await?;
    c.record("writes with drops", json!(20));
    Ok(())
}

/// Runs the workload (one client per member plus two more) while `fault` happens.
async fn checked_history<F>(c: &mut Ctx, fault: F) -> Res
where
    F: AsyncFnOnce(&mut Ctx) -> Res,
{
    let origin = Instant::now();
    let clients: Vec<WorkloadClient> = (0..5u32)
        .map(|i| WorkloadClient {
            id: i,
            endpoint: c.endpoints[i as usize % 3].clone(),
            seed: c.seed.wrapping_mul(31).wrapping_add(u64::from(i)),
        })
        .collect();
    let workload = spawn_workload(clients, origin, WORKLOAD_DURATION);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let fault_result = fault(c).await;
    let ops = workload
        .await
        .map_err(|e| ScenarioError::Check(e.to_string()))?;
    fault_result?;
    let (okays, unknown) = (
        ops.iter()
            .filter(|o| matches!(o.output, crate::checker::linearizability::OpOutput::Ok(_)))
            .count(),
        ops.iter().filter(|o| o.return_ns.is_none()).count(),
    );
    eprintln!(
        "  history: {} operations, {okays} ok, {unknown} unknown (seed {})",
        ops.len(),
        c.seed
    );
    c.record("history size", json!({"nonempty": okays > 10}));
    check!(
        okays > 10,
        "the workload made too little progress ({okays} ok operations)"
    );
    let verdict = check_history(&History::new(ops), Limits::default());
    c.record("linearizability", json!(verdict.is_linearizable()));
    match verdict {
        CheckResult::Linearizable => Ok(()),
        other => Err(ScenarioError::Check(format!("seed {}: {other}", c.seed))),
    }
}

async fn lin_kill_leader(c: &mut Ctx) -> Res {
    checked_history(c, async |c: &mut Ctx| {
        let leader = leader_index(c).await?;
        c.cluster()?.members[leader].kill();
        tokio::time::sleep(Duration::from_secs(2)).await;
        c.cluster()?.restart(leader)?;
        Ok(())
    })
    .await
}

async fn lin_partition(c: &mut Ctx) -> Res {
    checked_history(c, async |c: &mut Ctx| {
        let leader = leader_index(c).await?;
        proxies(c)?.set(leader, Fault::Blackhole);
        tokio::time::sleep(Duration::from_secs(3)).await;
        proxies(c)?.set(leader, Fault::None);
        Ok(())
    })
    .await
}

async fn lin_sigstop(c: &mut Ctx) -> Res {
    checked_history(c, async |c: &mut Ctx| {
        let leader = leader_index(c).await?;
        c.cluster()?.members[leader].signal(Signal::SIGSTOP)?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        c.cluster()?.members[leader].signal(Signal::SIGCONT)?;
        Ok(())
    })
    .await
}

async fn watch_across_kill(c: &mut Ctx) -> Res {
    let leader = leader_index(c).await?;
    let watcher = (leader + 1) % 3;
    let writer = (leader + 2) % 3;
    let mut wc = c.client_at(watcher).await?;
    let opts = WatchOptions::new().with_prefix().with_prev_key();
    let mut stream = ok(wc.watch("w/", Some(opts)).await, "watch")?;
    let created = collect(c, &mut stream, 0, false).await?;
    let start = created[0].header().map(|h| h.revision()).unwrap_or(0) + 1;
    let mut cl = c.client_at(writer).await?;
    let mut writes = 0usize;
    for i in 0..30 {
        if i == 10 {
            c.cluster()?.members[leader].kill();
        }
        let key = format!("w/{}", i % 4);
        if cl.put(key.as_str(), format!("{i}"), None).await.is_ok() {
            writes += 1;
        }
    }
    write_until_ok(c, &[writer], "w/final", LEADER_LOSS_WRITE_WAIT).await?;
    writes += 1;
    let resps = collect(c, &mut stream, writes, false).await?;
    let record = to_record("survivor", "w/", Some("w0"), start, true, &resps);
    let mut full = ok(
        cl.watch(
            "w/",
            Some(
                WatchOptions::new()
                    .with_prefix()
                    .with_prev_key()
                    .with_start_revision(start),
            ),
        )
        .await,
        "full watch",
    )?;
    let truth_resps = collect(c, &mut full, writes, false).await?;
    let truth_record = to_record("truth", "w/", Some("w0"), start, true, &truth_resps);
    let truth = wcheck::GroundTruth::new(
        start,
        truth_record
            .responses
            .iter()
            .flat_map(|r| r.events.clone())
            .collect(),
    );
    let violations = wcheck::check_watch(Some(&truth), &[record]);
    c.record(
        "watch checker",
        json!(
            violations
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        ),
    );
    check!(violations.is_empty(), "watch violations: {violations:?}");
    Ok(())
}
