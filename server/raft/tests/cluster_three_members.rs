//! Three members over the real peer transport (HTTP/2 on loopback, real WAL and MVCC store):
//! writes through the leader reach every store (equal `hash_kv`), a follower refuses writes,
//! stopping the leader gets a new leader within a bounded time and writes go on, and the
//! stopped member restarted from its data dir catches up.

mod cluster_common;

use std::time::{Duration, Instant};

use cluster_common::*;
use ketch_proto::ketchpb::raft_response;
use ketch_raft::ProposeError;

const ELECTION_WAIT: Duration = Duration::from_secs(10);
const CONVERGE_WAIT: Duration = Duration::from_secs(10);

#[test]
fn three_members_replicate_fail_over_and_catch_up() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let group = members(&ports);
    let start_member =
        |i: usize| ClusterMember::start(options(dirs[i].path(), i as u64 + 1, &group), ports[i]);
    let mut ms: Vec<Option<ClusterMember>> = (0..3).map(|i| Some(start_member(i))).collect();

    let leader = wait_leader(&refs(&ms), ELECTION_WAIT);
    write_puts(&refs(&ms), "a", 100);
    // A follower forwards a write to the leader and answers what applying it produced; a
    // linearizable read on the follower then sees it (ReadIndex from the leader).
    let follower = (0..3).find(|i| *i != leader).unwrap();
    let forwarded = block_on(refs(&ms)[follower].handle.write(put("x", "y")));
    assert!(forwarded.is_ok(), "forwarded write answered {forwarded:?}");
    block_on(refs(&ms)[follower].handle.linearizable_read_barrier()).expect("follower read");
    assert_eq!(
        refs(&ms)[follower].hash_kv().1,
        102,
        "the read barrier waited"
    );
    let (hash1, rev1) = wait_converged(&refs(&ms), CONVERGE_WAIT);
    assert_eq!(rev1, 102, "101 puts from revision 1");

    // Stop the leader: the two others elect a new one and take writes.
    let old_leader_id = refs(&ms)[leader].id;
    let stopped_at = Instant::now();
    // All three are live, so the index in `refs` is the index in `ms`.
    ms[leader].take().unwrap().stop();
    let stop_took = stopped_at.elapsed();
    let new_leader = wait_leader(&refs(&ms), ELECTION_WAIT);
    let failover = stopped_at.elapsed();
    println!(
        "new leader {failover:?} after the old leader began stopping ({stop_took:?} to stop; \
         election timeout {ELECTION_TIMEOUT_MS} ms)"
    );
    assert_ne!(refs(&ms)[new_leader].id, old_leader_id);
    // The timeout is randomised in [t, 2t); allow scheduling slack on a loaded 2-core box.
    assert!(
        failover < Duration::from_millis(ELECTION_TIMEOUT_MS * 6),
        "failover took {failover:?}"
    );
    write_puts(&refs(&ms), "b", 100);
    let (hash2, rev2) = wait_converged(&refs(&ms), CONVERGE_WAIT);
    assert_eq!(rev2, 202);
    assert_ne!(hash2, hash1);

    // Restart the stopped member from its data dir: it catches up.
    let idx = (old_leader_id - 1) as usize;
    ms[idx] = Some(start_member(idx));
    let (hash3, rev3) = wait_converged(&refs(&ms), CONVERGE_WAIT);
    assert_eq!((hash3, rev3), (hash2, rev2));
    write_puts(&refs(&ms), "c", 10);
    let (_, rev4) = wait_converged(&refs(&ms), CONVERGE_WAIT);
    assert_eq!(rev4, 212);
}

/// Three fresh members (temporary data dirs, kept while the returned dirs live) and the
/// index of the leader they agreed on.
fn start_three_fresh() -> (Vec<tempfile::TempDir>, Vec<ClusterMember>, usize) {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let group = members(&ports);
    let ms: Vec<ClusterMember> = (0..3)
        .map(|i| ClusterMember::start(options(dirs[i].path(), i as u64 + 1, &group), ports[i]))
        .collect();
    let leader = wait_leader(&ms.iter().collect::<Vec<_>>(), ELECTION_WAIT);
    (dirs, ms, leader)
}

fn refs(ms: &[Option<ClusterMember>]) -> Vec<&ClusterMember> {
    ms.iter().flatten().collect()
}

/// Followers' linearizable reads: each follower round asks the leader for a read index, and
/// the leader serves those requests in its own read rounds (one quorum confirmation for
/// many followers' requests). Every read sees the write acknowledged before it began.
#[test]
fn followers_read_index_requests_join_the_leaders_read_rounds() {
    const READS_PER_FOLLOWER: usize = 100;
    let (_dirs, ms, leader) = start_three_fresh();
    let followers: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let rounds = |i: usize| ms[i].handle.read_rounds();

    for value in ["1", "2", "3"] {
        block_on(ms[leader].handle.write(put("k", value))).expect("write on the leader");
        // The leader applied the write before answering it.
        let acknowledged = ms[leader].handle.store().read().revision();
        let leader_before = rounds(leader);
        let followers_before: u64 = followers.iter().map(|&f| rounds(f)).sum();
        let handles: Vec<_> = followers.iter().map(|&f| ms[f].handle.clone()).collect();
        let reads = handles.iter().flat_map(|h| {
            (0..READS_PER_FOLLOWER).map(move |_| {
                let h = h.clone();
                async move {
                    h.linearizable_read_barrier().await.expect("follower read");
                    h.store().read().revision()
                }
            })
        });
        let seen = block_on(futures::future::join_all(reads));
        assert!(
            seen.iter().all(|rev| *rev >= acknowledged),
            "a follower read missed the acknowledged write (revision {acknowledged}): {seen:?}"
        );
        let leader_rounds = rounds(leader) - leader_before;
        let follower_rounds = followers.iter().map(|&f| rounds(f)).sum::<u64>() - followers_before;
        assert!(
            follower_rounds >= 2 && follower_rounds < 2 * READS_PER_FOLLOWER as u64,
            "{follower_rounds} follower rounds for {} reads",
            2 * READS_PER_FOLLOWER
        );
        // Each follower round sends one ReadIndex request; the leader answers them from its
        // own rounds, never more rounds than requests.
        assert!(
            leader_rounds >= 1 && leader_rounds <= follower_rounds,
            "leader {leader_rounds} rounds for {follower_rounds} follower rounds"
        );
    }
    for m in ms {
        m.stop();
    }
}

/// A follower's concurrent writes travel to the leader in batches (fewer peer requests than
/// writes), and each write is answered with its own outcome: a put with the revision it
/// made (every revision distinct, the key holding that put's value at that revision), a
/// compaction of a future revision with the store's refusal.
#[test]
fn followers_forward_concurrent_writes_in_batches_each_answered_its_own_outcome() {
    const WRITES_PER_FOLLOWER: usize = 300;
    const REFUSED_EVERY: usize = 25;
    let (_dirs, ms, leader) = start_three_fresh();
    let followers: Vec<usize> = (0..3).filter(|i| *i != leader).collect();

    let writes = followers.iter().flat_map(|&f| {
        let h = ms[f].handle.clone();
        (0..WRITES_PER_FOLLOWER).map(move |i| {
            let h = h.clone();
            let (key, value) = (format!("f{f}/{i:03}"), format!("v{f}-{i}"));
            let req = if i % REFUSED_EVERY == 0 {
                compact(1_000_000)
            } else {
                put(&key, &value)
            };
            async move { (i, key, value, h.write(req).await) }
        })
    });
    let answers = block_on(futures::future::join_all(writes));

    let mut revisions = std::collections::BTreeSet::new();
    let store = ms[leader].handle.store();
    for (i, key, value, answer) in answers {
        if i % REFUSED_EVERY == 0 {
            assert!(
                matches!(answer, Err(ProposeError::Rejected(_))),
                "a compaction of a future revision answered {answer:?}"
            );
            continue;
        }
        let resp = answer.unwrap_or_else(|e| panic!("put {key} answered {e}"));
        let Some(raft_response::Response::Put(put)) = resp.response else {
            panic!("put {key} answered {resp:?}");
        };
        let rev = put.header.expect("header").revision;
        assert!(revisions.insert(rev), "revision {rev} answered twice");
        let kv = store.read().get(key.as_bytes(), rev).expect("readable");
        let kv = kv.unwrap_or_else(|| panic!("{key} missing at revision {rev}"));
        assert_eq!(
            (kv.value.as_ref(), kv.mod_revision),
            (value.as_bytes(), rev)
        );
    }
    let puts = 2 * (WRITES_PER_FOLLOWER - WRITES_PER_FOLLOWER.div_ceil(REFUSED_EVERY));
    assert_eq!(revisions.len(), puts);

    let (batches, forwarded) = followers
        .iter()
        .map(|&f| ms[f].handle.forwarded_batches_and_writes())
        .fold((0, 0), |(b, w), (fb, fw)| (b + fb, w + fw));
    assert_eq!(
        forwarded,
        2 * WRITES_PER_FOLLOWER as u64,
        "every write was forwarded once"
    );
    assert!(
        batches >= 2 && batches < forwarded,
        "{forwarded} writes forwarded in {batches} batches"
    );
    for m in ms {
        m.stop();
    }
}
