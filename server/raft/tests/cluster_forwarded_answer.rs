//! A follower answers its forwarded write when it applies it, without waiting for the
//! leader's answer. Three members over the real peer transport, each behind a fault proxy
//! (`ketch_conformance::faultproxy`) on its peer port: with every byte to and from the
//! leader's peer port held `DELAY`, a write sent to a follower reaches the leader after
//! `DELAY` and commits through the undelayed replication to the followers. Its answer needs
//! another `DELAY` on the way back, so a follower that waited for it would answer after about
//! `2 × DELAY`; one that answers from its own apply does after about `DELAY`.

mod cluster_common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use cluster_common::*;
use ketch_conformance::faultproxy::{Fault, FaultProxy};
use ketch_proto::ketchpb::raft_response;

const ELECTION_WAIT: Duration = Duration::from_secs(10);
const DELAY: Duration = Duration::from_millis(1500);

#[test]
fn a_follower_answers_its_forwarded_write_when_it_applies_it() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime for the proxies");
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let listen: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let proxies: Vec<FaultProxy> = listen
        .iter()
        .map(|port| {
            let upstream = SocketAddr::from(([127, 0, 0, 1], *port));
            let any = SocketAddr::from(([127, 0, 0, 1], 0));
            rt.block_on(FaultProxy::start(any, upstream))
                .expect("proxy")
        })
        .collect();
    // Members reach each other through the proxies: the advertised peer URLs are theirs.
    let advertised: Vec<u16> = proxies.iter().map(|p| p.local_addr().port()).collect();
    let group = members(&advertised);
    let ms: Vec<ClusterMember> = (0..3)
        .map(|i| ClusterMember::start(options(dirs[i].path(), i as u64 + 1, &group), listen[i]))
        .collect();
    let refs: Vec<&ClusterMember> = ms.iter().collect();
    let leader = wait_leader(&refs, ELECTION_WAIT);
    let follower = (0..3).find(|i| *i != leader).unwrap();
    // Open the follower's forwarding connection before the delay.
    block_on(ms[follower].handle.write(put("warm", "up"))).expect("a forwarded write");

    proxies[leader].set_fault(Fault::Delay(DELAY));
    let started = Instant::now();
    let answer = block_on(ms[follower].handle.write(put("k", "v")));
    let elapsed = started.elapsed();
    proxies[leader].set_fault(Fault::None);

    let revision = match answer.map(|r| r.response) {
        Ok(Some(raft_response::Response::Put(p))) => p.header.expect("header").revision,
        other => panic!("the forwarded put answered {other:?}"),
    };
    assert!(
        elapsed >= DELAY,
        "answered in {elapsed:?}: the write did not go through the delayed leader"
    );
    assert!(
        elapsed < DELAY * 3 / 2,
        "answered in {elapsed:?}: the follower waited for the leader's delayed answer"
    );
    // The answer is the write's own: its revision holds the value on every member.
    let (_, rev) = wait_converged(&refs, ELECTION_WAIT);
    assert_eq!(rev, revision, "the put was the last write");
    for m in &refs {
        let store = m.handle.store();
        let s = store.read();
        let kv = s.get(b"k", revision).unwrap().expect("k at its revision");
        assert_eq!(kv.value.as_ref(), b"v");
        assert_eq!(kv.mod_revision, revision);
    }
    eprintln!(
        "forwarded write answered after {elapsed:?} with the leader's peer port delayed {DELAY:?}"
    );
}
