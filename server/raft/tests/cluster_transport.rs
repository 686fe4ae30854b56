//! The peer transport on its own, against a real member on a loopback port: a vote from the
//! right cluster is answered by the member's raft (not granted: its term is stale); a peer
//! with another cluster ID is refused (HTTP 412, reported as a network error); a closed port
//! is `Unreachable`, and the next call inside the dial backoff fails at once without dialling.

mod cluster_common;

use std::time::{Duration, Instant};

use cluster_common::*;
use ketch_raft::types::Vote;
use ketch_raft::{Member, PeerNetwork, executor_builder};
use openraft::errors::RPCError;
use openraft::network::RPCOption;
use openraft::raft::VoteRequest;
use openraft::{RaftNetworkFactory, RaftNetworkV2};

/// Sends one vote request for term 1 from member 99 to `target` over a fresh `PeerNetwork`
/// of `cluster_id`, twice; returns both outcomes as text and whether the first was granted.
fn vote_twice(target: Member, cluster_id: u64) -> Vec<Result<bool, String>> {
    executor_builder("transport-test-client")
        .spawn(move || async move {
            let mut net = PeerNetwork::new(99, cluster_id);
            let mut client = net.new_client(1, &target).await;
            let mut out = Vec::new();
            for _ in 0..2 {
                let req = VoteRequest::new(Vote::new(1, 99), None);
                let res = client
                    .vote(req, RPCOption::new(Duration::from_secs(2)))
                    .await;
                out.push(match res {
                    Ok(r) => Ok(r.vote_granted),
                    Err(RPCError::Network(e)) => Err(format!("network: {e}")),
                    Err(RPCError::Unreachable(e)) => Err(format!("unreachable: {e}")),
                    Err(e) => Err(format!("other: {e}")),
                });
            }
            out
        })
        .unwrap()
        .join()
        .unwrap()
}

#[test]
fn votes_are_served_only_within_the_cluster_and_dead_peers_back_off() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let group = members(&[port]);
    let member = ClusterMember::start(options(dir.path(), 1, &group), port);
    wait_leader(&[&member], LEADER_WAIT);
    let target = group[&1].clone();

    // Same cluster: the member's raft answers; a term-1 candidate with no log loses.
    let same = vote_twice(target.clone(), CLUSTER_ID);
    assert_eq!(same, vec![Ok(false), Ok(false)]);

    // Another cluster: refused before raft sees it.
    let other = vote_twice(target.clone(), CLUSTER_ID ^ 1);
    for r in &other {
        let e = r.as_ref().unwrap_err();
        assert!(e.starts_with("network:") && e.contains("412"), "{e}");
    }

    // Closed port: unreachable; the second call is inside the backoff and does not dial.
    member.stop();
    let started = Instant::now();
    let dead = vote_twice(target, CLUSTER_ID);
    assert!(started.elapsed() < Duration::from_secs(2));
    let e0 = dead[0].as_ref().unwrap_err();
    let e1 = dead[1].as_ref().unwrap_err();
    assert!(
        e0.starts_with("unreachable:") && e0.contains("refused"),
        "{e0}"
    );
    assert!(
        e1.starts_with("unreachable:") && e1.contains("backing off"),
        "{e1}"
    );
}
