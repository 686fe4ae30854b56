//! Differential test against real etcd 3.4: the same seeded random sequence of KV operations
//! (put, range with every option, delete, nested txns, compaction, lease grant/revoke, and
//! invalid requests) goes to a real etcd through `etcd-client` and to `Store`; every response
//! and every error (gRPC code and message) must be equal, and so must HashKV every few steps. Seed: `MVCC_DIFF_SEED`; length:
//! `MVCC_DIFF_OPS` (default 400).

mod common;

use common::etcd::{EtcdServer, apply_to_etcd};
use common::{Gen, apply_to_store, seed_from_env};
use std::collections::BTreeMap;

use common::{Op, Outcome, Resp, del_op, nested, put_op};
use ketch_mvcc::Store;
use ketch_proto::TxnRequest;

/// What kind of outcome a step had, to show (and check) what the run covered.
fn category(o: &Outcome) -> String {
    match o {
        Err((_, msg)) => format!("error: {msg}"),
        Ok(Resp::Range(r)) if r.more => "range with kvs, more".into(),
        Ok(Resp::Range(r)) if !r.kvs.is_empty() => "range with kvs".into(),
        Ok(Resp::Range(_)) => "range empty".into(),
        Ok(Resp::Put(p)) => format!("put, prev_kv {}", p.prev_kv.is_some()),
        Ok(Resp::Delete(d)) => format!("delete, {} deleted", d.deleted.min(2)),
        Ok(Resp::Txn(t)) if t.succeeded => "txn succeeded".into(),
        Ok(Resp::Txn(_)) => "txn failed".into(),
        Ok(Resp::Compact(_)) => "compact".into(),
        Ok(Resp::LeaseGrant(_)) => "lease grant".into(),
        Ok(Resp::LeaseRevoke(_)) => "lease revoke".into(),
    }
}

/// How often HashKV is compared. Only while some key is live: with none, etcd 3.4 hashes
/// whatever its background compaction has not yet deleted (see `Store::hash_kv`).
const HASH_EVERY_STEPS: usize = 10;

#[test]
fn random_operations_answer_as_real_etcd_does() {
    let seed = seed_from_env("MVCC_DIFF_SEED");
    let ops: usize = std::env::var("MVCC_DIFF_OPS").map_or(400, |s| s.parse().expect("count"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(async {
        let (_etcd, mut client) = EtcdServer::start().await;
        let mut store = Store::new();
        let mut ops_gen = Gen::new(seed);
        let mut events = Vec::new();
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        let mut hashes_compared = 0;
        for step in 0..ops {
            let op = ops_gen.op(store.revision(), store.compact_revision());
            let want = apply_to_etcd(&mut client, &op).await;
            let got = apply_to_store(&mut store, &op, &mut events);
            assert_eq!(
                got, want,
                "step {step} (seed {seed}): store (left) differs from etcd (right) on {op:#?}"
            );
            *seen.entry(category(&got)).or_default() += 1;
            if step % HASH_EVERY_STEPS == 0 && store.key_count() > 0 {
                let etcd = client.hash_kv(0).await.expect("etcd HashKV");
                assert_eq!(
                    store.hash_kv(0).unwrap(),
                    (etcd.hash(), etcd.compact_version()),
                    "step {step} (seed {seed}): HashKV (hash, compact revision) differs"
                );
                hashes_compared += 1;
            }
        }
        eprintln!("outcomes: {seen:#?}, HashKV compared {hashes_compared} times");
        assert!(hashes_compared > 0, "no HashKV compared");
        for needed in [
            "txn succeeded",
            "txn failed",
            "range with kvs",
            "put",
            "error",
        ] {
            assert!(
                seen.keys().any(|k| k.starts_with(needed)),
                "no `{needed}` outcome"
            );
        }
    });
}

/// The duplicate-key quirks `tests/validation.rs` asserts, sent to etcd too.
#[test]
fn duplicate_key_quirks_answer_as_real_etcd_does() {
    let cases = vec![
        vec![del_op("a", "\0", true), put_op("b")],
        vec![del_op("a", "c", true), put_op("b")],
        vec![nested(vec![put_op("a")], vec![put_op("a")])],
        vec![put_op("a"), nested(vec![put_op("a")], vec![])],
        vec![
            nested(vec![put_op("a")], vec![]),
            nested(vec![del_op("a", "", true)], vec![]),
        ],
        vec![
            nested(vec![del_op("a", "", true)], vec![]),
            nested(vec![put_op("a")], vec![]),
        ],
        vec![nested(vec![del_op("a", "", true)], vec![]), put_op("a")],
    ];
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(async {
        let (_etcd, mut client) = EtcdServer::start().await;
        let mut store = Store::new();
        for (i, success) in cases.into_iter().enumerate() {
            let op = Op::Txn(TxnRequest {
                success,
                ..Default::default()
            });
            let want = apply_to_etcd(&mut client, &op).await;
            let got = apply_to_store(&mut store, &op, &mut Vec::new());
            assert_eq!(got, want, "case {i}: {op:?}");
        }
    });
}
