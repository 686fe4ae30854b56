//! The fault proxy between members of a real three-member etcd cluster: every member's peer
//! URL is advertised through a proxy in front of its real peer port. etcd sends a member's raft
//! messages over the connections its peers dialed to it, so blackholing a member's proxy
//! silences that member: a follower can no longer reach the leader (writes and linearizable
//! reads through it stall while the others keep committing), a leader's heartbeats stop and
//! the others elect a new leader. Healing restores service and the indexes converge.

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use etcd_client::Client;
use ketch_conformance::faultproxy::{Fault, FaultProxy};

const MEMBERS: usize = 3;
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Generous for a status call: CI machines and this one run many things at once.
const STATUS_TIMEOUT: Duration = Duration::from_secs(3);
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(10);
/// Long enough for in-flight raft traffic to settle after the blackhole starts.
const SETTLE: Duration = Duration::from_millis(1500);
const WRITES: usize = 20;
/// A request that has not completed in this time is considered stalled.
const STALL: Duration = Duration::from_secs(2);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// The etcd processes; each is killed by PID when dropped.
struct Cluster {
    children: Vec<Child>,
    endpoints: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

async fn start_cluster() -> (Cluster, Vec<FaultProxy>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut proxies = Vec::new();
    let mut peer_ports = Vec::new();
    for _ in 0..MEMBERS {
        let peer = free_port();
        let upstream: SocketAddr = format!("127.0.0.1:{peer}").parse().expect("addr");
        let proxy = FaultProxy::start("127.0.0.1:0".parse().expect("addr"), upstream)
            .await
            .expect("proxy");
        peer_ports.push(peer);
        proxies.push(proxy);
    }
    let advertised: Vec<String> = proxies
        .iter()
        .map(|p| format!("http://{}", p.local_addr()))
        .collect();
    let initial_cluster: Vec<String> = (0..MEMBERS)
        .map(|i| format!("n{i}={}", advertised[i]))
        .collect();
    let initial_cluster = initial_cluster.join(",");
    let mut cluster = Cluster {
        children: Vec::new(),
        endpoints: Vec::new(),
        _dir: dir,
    };
    for i in 0..MEMBERS {
        let endpoint = format!("http://127.0.0.1:{}", free_port());
        let log =
            std::fs::File::create(cluster._dir.path().join(format!("n{i}.log"))).expect("log");
        let child = Command::new("etcd")
            .args(["--name", &format!("n{i}"), "--data-dir"])
            .arg(cluster._dir.path().join(format!("n{i}")))
            .args([
                "--listen-client-urls",
                &endpoint,
                "--advertise-client-urls",
                &endpoint,
            ])
            .args([
                "--listen-peer-urls",
                &format!("http://127.0.0.1:{}", peer_ports[i]),
            ])
            .args(["--initial-advertise-peer-urls", &advertised[i]])
            .args([
                "--initial-cluster",
                &initial_cluster,
                "--initial-cluster-token",
                "faultproxy-test",
            ])
            .args(["--initial-cluster-state", "new"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("etcd is installed");
        cluster.children.push(child);
        cluster.endpoints.push(endpoint);
    }
    (cluster, proxies)
}

/// (member id, leader id, raft index) as the member at `endpoint` reports it.
async fn status(endpoint: &str) -> Option<(u64, u64, u64)> {
    let connect = Client::connect([endpoint], None);
    let mut client = tokio::time::timeout(STATUS_TIMEOUT, connect)
        .await
        .ok()?
        .ok()?;
    let s = tokio::time::timeout(STATUS_TIMEOUT, client.status())
        .await
        .ok()?
        .ok()?;
    Some((s.header()?.member_id(), s.leader(), s.raft_index()))
}

async fn wait_for_leader(cluster: &Cluster) -> u64 {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let mut leaders = Vec::new();
        for e in &cluster.endpoints {
            leaders.push(status(e).await.map(|(_, leader, _)| leader));
        }
        if let Some(Some(leader)) = leaders.first()
            && *leader != 0
            && leaders.iter().all(|l| *l == Some(*leader))
        {
            return *leader;
        }
        assert!(Instant::now() < deadline, "no common leader: {leaders:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn write_through(endpoint: &str, tag: &str) {
    let mut client = Client::connect([endpoint], None).await.expect("connect");
    for i in 0..WRITES {
        let put = client.put(format!("fp/{tag}/{i}"), "v", None);
        tokio::time::timeout(Duration::from_secs(5), put)
            .await
            .expect("in time")
            .expect("put");
    }
}

async fn raft_index(endpoint: &str) -> Option<u64> {
    status(endpoint).await.map(|(_, _, index)| index)
}

/// Does a put through `endpoint` complete within `within`?
async fn put_completes(endpoint: &str, key: &str, within: Duration) -> bool {
    let attempt = async {
        let mut client = Client::connect([endpoint], None).await.ok()?;
        client.put(key, "v", None).await.ok()
    };
    matches!(tokio::time::timeout(within, attempt).await, Ok(Some(_)))
}

/// Does a linearizable get through `endpoint` complete within `within`?
async fn get_completes(endpoint: &str, key: &str, within: Duration) -> bool {
    let attempt = async {
        let mut client = Client::connect([endpoint], None).await.ok()?;
        client.get(key, None).await.ok()
    };
    matches!(tokio::time::timeout(within, attempt).await, Ok(Some(_)))
}

async fn wait_converged(victim_ep: &str, healthy_ep: &str) {
    let deadline = Instant::now() + CATCH_UP_TIMEOUT;
    loop {
        let (v, h) = (raft_index(victim_ep).await, raft_index(healthy_ep).await);
        if v.is_some() && v == h {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "member did not catch up: {v:?} vs {h:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn member_index(cluster: &Cluster, id: u64) -> usize {
    for (i, e) in cluster.endpoints.iter().enumerate() {
        if status(e).await.is_some_and(|(m, _, _)| m == id) {
            return i;
        }
    }
    panic!("no member with id {id:x}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blackholed_follower_loses_the_leader_until_healed() {
    let (cluster, proxies) = start_cluster().await;
    let leader = member_index(&cluster, wait_for_leader(&cluster).await).await;
    let victim = (leader + 1) % MEMBERS;
    let (victim_ep, leader_ep) = (&cluster.endpoints[victim], &cluster.endpoints[leader]);
    assert!(
        put_completes(victim_ep, "fp/warm", CATCH_UP_TIMEOUT).await,
        "the follower serves before the fault"
    );

    proxies[victim].set_fault(Fault::Blackhole);
    tokio::time::sleep(SETTLE).await;
    assert!(
        !put_completes(victim_ep, "fp/cut", STALL).await,
        "a write through the cut-off member stalls"
    );
    assert!(
        !get_completes(victim_ep, "fp/warm", STALL).await,
        "so does a linearizable read"
    );
    let before = raft_index(leader_ep).await.expect("leader answers");
    write_through(leader_ep, "during").await;
    let after = raft_index(leader_ep).await.expect("leader answers");
    assert!(
        after >= before + WRITES as u64,
        "the majority keeps committing: {before} -> {after}"
    );
    assert!(proxies[victim].stats().bytes_blackholed > 0);

    proxies[victim].set_fault(Fault::None);
    let deadline = Instant::now() + CATCH_UP_TIMEOUT;
    while !put_completes(victim_ep, "fp/healed", STALL).await {
        assert!(
            Instant::now() < deadline,
            "writes through the healed member never resumed"
        );
    }
    wait_converged(victim_ep, leader_ep).await;
    let mut client = Client::connect([victim_ep.as_str()], None)
        .await
        .expect("connect");
    let got = client
        .get(format!("fp/during/{}", WRITES - 1), None)
        .await
        .expect("get after heal");
    assert_eq!(
        got.kvs().len(),
        1,
        "the healed member serves writes made while it was cut off"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blackholed_leader_is_replaced_and_rejoins() {
    let (cluster, proxies) = start_cluster().await;
    let old_leader_id = wait_for_leader(&cluster).await;
    let old = member_index(&cluster, old_leader_id).await;
    let other = (old + 1) % MEMBERS;
    let other_ep = &cluster.endpoints[other];

    proxies[old].set_fault(Fault::Blackhole);
    let deadline = Instant::now() + CATCH_UP_TIMEOUT;
    let new_leader = loop {
        match status(other_ep).await {
            Some((_, l, _)) if l != 0 && l != old_leader_id => break l,
            _ => {}
        }
        assert!(
            Instant::now() < deadline,
            "the others never elected a new leader"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!("leader {old_leader_id:x} blackholed, {new_leader:x} elected");
    write_through(other_ep, "after-election").await;

    proxies[old].set_fault(Fault::None);
    wait_converged(&cluster.endpoints[old], other_ep).await;
    assert!(put_completes(&cluster.endpoints[old], "fp/rejoined", CATCH_UP_TIMEOUT).await);
}
