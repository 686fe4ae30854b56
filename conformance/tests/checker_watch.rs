//! The watch checker accepts valid streams (with and without a write history, split into
//! responses at random, resumed, fragmented) and flags gaps, reorders, duplicates, split
//! revisions, wrong prev_kv, altered events, out-of-range events and bad resumes. The write
//! history is a seeded random simulation (seed printed; override with CHECKER_SEED).

use std::collections::BTreeMap;

use ketch_conformance::checker::watch::{
    EventType, GroundTruth, KeyValue, WatchEvent, WatchRecord, WatchResponse, WatchViolation,
    check_watch, prefix_range_end,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn seed() -> u64 {
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let seed = *SEED.get_or_init(|| {
        std::env::var("CHECKER_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(rand::random)
    });
    println!("seed {seed} (rerun with CHECKER_SEED={seed})");
    seed
}

/// Random committed history: each revision puts or deletes 1..=2 keys among k0..k3 (as a txn).
fn simulate(rng: &mut StdRng, revisions: i64) -> GroundTruth {
    let mut keys: BTreeMap<String, KeyValue> = BTreeMap::new();
    let mut events = Vec::new();
    let mut rev = 1;
    while rev <= revisions {
        rev += 1;
        let first = rng.random_range(0..4);
        let touched = if rng.random_bool(0.3) {
            vec![first, (first + 1) % 4]
        } else {
            vec![first]
        };
        for k in touched {
            let key = format!("k{k}");
            let prev = keys.get(&key).cloned();
            if prev.is_some() && rng.random_bool(0.25) {
                keys.remove(&key);
                let kv = KeyValue {
                    key,
                    value: String::new(),
                    create_revision: 0,
                    mod_revision: rev,
                    version: 0,
                };
                events.push(WatchEvent {
                    kind: EventType::Delete,
                    kv,
                    prev_kv: prev,
                });
                continue;
            }
            let kv = KeyValue {
                key: key.clone(),
                value: format!("v{rev}"),
                create_revision: prev.as_ref().map_or(rev, |p| p.create_revision),
                mod_revision: rev,
                version: prev.as_ref().map_or(1, |p| p.version + 1),
            };
            keys.insert(key, kv.clone());
            events.push(WatchEvent {
                kind: EventType::Put,
                kv,
                prev_kv: prev,
            });
        }
    }
    GroundTruth::new(1, events)
}

/// What a correct server sends for a watch on [key, range_end) from `start`: whole revisions
/// grouped into responses of random size.
fn watch_stream(rng: &mut StdRng, truth: &GroundTruth, record: WatchRecord) -> WatchRecord {
    let mut by_rev: BTreeMap<i64, Vec<WatchEvent>> = BTreeMap::new();
    for e in &truth.events {
        if e.kv.mod_revision >= record.start_revision && record.contains_key(&e.kv.key) {
            let mut e = e.clone();
            if !record.prev_kv {
                e.prev_kv = None;
            }
            by_rev.entry(e.kv.mod_revision).or_default().push(e);
        }
    }
    let mut responses = Vec::new();
    let mut current: Vec<WatchEvent> = Vec::new();
    for (rev, events) in by_rev {
        current.extend(events);
        if rng.random_bool(0.5) {
            responses.push(WatchResponse {
                header_revision: rev,
                events: std::mem::take(&mut current),
                fragment: false,
            });
        }
    }
    if let Some(last) = current.last().map(|e| e.kv.mod_revision) {
        responses.push(WatchResponse {
            header_revision: last,
            events: current,
            fragment: false,
        });
    }
    WatchRecord {
        responses,
        ..record
    }
}

fn record(
    name: &str,
    key: &str,
    range_end: Option<&str>,
    start: i64,
    prev_kv: bool,
) -> WatchRecord {
    WatchRecord {
        name: name.to_owned(),
        key: key.to_owned(),
        range_end: range_end.map(str::to_owned),
        start_revision: start,
        prev_kv,
        responses: Vec::new(),
        resumes: None,
    }
}

fn setup() -> (StdRng, GroundTruth, WatchRecord) {
    let mut rng = StdRng::seed_from_u64(seed());
    let truth = simulate(&mut rng, 60);
    let all = watch_stream(
        &mut rng,
        &truth,
        record("all", "k", Some(&prefix_range_end("k")), 1, true),
    );
    assert!(all.responses.len() >= 4, "enough responses to mutate");
    (rng, truth, all)
}

fn assert_clean(truth: Option<&GroundTruth>, records: &[WatchRecord]) {
    let violations = check_watch(truth, records);
    assert!(
        violations.is_empty(),
        "unexpected violations: {violations:#?}"
    );
}

fn assert_flags(
    truth: Option<&GroundTruth>,
    records: &[WatchRecord],
    pred: impl Fn(&WatchViolation) -> bool,
) {
    let violations = check_watch(truth, records);
    for v in &violations {
        println!("{v}");
    }
    assert!(
        violations.iter().any(pred),
        "expected violation not found in {violations:#?}"
    );
}

#[test]
fn valid_streams_pass() {
    let (mut rng, truth, all) = setup();
    let single = watch_stream(&mut rng, &truth, record("k2", "k2", None, 10, true));
    let range = watch_stream(
        &mut rng,
        &truth,
        record("k1..k3", "k1", Some("k3"), 5, false),
    );
    let records = [all, single, range];
    assert_clean(Some(&truth), &records);
    assert_clean(None, &records);
}

#[test]
fn gap_is_flagged() {
    let (_, truth, mut all) = setup();
    let middle = all.responses.len() / 2;
    let removed = all.responses.remove(middle);
    let (rev, key) = (
        removed.events[0].kv.mod_revision,
        removed.events[0].kv.key.clone(),
    );
    assert_flags(
        Some(&truth),
        &[all.clone()],
        |v| matches!(v, WatchViolation::Gap { revision, key: k, .. } if *revision == rev && *k == key),
    );
    // Without the history, a complete stream on the same keys exposes the gap.
    let (mut rng2, _, _) = setup();
    let full = watch_stream(
        &mut rng2,
        &truth,
        record("full", "k", Some(&prefix_range_end("k")), 1, true),
    );
    assert_flags(
        None,
        &[all, full],
        |v| matches!(v, WatchViolation::Gap { watch, revision, .. } if watch == "all" && *revision == rev),
    );
}

#[test]
fn reorder_is_flagged() {
    let (_, truth, mut all) = setup();
    all.responses.swap(1, 2);
    assert_flags(Some(&truth), &[all.clone()], |v| {
        matches!(v, WatchViolation::Reorder { .. })
    });
    assert_flags(None, &[all], |v| {
        matches!(v, WatchViolation::Reorder { .. })
    });
}

#[test]
fn reorder_within_a_response_is_flagged() {
    let (_, truth, mut all) = setup();
    let mut events: Vec<WatchEvent> = all.responses.drain(..).flat_map(|r| r.events).collect();
    let last = events.len() - 1;
    events.swap(0, last);
    all.responses = vec![WatchResponse {
        header_revision: 100,
        events,
        fragment: false,
    }];
    assert_flags(Some(&truth), &[all], |v| {
        matches!(v, WatchViolation::Reorder { .. })
    });
}

#[test]
fn duplicate_is_flagged() {
    let (_, truth, mut all) = setup();
    let again = all.responses[2].clone();
    all.responses.insert(3, again);
    assert_flags(Some(&truth), &[all.clone()], |v| {
        matches!(v, WatchViolation::Duplicate { .. })
    });
    assert_flags(None, &[all], |v| {
        matches!(v, WatchViolation::Duplicate { .. })
    });
}

#[test]
fn split_revision_is_flagged_unless_fragmented() {
    let (_, truth, mut all) = setup();
    let (i, j) = all
        .responses
        .iter()
        .enumerate()
        .find_map(|(i, r)| {
            r.events
                .windows(2)
                .position(|w| w[0].kv.mod_revision == w[1].kv.mod_revision)
                .map(|j| (i, j))
        })
        .expect("the simulation makes multi-key revisions");
    let tail = all.responses[i].events.split_off(j + 1);
    let header = all.responses[i].header_revision;
    all.responses.insert(
        i + 1,
        WatchResponse {
            header_revision: header,
            events: tail,
            fragment: false,
        },
    );
    assert_flags(Some(&truth), &[all.clone()], |v| {
        matches!(v, WatchViolation::SplitRevision { .. })
    });
    // The same split announced as a fragment is allowed.
    all.responses[i].fragment = true;
    assert_clean(Some(&truth), &[all]);
}

#[test]
fn wrong_prev_kv_is_flagged() {
    let (_, truth, mut all) = setup();
    let event = all
        .responses
        .iter_mut()
        .flat_map(|r| r.events.iter_mut())
        .find(|e| e.prev_kv.is_some())
        .expect("some event updates an existing key");
    event
        .prev_kv
        .as_mut()
        .expect("checked")
        .value
        .push_str("-stale");
    assert_flags(Some(&truth), &[all.clone()], |v| {
        matches!(v, WatchViolation::WrongPrevKv { .. })
    });
    assert_flags(None, &[all], |v| {
        matches!(v, WatchViolation::WrongPrevKv { .. })
    });
}

#[test]
fn missing_or_unrequested_prev_kv_is_flagged() {
    let (mut rng, truth, _) = setup();
    let mut plain = watch_stream(
        &mut rng,
        &truth,
        record("plain", "k", Some(&prefix_range_end("k")), 1, false),
    );
    assert_clean(Some(&truth), &[plain.clone()]);
    let with_prev = truth
        .events
        .iter()
        .find(|e| e.prev_kv.is_some())
        .expect("an update")
        .clone();
    let target = plain
        .responses
        .iter_mut()
        .flat_map(|r| r.events.iter_mut())
        .find(|e| e.kv == with_prev.kv)
        .expect("present");
    target.prev_kv = with_prev.prev_kv;
    assert_flags(Some(&truth), &[plain], |v| {
        matches!(v, WatchViolation::WrongPrevKv { .. })
    });
}

#[test]
fn altered_phantom_and_out_of_range_events_are_flagged() {
    let (_, truth, all) = setup();
    let mut altered = all.clone();
    altered
        .responses
        .iter_mut()
        .flat_map(|r| r.events.iter_mut())
        .find(|e| e.kind == EventType::Put)
        .expect("a put")
        .kv
        .value = "tampered".into();
    assert_flags(Some(&truth), &[altered], |v| {
        matches!(v, WatchViolation::Mismatch { .. })
    });
    let mut phantom = all.clone();
    let mut extra = phantom.responses[1].events[0].clone();
    extra.kv.key = "k9".into();
    phantom.responses[1].events.push(extra);
    assert_flags(Some(&truth), &[phantom], |v| {
        matches!(v, WatchViolation::Phantom { .. })
    });
    let mut narrow = all;
    narrow.key = "k0".into();
    narrow.range_end = None;
    assert_flags(Some(&truth), &[narrow], |v| {
        matches!(v, WatchViolation::OutOfRange { .. })
    });
}

#[test]
fn resume_continues_exactly() {
    let (mut rng, truth, all) = setup();
    // Cut the stream after a few responses and resume at last revision + 1.
    let mut first = all.clone();
    first.name = "first".into();
    first.responses.truncate(3);
    let next = first.last_event_revision().expect("events") + 1;
    let mut second = watch_stream(
        &mut rng,
        &truth,
        record("second", "k", Some(&prefix_range_end("k")), next, true),
    );
    second.resumes = Some("first".into());
    assert_clean(Some(&truth), &[first.clone(), second.clone()]);
    // Resuming one revision late skips it.
    let mut late = watch_stream(
        &mut rng,
        &truth,
        record("late", "k", Some(&prefix_range_end("k")), next + 1, true),
    );
    late.resumes = Some("first".into());
    assert_flags(Some(&truth), &[first.clone(), late.clone()], |v| {
        matches!(v, WatchViolation::BadResume { .. })
    });
    late.resumes = Some("nobody".into());
    assert_flags(Some(&truth), &[first, late], |v| {
        matches!(v, WatchViolation::UnknownResumed { .. })
    });
}

#[test]
fn streams_that_disagree_are_flagged() {
    let (mut rng, truth, all) = setup();
    let mut other = watch_stream(
        &mut rng,
        &truth,
        record("other", "k", Some(&prefix_range_end("k")), 1, true),
    );
    let event = other.responses.iter_mut().flat_map(|r| r.events.iter_mut());
    event
        .filter(|e| e.kind == EventType::Put)
        .last()
        .expect("a put")
        .kv
        .value = "different".into();
    assert_flags(None, &[all, other], |v| {
        matches!(v, WatchViolation::Disagreement { .. })
    });
}
