//! A follower's client writes on their way to the leader, batched. Writes that reach a
//! follower while [`FORWARD_BATCHES_IN_FLIGHT_MAX`] batches are already on their way wait,
//! and go together in the next batch: one peer request and one proposal call on the leader
//! for many writes, where each write used to cost a request of its own on both members.
//! etcd's followers likewise send their proposals to the leader on one stream.
//!
//! Every pending write is a suspended client write task on this executor, so the queue is
//! as long as the writes waiting for it, no longer. A write whose caller gave up (its
//! request timeout fired and dropped the answer's receiver) is not sent.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use futures::channel::oneshot;

use crate::handle::{ProposeError, StatusCell};
use crate::network::{ForwardedWrite, LeaderForward};
use crate::types::{Member, MemberId, RequestBytes};

/// Batches on their way to the leader at once. More than one, so that a write arriving just
/// after a batch left need not wait for that batch's whole round trip; few, so that batches
/// stay large when the follower is busy.
pub const FORWARD_BATCHES_IN_FLIGHT_MAX: usize = 2;
/// Most writes in one batch (a write is a few hundred bytes; etcd caps a request at 1.5 MiB,
/// so a batch stays well within a peer request's size).
pub const FORWARD_BATCH_MAX: usize = 256;

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
    in_flight: Cell<usize>,
    /// Counts batches and writes sent (`RaftHandle::forwarded_writes`).
    status: Arc<StatusCell>,
}

impl<F: LeaderForward> ForwardQueue<F> {
    pub(crate) fn new(forward: F, status: Arc<StatusCell>) -> Rc<ForwardQueue<F>> {
        Rc::new(ForwardQueue {
            forward,
            pending: RefCell::default(),
            in_flight: Cell::new(0),
            status,
        })
    }

    /// Has `leader_id` propose `data` (in a batch with the follower's other writes) and
    /// answers what applying it produced. `deadline` bounds the leader's wait.
    pub async fn write(
        self: &Rc<Self>,
        leader_id: MemberId,
        node: &Member,
        data: RequestBytes,
        deadline: Instant,
    ) -> ForwardedWrite {
        let (reply, answer) = oneshot::channel();
        self.pending.borrow_mut().push_back(Pending {
            leader_id,
            node: node.clone(),
            data,
            deadline,
            reply,
        });
        self.pump();
        // The sender is dropped unanswered only if the batch's task is dropped (shutdown).
        answer.await.unwrap_or(Err(ProposeError::Stopped))
    }

    /// Sends batches while fewer than the maximum are in flight and writes are waiting.
    fn pump(self: &Rc<Self>) {
        while self.in_flight.get() < FORWARD_BATCHES_IN_FLIGHT_MAX {
            let batch = take_batch(&mut self.pending.borrow_mut());
            if batch.is_empty() {
                return;
            }
            self.in_flight.set(self.in_flight.get() + 1);
            let queue = self.clone();
            glommio::spawn_local(async move {
                queue.send(batch).await;
                queue.in_flight.set(queue.in_flight.get() - 1);
                queue.pump();
            })
            .detach();
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

/// The next batch: the oldest waiting writes for the same leader as the oldest one, in
/// order, at most [`FORWARD_BATCH_MAX`]; writes whose callers gave up are dropped.
fn take_batch(pending: &mut VecDeque<Pending>) -> Vec<Pending> {
    pending.retain(|p| !p.reply.is_canceled());
    let Some(leader_id) = pending.front().map(|p| p.leader_id) else {
        return Vec::new();
    };
    let same_leader = pending
        .iter()
        .take(FORWARD_BATCH_MAX)
        .take_while(|p| p.leader_id == leader_id)
        .count();
    pending.drain(..same_leader).collect()
}

#[cfg(test)]
mod tests {
    //! `take_batch`: which waiting writes go together, on plain values.

    use super::*;

    fn pending(leader_id: MemberId, tag: u8) -> (Pending, oneshot::Receiver<ForwardedWrite>) {
        let (reply, answer) = oneshot::channel();
        let p = Pending {
            leader_id,
            node: Member::default(),
            data: RequestBytes(bytes::Bytes::from(vec![tag])),
            deadline: Instant::now(),
            reply,
        };
        (p, answer)
    }

    fn tags(batch: &[Pending]) -> Vec<u8> {
        batch.iter().map(|p| p.data.0[0]).collect()
    }

    #[test]
    fn a_batch_is_the_oldest_writes_for_one_leader_in_order() {
        let mut q = VecDeque::new();
        let mut answers = Vec::new();
        for (leader, tag) in [(1, 0), (1, 1), (2, 2), (1, 3)] {
            let (p, a) = pending(leader, tag);
            q.push_back(p);
            answers.push(a);
        }
        assert_eq!(tags(&take_batch(&mut q)), [0, 1]);
        assert_eq!(tags(&take_batch(&mut q)), [2]);
        assert_eq!(tags(&take_batch(&mut q)), [3]);
        assert!(take_batch(&mut q).is_empty());
    }

    #[test]
    fn writes_whose_callers_gave_up_are_not_sent() {
        let mut q = VecDeque::new();
        let mut kept = Vec::new();
        for tag in 0..6 {
            let (p, a) = pending(7, tag);
            q.push_back(p);
            if tag % 2 == 0 {
                kept.push(a);
            }
        }
        assert_eq!(tags(&take_batch(&mut q)), [0, 2, 4]);
        assert!(q.is_empty());
    }

    #[test]
    fn a_batch_holds_at_most_the_batch_maximum() {
        let mut q = VecDeque::new();
        let answers: Vec<_> = (0..FORWARD_BATCH_MAX + 3)
            .map(|i| {
                let (p, a) = pending(1, i as u8);
                q.push_back(p);
                a
            })
            .collect();
        assert_eq!(take_batch(&mut q).len(), FORWARD_BATCH_MAX);
        assert_eq!(take_batch(&mut q).len(), 3);
        drop(answers);
    }
}
