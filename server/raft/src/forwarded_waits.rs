//! A follower's forwarded writes, recognised when this member applies them.
//!
//! A follower forwards a client write to the leader and normally gets the outcome in the
//! leader's answer. When that answer is lost (the leader died, or the connection broke, after
//! the batch left), the write may still commit: the leader may have replicated it before it
//! died, and the next leader then commits it. etcd's followers wait on the request's ID until
//! it is applied or the request times out (`etcdserver: request timed out`); ketch does the
//! same. Each forwarded write carries its proposer and a number of its own
//! ([`tag`]); applying an entry whose proposer is this member answers the waiting caller.
//!
//! The registry holds one entry per forwarded write whose caller is waiting: a suspended
//! client request, so it is bounded by the requests in flight. Numbers start from the clock
//! at startup, so a restarted member never reuses one its previous run may have logged.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use futures::channel::oneshot;
use parking_lot::Mutex;

use crate::types::{ApplyOutcome, MemberId, RequestBytes};

/// `RaftRequest` field numbers of the proposer and its request number (ketch_internal.proto).
const PROPOSER_FIELD: u32 = 101;
const REQUEST_ID_FIELD: u32 = 102;

pub struct ForwardedWaits {
    me: MemberId,
    next_id: AtomicU64,
    waiting: Mutex<HashMap<u64, oneshot::Sender<ApplyOutcome>>>,
}

impl ForwardedWaits {
    pub fn new(me: MemberId) -> ForwardedWaits {
        let start = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        ForwardedWaits {
            me,
            next_id: AtomicU64::new(start.max(1)),
            waiting: Mutex::default(),
        }
    }

    /// A new request number, never 0 (0 means "not forwarded").
    pub fn next_id(&self) -> u64 {
        loop {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            if id != 0 {
                return id;
            }
        }
    }

    /// `data` with this member as proposer and `id` as its number: the two fields appended to
    /// the encoded request (a later occurrence of a scalar field wins when decoding).
    pub fn tag(&self, data: &RequestBytes, id: u64) -> RequestBytes {
        let mut out = BytesMut::with_capacity(data.0.len() + 24);
        out.extend_from_slice(&data.0);
        prost::encoding::uint64::encode(PROPOSER_FIELD, &self.me, &mut out);
        prost::encoding::uint64::encode(REQUEST_ID_FIELD, &id, &mut out);
        RequestBytes(out.freeze())
    }

    /// Waits for write `id` to be applied here, until the registration is dropped (a caller
    /// that gives up leaves nothing behind). One registration per number at a time.
    pub fn register(self: &Arc<Self>, id: u64) -> Registration {
        let (tx, rx) = oneshot::channel();
        let replaced = self.waiting.lock().insert(id, tx);
        assert!(replaced.is_none(), "forwarded write {id} registered twice");
        Registration {
            waits: self.clone(),
            id,
            rx,
        }
    }

    /// Called for every applied entry: answers this member's caller of write `id`, if one
    /// waits.
    pub fn applied(&self, proposer: MemberId, id: u64, outcome: &ApplyOutcome) {
        if proposer != self.me || id == 0 {
            return;
        }
        if let Some(tx) = self.waiting.lock().remove(&id) {
            let _ = tx.send(outcome.clone());
        }
    }

    /// Callers waiting (for tests).
    pub fn waiting(&self) -> usize {
        self.waiting.lock().len()
    }
}

/// A caller's wait for its forwarded write; dropping it stops the wait.
pub struct Registration {
    waits: Arc<ForwardedWaits>,
    id: u64,
    rx: oneshot::Receiver<ApplyOutcome>,
}

impl Registration {
    /// The outcome of applying the write here, when it is applied.
    pub async fn applied(mut self) -> Option<ApplyOutcome> {
        (&mut self.rx).await.ok()
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.waits.waiting.lock().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    //! The tag survives the encoding (the applied request names its proposer and number), and
    //! only this member's own numbers answer a waiting caller, once.

    use super::*;
    use ketch_proto::PutRequest;
    use ketch_proto::ketchpb::{RaftRequest, RaftResponse, raft_request};

    fn put() -> RequestBytes {
        RequestBytes::encode(&RaftRequest {
            request: Some(raft_request::Request::Put(PutRequest {
                key: b"k".to_vec().into(),
                value: b"v".to_vec().into(),
                ..Default::default()
            })),
            ..Default::default()
        })
    }

    #[test]
    fn a_tagged_request_decodes_with_its_proposer_and_number_and_keeps_the_rest() {
        let waits = ForwardedWaits::new(0xabc);
        let id = waits.next_id();
        assert_ne!(id, 0);
        assert_ne!(waits.next_id(), id, "numbers are not reused");
        let tagged = waits.tag(&put(), id).decode().unwrap();
        assert_eq!((tagged.proposer, tagged.request_id), (0xabc, id));
        let untagged = put().decode().unwrap();
        assert_eq!(
            RaftRequest {
                proposer: 0,
                request_id: 0,
                ..tagged
            },
            untagged
        );
        // Tagging again (a retry to a new leader) keeps one value per field: the last.
        let twice = waits.tag(&waits.tag(&put(), 7), 8).decode().unwrap();
        assert_eq!(twice.request_id, 8);
    }

    #[test]
    fn applying_its_own_number_answers_the_waiting_caller_once() {
        let waits = Arc::new(ForwardedWaits::new(1));
        let outcome = ApplyOutcome(Ok(RaftResponse::default()));
        let registration = waits.register(5);
        waits.applied(2, 5, &outcome); // another member's number 5
        assert_eq!(waits.waiting(), 1);
        waits.applied(1, 5, &outcome);
        assert_eq!(waits.waiting(), 0);
        let got = futures::executor::block_on(registration.applied());
        assert!(got.is_some_and(|o| o.0.is_ok()));
        // A caller that gives up (drops its registration) leaves nothing behind.
        drop(waits.register(6));
        assert_eq!(waits.waiting(), 0);
        waits.applied(1, 6, &outcome);
        let later = waits.register(6);
        assert_eq!(waits.waiting(), 1, "the number is free again");
        drop(later);
    }
}
