//! The linearizability checker rejects known-bad KV histories (stale read, lost write, read of a
//! failed or never-written value, read before write, revision disorder), accepts valid ones
//! (including unknown outcomes applied or not, and random concurrent histories generated from a
//! sequential simulation; seed in CHECKER_SEED), shrinks failures, and never passes on timeout.

use std::collections::BTreeMap;
use std::time::Duration;

use ketch_conformance::checker::linearizability::{
    CasAction, CheckResult, Compare, History, Limits, OpInput, OpOutput, OpResult, Operation,
    check_history,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn op(client: u32, call: u64, ret: u64, key: &str, input: OpInput, output: OpOutput) -> Operation {
    let return_ns = (output != OpOutput::Unknown).then_some(ret);
    Operation {
        client,
        call_ns: call,
        return_ns,
        key: key.to_owned(),
        input,
        output,
    }
}

fn put(client: u32, call: u64, ret: u64, value: &str) -> Operation {
    let input = OpInput::Put {
        value: value.to_owned(),
    };
    op(
        client,
        call,
        ret,
        "k",
        input,
        OpOutput::Ok(OpResult::Put { revision: None }),
    )
}

fn put_with(client: u32, call: u64, ret: u64, value: &str, output: OpOutput) -> Operation {
    op(
        client,
        call,
        ret,
        "k",
        OpInput::Put {
            value: value.to_owned(),
        },
        output,
    )
}

fn get(client: u32, call: u64, ret: u64, value: Option<&str>) -> Operation {
    let output = OpOutput::Ok(OpResult::Get {
        value: value.map(str::to_owned),
        mod_revision: None,
        header_revision: None,
    });
    op(client, call, ret, "k", OpInput::Get, output)
}

fn delete(client: u32, call: u64, ret: u64) -> Operation {
    op(
        client,
        call,
        ret,
        "k",
        OpInput::Delete,
        OpOutput::Ok(OpResult::Delete {
            deleted: None,
            revision: None,
        }),
    )
}

fn cas(
    client: u32,
    call: u64,
    ret: u64,
    compare: Compare,
    value: &str,
    succeeded: bool,
) -> Operation {
    let input = OpInput::CompareAndSwap {
        compare,
        action: CasAction::Put {
            value: value.to_owned(),
        },
    };
    op(
        client,
        call,
        ret,
        "k",
        input,
        OpOutput::Ok(OpResult::CompareAndSwap {
            succeeded,
            revision: None,
        }),
    )
}

fn check(ops: Vec<Operation>) -> CheckResult {
    check_history(&History::new(ops), Limits::default())
}

fn assert_fails(ops: Vec<Operation>) -> Vec<Operation> {
    match check(ops) {
        CheckResult::NotLinearizable {
            minimal,
            explanation,
            key,
        } => {
            println!(
                "{}",
                CheckResult::NotLinearizable {
                    key,
                    minimal: minimal.clone(),
                    explanation
                }
            );
            minimal
        }
        other => panic!("expected NotLinearizable, got {other}"),
    }
}

#[test]
fn sequential_put_get_delete_is_linearizable() {
    let ops = vec![
        put(1, 0, 10, "a"),
        get(2, 20, 30, Some("a")),
        delete(1, 40, 50),
        get(2, 60, 70, None),
    ];
    assert_eq!(check(ops), CheckResult::Linearizable);
}

#[test]
fn stale_read_is_flagged_and_shrunk() {
    let ops = vec![
        put(1, 0, 10, "a"),
        put(1, 20, 30, "b"),
        get(3, 5, 15, Some("a")),
        get(2, 40, 50, Some("a")),
        get(3, 60, 70, Some("b")),
    ];
    let minimal = assert_fails(ops);
    assert!(
        minimal.contains(&get(2, 40, 50, Some("a"))),
        "the stale read is in the minimal history"
    );
    assert!(
        minimal.contains(&put(1, 20, 30, "b")),
        "the overwriting put is in the minimal history"
    );
    assert!(
        minimal.len() <= 3,
        "unrelated reads are shrunk away: {minimal:?}"
    );
}

#[test]
fn lost_write_is_flagged() {
    // An acknowledged put that a later read does not see, with nothing deleting it.
    assert_fails(vec![put(1, 0, 10, "a"), get(2, 20, 30, None)]);
    // ...or that a later read sees overwritten by an older value.
    assert_fails(vec![
        put(1, 0, 10, "a"),
        put(2, 20, 30, "b"),
        get(1, 40, 50, Some("b")),
        get(2, 60, 70, Some("a")),
    ]);
}

#[test]
fn read_of_failed_or_never_written_value_is_flagged() {
    assert_fails(vec![
        put_with(1, 0, 10, "a", OpOutput::Failed),
        get(2, 20, 30, Some("a")),
    ]);
    // Even while the failed put is in flight: failed means it was never applied.
    assert_fails(vec![
        put_with(1, 0, 100, "a", OpOutput::Failed),
        get(2, 20, 30, Some("a")),
    ]);
    let minimal = assert_fails(vec![put(1, 0, 10, "a"), get(2, 20, 30, Some("zzz"))]);
    assert_eq!(
        minimal,
        vec![get(2, 20, 30, Some("zzz"))],
        "shrinks to the phantom read alone"
    );
}

#[test]
fn read_before_write_is_flagged() {
    assert_fails(vec![get(1, 0, 10, Some("a")), put(2, 20, 30, "a")]);
}

#[test]
fn concurrent_read_may_see_either_value() {
    let before = vec![
        put(1, 0, 100, "a"),
        get(2, 10, 20, None),
        get(3, 30, 40, Some("a")),
    ];
    assert_eq!(check(before), CheckResult::Linearizable);
    // Once a read saw the new value, a later read may not see the old one.
    assert_fails(vec![
        put(1, 0, 100, "a"),
        get(2, 10, 20, Some("a")),
        get(3, 30, 40, None),
    ]);
}

#[test]
fn unknown_writes_may_or_may_not_apply() {
    let unknown = put_with(1, 0, 0, "a", OpOutput::Unknown);
    assert_eq!(
        check(vec![unknown.clone(), get(2, 50, 60, Some("a"))]),
        CheckResult::Linearizable,
        "applied"
    );
    assert_eq!(
        check(vec![unknown.clone(), get(2, 50, 60, None)]),
        CheckResult::Linearizable,
        "not applied"
    );
    let late = vec![
        unknown.clone(),
        get(2, 50, 60, None),
        get(2, 1_000, 1_010, Some("a")),
    ];
    assert_eq!(
        check(late),
        CheckResult::Linearizable,
        "applied long after the call"
    );
    // Applied at most once: after it was seen, it cannot vanish without a delete.
    assert_fails(vec![
        unknown.clone(),
        get(2, 50, 60, Some("a")),
        get(2, 70, 80, None),
    ]);
    // It cannot apply before it was called.
    let early = put_with(1, 100, 0, "a", OpOutput::Unknown);
    assert_fails(vec![early, get(2, 10, 20, Some("a"))]);
}

#[test]
fn compare_and_swap_semantics() {
    let create = |c, t, v, ok| cas(c, t, t + 5, Compare::ModRevision(0), v, ok);
    assert_eq!(
        check(vec![
            create(1, 0, "a", true),
            create(2, 10, "b", false),
            get(1, 20, 25, Some("a"))
        ]),
        CheckResult::Linearizable
    );
    assert_fails(vec![create(1, 0, "a", true), create(2, 10, "b", true)]);
    let swap = cas(2, 20, 25, Compare::Value("a".into()), "b", true);
    assert_eq!(
        check(vec![
            put(1, 0, 10, "a"),
            swap.clone(),
            get(1, 30, 35, Some("b"))
        ]),
        CheckResult::Linearizable
    );
    assert_fails(vec![put(1, 0, 10, "x"), swap, get(1, 30, 35, Some("b"))]);
}

fn rev_put(client: u32, call: u64, ret: u64, key: &str, value: &str, rev: i64) -> Operation {
    let input = OpInput::Put {
        value: value.to_owned(),
    };
    op(
        client,
        call,
        ret,
        key,
        input,
        OpOutput::Ok(OpResult::Put {
            revision: Some(rev),
        }),
    )
}

fn rev_get(
    client: u32,
    call: u64,
    ret: u64,
    key: &str,
    value: &str,
    mod_rev: i64,
    header: i64,
) -> Operation {
    let output = OpOutput::Ok(OpResult::Get {
        value: Some(value.to_owned()),
        mod_revision: Some(mod_rev),
        header_revision: Some(header),
    });
    op(client, call, ret, key, OpInput::Get, output)
}

#[test]
fn revisions_must_match_the_linearization() {
    let good = vec![
        rev_put(1, 0, 10, "k", "a", 2),
        rev_put(1, 20, 30, "j", "b", 3),
        rev_get(2, 40, 50, "k", "a", 2, 3),
    ];
    assert_eq!(check(good), CheckResult::Linearizable);
    // Right value, wrong mod revision.
    assert_fails(vec![
        rev_put(1, 0, 10, "k", "a", 2),
        rev_get(2, 40, 50, "k", "a", 5, 5),
    ]);
    // A later put with a smaller revision on the same key.
    assert_fails(vec![
        rev_put(1, 0, 10, "k", "a", 5),
        rev_put(1, 20, 30, "k", "b", 4),
    ]);
    // Across keys: k's put returned before j's was called, but got a larger revision.
    let minimal = assert_fails(vec![
        rev_put(1, 0, 10, "k", "a", 5),
        rev_put(2, 20, 30, "j", "b", 4),
    ]);
    assert_eq!(minimal.len(), 2);
    // A read served at a revision older than a write that completed before it (stale read by revision).
    assert_fails(vec![
        rev_put(1, 0, 10, "j", "b", 7),
        rev_get(2, 20, 30, "k", "a", 2, 6),
        rev_put(1, 0, 1, "k", "a", 2),
    ]);
}

fn header_get(client: u32, call: u64, ret: u64, value: Option<&str>, header: i64) -> Operation {
    let output = OpOutput::Ok(OpResult::Get {
        value: value.map(str::to_owned),
        mod_revision: None,
        header_revision: Some(header),
    });
    op(client, call, ret, "k", OpInput::Get, output)
}

#[test]
fn a_read_at_a_revision_sees_every_write_below_it() {
    // The read overlaps the put, so real time allows either order; its header revision does not:
    // served at revision 7, it must see the put committed at revision 5.
    let put5 = rev_put(1, 0, 100, "k", "a", 5);
    assert_fails(vec![put5.clone(), header_get(2, 10, 20, None, 7)]);
    assert_eq!(
        check(vec![put5.clone(), header_get(2, 10, 20, None, 4)]),
        CheckResult::Linearizable
    );
    assert_eq!(
        check(vec![put5, header_get(2, 10, 20, Some("a"), 5)]),
        CheckResult::Linearizable
    );
    // Two concurrent reads: the one that saw the newer value cannot be at the older revision.
    let ops = vec![
        rev_put(1, 0, 10, "k", "a", 3),
        rev_put(1, 20, 100, "k", "b", 6),
        header_get(2, 30, 40, Some("b"), 5),
    ];
    assert_fails(ops);
}

#[test]
fn timeout_is_never_a_pass() {
    // Twelve concurrent puts and a read of a value nobody wrote: the search must try every order.
    let mut ops: Vec<Operation> = (0..12)
        .map(|i| put(i, 0, 1_000, &format!("v{i}")))
        .collect();
    ops.push(get(99, 2_000, 2_010, Some("v-none")));
    let history = History::new(ops);
    let tight = Limits {
        search_timeout: Duration::ZERO,
        ..Limits::default()
    };
    assert!(matches!(
        check_history(&history, tight),
        CheckResult::Timeout { .. }
    ));
    assert!(matches!(
        check_history(&history, Limits::default()),
        CheckResult::NotLinearizable { .. }
    ));
}

#[test]
fn history_and_verdict_round_trip_through_json() {
    let history = History::new(vec![put(1, 0, 10, "a"), get(2, 20, 30, Some("b"))]);
    let json = serde_json::to_string(&history).expect("serialize history");
    assert_eq!(
        serde_json::from_str::<History>(&json).expect("parse history"),
        history
    );
    let verdict = check_history(&history, Limits::default());
    let json = serde_json::to_string(&verdict).expect("serialize verdict");
    assert_eq!(
        serde_json::from_str::<CheckResult>(&json).expect("parse verdict"),
        verdict
    );
}

/// A sequential etcd-like store: the simulation whose runs are linearizable by construction.
#[derive(Default)]
struct SimStore {
    revision: i64,
    keys: BTreeMap<String, (String, i64)>,
}

impl SimStore {
    /// Apply `input` and return its result (the store revision moves on every real change).
    fn apply(&mut self, key: &str, input: &OpInput) -> OpResult {
        match input {
            OpInput::Put { value } => OpResult::Put {
                revision: Some(self.write(key, Some(value))),
            },
            OpInput::Get => {
                let kv = self.keys.get(key);
                OpResult::Get {
                    value: kv.map(|(v, _)| v.clone()),
                    mod_revision: kv.map(|(_, r)| *r),
                    header_revision: Some(self.revision),
                }
            }
            OpInput::Delete => {
                let existed = self.keys.contains_key(key);
                let revision = if existed {
                    self.write(key, None)
                } else {
                    self.revision
                };
                OpResult::Delete {
                    deleted: Some(i64::from(existed)),
                    revision: Some(revision),
                }
            }
            OpInput::CompareAndSwap { compare, action } => {
                let current = self.keys.get(key);
                let succeeded = match compare {
                    Compare::ModRevision(m) => current.map_or(0, |(_, r)| *r) == *m,
                    Compare::Value(v) => current.is_some_and(|(cv, _)| cv == v),
                };
                if succeeded {
                    let revision = match action {
                        CasAction::Put { value } => self.write(key, Some(value)),
                        CasAction::Delete if current.is_some() => self.write(key, None),
                        CasAction::Delete => self.revision,
                    };
                    return OpResult::CompareAndSwap {
                        succeeded,
                        revision: Some(revision),
                    };
                }
                OpResult::CompareAndSwap {
                    succeeded,
                    revision: Some(self.revision),
                }
            }
        }
    }

    fn write(&mut self, key: &str, value: Option<&str>) -> i64 {
        self.revision += 1;
        match value {
            Some(v) => self
                .keys
                .insert(key.to_owned(), (v.to_owned(), self.revision)),
            None => self.keys.remove(key),
        };
        self.revision
    }

    fn mod_revision(&self, key: &str) -> i64 {
        self.keys.get(key).map_or(0, |(_, r)| *r)
    }
}

fn random_input(rng: &mut StdRng, store: &SimStore, key: &str, serial: usize) -> OpInput {
    let value = format!("v{serial}");
    match rng.random_range(0..10) {
        0..=3 => OpInput::Get,
        4..=6 => OpInput::Put { value },
        7 => OpInput::Delete,
        _ => {
            // Mostly the current revision (succeeds), sometimes a stale one (fails).
            let current = store.mod_revision(key);
            let rev = if rng.random_bool(0.7) {
                current
            } else {
                rng.random_range(0..=store.revision)
            };
            let action = if rng.random_bool(0.8) {
                CasAction::Put { value }
            } else {
                CasAction::Delete
            };
            OpInput::CompareAndSwap {
                compare: Compare::ModRevision(rev),
                action,
            }
        }
    }
}

/// Operations linearize at increasing points; each interval spreads around its point, so
/// intervals overlap heavily. A few outcomes become unknown (applied or not) or failed.
fn random_history(rng: &mut StdRng, ops_count: usize, keys: usize) -> History {
    let mut store = SimStore::default();
    let mut ops = Vec::with_capacity(ops_count);
    for serial in 0..ops_count {
        let point = serial as u64 * 100;
        let call_ns = point.saturating_sub(rng.random_range(0..400));
        let return_ns = point + rng.random_range(0..400);
        let key = format!("key{}", rng.random_range(0..keys));
        let input = random_input(rng, &store, &key, serial);
        let fate = rng.random_range(0..100);
        let output = if fate < 3 && input != OpInput::Get {
            OpOutput::Failed
        } else if fate < 8 && input != OpInput::Get {
            if rng.random_bool(0.5) {
                store.apply(&key, &input);
            }
            OpOutput::Unknown
        } else {
            OpOutput::Ok(store.apply(&key, &input))
        };
        let return_ns = (output != OpOutput::Unknown).then_some(return_ns);
        ops.push(Operation {
            client: (serial % 8) as u32,
            call_ns,
            return_ns,
            key,
            input,
            output,
        });
    }
    History::new(ops)
}

fn seed() -> u64 {
    let seed = std::env::var("CHECKER_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("seed {seed} (rerun with CHECKER_SEED={seed})");
    seed
}

#[test]
fn random_concurrent_histories_are_linearizable() {
    let mut rng = StdRng::seed_from_u64(seed());
    for round in 0..30 {
        let history = random_history(&mut rng, 400, 3);
        let verdict = check_history(&history, Limits::default());
        assert_eq!(
            verdict,
            CheckResult::Linearizable,
            "round {round}: {verdict}"
        );
    }
}

#[test]
fn injected_stale_read_in_a_random_history_is_found_and_shrunk() {
    let mut rng = StdRng::seed_from_u64(seed());
    let mut history = random_history(&mut rng, 400, 3);
    let end = history
        .operations
        .iter()
        .filter_map(|o| o.return_ns)
        .max()
        .unwrap_or(0)
        + 1_000;
    let old = history
        .operations
        .iter()
        .find_map(|o| match (&o.input, &o.output, o.key.as_str()) {
            (OpInput::Put { value }, OpOutput::Ok(_), "key0") => Some(value.clone()),
            _ => None,
        })
        .unwrap_or_else(|| "never".to_owned());
    let fresh = Operation {
        client: 100,
        call_ns: end,
        return_ns: Some(end + 10),
        key: "key0".into(),
        input: OpInput::Put {
            value: "fresh".into(),
        },
        output: OpOutput::Ok(OpResult::Put { revision: None }),
    };
    let stale = Operation {
        client: 101,
        call_ns: end + 100,
        return_ns: Some(end + 110),
        key: "key0".into(),
        input: OpInput::Get,
        output: OpOutput::Ok(OpResult::Get {
            value: Some(old.clone()),
            mod_revision: None,
            header_revision: None,
        }),
    };
    history.operations.extend([fresh.clone(), stale.clone()]);
    match check_history(&history, Limits::default()) {
        CheckResult::NotLinearizable {
            key,
            minimal,
            explanation,
        } => {
            println!("{explanation}");
            println!("shrunk to {} ops", minimal.len());
            assert_eq!(key, "key0");
            // Any write that completed before the stale read proves it stale; it need not be `fresh`.
            assert!(minimal.contains(&stale), "{minimal:?}");
            assert!(
                minimal
                    .iter()
                    .any(|o| o.input == OpInput::Put { value: old.clone() }),
                "{minimal:?}"
            );
            assert!(
                minimal.len() <= 4,
                "shrunk to a handful of operations, got {}",
                minimal.len()
            );
        }
        other => panic!("expected NotLinearizable, got {other}"),
    }
}
