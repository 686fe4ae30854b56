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
/// of `cluster_id`, `n` times; returns each outcome as text, or whether it was granted.
fn vote_n(target: Member, cluster_id: u64, n: usize) -> Vec<Result<bool, String>> {
    executor_builder("transport-test-client")
        .spawn(move || async move {
            let mut net = PeerNetwork::new(99, cluster_id);
            let mut client = net.new_client(1, &target).await;
            let mut out = Vec::new();
            for _ in 0..n {
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
    let same = vote_n(target.clone(), CLUSTER_ID, 2);
    assert_eq!(same, vec![Ok(false), Ok(false)]);

    // Another cluster: refused before raft sees it.
    let other = vote_n(target.clone(), CLUSTER_ID ^ 1, 2);
    for r in &other {
        let e = r.as_ref().unwrap_err();
        assert!(e.starts_with("network:") && e.contains("412"), "{e}");
    }

    // Closed port: a failed dial is unreachable, and the call after it is inside the
    // backoff and does not dial. (A first call racing the member's shutdown may instead see
    // its connection closed: a network error.)
    member.stop();
    let started = Instant::now();
    let dead = vote_n(target, CLUSTER_ID, 3);
    assert!(started.elapsed() < Duration::from_secs(2));
    let errors: Vec<&String> = dead.iter().map(|r| r.as_ref().unwrap_err()).collect();
    let refused = errors
        .iter()
        .position(|e| e.starts_with("unreachable:") && e.contains("refused"))
        .unwrap_or_else(|| panic!("no refused dial in {errors:?}"));
    assert!(refused <= 1, "{errors:?}");
    assert!(
        errors[..refused].iter().all(|e| e.starts_with("network:")),
        "{errors:?}"
    );
    let next = errors[refused + 1];
    assert!(
        next.starts_with("unreachable:") && next.contains("backing off"),
        "{next}"
    );
}
