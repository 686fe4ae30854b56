//! The leader's lessor, pure: each lease's expiry deadline, which leases are due for
//! revocation (rate-limited, retried), and their remaining TTLs for checkpoints. The clock is
//! an argument; the replicated lease table (granted and checkpointed TTLs) is read by the
//! caller and handed in. Deadlines exist only on the leader: on promotion they are rebuilt
//! from the table (remaining TTL from the last checkpoint, else the granted TTL), as etcd's
//! `Promote` does, so a leader change or a restart does not reset a checkpointed TTL.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use super::state::LeaseTtl;

/// How long a proposed revocation may take before the lease is proposed again (etcd's
/// `expiredLeaseRetryInterval`).
pub const REVOKE_RETRY: Duration = Duration::from_secs(3);

#[derive(Debug, Default)]
pub struct LessorCore {
    deadlines: HashMap<i64, Instant>,
    by_deadline: BTreeSet<(Instant, i64)>,
    /// Leases whose revocation was proposed, with when to propose again.
    revoking: HashMap<i64, Instant>,
    /// The lease-table generation the deadlines were last reconciled with.
    generation: Option<u64>,
}

impl LessorCore {
    fn set_deadline(&mut self, id: i64, deadline: Instant) {
        if let Some(old) = self.deadlines.insert(id, deadline) {
            self.by_deadline.remove(&(old, id));
        }
        self.by_deadline.insert((deadline, id));
    }

    fn forget(&mut self, id: i64) {
        if let Some(old) = self.deadlines.remove(&id) {
            self.by_deadline.remove(&(old, id));
        }
        self.revoking.remove(&id);
    }

    /// Drops every deadline (leadership lost: only the leader expires leases).
    pub fn clear(&mut self) {
        *self = LessorCore::default();
    }

    pub fn needs_reconcile(&self, generation: u64) -> bool {
        self.generation != Some(generation)
    }

    /// Brings the deadlines in line with the replicated table: new leases get a deadline
    /// from their checkpointed or granted TTL, revoked ones are forgotten.
    pub fn reconcile(
        &mut self,
        now: Instant,
        generation: u64,
        table: impl Iterator<Item = (i64, LeaseTtl)>,
    ) {
        let mut present = HashMap::with_capacity(self.deadlines.len());
        for (id, ttl) in table {
            present.insert(id, ());
            if !self.deadlines.contains_key(&id) {
                self.set_deadline(id, now + initial_ttl(ttl));
            }
        }
        let gone: Vec<i64> = self
            .deadlines
            .keys()
            .filter(|id| !present.contains_key(id))
            .copied()
            .collect();
        for id in gone {
            self.forget(id);
        }
        self.generation = Some(generation);
    }

    /// Extends lease `id` to a full `ttl_secs` from `now`.
    pub fn renew(&mut self, id: i64, ttl_secs: i64, now: Instant) {
        self.revoking.remove(&id);
        self.set_deadline(id, now + secs(ttl_secs));
    }

    /// Time left before lease `id` expires, `None` if this lessor has no deadline for it.
    pub fn remaining(&self, id: i64, now: Instant) -> Option<Duration> {
        self.deadlines
            .get(&id)
            .map(|d| d.saturating_duration_since(now))
    }

    pub fn is_expired(&self, id: i64, now: Instant) -> bool {
        self.deadlines.get(&id).is_some_and(|d| *d <= now)
    }

    /// Up to `limit` expired leases to revoke now, oldest deadline first; each is not offered
    /// again before `REVOKE_RETRY` has passed.
    pub fn take_expired(&mut self, now: Instant, limit: usize) -> Vec<i64> {
        let mut out = Vec::new();
        for &(deadline, id) in &self.by_deadline {
            if deadline > now || out.len() >= limit {
                break;
            }
            if self.revoking.get(&id).is_some_and(|retry| *retry > now) {
                continue;
            }
            out.push(id);
        }
        for id in &out {
            self.revoking.insert(*id, now + REVOKE_RETRY);
        }
        out
    }

    /// Remaining TTL (whole seconds, at least 1) of every lease not yet expired, for a
    /// checkpoint.
    pub fn remaining_ttls(&self, now: Instant) -> Vec<(i64, i64)> {
        self.by_deadline
            .iter()
            .filter(|(d, _)| *d > now)
            .map(|(d, id)| (*id, d.duration_since(now).as_secs().max(1) as i64))
            .collect()
    }

    /// Lease IDs, soonest expiry first (etcd's `Leases()` order).
    pub fn ids_by_expiry(&self) -> Vec<i64> {
        self.by_deadline.iter().map(|(_, id)| *id).collect()
    }
}

fn secs(s: i64) -> Duration {
    Duration::from_secs(s.max(0) as u64)
}

fn initial_ttl(ttl: LeaseTtl) -> Duration {
    if ttl.remaining_ttl > 0 {
        secs(ttl.remaining_ttl)
    } else {
        secs(ttl.granted_ttl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ttl(granted_ttl: i64, remaining_ttl: i64) -> LeaseTtl {
        LeaseTtl {
            granted_ttl,
            remaining_ttl,
        }
    }

    #[test]
    fn promotion_uses_the_checkpointed_remaining_ttl() {
        let t0 = Instant::now();
        let mut l = LessorCore::default();
        l.reconcile(t0, 1, [(1, ttl(60, 0)), (2, ttl(60, 5))].into_iter());
        assert_eq!(l.remaining(1, t0), Some(Duration::from_secs(60)));
        assert_eq!(l.remaining(2, t0), Some(Duration::from_secs(5)));
        assert_eq!(l.ids_by_expiry(), vec![2, 1]);
    }

    #[test]
    fn expiry_is_offered_once_per_retry_interval_and_rate_limited() {
        let t0 = Instant::now();
        let mut l = LessorCore::default();
        l.reconcile(t0, 1, (1..=5).map(|id| (id, ttl(id, 0))));
        assert!(l.take_expired(t0, 10).is_empty());
        let t = t0 + Duration::from_secs(4);
        assert_eq!(l.take_expired(t, 3), vec![1, 2, 3]);
        assert_eq!(l.take_expired(t, 3), vec![4], "1..3 are being revoked");
        let later = t + REVOKE_RETRY;
        assert_eq!(l.take_expired(later, 10), vec![1, 2, 3, 4, 5]);
        l.reconcile(later, 2, [(5, ttl(5, 0))].into_iter());
        assert_eq!(l.ids_by_expiry(), vec![5], "revoked leases are forgotten");
    }

    #[test]
    fn renew_moves_the_deadline_and_cancels_a_pending_revoke() {
        let t0 = Instant::now();
        let mut l = LessorCore::default();
        l.reconcile(t0, 1, [(9, ttl(2, 0))].into_iter());
        let t = t0 + Duration::from_secs(3);
        assert!(l.is_expired(9, t));
        assert_eq!(l.take_expired(t, 10), vec![9]);
        l.renew(9, 2, t);
        assert!(!l.is_expired(9, t));
        assert_eq!(l.remaining_ttls(t), vec![(9, 2)]);
        assert_eq!(l.take_expired(t + Duration::from_secs(2), 10), vec![9]);
    }
}
