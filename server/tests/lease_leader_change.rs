//! Leases across a leader change on three real ketch members: a lease granted through the
//! leader keeps its key while the leader is SIGKILLed, the new leader expires it on time —
//! from the checkpointed remaining TTL, not a fresh one — and keep-alive and TimeToLive work
//! through any surviving member.

mod common;

use std::time::{Duration, Instant};

use common::{ServerProcess, ketch_bin};
use etcd_client::{Client, PutOptions};

/// Checkpoints every 300 ms, so the new leader knows how much of the TTL was used.
const CHECKPOINT_INTERVAL_MS: &str = "300";
const TTL_SECS: i64 = 6;
/// When the leader is killed, counted from the grant.
const KILL_AFTER: Duration = Duration::from_secs(3);
/// A new leader within about two election timeouts, plus the expiry loop's period and
/// scheduling slack on a loaded 2-core machine. Without checkpoints the key would live
/// `KILL_AFTER` longer than the TTL, beyond this bound.
const EXPIRY_SLACK: Duration = Duration::from_millis(2500);

async fn connect(m: &ServerProcess) -> Client {
    Client::connect([m.endpoint()], None)
        .await
        .expect("connect")
}

/// Index of the member that leads, as Status reports.
async fn leader(members: &[ServerProcess]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        for (i, m) in members.iter().enumerate() {
            let mut c = connect(m).await;
            if let Ok(s) = c.status().await
                && s.leader() != 0
                && s.leader() == s.header().map_or(0, |h| h.member_id())
            {
                return i;
            }
        }
        assert!(Instant::now() < deadline, "no leader");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn key_exists(c: &mut Client) -> bool {
    c.get("svc", None)
        .await
        .map(|r| !r.kvs().is_empty())
        .unwrap_or(true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_expires_on_time_after_the_leader_is_killed() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let env = [("KETCH_LEASE_CHECKPOINT_INTERVAL_MS", CHECKPOINT_INTERVAL_MS)];
    let mut members = ServerProcess::start_cluster(&ketch_bin(), tmp.path(), 3, &env);
    let lead = leader(&members).await;
    let mut c = connect(&members[lead]).await;
    let granted = Instant::now();
    let lease = c.lease_grant(TTL_SECS, None).await.expect("grant").id();
    let put = PutOptions::new().with_lease(lease);
    c.put("svc", "10.0.0.1", Some(put)).await.expect("put");
    // A second lease kept alive through a follower survives the leader change.
    let kept = c.lease_grant(TTL_SECS, None).await.expect("grant").id();

    tokio::time::sleep(KILL_AFTER.saturating_sub(granted.elapsed())).await;
    members[lead].kill9();
    let survivor = (lead + 1) % 3;
    let mut s = connect(&members[survivor]).await;
    let (mut keeper, _stream) = s.lease_keep_alive(kept).await.expect("keep-alive stream");

    // The key lives until (almost) its TTL...
    let ttl = Duration::from_secs(TTL_SECS as u64);
    while granted.elapsed() < ttl - Duration::from_millis(500) {
        assert!(
            key_exists(&mut s).await,
            "expired early at {:?}",
            granted.elapsed()
        );
        keeper
            .keep_alive()
            .await
            .expect("keep-alive through a follower");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // ...and is gone soon after it, decided by the new leader.
    while key_exists(&mut s).await {
        assert!(
            granted.elapsed() < ttl + EXPIRY_SLACK,
            "key still there {:?} after the grant (TTL {TTL_SECS} s)",
            granted.elapsed()
        );
        keeper.keep_alive().await.expect("keep-alive");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("expired {:?} after the grant", granted.elapsed());
    let other = (lead + 2) % 3;
    let mut o = connect(&members[other]).await;
    let ttl_of_kept = o
        .lease_time_to_live(kept, None)
        .await
        .expect("TimeToLive")
        .ttl();
    assert!(
        ttl_of_kept > 0,
        "the kept-alive lease is alive on every member"
    );
    let ttl_of_expired = o
        .lease_time_to_live(lease, None)
        .await
        .expect("TimeToLive")
        .ttl();
    assert_eq!(
        ttl_of_expired, -1,
        "the expired lease is gone on every member"
    );
}
