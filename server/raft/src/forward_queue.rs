//! A follower's client writes on their way to the leader, batched. Writes that reach a
//! follower while [`FORWARD_BATCHES_IN_FLIGHT_MAX`] batches are already on their way to the
//! same leader wait, and go together in the next batch: one peer request and one proposal call on the leader
//! for many writes, where each write used to cost a request of its own on both members.
//! etcd's followers likewise send their proposals to the leader on one stream.
//!
//! The limit is per leader: batches stuck on a leader that stopped answering (partitioned,
//! paused) hold no slot of its successor's, so writes go to the new leader as soon as this
//! member knows it.
//!
//! Every pending write is a suspended client write task on this executor, so the queue is
//! as long as the writes waiting for it, no longer. A write whose caller gave up (its
//! request timeout fired and dropped the answer's receiver) is not sent.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use futures::channel::oneshot;

use crate::handle::{ProposeError, StatusCell};
use crate::network::{ForwardedWrite, LeaderForward};
use crate::types::{Member, MemberId, RequestBytes};

/// Batches on their way to one leader at once. More than one, so that a write arriving just
/// after a batch left need not wait for that batch's whole round trip; few, so that batches
/// stay large when the follower is busy.
pub const FORWARD_BATCHES_IN_FLIGHT_MAX: usize = 2;
/// Most writes in one batch.
pub const FORWARD_BATCH_MAX: usize = 256;
/// Most request bytes in one batch (a batch takes at least one write, whatever its size; a
/// write is at most `--max-request-bytes`, 1.5 MiB by default).
pub const FORWARD_BATCH_MAX_BYTES: usize = 4 << 20;

struct Pending {
    leader_id: MemberId,
    node: Member,
    data: RequestBytes,
    deadline: Instant,
    reply: oneshot::Sender<ForwardedWrite>,
}

/// The follower's queue of writes for the leader. Lives on the raft executor (`Rc`).
pub struct ForwardQueue<F: LeaderForward> {
    forward: F,
    pending: RefCell<VecDeque<Pending>>,
    /// Batches on their way, per leader.
    in_flight: RefCell<HashMap<MemberId, usize>>,
    /// Counts batches and writes sent (`RaftHandle::forwarded_batches_and_writes`).
    status: Arc<StatusCell>,
}

impl<F: LeaderForward> ForwardQueue<F> {
    pub(crate) fn new(forward: F, status: Arc<StatusCell>) -> Rc<ForwardQueue<F>> {
        Rc::new(ForwardQueue {
            forward,
            pending: RefCell::default(),
            in_flight: RefCell::default(),
            status,
        })
    }

    /// Has `leader_id` propose `data` (in a batch with the follower's other writes) and
    /// answers what applying it produced. `deadline` bounds the leader's wait.
    pub async fn write(
        self: &Rc<Self>,
        leader_id: MemberId,
        node: Member,
        data: RequestBytes,
        deadline: Instant,
    ) -> ForwardedWrite {
        let (reply, answer) = oneshot::channel();
        self.pending.borrow_mut().push_back(Pending {
            leader_id,
            node,
            data,
            deadline,
            reply,
        });
        self.pump();
        // The sender is dropped unanswered only if the batch's task is dropped (shutdown).
        answer.await.unwrap_or(Err(ProposeError::Stopped))
    }

    /// Sends batches while writes wait for a leader with fewer than the maximum in flight.
    fn pump(self: &Rc<Self>) {
        loop {
            let batch = {
                let in_flight = self.in_flight.borrow();
                let has_slot = |leader: MemberId| {
                    in_flight.get(&leader).copied().unwrap_or(0) < FORWARD_BATCHES_IN_FLIGHT_MAX
                };
                take_batch(&mut self.pending.borrow_mut(), has_slot)
            };
            let Some(leader_id) = batch.first().map(|p| p.leader_id) else {
                return;
            };
            *self.in_flight.borrow_mut().entry(leader_id).or_default() += 1;
            let queue = self.clone();
            glommio::spawn_local(async move {
                queue.send(batch).await;
                queue.batch_done(leader_id);
                queue.pump();
            })
            .detach();
        }
    }

    fn batch_done(&self, leader_id: MemberId) {
        let mut in_flight = self.in_flight.borrow_mut();
        let n = in_flight
            .get_mut(&leader_id)
            .expect("a batch in flight to this leader");
        *n -= 1;
        if *n == 0 {
            in_flight.remove(&leader_id);
        }
    }

    async fn send(&self, batch: Vec<Pending>) {
        let (leader_id, node) = (batch[0].leader_id, batch[0].node.clone());
        let latest = batch
            .iter()
            .map(|p| p.deadline)
            .max()
            .expect("batch not empty");
        let ttl = latest.saturating_duration_since(Instant::now());
        let (data, replies): (Vec<_>, Vec<_>) =
            batch.into_iter().map(|p| (p.data, p.reply)).unzip();
        let status = &self.status;
        status.forwarded_batches.fetch_add(1, Ordering::Relaxed);
        status
            .forwarded_writes
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        let answers = self
            .forward
            .forward_writes(leader_id, &node, data, ttl)
            .await;
        assert_eq!(
            answers.len(),
            replies.len(),
            "one answer per forwarded write"
        );
        for (reply, answer) in replies.into_iter().zip(answers) {
            let _ = reply.send(answer);
        }
    }
}

/// The next batch: the oldest waiting write whose leader `has_slot`, and the writes after it
/// for the same leader, in order, at most [`FORWARD_BATCH_MAX`] of them and
/// [`FORWARD_BATCH_MAX_BYTES`] (one write at least); writes whose callers gave up are dropped.
fn take_batch(
    pending: &mut VecDeque<Pending>,
    has_slot: impl Fn(MemberId) -> bool,
) -> Vec<Pending> {
    pending.retain(|p| !p.reply.is_canceled());
    let Some(leader_id) = pending.iter().map(|p| p.leader_id).find(|l| has_slot(*l)) else {
        return Vec::new();
    };
    let (mut batch, mut rest) = (Vec::new(), VecDeque::with_capacity(pending.len()));
    let mut bytes = 0;
    let mut full = false;
    for p in pending.drain(..) {
        let fits = batch.is_empty() || bytes + p.data.0.len() <= FORWARD_BATCH_MAX_BYTES;
        if p.leader_id == leader_id && !full && fits && batch.len() < FORWARD_BATCH_MAX {
            bytes += p.data.0.len();
            batch.push(p);
        } else {
            // Later writes for this leader wait for the next batch, to keep their order.
            full |= p.leader_id == leader_id;
            rest.push_back(p);
        }
    }
    *pending = rest;
    batch
}

#[cfg(test)]
mod tests {
    //! `take_batch`: which waiting writes go together, on plain values.

    use super::*;

    /// A queue of writes `(leader, tag, len)`: `len` bytes whose first byte is `tag`, and
    /// the receivers of their answers (a write whose receiver is dropped was given up).
    fn queue(
        writes: impl IntoIterator<Item = (MemberId, u8, usize)>,
    ) -> (VecDeque<Pending>, Vec<oneshot::Receiver<ForwardedWrite>>) {
        writes
            .into_iter()
            .map(|(leader_id, tag, len)| {
                let (reply, answer) = oneshot::channel();
                let mut data = vec![0u8; len];
                data[0] = tag;
                let p = Pending {
                    leader_id,
                    node: Member::default(),
                    data: RequestBytes(bytes::Bytes::from(data)),
                    deadline: Instant::now(),
                    reply,
                };
                (p, answer)
            })
            .unzip()
    }

    fn any(_: MemberId) -> bool {
        true
    }

    fn tags(batch: &[Pending]) -> Vec<u8> {
        batch.iter().map(|p| p.data.0[0]).collect()
    }

    #[test]
    fn a_batch_is_the_waiting_writes_for_the_oldest_ones_leader_in_order() {
        let (mut q, _answers) = queue([(1, 0, 1), (1, 1, 1), (2, 2, 1), (1, 3, 1)]);
        assert_eq!(tags(&take_batch(&mut q, any)), [0, 1, 3]);
        assert_eq!(tags(&take_batch(&mut q, any)), [2]);
        assert!(take_batch(&mut q, any).is_empty());
    }

    #[test]
    fn writes_whose_callers_gave_up_are_not_sent() {
        let (mut q, answers) = queue((0..6).map(|tag| (7, tag, 1)));
        let _kept: Vec<_> = answers.into_iter().step_by(2).collect();
        assert_eq!(tags(&take_batch(&mut q, any)), [0, 2, 4]);
        assert!(q.is_empty());
    }

    #[test]
    fn a_batch_holds_at_most_the_batch_maximum() {
        let (mut q, _answers) = queue((0..FORWARD_BATCH_MAX + 3).map(|i| (1, i as u8, 1)));
        assert_eq!(take_batch(&mut q, any).len(), FORWARD_BATCH_MAX);
        assert_eq!(take_batch(&mut q, any).len(), 3);
    }

    #[test]
    fn a_leader_without_a_free_slot_does_not_hold_up_another_leaders_writes() {
        let (mut q, _answers) = queue([(1, 0, 1), (2, 1, 1), (1, 2, 1), (2, 3, 1)]);
        // Leader 1 (the old one, stuck) has no slot: leader 2's writes go.
        assert_eq!(tags(&take_batch(&mut q, |l| l == 2)), [1, 3]);
        assert!(take_batch(&mut q, |l| l == 2).is_empty());
        assert_eq!(tags(&take_batch(&mut q, any)), [0, 2]);
    }

    #[test]
    fn a_batch_holds_at_most_the_byte_maximum_and_at_least_one_write() {
        let big = FORWARD_BATCH_MAX_BYTES / 2 + 1;
        let (mut q, _answers) = queue([
            (1, 0, big),
            (1, 1, big),
            (1, 2, 10),
            (1, 3, 2 * FORWARD_BATCH_MAX_BYTES),
        ]);
        assert_eq!(
            tags(&take_batch(&mut q, any)),
            [0],
            "a second big one does not fit"
        );
        assert_eq!(
            tags(&take_batch(&mut q, any)),
            [1, 2],
            "order kept: 2 waits behind 1"
        );
        assert_eq!(
            tags(&take_batch(&mut q, any)),
            [3],
            "an oversize write goes alone"
        );
    }
}
