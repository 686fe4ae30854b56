//! Model-based randomized test: seeded random operation sequences (put, delete, nested txns,
//! compaction, leases, ranges at random revisions) go to `Store` and to an obviously-correct
//! model that keeps a full copy of the key space for every revision. After every step the
//! store's view at every revision (full range) must equal the model's, reads below the
//! compaction must fail, the events the step produced must equal `events_since` for its
//! revision, and periodically a snapshot round trip must give an identical store.
//! Seed: `MVCC_MODEL_SEED`; steps: `MVCC_MODEL_STEPS` (default 600).

mod common;

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use common::{Gen, Op, apply_to_store, seed_from_env};
use ketch_mvcc::{MvccError, Store};
use ketch_proto::compare::{CompareResult, CompareTarget, TargetUnion};
use ketch_proto::mvccpb::KeyValue;
use ketch_proto::{Compare, RangeRequest, TxnRequest, request_op};

type Map = BTreeMap<Bytes, KeyValue>;

/// The model: `states[r]` is the whole key space at revision r.
struct Model {
    states: Vec<Map>,
    compact_rev: i64,
    leases: BTreeSet<i64>,
}

fn in_span(k: &[u8], key: &[u8], end: &[u8]) -> bool {
    match end {
        [] => k == key,
        [0] => k >= key,
        end => key <= k && k < end,
    }
}

/// Deletes the span's keys; whether any was there.
fn delete(m: &mut Map, key: &[u8], end: &[u8]) -> bool {
    let before = m.len();
    m.retain(|k, _| !in_span(k, key, end));
    m.len() != before
}

impl Model {
    fn new() -> Self {
        Model {
            states: vec![Map::new(), Map::new()],
            compact_rev: -1,
            leases: BTreeSet::new(),
        }
    }

    fn rev(&self) -> i64 {
        self.states.len() as i64 - 1
    }

    fn put(&self, m: &mut Map, key: &Bytes, value: &Bytes, lease: i64, iv: bool, il: bool) {
        let rev = self.rev() + 1;
        let prev = m.get(key).cloned();
        let (create_revision, version) = prev
            .as_ref()
            .map_or((rev, 1), |p| (p.create_revision, p.version + 1));
        let value = if iv {
            prev.as_ref().expect("checked").value.clone()
        } else {
            value.clone()
        };
        let lease = if il {
            prev.as_ref().expect("checked").lease
        } else {
            lease
        };
        m.insert(
            key.clone(),
            KeyValue {
                key: key.clone(),
                create_revision,
                mod_revision: rev,
                version,
                value,
                lease,
            },
        );
    }

    fn compare(&self, c: &Compare) -> bool {
        let now = &self.states[self.rev() as usize];
        let kvs: Vec<&KeyValue> = now
            .values()
            .filter(|kv| in_span(&kv.key, &c.key, &c.range_end))
            .collect();
        let target = CompareTarget::try_from(c.target).unwrap();
        if kvs.is_empty() && target == CompareTarget::Value {
            return false;
        }
        let zero = KeyValue::default();
        let kvs = if kvs.is_empty() { vec![&zero] } else { kvs };
        kvs.iter().all(|kv| {
            let ord = match (&c.target_union, target) {
                (Some(TargetUnion::Value(v)), _) => kv.value[..].cmp(&v[..]),
                (Some(TargetUnion::Version(n)), _) => kv.version.cmp(n),
                (Some(TargetUnion::CreateRevision(n)), _) => kv.create_revision.cmp(n),
                (Some(TargetUnion::ModRevision(n)), _) => kv.mod_revision.cmp(n),
                (Some(TargetUnion::Lease(n)), _) => kv.lease.cmp(n),
                (None, _) => unreachable!("generator sets the union"),
            };
            match CompareResult::try_from(c.result).unwrap() {
                CompareResult::Equal => ord.is_eq(),
                CompareResult::NotEqual => ord.is_ne(),
                CompareResult::Greater => ord.is_gt(),
                CompareResult::Less => ord.is_lt(),
            }
        })
    }

    /// Applies the taken branch of `t` to `m`; false if a put needs a key or lease that the
    /// state before the txn lacks (the store then refuses the whole txn).
    fn txn(&self, t: &TxnRequest, m: &mut Map, wrote: &mut bool) -> bool {
        let before = &self.states[self.rev() as usize];
        let ops = if t.compare.iter().all(|c| self.compare(c)) {
            &t.success
        } else {
            &t.failure
        };
        for op in ops {
            match op.request.as_ref().unwrap() {
                request_op::Request::RequestPut(p) => {
                    if (p.ignore_value || p.ignore_lease) && !before.contains_key(&p.key)
                        || p.lease != 0 && !self.leases.contains(&p.lease)
                    {
                        return false;
                    }
                    self.put(m, &p.key, &p.value, p.lease, p.ignore_value, p.ignore_lease);
                    *wrote = true;
                }
                request_op::Request::RequestDeleteRange(d) => {
                    *wrote |= delete(m, &d.key, &d.range_end);
                }
                request_op::Request::RequestTxn(n) => {
                    if !self.txn(n, m, wrote) {
                        return false;
                    }
                }
                request_op::Request::RequestRange(_) => {}
            }
        }
        true
    }

    /// Applies a write the API checks accepted; returns whether the store should accept it.
    fn apply(&mut self, op: &Op) -> bool {
        let mut next = self.states[self.rev() as usize].clone();
        // etcd bumps the revision when a request wrote, even if the state ends up unchanged
        // (a txn that puts a key and then deletes it).
        let mut wrote = false;
        let ok = match op {
            Op::Put(p) => {
                let exists = next.contains_key(&p.key);
                let ok = (p.lease == 0 || self.leases.contains(&p.lease))
                    && (exists || !(p.ignore_value || p.ignore_lease));
                if ok {
                    self.put(
                        &mut next,
                        &p.key,
                        &p.value,
                        p.lease,
                        p.ignore_value,
                        p.ignore_lease,
                    );
                    wrote = true;
                }
                ok
            }
            Op::Delete(d) => {
                wrote = delete(&mut next, &d.key, &d.range_end);
                true
            }
            Op::Txn(t) => {
                // A txn that fails a range revision check is refused too (nothing to model).
                let ok = self.txn(t, &mut next, &mut wrote) && self.ranges_valid(t);
                if !ok {
                    next = self.states[self.rev() as usize].clone();
                    wrote = false;
                }
                ok
            }
            Op::Compact(c) => {
                let ok = c.revision > self.compact_rev && c.revision <= self.rev();
                if ok {
                    self.compact_rev = c.revision;
                }
                ok
            }
            Op::LeaseGrant(id) => self.leases.insert(*id),
            Op::LeaseRevoke(id) => {
                let ok = self.leases.remove(id);
                let before = next.len();
                next.retain(|_, kv| !(ok && kv.lease == *id));
                wrote = next.len() != before;
                ok
            }
            Op::Range(_) => true,
        };
        if wrote {
            self.states.push(next);
        }
        ok
    }

    fn ranges_valid(&self, t: &TxnRequest) -> bool {
        let ops = if t.compare.iter().all(|c| self.compare(c)) {
            &t.success
        } else {
            &t.failure
        };
        ops.iter().all(|op| match op.request.as_ref().unwrap() {
            request_op::Request::RequestRange(r) => {
                r.revision == 0 || (r.revision <= self.rev() && r.revision >= self.compact_rev)
            }
            request_op::Request::RequestTxn(n) => self.ranges_valid(n),
            _ => true,
        })
    }
}

/// Every key at `rev`, as the store answers a full range.
fn store_state(store: &Store, rev: i64) -> Result<Map, MvccError> {
    let all = RangeRequest {
        key: Bytes::from_static(b"\0"),
        range_end: Bytes::from_static(b"\0"),
        revision: rev,
        ..Default::default()
    };
    let resp = store.range(&all)?;
    Ok(resp
        .kvs
        .into_iter()
        .map(|kv| (kv.key.clone(), kv))
        .collect())
}

fn check_all_revisions(store: &Store, model: &Model, step: usize, seed: u64) {
    assert_eq!(
        store.revision(),
        model.rev(),
        "step {step} seed {seed}: revision"
    );
    assert_eq!(
        store.compact_revision(),
        model.compact_rev,
        "step {step} seed {seed}"
    );
    for rev in 1..=model.rev() {
        let got = store_state(store, rev);
        if rev < model.compact_rev {
            assert_eq!(
                got,
                Err(MvccError::Compacted),
                "step {step} seed {seed}: rev {rev}"
            );
        } else {
            assert_eq!(
                got.as_ref(),
                Ok(&model.states[rev as usize]),
                "step {step} seed {seed}: rev {rev}"
            );
        }
    }
    assert_eq!(
        store_state(store, model.rev() + 1),
        Err(MvccError::FutureRev)
    );
}

fn is_api_valid(op: &Op) -> bool {
    use ketch_mvcc::validate;
    match op {
        Op::Put(p) => validate::check_put(p).is_ok(),
        Op::Delete(d) => validate::check_delete_range(d).is_ok(),
        Op::Txn(t) => validate::check_txn(t, common::MAX_TXN_OPS).is_ok(),
        Op::Range(r) => validate::check_range(r).is_ok(),
        _ => true,
    }
}

fn check_snapshot_round_trip(store: &Store) {
    let mut bytes = Vec::new();
    store.write_snapshot(&mut bytes).expect("write to a Vec");
    let restored = Store::read_snapshot(&mut bytes.as_slice()).expect("read back");
    let mut again = Vec::new();
    restored.write_snapshot(&mut again).expect("write to a Vec");
    assert_eq!(bytes, again, "snapshot of the restored store differs");
    assert_eq!(restored.hash_kv(0), store.hash_kv(0));
    assert_eq!(restored.size_bytes(), store.size_bytes());
    assert_eq!(
        restored.events_since(b"\0", b"\0", 1.max(store.compact_revision()), usize::MAX),
        store.events_since(b"\0", b"\0", 1.max(store.compact_revision()), usize::MAX)
    );
    for id in store.lease_ids() {
        assert_eq!(restored.keys_of_lease(id), store.keys_of_lease(id));
    }
}

#[test]
fn store_matches_a_full_copy_per_revision_model() {
    let seed = seed_from_env("MVCC_MODEL_SEED");
    let steps: usize = std::env::var("MVCC_MODEL_STEPS").map_or(600, |s| s.parse().expect("count"));
    let mut ops_gen = Gen::new(seed);
    let mut store = Store::new();
    let mut twin = Store::new();
    let mut model = Model::new();
    for step in 0..steps {
        let op = ops_gen.op(store.revision(), store.compact_revision());
        let rev_before = store.revision();
        let mut events = Vec::new();
        let got = apply_to_store(&mut store, &op, &mut events);
        apply_to_store(&mut twin, &op, &mut Vec::new()).ok();
        if is_api_valid(&op) {
            let accepted = model.apply(&op);
            let store_accepted = got.is_ok() || matches!(op, Op::Range(_));
            assert_eq!(
                store_accepted, accepted,
                "step {step} seed {seed}: {op:?} -> {got:?}"
            );
        }
        check_all_revisions(&store, &model, step, seed);
        let replay = store
            .events_since(b"\0", b"\0", rev_before + 1, usize::MAX)
            .expect("not compacted");
        assert_eq!(events, replay, "step {step} seed {seed}: events of {op:?}");
        assert_eq!(
            store.hash_kv(0),
            twin.hash_kv(0),
            "equal histories hash equal"
        );
        if step % 50 == 0 {
            check_snapshot_round_trip(&store);
        }
    }
    check_snapshot_round_trip(&store);
}
