//! Watch guarantees checked on recorded watch streams.
//!
//! etcd promises (see its "KV API guarantees" / watch docs) that a watch stream is
//! - ordered: events arrive by revision; a later response never carries an older revision;
//! - unique: an event (revision, key) is delivered once;
//! - atomic: the events of one revision arrive in one response (unless `fragment` is set);
//! - reliable: no event in the watched range is skipped between the start revision and the
//!   last revision the stream delivered;
//! - resumable: a watch restarted at last revision + 1 continues exactly where the first stopped;
//! - prev_kv correct: `prev_kv` is the key's previous version (absent for a creation).
//!
//! With a [`GroundTruth`] (every committed change, e.g. from a full watch from revision 1) each
//! stream is compared against it. Without one, streams are checked on their own and against
//! each other (same event seen differently, or seen by one stream and skipped by another).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventType {
    Put,
    Delete,
}

/// etcd's `mvccpb.KeyValue` without lease.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
}

/// One event. For a delete, `kv` carries the key and the delete's `mod_revision`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchEvent {
    pub kind: EventType,
    pub kv: KeyValue,
    pub prev_kv: Option<KeyValue>,
}

/// One response of a watch stream as received.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchResponse {
    pub header_revision: i64,
    pub events: Vec<WatchEvent>,
    /// The events of the last revision continue in the next response.
    #[serde(default)]
    pub fragment: bool,
}

/// One watch as created and everything it received, in arrival order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchRecord {
    /// A name for messages, unique among the records checked together.
    pub name: String,
    pub key: String,
    /// etcd semantics: `None` watches `key` only, `Some("\0")` every key >= `key`,
    /// otherwise the range [key, range_end).
    pub range_end: Option<String>,
    /// 0 means "from now": the first response's header revision + 1.
    pub start_revision: i64,
    pub prev_kv: bool,
    pub responses: Vec<WatchResponse>,
    /// The name of an earlier record this watch was restarted from (at its last revision + 1).
    #[serde(default)]
    pub resumes: Option<String>,
}

/// Every committed change, in revision order, complete from `first_revision` on.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroundTruth {
    pub first_revision: i64,
    pub events: Vec<WatchEvent>,
}

/// A broken watch guarantee, with what was expected and what was seen.
#[derive(Clone, Debug, PartialEq, Eq, Error, Serialize, Deserialize)]
pub enum WatchViolation {
    #[error(
        "ordered: watch {watch:?} response #{response} delivers revision {revision} after revision {after}"
    )]
    Reorder {
        watch: String,
        response: usize,
        revision: i64,
        after: i64,
    },
    #[error("unique: watch {watch:?} delivers ({revision}, {key:?}) more than once")]
    Duplicate {
        watch: String,
        revision: i64,
        key: String,
    },
    #[error(
        "atomic: watch {watch:?} splits revision {revision} over responses #{first_response} and #{second_response}"
    )]
    SplitRevision {
        watch: String,
        revision: i64,
        first_response: usize,
        second_response: usize,
    },
    #[error("reliable: watch {watch:?} skipped ({revision}, {key:?}) which {source_name} has")]
    Gap {
        watch: String,
        revision: i64,
        key: String,
        source_name: String,
    },
    #[error("watch {watch:?} delivers ({revision}, {key:?}) which was never committed")]
    Phantom {
        watch: String,
        revision: i64,
        key: String,
    },
    #[error(
        "watch {watch:?} delivers ({revision}, {key:?}) as {got}, but the write history has {expected}"
    )]
    Mismatch {
        watch: String,
        revision: i64,
        key: String,
        expected: String,
        got: String,
    },
    #[error("watch {watch:?} delivers ({revision}, {key:?}) outside its key range")]
    OutOfRange {
        watch: String,
        revision: i64,
        key: String,
    },
    #[error("watch {watch:?} delivers ({revision}, {key:?}) before its start revision {start}")]
    BeforeStart {
        watch: String,
        revision: i64,
        key: String,
        start: i64,
    },
    #[error(
        "prev_kv: watch {watch:?} event ({revision}, {key:?}) has prev_kv {got}, expected {expected}"
    )]
    WrongPrevKv {
        watch: String,
        revision: i64,
        key: String,
        expected: String,
        got: String,
    },
    #[error(
        "resumable: watch {watch:?} resumes {resumed:?} at revision {start}, expected {expected_start}"
    )]
    BadResume {
        watch: String,
        resumed: String,
        start: i64,
        expected_start: i64,
    },
    #[error("watch {watch:?} says it resumes {resumed:?}, which is not among the records")]
    UnknownResumed { watch: String, resumed: String },
    #[error(
        "watches {first_watch:?} and {second_watch:?} disagree on ({revision}, {key:?}): {first} vs {second}"
    )]
    Disagreement {
        revision: i64,
        key: String,
        first_watch: String,
        second_watch: String,
        first: String,
        second: String,
    },
}

impl fmt::Display for KeyValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{{{:?}={:?} create={} mod={} ver={}}}",
            self.key, self.value, self.create_revision, self.mod_revision, self.version
        )
    }
}

impl fmt::Display for WatchEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            EventType::Put => write!(f, "PUT {}", self.kv),
            EventType::Delete => write!(f, "DELETE {:?} at {}", self.kv.key, self.kv.mod_revision),
        }
    }
}

fn show_kv(kv: Option<&KeyValue>) -> String {
    kv.map_or_else(|| "<none>".to_owned(), ToString::to_string)
}

/// The exclusive end of the range of keys starting with `prefix` (etcd's `GetPrefixRangeEnd`).
pub fn prefix_range_end(prefix: &str) -> String {
    let mut bytes = prefix.as_bytes().to_vec();
    while let Some(last) = bytes.pop() {
        if last < 0x7f {
            bytes.push(last + 1);
            return String::from_utf8(bytes).expect("ASCII increment keeps UTF-8 valid");
        }
    }
    "\0".to_owned()
}

impl WatchRecord {
    pub fn contains_key(&self, key: &str) -> bool {
        match self.range_end.as_deref() {
            None | Some("") => key == self.key,
            Some("\0") => key >= self.key.as_str(),
            Some(end) => key >= self.key.as_str() && key < end,
        }
    }

    /// The first revision this watch must deliver, if known.
    pub fn effective_start(&self) -> Option<i64> {
        if self.start_revision > 0 {
            return Some(self.start_revision);
        }
        self.responses.first().map(|r| r.header_revision + 1)
    }

    /// The highest revision any delivered event carries.
    pub fn last_event_revision(&self) -> Option<i64> {
        self.events().map(|(_, e)| e.kv.mod_revision).max()
    }

    /// Events with the index of the response that carried them.
    fn events(&self) -> impl Iterator<Item = (usize, &WatchEvent)> {
        self.responses
            .iter()
            .enumerate()
            .flat_map(|(i, r)| r.events.iter().map(move |e| (i, e)))
    }

    /// Revisions this watch is accountable for: [start, last delivered].
    fn window(&self) -> Option<(i64, i64)> {
        Some((self.effective_start()?, self.last_event_revision()?))
    }
}

impl GroundTruth {
    pub fn new(first_revision: i64, mut events: Vec<WatchEvent>) -> Self {
        events.sort_by_key(|e| e.kv.mod_revision);
        Self {
            first_revision,
            events,
        }
    }

    /// Build from the responses of a watch on every key (`""` .. `"\0"`) from `first_revision`.
    pub fn from_responses(first_revision: i64, responses: &[WatchResponse]) -> Self {
        Self::new(
            first_revision,
            responses
                .iter()
                .flat_map(|r| r.events.iter().cloned())
                .collect(),
        )
    }
}

/// Lookups over the ground truth.
struct TruthIndex<'a> {
    truth: &'a GroundTruth,
    by_rev_key: HashMap<(i64, &'a str), &'a WatchEvent>,
    by_key: HashMap<&'a str, Vec<&'a WatchEvent>>,
}

impl<'a> TruthIndex<'a> {
    fn new(truth: &'a GroundTruth) -> Self {
        let mut by_rev_key = HashMap::new();
        let mut by_key: HashMap<&str, Vec<&WatchEvent>> = HashMap::new();
        for e in &truth.events {
            by_rev_key.insert((e.kv.mod_revision, e.kv.key.as_str()), e);
            by_key.entry(e.kv.key.as_str()).or_default().push(e);
        }
        Self {
            truth,
            by_rev_key,
            by_key,
        }
    }

    /// The key's version just before `rev`: `Some(None)` if absent, `None` if unknowable.
    fn previous(&self, key: &str, rev: i64) -> Option<Option<&'a KeyValue>> {
        let before = self
            .by_key
            .get(key)
            .and_then(|v| v.iter().rev().find(|e| e.kv.mod_revision < rev));
        match before {
            Some(e) if e.kind == EventType::Put => Some(Some(&e.kv)),
            Some(_) => Some(None),
            None if self.truth.first_revision <= 1 => Some(None),
            None => None,
        }
    }
}

/// Check every record; with `truth`, against it, otherwise against each other.
pub fn check_watch(truth: Option<&GroundTruth>, records: &[WatchRecord]) -> Vec<WatchViolation> {
    let mut out = Vec::new();
    let index = truth.map(TruthIndex::new);
    for w in records {
        out.extend(check_ordered(w));
        out.extend(check_unique(w));
        out.extend(check_split(w));
        out.extend(check_range(w));
        match &index {
            Some(index) => {
                out.extend(check_against_truth(w, index));
                out.extend(check_prev_kv_truth(w, index));
            }
            None => out.extend(check_prev_kv_stream(w)),
        }
        out.extend(check_resume(w, records));
    }
    if truth.is_none() {
        out.extend(check_agreement(records));
        out.extend(check_cross_gaps(records));
    }
    out
}

fn check_ordered(w: &WatchRecord) -> Vec<WatchViolation> {
    let mut out = Vec::new();
    let mut last: Option<i64> = None;
    let mut continues = false;
    for (i, resp) in w.responses.iter().enumerate() {
        for (j, e) in resp.events.iter().enumerate() {
            let rev = e.kv.mod_revision;
            // Within a response (or a fragment continuing the previous one) revisions may repeat.
            let may_repeat = j > 0 || continues;
            if let Some(prev) = last.filter(|&p| rev < p || (rev == p && !may_repeat)) {
                out.push(WatchViolation::Reorder {
                    watch: w.name.clone(),
                    response: i,
                    revision: rev,
                    after: prev,
                });
            }
            last = Some(last.map_or(rev, |p| p.max(rev)));
        }
        continues = resp.fragment;
    }
    out
}

fn check_unique(w: &WatchRecord) -> Vec<WatchViolation> {
    let mut seen = HashSet::new();
    w.events()
        .filter(|(_, e)| !seen.insert((e.kv.mod_revision, e.kv.key.as_str())))
        .map(|(_, e)| WatchViolation::Duplicate {
            watch: w.name.clone(),
            revision: e.kv.mod_revision,
            key: e.kv.key.clone(),
        })
        .collect()
}

/// A revision's events must sit in one response, except across a `fragment` continuation.
fn check_split(w: &WatchRecord) -> Vec<WatchViolation> {
    let mut first_seen: BTreeMap<i64, usize> = BTreeMap::new();
    let mut out = Vec::new();
    for (i, e) in w.events() {
        let rev = e.kv.mod_revision;
        let first = *first_seen.entry(rev).or_insert(i);
        let fragmented = (first..i).all(|k| w.responses[k].fragment);
        if first != i && !fragmented {
            let v = WatchViolation::SplitRevision {
                watch: w.name.clone(),
                revision: rev,
                first_response: first,
                second_response: i,
            };
            if !out.contains(&v) {
                out.push(v);
            }
        }
    }
    out
}

fn check_range(w: &WatchRecord) -> Vec<WatchViolation> {
    let start = w.effective_start();
    let mut out = Vec::new();
    for (_, e) in w.events() {
        let (revision, key) = (e.kv.mod_revision, e.kv.key.clone());
        if !w.contains_key(&e.kv.key) {
            out.push(WatchViolation::OutOfRange {
                watch: w.name.clone(),
                revision,
                key,
            });
        } else if let Some(start) = start.filter(|&s| revision < s) {
            out.push(WatchViolation::BeforeStart {
                watch: w.name.clone(),
                revision,
                key,
                start,
            });
        }
    }
    out
}

fn same_event(a: &WatchEvent, b: &WatchEvent) -> bool {
    match (a.kind, b.kind) {
        (EventType::Put, EventType::Put) => a.kv == b.kv,
        (EventType::Delete, EventType::Delete) => {
            a.kv.key == b.kv.key && a.kv.mod_revision == b.kv.mod_revision
        }
        _ => false,
    }
}

fn check_against_truth(w: &WatchRecord, index: &TruthIndex<'_>) -> Vec<WatchViolation> {
    let mut out = Vec::new();
    for (_, e) in w.events() {
        let (revision, key) = (e.kv.mod_revision, e.kv.key.clone());
        match index.by_rev_key.get(&(revision, e.kv.key.as_str())) {
            None if revision >= index.truth.first_revision => {
                out.push(WatchViolation::Phantom {
                    watch: w.name.clone(),
                    revision,
                    key,
                });
            }
            Some(t) if !same_event(t, e) => out.push(WatchViolation::Mismatch {
                watch: w.name.clone(),
                revision,
                key,
                expected: t.to_string(),
                got: e.to_string(),
            }),
            _ => {}
        }
    }
    let Some((start, last)) = w.window() else {
        return out;
    };
    let delivered: HashSet<(i64, &str)> = w
        .events()
        .map(|(_, e)| (e.kv.mod_revision, e.kv.key.as_str()))
        .collect();
    for t in &index.truth.events {
        let rev = t.kv.mod_revision;
        if rev >= start
            && rev <= last
            && w.contains_key(&t.kv.key)
            && !delivered.contains(&(rev, t.kv.key.as_str()))
        {
            out.push(WatchViolation::Gap {
                watch: w.name.clone(),
                revision: rev,
                key: t.kv.key.clone(),
                source_name: "the write history".to_owned(),
            });
        }
    }
    out
}

fn prev_kv_violation(
    w: &WatchRecord,
    e: &WatchEvent,
    expected: Option<&KeyValue>,
) -> Option<WatchViolation> {
    let got = e.prev_kv.as_ref();
    let wanted = if w.prev_kv { expected } else { None };
    (got != wanted).then(|| WatchViolation::WrongPrevKv {
        watch: w.name.clone(),
        revision: e.kv.mod_revision,
        key: e.kv.key.clone(),
        expected: if w.prev_kv {
            show_kv(wanted)
        } else {
            "<none> (prev_kv not requested)".to_owned()
        },
        got: show_kv(got),
    })
}

fn check_prev_kv_truth(w: &WatchRecord, index: &TruthIndex<'_>) -> Vec<WatchViolation> {
    w.events()
        .filter_map(|(_, e)| {
            let expected = index.previous(&e.kv.key, e.kv.mod_revision)?;
            prev_kv_violation(w, e, expected)
        })
        .collect()
}

/// Without a write history: prev_kv must match the key's previous event in the same stream.
fn check_prev_kv_stream(w: &WatchRecord) -> Vec<WatchViolation> {
    let mut last: HashMap<&str, &WatchEvent> = HashMap::new();
    let mut out = Vec::new();
    for (_, e) in w.events() {
        let expected = match last.get(e.kv.key.as_str()) {
            Some(prev) if prev.kind == EventType::Put => Some(Some(&prev.kv)),
            Some(_) => Some(None),
            None if !w.prev_kv => Some(None),
            None => None,
        };
        if let Some(v) = expected.and_then(|x| prev_kv_violation(w, e, x)) {
            out.push(v);
        }
        last.insert(e.kv.key.as_str(), e);
    }
    out
}

fn check_resume(w: &WatchRecord, records: &[WatchRecord]) -> Vec<WatchViolation> {
    let Some(resumed) = &w.resumes else {
        return Vec::new();
    };
    let Some(earlier) = records.iter().find(|r| &r.name == resumed) else {
        return vec![WatchViolation::UnknownResumed {
            watch: w.name.clone(),
            resumed: resumed.clone(),
        }];
    };
    let expected_start = match (earlier.last_event_revision(), earlier.effective_start()) {
        (Some(last), _) => last + 1,
        (None, Some(start)) => start,
        (None, None) => return Vec::new(),
    };
    let start = w.effective_start().unwrap_or(0);
    if start == expected_start {
        return Vec::new();
    }
    vec![WatchViolation::BadResume {
        watch: w.name.clone(),
        resumed: resumed.clone(),
        start,
        expected_start,
    }]
}

fn check_agreement(records: &[WatchRecord]) -> Vec<WatchViolation> {
    let mut seen: HashMap<(i64, &str), (&str, &WatchEvent)> = HashMap::new();
    let mut out = Vec::new();
    for w in records {
        for (_, e) in w.events() {
            let slot = (e.kv.mod_revision, e.kv.key.as_str());
            match seen.get(&slot) {
                Some((first_watch, first)) if !same_event(first, e) => {
                    out.push(WatchViolation::Disagreement {
                        revision: slot.0,
                        key: e.kv.key.clone(),
                        first_watch: (*first_watch).to_owned(),
                        second_watch: w.name.clone(),
                        first: first.to_string(),
                        second: e.to_string(),
                    })
                }
                Some(_) => {}
                None => {
                    seen.insert(slot, (&w.name, e));
                }
            }
        }
    }
    out
}

/// An event one stream delivered must be delivered by every other stream accountable for it.
fn check_cross_gaps(records: &[WatchRecord]) -> Vec<WatchViolation> {
    let mut out = Vec::new();
    for y in records {
        let Some((start, last)) = y.window() else {
            continue;
        };
        let delivered: HashSet<(i64, &str)> = y
            .events()
            .map(|(_, e)| (e.kv.mod_revision, e.kv.key.as_str()))
            .collect();
        let mut reported = HashSet::new();
        for x in records.iter().filter(|x| x.name != y.name) {
            for (_, e) in x.events() {
                let slot = (e.kv.mod_revision, e.kv.key.as_str());
                let accountable = slot.0 >= start && slot.0 <= last && y.contains_key(slot.1);
                if accountable && !delivered.contains(&slot) && reported.insert(slot) {
                    out.push(WatchViolation::Gap {
                        watch: y.name.clone(),
                        revision: slot.0,
                        key: e.kv.key.clone(),
                        source_name: format!("watch {:?}", x.name),
                    });
                }
            }
        }
    }
    out
}
