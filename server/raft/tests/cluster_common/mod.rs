//! Shared helpers for the cluster tests: members of one group, each on its own glommio
//! executor thread with its own data dir and loopback peer port, talking over the real peer
//! transport; the real MVCC store.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ketch_mvcc::Store;
use ketch_proto::ketchpb::{RaftRequest, raft_request};
use ketch_proto::{CompactionRequest, PutRequest};
use ketch_raft::{
    Member, PeerNetwork, ProposeError, RaftHandle, RaftOptions, executor_builder, serve_peers,
    start,
};

pub const CLUSTER_ID: u64 = 0x7e2a_1c9d_0b3f_5a11;
pub const HEARTBEAT_MS: u64 = 50;
pub const ELECTION_TIMEOUT_MS: u64 = 300;
/// Longest wait for a leader that all members agree on.
pub const LEADER_WAIT: Duration = Duration::from_secs(10);

/// A free loopback port (bound, then released for the member to bind), from the raft
/// tests' own range (see `ketch_conformance::servers`: below the ephemeral range, apart from
/// the other harnesses', since peer listeners bind with SO_REUSEPORT).
pub fn free_port() -> u16 {
    use ketch_conformance::servers::{RAFT_TESTS_PORTS, free_port_in};
    free_port_in(RAFT_TESTS_PORTS).expect("a free loopback port for a member")
}

/// Member ids 1..=n with their peer ports.
pub fn members(ports: &[u16]) -> BTreeMap<u64, Member> {
    ports
        .iter()
        .enumerate()
        .map(|(i, port)| {
            let m = Member {
                name: format!("infra{}", i + 1),
                peer_urls: vec![format!("http://127.0.0.1:{port}")],
                client_urls: vec![],
            };
            (i as u64 + 1, m)
        })
        .collect()
}

pub fn options(data_dir: &Path, id: u64, members: &BTreeMap<u64, Member>) -> RaftOptions {
    let mut o = RaftOptions::new(data_dir, id, CLUSTER_ID, members.clone());
    o.heartbeat_ms = HEARTBEAT_MS;
    o.election_timeout_ms = ELECTION_TIMEOUT_MS;
    o.request_timeout = Duration::from_secs(5);
    o
}

/// One member on its own executor thread; dropping it stops the member and joins the thread.
pub struct ClusterMember {
    pub id: u64,
    pub data_dir: PathBuf,
    pub handle: RaftHandle<Store>,
    thread: Option<glommio::ExecutorJoinHandle<()>>,
}

impl ClusterMember {
    pub fn start(opts: RaftOptions, port: u16) -> ClusterMember {
        let (id, data_dir) = (opts.member_id, opts.data_dir.clone());
        let (htx, hrx) = flume::bounded(1);
        let thread = executor_builder("raft-cluster-test")
            .spawn(move || async move {
                let listener = glommio::net::TcpListener::bind(("127.0.0.1", port))
                    .expect("bind the peer port");
                let recv_dir = opts.data_dir.join("peer-recv");
                let network = PeerNetwork::new(opts.member_id, CLUSTER_ID);
                let (handle, node) = match start::<Store, _>(opts, network, None).await {
                    Ok(x) => x,
                    Err(e) => return htx.send(Err(e.to_string())).unwrap(),
                };
                let (stop_tx, stop_rx) = flume::bounded::<()>(1);
                let stop = async move {
                    let _ = stop_rx.recv_async().await;
                };
                let server = serve_peers(node.peer_side(), listener, CLUSTER_ID, recv_dir, stop);
                let server = glommio::spawn_local(server).detach();
                htx.send(Ok(handle)).unwrap();
                node.stopped().await;
                drop(stop_tx);
                server.await;
            })
            .expect("raft executor");
        let handle = hrx
            .recv_timeout(Duration::from_secs(30))
            .expect("member started in time")
            .expect("member starts");
        ClusterMember {
            id,
            data_dir,
            handle,
            thread: Some(thread),
        }
    }

    /// Stops the member (raft, WAL, peer port) and joins its thread.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        if let Some(t) = self.thread.take() {
            block_on(self.handle.shutdown());
            t.join().expect("raft executor thread");
        }
    }

    /// `(hash, revision)` of the member's MVCC store at its current revision.
    pub fn hash_kv(&self) -> (u32, i64) {
        let store = self.handle.store();
        let s = store.read();
        let rev = s.revision();
        (s.hash_kv(rev).expect("hash_kv").0, rev)
    }
}

impl Drop for ClusterMember {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    futures::executor::block_on(f)
}

pub fn put(key: &str, value: &str) -> RaftRequest {
    RaftRequest {
        request: Some(raft_request::Request::Put(PutRequest {
            key: Bytes::copy_from_slice(key.as_bytes()),
            value: Bytes::copy_from_slice(value.as_bytes()),
            ..Default::default()
        })),
        header: None,
        ..RaftRequest::default()
    }
}

pub fn compact(revision: i64) -> RaftRequest {
    RaftRequest {
        request: Some(raft_request::Request::Compaction(CompactionRequest {
            revision,
            ..Default::default()
        })),
        header: None,
        ..RaftRequest::default()
    }
}

/// Waits until one of `members` leads and every one of them knows it; returns its index.
pub fn wait_leader(members: &[&ClusterMember], within: Duration) -> usize {
    let start = Instant::now();
    loop {
        let statuses: Vec<_> = members.iter().map(|m| m.handle.status()).collect();
        if let Some(i) = statuses.iter().position(|s| s.is_leader) {
            let id = members[i].id;
            if statuses.iter().all(|s| s.leader_id == id) {
                return i;
            }
        }
        assert!(
            start.elapsed() < within,
            "no agreed leader within {within:?}: {statuses:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Writes `n` puts through the current leader of `members`, as a client would: a member
/// that is not (or no longer) the leader is answered by finding the leader again. Any other
/// error fails the test.
pub fn write_puts(members: &[&ClusterMember], prefix: &str, n: usize) {
    let mut leader = wait_leader(members, LEADER_WAIT);
    for i in 0..n {
        let req = put(&format!("{prefix}/{:03}", i % 50), &format!("v{i}"));
        let started = Instant::now();
        loop {
            match block_on(members[leader].handle.write(req.clone())) {
                Ok(_) => break,
                Err(e) if is_not_leader(&e) && started.elapsed() < LEADER_WAIT => {
                    std::thread::sleep(Duration::from_millis(10));
                    leader = wait_leader(members, LEADER_WAIT);
                }
                Err(e) => panic!("put {i} through member {:x}: {e}", members[leader].id),
            }
        }
    }
}

/// Waits until every member's store has the same revision and `hash_kv`; returns it.
pub fn wait_converged(members: &[&ClusterMember], within: Duration) -> (u32, i64) {
    let start = Instant::now();
    loop {
        let hashes: Vec<_> = members.iter().map(|m| m.hash_kv()).collect();
        if hashes.windows(2).all(|w| w[0] == w[1]) {
            return hashes[0];
        }
        assert!(
            start.elapsed() < within,
            "stores did not converge within {within:?}: {hashes:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn is_not_leader(e: &ProposeError) -> bool {
    matches!(
        e,
        ProposeError::ForwardToLeader { .. } | ProposeError::NoLeader
    )
}
