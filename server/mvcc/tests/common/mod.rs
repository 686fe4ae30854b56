//! Shared by the randomized tests: a seeded generator of etcd KV operations over a small key
//! space (so that operations collide), and applying them to a `Store` with etcd's API checks.
#![allow(dead_code)]

pub mod etcd;

use bytes::Bytes;
use ketch_mvcc::{MvccError, Store, validate};
use ketch_proto::compare::{CompareTarget, TargetUnion};
use ketch_proto::mvccpb::Event;
use ketch_proto::range_request::{SortOrder, SortTarget};
use ketch_proto::{
    CompactionRequest, CompactionResponse, Compare, DeleteRangeRequest, DeleteRangeResponse,
    LeaseGrantResponse, LeaseRevokeResponse, PutRequest, PutResponse, RangeRequest, RangeResponse,
    RequestOp, ResponseHeader, TxnRequest, TxnResponse, request_op,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// etcd's default `--max-txn-ops`.
pub const MAX_TXN_OPS: usize = 128;
/// TTL of the leases the tests grant: far longer than any test runs.
pub const LEASE_TTL_S: i64 = 3600;

/// The seed from `env_var` if set, else from the clock; printed either way.
pub fn seed_from_env(env_var: &str) -> u64 {
    let seed = match std::env::var(env_var) {
        Ok(s) => s.parse().expect("seed must be a u64"),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_nanos() as u64,
    };
    eprintln!("seed: {seed} (rerun with {env_var}={seed})");
    seed
}

#[derive(Debug, Clone)]
pub enum Op {
    Range(RangeRequest),
    Put(PutRequest),
    Delete(DeleteRangeRequest),
    Txn(TxnRequest),
    Compact(CompactionRequest),
    LeaseGrant(i64),
    LeaseRevoke(i64),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Resp {
    Range(RangeResponse),
    Put(PutResponse),
    Delete(DeleteRangeResponse),
    Txn(TxnResponse),
    Compact(CompactionResponse),
    LeaseGrant(LeaseGrantResponse),
    LeaseRevoke(LeaseRevokeResponse),
}

/// A response, or an error as (gRPC code, message).
pub type Outcome = Result<Resp, (i32, String)>;

/// Small on purpose, so operations collide; one key is longer than the store's inline keys.
const KEYS: &[&str] = &[
    "a",
    "a/1",
    "a/2",
    "a/3",
    "a/long-key-longer-than-thirty-bytes",
    "b",
    "b/1",
    "c",
    "d",
];
const VALUES: &[&str] = &["", "x", "yy", "v1", "v2", "zzz"];

pub struct Gen {
    rng: StdRng,
    /// Lease IDs granted so far (some later revoked): puts pick among them and unknown ones.
    leases: Vec<i64>,
}

impl Gen {
    pub fn new(seed: u64) -> Self {
        Gen {
            rng: StdRng::seed_from_u64(seed),
            leases: Vec::new(),
        }
    }

    /// One random operation; `rev` and `compact_rev` steer revisions near the interesting
    /// boundaries (compacted, current, future).
    pub fn op(&mut self, rev: i64, compact_rev: i64) -> Op {
        match self.rng.random_range(0..100) {
            0..30 => Op::Put(self.put()),
            30..55 => Op::Range(self.range(rev, compact_rev)),
            55..65 => Op::Delete(self.delete()),
            65..88 => Op::Txn(self.txn(2, rev, compact_rev)),
            88..93 => {
                let near = self.revision_near(rev, compact_rev).max(compact_rev - 1);
                // Now and then the edge revisions 0 and -1.
                let revision = if self.rng.random_bool(0.1) {
                    self.rng.random_range(-1..=0)
                } else {
                    near
                };
                Op::Compact(CompactionRequest {
                    revision,
                    physical: true,
                })
            }
            93..96 => {
                let id = 1000 + self.leases.len() as i64;
                self.leases.push(id);
                Op::LeaseGrant(id)
            }
            96 if self.rng.random_bool(0.5) => Op::LeaseGrant(self.lease_id()),
            96 => Op::Txn(self.too_many_ops()),
            _ => Op::LeaseRevoke(self.lease_id()),
        }
    }

    fn key(&mut self) -> Bytes {
        Bytes::from_static(KEYS[self.rng.random_range(0..KEYS.len())].as_bytes())
    }

    fn value(&mut self) -> Bytes {
        Bytes::from_static(VALUES[self.rng.random_range(0..VALUES.len())].as_bytes())
    }

    /// A lease id: mostly one granted (maybe since revoked), sometimes unknown.
    fn lease_id(&mut self) -> i64 {
        if self.leases.is_empty() || self.rng.random_bool(0.1) {
            return 999;
        }
        self.leases[self.rng.random_range(0..self.leases.len())]
    }

    /// A range end for `key`: single key, from-key, prefix end, or another key.
    fn range_end(&mut self, key: &Bytes) -> Bytes {
        match self.rng.random_range(0..4) {
            0 => Bytes::new(),
            1 => Bytes::from_static(b"\0"),
            2 => prefix_end(key),
            _ => self.key(),
        }
    }

    fn revision_near(&mut self, rev: i64, compact_rev: i64) -> i64 {
        match self.rng.random_range(0..6) {
            0 => rev + 1,
            1 => compact_rev.max(1),
            2 => (compact_rev - 1).max(1),
            _ => self.rng.random_range(1..=rev.max(1)),
        }
    }

    pub fn put(&mut self) -> PutRequest {
        let mut p = PutRequest {
            key: self.key(),
            value: self.value(),
            ..Default::default()
        };
        p.prev_kv = self.rng.random_bool(0.5);
        if self.rng.random_bool(0.25) {
            p.lease = self.lease_id();
        }
        // Mostly valid ignore_* puts; sometimes with a value or lease (etcd refuses those).
        if self.rng.random_bool(0.08) {
            p.ignore_value = true;
            if self.rng.random_bool(0.8) {
                p.value = Bytes::new();
            }
        }
        if self.rng.random_bool(0.08) {
            p.ignore_lease = true;
            if self.rng.random_bool(0.8) {
                p.lease = 0;
            }
        }
        if self.rng.random_bool(0.02) {
            p.key = Bytes::new();
        }
        p
    }

    pub fn delete(&mut self) -> DeleteRangeRequest {
        let key = self.key();
        let range_end = self.range_end(&key);
        DeleteRangeRequest {
            key,
            range_end,
            prev_kv: self.rng.random_bool(0.5),
        }
    }

    pub fn range(&mut self, rev: i64, compact_rev: i64) -> RangeRequest {
        let key = self.key();
        let range_end = self.range_end(&key);
        let mut r = RangeRequest {
            key,
            range_end,
            ..Default::default()
        };
        if self.rng.random_bool(0.3) {
            r.revision = self.revision_near(rev, compact_rev);
        }
        if self.rng.random_bool(0.3) {
            r.limit = self.rng.random_range(1..4);
        }
        if self.rng.random_bool(0.3) {
            r.sort_target = self.rng.random_range(0..5);
            r.sort_order = self.rng.random_range(0..3);
            // etcd-client turns KEY+ASCEND into NONE; generate what it sends.
            if r.sort_target == SortTarget::Key as i32 && r.sort_order == SortOrder::Ascend as i32 {
                r.sort_order = SortOrder::None as i32;
            }
        }
        r.keys_only = self.rng.random_bool(0.1);
        r.count_only = self.rng.random_bool(0.1);
        if self.rng.random_bool(0.15) {
            let lo = self.rng.random_range(0..=rev.max(1));
            match self.rng.random_range(0..4) {
                0 => r.min_mod_revision = lo,
                1 => r.max_mod_revision = lo,
                2 => r.min_create_revision = lo,
                _ => r.max_create_revision = lo,
            }
        }
        if self.rng.random_bool(0.01) {
            r.key = Bytes::new();
        }
        r
    }

    /// A txn one op over etcd's default limit.
    fn too_many_ops(&mut self) -> TxnRequest {
        let get = |k: usize| RequestOp {
            request: Some(request_op::Request::RequestRange(RangeRequest {
                key: Bytes::from(format!("k{k}")),
                ..Default::default()
            })),
        };
        TxnRequest {
            success: (0..=MAX_TXN_OPS).map(get).collect(),
            ..Default::default()
        }
    }

    fn compare(&mut self) -> Compare {
        let key = self.key();
        let range_end = if self.rng.random_bool(0.2) {
            self.range_end(&key)
        } else {
            Bytes::new()
        };
        let target = self.rng.random_range(0..5);
        let n = self.rng.random_range(0..6);
        let target_union = Some(match CompareTarget::try_from(target).expect("0..5") {
            CompareTarget::Version => TargetUnion::Version(n % 3),
            CompareTarget::Create => TargetUnion::CreateRevision(n),
            CompareTarget::Mod => TargetUnion::ModRevision(n * 2),
            CompareTarget::Value => TargetUnion::Value(self.value()),
            CompareTarget::Lease => TargetUnion::Lease(if n < 3 { 0 } else { self.lease_id() }),
        });
        Compare {
            result: self.rng.random_range(0..4),
            target,
            key,
            range_end,
            target_union,
        }
    }

    pub fn txn(&mut self, depth: u32, rev: i64, compact_rev: i64) -> TxnRequest {
        let compare = (0..self.rng.random_range(0..3))
            .map(|_| self.compare())
            .collect();
        let success = self.txn_ops(depth, rev, compact_rev);
        let failure = self.txn_ops(depth, rev, compact_rev);
        TxnRequest {
            compare,
            success,
            failure,
        }
    }

    fn txn_ops(&mut self, depth: u32, rev: i64, compact_rev: i64) -> Vec<RequestOp> {
        (0..self.rng.random_range(0..4))
            .map(|_| {
                let request = match self.rng.random_range(0..10) {
                    0..3 => request_op::Request::RequestPut(self.put()),
                    3..6 => request_op::Request::RequestRange(self.range(rev, compact_rev)),
                    6..8 => {
                        // No from-key delete in txns: etcd 3.4's duplicate-key rule misses it,
                        // and a later ignore_value put of a deleted key then crashes etcd.
                        let mut d = self.delete();
                        if d.range_end[..] == b"\0"[..] {
                            d.range_end = Bytes::new();
                        }
                        request_op::Request::RequestDeleteRange(d)
                    }
                    _ if depth > 0 => {
                        request_op::Request::RequestTxn(self.txn(depth - 1, rev, compact_rev))
                    }
                    _ => request_op::Request::RequestPut(self.put()),
                };
                RequestOp {
                    request: Some(request),
                }
            })
            .collect()
    }
}

/// The smallest key after every key with this prefix (what clients send for `--prefix`).
pub fn prefix_end(key: &[u8]) -> Bytes {
    let mut end = key.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Bytes::from(end);
        }
    }
    Bytes::from_static(b"\0")
}

fn err(e: MvccError) -> (i32, String) {
    (e.grpc_code() as i32, e.to_string())
}

/// Applies `op` to `store` as ketch's server does: API checks, then the store. The range's
/// header is filled with the store revision, as the server fills it.
pub fn apply_to_store(store: &mut Store, op: &Op, events: &mut Vec<Event>) -> Outcome {
    let hdr = |rev| {
        Some(ResponseHeader {
            revision: rev,
            ..Default::default()
        })
    };
    match op {
        Op::Range(r) => {
            validate::check_range(r).map_err(err)?;
            let mut resp = store.range(r).map_err(err)?;
            resp.header = hdr(store.revision());
            Ok(Resp::Range(resp))
        }
        Op::Put(r) => {
            validate::check_put(r).map_err(err)?;
            store.put(r, events).map(Resp::Put).map_err(err)
        }
        Op::Delete(r) => {
            validate::check_delete_range(r).map_err(err)?;
            store.delete_range(r, events).map(Resp::Delete).map_err(err)
        }
        Op::Txn(r) => {
            validate::check_txn(r, MAX_TXN_OPS).map_err(err)?;
            store.txn(r, events).map(Resp::Txn).map_err(err)
        }
        Op::Compact(r) => store.compact(r).map(Resp::Compact).map_err(err),
        Op::LeaseGrant(id) => {
            store.grant_lease(*id).map_err(err)?;
            let ttl = LEASE_TTL_S;
            Ok(Resp::LeaseGrant(LeaseGrantResponse {
                header: hdr(store.revision()),
                id: *id,
                ttl,
                error: String::new(),
            }))
        }
        Op::LeaseRevoke(id) => store
            .revoke_lease(*id, events)
            .map(Resp::LeaseRevoke)
            .map_err(err),
    }
}

/// A put of `k` inside a txn.
pub fn put_op(k: &str) -> RequestOp {
    let p = PutRequest {
        key: Bytes::copy_from_slice(k.as_bytes()),
        ..Default::default()
    };
    RequestOp {
        request: Some(request_op::Request::RequestPut(p)),
    }
}

/// A delete of `[k, end)` inside a txn (`end` empty: the key alone; "\0": from `k` on).
pub fn del_op(k: &str, end: &str, prev_kv: bool) -> RequestOp {
    let d = DeleteRangeRequest {
        key: Bytes::copy_from_slice(k.as_bytes()),
        range_end: Bytes::copy_from_slice(end.as_bytes()),
        prev_kv,
    };
    RequestOp {
        request: Some(request_op::Request::RequestDeleteRange(d)),
    }
}

/// A txn without compares nested inside a txn.
pub fn nested(success: Vec<RequestOp>, failure: Vec<RequestOp>) -> RequestOp {
    let t = TxnRequest {
        compare: vec![],
        success,
        failure,
    };
    RequestOp {
        request: Some(request_op::Request::RequestTxn(t)),
    }
}
