//! Whether this member can reach its leader's peer port. ketch's leader dials its followers
//! (appends travel on the leader's connections), so a leader whose *inbound* peer traffic is
//! cut keeps its followers while every write they forward to it hangs. On etcd the same cut
//! deposes the leader: its peer streams are dialled by the receiving side, so the followers
//! stop hearing from it and elect another. This probe gives ketch etcd's outcome: a follower
//! that cannot fetch `GET /members` from its leader for `CUT_OFF_AFTER` election timeouts
//! refuses that leader's appends (`ketch_raft::membership::set_cut_off`) until a probe
//! succeeds again; once every follower has, they elect a new leader among themselves and the
//! old one steps down when it meets the new term.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ketch_raft::MemberId;
use ketch_raft::membership::{cut_off_leaders, set_cut_off};
use rustls::ClientConfig;

use crate::node::Node;

/// Probes per election timeout.
const PROBES_PER_ELECTION_TIMEOUT: u32 = 4;
/// Election timeouts without a successful probe before the leader is cut off: long enough
/// that a busy leader answering slowly is not mistaken for a partition.
const CUT_OFF_AFTER: u32 = 2;

/// Starts the probe on its own thread (blocking connects with timeouts, off the executors).
pub fn spawn(node: Arc<Node>, tls: Option<Arc<ClientConfig>>, election_timeout: Duration) {
    let spawned = std::thread::Builder::new()
        .name("ketch-leader-probe".into())
        .spawn(move || run(&node, tls.as_ref(), election_timeout));
    if let Err(e) = spawned {
        tracing::warn!("not probing the leader's peer port: {e}");
    }
}

fn run(node: &Node, tls: Option<&Arc<ClientConfig>>, election_timeout: Duration) {
    let interval = election_timeout / PROBES_PER_ELECTION_TIMEOUT;
    let probe_timeout = election_timeout / 2;
    let cut_after = election_timeout * CUT_OFF_AFTER;
    let me = node.member_id;
    let mut failing_since: BTreeMap<MemberId, Instant> = BTreeMap::new();
    loop {
        std::thread::sleep(interval);
        let leader = node.raft.status().leader_id;
        let mut targets = cut_off_leaders(me);
        if leader != 0 && leader != me && !targets.contains(&leader) {
            targets.push(leader);
        }
        failing_since.retain(|id, _| targets.contains(id));
        let membership = node.raft.membership();
        for target in targets {
            let Some(url) = membership
                .get(target)
                .and_then(|m| m.member.peer_urls.first().cloned())
            else {
                continue;
            };
            match crate::identity::fetch_members(&url, tls, probe_timeout) {
                Ok(_) => {
                    failing_since.remove(&target);
                    if set_cut_off(me, target, false) {
                        tracing::info!(
                            "leader {target:x} at {url} answers again: accepting its appends"
                        );
                    }
                }
                Err(e) => {
                    let since = *failing_since.entry(target).or_insert_with(Instant::now);
                    if since.elapsed() >= cut_after && set_cut_off(me, target, true) {
                        tracing::warn!(
                            "cannot reach leader {target:x} at {url} for {cut_after:?} ({e}): \
                             refusing its appends until it answers (one-way partition)"
                        );
                    }
                }
            }
        }
    }
}
