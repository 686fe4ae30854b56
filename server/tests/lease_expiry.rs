//! Lease expiry on a real ketch process: an expired lease's keys are deleted within TTL + 1 s;
//! a lease and its key survive a restart with their remaining TTL checkpointed (not reset to
//! the granted TTL); 2,000 leases expiring together are all revoked while puts keep a
//! bounded latency.

mod common;

use std::time::{Duration, Instant};

use common::{ServerProcess, ketch_bin};
use etcd_client::{Client, GetOptions, PutOptions};

/// Checkpoint often so the test sees one before it restarts the server.
const CHECKPOINT_INTERVAL_MS: &str = "300";
const MANY_LEASES: usize = 2000;
/// Long enough for every lease to be granted before the first expires.
const MANY_TTL_SECS: i64 = 8;
/// Generous bound for one put while thousands of revocations go through raft.
const PUT_LATENCY_MAX: Duration = Duration::from_millis(750);

fn start(dir: &std::path::Path) -> ServerProcess {
    // SAFETY: set before any server or client thread of this test process reads the
    // environment; every test here sets the same value.
    unsafe { std::env::set_var("KETCH_LEASE_CHECKPOINT_INTERVAL_MS", CHECKPOINT_INTERVAL_MS) };
    let mut server = ServerProcess::start(&ketch_bin(), dir, &[]);
    server.wait_healthy(Duration::from_secs(20));
    server
}

async fn connect(server: &ServerProcess) -> Client {
    Client::connect([server.endpoint()], None)
        .await
        .expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_deletes_keys_in_time_and_leases_survive_restart_with_their_remaining_ttl() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("d");
    let mut server = start(&dir);
    let mut c = connect(&server).await;
    let short = c.lease_grant(2, None).await.expect("grant").id();
    let long = c.lease_grant(30, None).await.expect("grant").id();
    let lease = |id| Some(PutOptions::new().with_lease(id));
    c.put("short", "v", lease(short)).await.expect("put");
    c.put("long", "v", lease(long)).await.expect("put");
    let granted = Instant::now();
    while !c.get("short", None).await.expect("get").kvs().is_empty() {
        assert!(
            granted.elapsed() < Duration::from_secs(3),
            "TTL 2 s + 1 s passed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        granted.elapsed() >= Duration::from_millis(1900),
        "not before its TTL"
    );
    let ttl = c.lease_time_to_live(short, None).await.expect("ttl");
    assert_eq!(ttl.ttl(), -1, "an expired lease is unknown");

    tokio::time::sleep(Duration::from_secs(1)).await;
    let (client_port, peer_port) = (server.client_port, server.peer_port);
    assert_eq!(server.terminate(Duration::from_secs(10)), Some(0));
    drop(c);
    let mut server = ServerProcess::start_on(&ketch_bin(), &dir, client_port, peer_port, &[]);
    server.wait_healthy(Duration::from_secs(20));
    let mut c = connect(&server).await;
    let kvs = c.get("long", None).await.expect("get");
    assert_eq!(kvs.kvs()[0].lease(), long, "the key keeps its lease");
    let ttl = c.lease_time_to_live(long, None).await.expect("ttl");
    assert_eq!(ttl.granted_ttl(), 30);
    assert!(
        (20..=28).contains(&ttl.ttl()),
        "remaining TTL carried over the restart, not reset: {}",
        ttl.ttl()
    );
    let leases = c.leases().await.expect("leases");
    assert_eq!(
        leases.leases().iter().map(|l| l.id()).collect::<Vec<_>>(),
        [long]
    );
    server.kill9();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_leases_expiring_together_do_not_stall_puts() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let mut server = start(&tmp.path().join("d"));
    let c = connect(&server).await;
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let mut c = c.clone();
            tokio::spawn(async move {
                for i in (t..MANY_LEASES).step_by(8) {
                    let id = c
                        .lease_grant(MANY_TTL_SECS, None)
                        .await
                        .expect("grant")
                        .id();
                    let opts = Some(PutOptions::new().with_lease(id));
                    c.put(format!("lease/{i}"), "v", opts).await.expect("put");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("granting task");
    }
    let mut c = c.clone();
    let count = |c: &mut Client| {
        let mut c = c.clone();
        async move {
            let opts = GetOptions::new().with_prefix().with_count_only();
            c.get("lease/", Some(opts)).await.expect("count").count()
        }
    };
    assert_eq!(
        count(&mut c).await,
        MANY_LEASES as i64,
        "granted faster than the TTL"
    );
    let start = Instant::now();
    let mut worst = Duration::ZERO;
    let mut i = 0;
    while count(&mut c).await > 0 {
        assert!(
            start.elapsed() < Duration::from_secs(MANY_TTL_SECS as u64 + 6),
            "leases not revoked in time"
        );
        let t = Instant::now();
        c.put(format!("other/{i}"), "v", None).await.expect("put");
        worst = worst.max(t.elapsed());
        i += 1;
    }
    assert!(
        worst < PUT_LATENCY_MAX,
        "a put took {worst:?} during mass expiry"
    );
    assert!(i > 10, "puts ran during the expiry: {i}");
    server.kill9();
}
