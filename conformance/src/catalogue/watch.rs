//! Watch scenarios: key/prefix/range, start revisions, prev_kv, filters, progress, cancel,
//! many watches on one stream, atomicity, ordering and no gaps (through `checker::watch`),
//! and resuming after a reconnect.

use std::time::Duration;

use etcd_client::{
    Compare, CompareOp, DeleteOptions, EventType, Txn, TxnOp, WatchFilterType, WatchOptions,
    WatchResponse, WatchStream,
};
use rand::Rng;

use crate::checker::watch as wcheck;
use crate::drivers::grpc;
use crate::scenario::{Area, Ctx, Res, Scenario, ScenarioError, Topology, ok, sc};
use crate::{check, check_eq};

/// How long to wait for the next watch response before giving up.
const WATCH_WAIT: Duration = Duration::from_secs(5);
/// How long a stream must stay silent to count as "no event delivered".
const QUIET_WAIT: Duration = Duration::from_millis(500);

macro_rules! entries {
    ($($name:literal, $f:ident, $fast:expr, $about:literal;)*) => {
        vec![$(sc($name, Area::Watch, Topology::Single, $about, $fast, |c| Box::pin($f(c)))),*]
    };
}

pub fn scenarios() -> Vec<Scenario> {
    entries![
        "watch/key", watch_key, true, "put and delete on one key, created response first";
        "watch/prefix", watch_prefix, false, "a prefix watch sees only keys under the prefix";
        "watch/range", watch_range, false, "a range watch is half open";
        "watch/from-key", watch_from_key, false, "a from-key watch sees every key >= key";
        "watch/start-rev-past", start_rev_past, true, "a watch from an old revision replays history";
        "watch/start-rev-now", start_rev_now, false, "start revision 0 means only new events";
        "watch/start-rev-future", start_rev_future, false, "a future start revision waits for it";
        "watch/prev-kv", prev_kv, false, "prev_kv on put and delete, none on create";
        "watch/filter-noput", filter_noput, false, "the NOPUT filter drops puts";
        "watch/filter-nodelete", filter_nodelete, false, "the NODELETE filter drops deletes";
        "watch/progress-request", progress_request, false, "a progress request answers with the current revision";
        "watch/cancel", cancel, true, "cancel stops the watch with a canceled response";
        "watch/many-on-one-stream", many_on_one_stream, false, "20 watches on one stream, ids 0..19";
        "watch/txn-atomic", txn_atomic, true, "a txn's events arrive in one response";
        "watch/delete-range-events", delete_range_events, false, "a range delete gives one event per key";
        "watch/ordered-no-gaps", ordered_no_gaps, false, "300 random writes: ordered, unique, no gaps (checker)";
        "watch/resume", resume, false, "a new watch from last+1 continues without gaps or duplicates";
        "watch/created-header", created_header, false, "the created response carries the current revision";
        "watch/ctl-watch-rev", ctl_watch_rev, false, "etcdctl watch --rev prints past events";
    ]
}

/// Reads responses (recording each) until `events` events arrived, or a canceled response when
/// `until_canceled`; fails after WATCH_WAIT without progress.
pub async fn collect(
    c: &mut Ctx,
    stream: &mut WatchStream,
    events: usize,
    until_canceled: bool,
) -> Res<Vec<WatchResponse>> {
    let mut out = Vec::new();
    let mut seen = 0;
    loop {
        let msg = tokio::time::timeout(WATCH_WAIT, stream.message()).await;
        let resp = match msg {
            Ok(Ok(Some(r))) => r,
            Ok(Ok(None)) => return Err(ScenarioError::Check("watch stream ended".into())),
            Ok(Err(e)) => return Err(ScenarioError::Check(format!("watch error: {e}"))),
            Err(_) => {
                return Err(ScenarioError::Check(format!(
                    "watch: {seen} of {events} events after {}s",
                    WATCH_WAIT.as_secs()
                )));
            }
        };
        c.record("watch response", grpc::watch_json(&resp));
        seen += resp.events().len();
        let canceled = resp.canceled();
        out.push(resp);
        let done = if until_canceled {
            canceled
        } else {
            seen >= events
        };
        if done {
            return Ok(out);
        }
    }
}

/// Checks nothing arrives for QUIET_WAIT.
async fn expect_quiet(c: &mut Ctx, stream: &mut WatchStream) -> Res {
    if let Ok(Ok(Some(r))) = tokio::time::timeout(QUIET_WAIT, stream.message()).await {
        c.record("unexpected watch response", grpc::watch_json(&r));
        return Err(ScenarioError::Check(
            "watch delivered an unexpected response".into(),
        ));
    }
    Ok(())
}

fn event_summary(resps: &[WatchResponse]) -> Vec<(String, String, i64)> {
    resps
        .iter()
        .flat_map(|r| r.events())
        .map(|e| {
            let kind = if e.event_type() == EventType::Put {
                "PUT"
            } else {
                "DELETE"
            };
            let kv = e.kv().expect("event kv");
            (
                kind.to_string(),
                grpc::bytes_text(kv.key()),
                kv.mod_revision(),
            )
        })
        .collect()
}

async fn open(
    c: &mut Ctx,
    key: &str,
    opts: WatchOptions,
) -> Res<(etcd_client::Client, WatchStream)> {
    let mut cl = c.client().await?;
    let mut stream = ok(cl.watch(key, Some(opts)).await, "watch")?;
    let created = collect(c, &mut stream, 0, false).await?;
    check!(
        created[0].created(),
        "first response must be the created one"
    );
    Ok((cl, stream))
}

async fn watch_key(c: &mut Ctx) -> Res {
    let (mut cl, mut stream) = open(c, "k", WatchOptions::new()).await?;
    ok(cl.put("k", "v", None).await, "put")?;
    ok(cl.put("other", "v", None).await, "put")?;
    ok(cl.delete("k", None).await, "del")?;
    let resps = collect(c, &mut stream, 2, false).await?;
    let want = vec![
        ("PUT".into(), "k".into(), c.r(1)),
        ("DELETE".into(), "k".into(), c.r(3)),
    ];
    check_eq!(event_summary(&resps), want, "events");
    Ok(())
}

async fn watch_prefix(c: &mut Ctx) -> Res {
    let (mut cl, mut stream) = open(c, "p/", WatchOptions::new().with_prefix()).await?;
    for k in ["p", "p/a", "q", "p/b/c"] {
        ok(cl.put(k, "v", None).await, "put")?;
    }
    let resps = collect(c, &mut stream, 2, false).await?;
    let keys: Vec<String> = event_summary(&resps).into_iter().map(|e| e.1).collect();
    check_eq!(keys, vec!["p/a".to_string(), "p/b/c".to_string()], "keys");
    expect_quiet(c, &mut stream).await
}

async fn watch_range(c: &mut Ctx) -> Res {
    let (mut cl, mut stream) = open(c, "b", WatchOptions::new().with_range("d")).await?;
    for k in ["a", "b", "c", "d"] {
        ok(cl.put(k, "v", None).await, "put")?;
    }
    let resps = collect(c, &mut stream, 2, false).await?;
    let keys: Vec<String> = event_summary(&resps).into_iter().map(|e| e.1).collect();
    check_eq!(keys, vec!["b".to_string(), "c".to_string()], "keys");
    expect_quiet(c, &mut stream).await
}

async fn watch_from_key(c: &mut Ctx) -> Res {
    let (mut cl, mut stream) = open(c, "b", WatchOptions::new().with_from_key()).await?;
    for k in ["a", "b", "zzz"] {
        ok(cl.put(k, "v", None).await, "put")?;
    }
    let resps = collect(c, &mut stream, 2, false).await?;
    let keys: Vec<String> = event_summary(&resps).into_iter().map(|e| e.1).collect();
    check_eq!(keys, vec!["b".to_string(), "zzz".to_string()], "keys");
    Ok(())
}

async fn start_rev_past(c: &mut Ctx) -> Res {
    let mut cl = c.client().await?;
    for v in ["1", "2", "3"] {
        ok(cl.put("k", v, None).await, "put")?;
    }
    let mut stream = ok(
        cl.watch("k", Some(WatchOptions::new().with_start_revision(c.r(2))))
            .await,
        "watch",
    )?;
    let resps = collect(c, &mut stream, 2, false).await?;
    let revs: Vec<i64> = event_summary(&resps).into_iter().map(|e| e.2).collect();
    check_eq!(revs, vec![c.r(2), c.r(3)], "replayed revisions");
    Ok(())
}

async fn start_rev_now(c: &mut Ctx) -> Res {
    let mut cl = c.client().await?;
    ok(cl.put("k", "old", None).await, "put")?;
    let (mut cl, mut stream) = open(c, "k", WatchOptions::new().with_start_revision(0)).await?;
    expect_quiet(c, &mut stream).await?;
    ok(cl.put("k", "new", None).await, "put")?;
    let resps = collect(c, &mut stream, 1, false).await?;
    check_eq!(event_summary(&resps)[0].2, c.r(2), "first event revision");
    Ok(())
}

async fn start_rev_future(c: &mut Ctx) -> Res {
    let (mut cl, mut stream) =
        open(c, "k", WatchOptions::new().with_start_revision(c.r(3))).await?;
    ok(cl.put("k", "1", None).await, "put")?;
    ok(cl.put("k", "2", None).await, "put")?;
    expect_quiet(c, &mut stream).await?;
    ok(cl.put("k", "3", None).await, "put")?;
    let resps = collect(c, &mut stream, 1, false).await?;
    check_eq!(event_summary(&resps)[0].2, c.r(3), "first event revision");
    Ok(())
}

async fn prev_kv(c: &mut Ctx) -> Res {
    let (mut cl, mut stream) = open(c, "k", WatchOptions::new().with_prev_key()).await?;
    ok(cl.put("k", "1", None).await, "put")?;
    ok(cl.put("k", "2", None).await, "put")?;
    ok(cl.delete("k", None).await, "del")?;
    let resps = collect(c, &mut stream, 3, false).await?;
    let prevs: Vec<Option<Vec<u8>>> = resps
        .iter()
        .flat_map(|r| r.events())
        .map(|e| e.prev_kv().map(|kv| kv.value().to_vec()))
        .collect();
    check_eq!(
        prevs,
        vec![None, Some(b"1".to_vec()), Some(b"2".to_vec())],
        "prev values"
    );
    Ok(())
}

async fn filter_noput(c: &mut Ctx) -> Res {
    let opts = WatchOptions::new().with_filters([WatchFilterType::NoPut]);
    let (mut cl, mut stream) = open(c, "k", opts).await?;
    ok(cl.put("k", "1", None).await, "put")?;
    ok(cl.delete("k", None).await, "del")?;
    let resps = collect(c, &mut stream, 1, false).await?;
    check_eq!(
        event_summary(&resps),
        vec![("DELETE".into(), "k".into(), c.r(2))],
        "events"
    );
    Ok(())
}

async fn filter_nodelete(c: &mut Ctx) -> Res {
    let opts = WatchOptions::new().with_filters([WatchFilterType::NoDelete]);
    let (mut cl, mut stream) = open(c, "k", opts).await?;
    ok(cl.put("k", "1", None).await, "put")?;
    ok(cl.delete("k", None).await, "del")?;
    ok(cl.put("k", "2", None).await, "put")?;
    let resps = collect(c, &mut stream, 2, false).await?;
    let revs: Vec<i64> = event_summary(&resps).into_iter().map(|e| e.2).collect();
    check_eq!(revs, vec![c.r(1), c.r(3)], "put revisions only");
    Ok(())
}

async fn progress_request(c: &mut Ctx) -> Res {
    let (mut cl, mut stream) = open(c, "k", WatchOptions::new()).await?;
    ok(cl.put("other", "1", None).await, "put")?;
    ok(cl.put("other", "2", None).await, "put")?;
    ok(stream.request_progress().await, "progress request")?;
    let resps = collect(c, &mut stream, 0, false).await?;
    let r = &resps[0];
    check!(r.events().is_empty(), "progress response has no events");
    check_eq!(
        r.header().map(|h| h.revision()),
        Some(c.r(2)),
        "progress revision"
    );
    Ok(())
}

async fn cancel(c: &mut Ctx) -> Res {
    let (mut cl, mut stream) = open(c, "k", WatchOptions::new()).await?;
    let id = c
        .obs
        .steps
        .last()
        .and_then(|s| s.data["watch_id"].as_i64())
        .unwrap_or(0);
    ok(stream.cancel(id).await, "cancel")?;
    let resps = collect(c, &mut stream, 0, true).await?;
    check_eq!(
        resps.last().map(|r| r.watch_id()),
        Some(id),
        "canceled watch id"
    );
    ok(cl.put("k", "v", None).await, "put")?;
    expect_quiet(c, &mut stream).await
}

async fn many_on_one_stream(c: &mut Ctx) -> Res {
    const WATCHES: i64 = 20;
    let mut cl = c.client().await?;
    let mut stream = ok(cl.watch("w00", None).await, "watch")?;
    for i in 1..WATCHES {
        ok(stream.watch(format!("w{i:02}"), None).await, "watch")?;
    }
    let created = collect_n_responses(c, &mut stream, WATCHES as usize).await?;
    let ids: Vec<i64> = created.iter().map(WatchResponse::watch_id).collect();
    check_eq!(ids, (0..WATCHES).collect::<Vec<_>>(), "watch ids");
    for i in (0..WATCHES).rev() {
        ok(cl.put(format!("w{i:02}"), "v", None).await, "put")?;
    }
    let resps = collect(c, &mut stream, WATCHES as usize, false).await?;
    for r in &resps {
        let key = grpc::bytes_text(r.events()[0].kv().expect("kv").key());
        check_eq!(
            key,
            format!("w{:02}", r.watch_id()),
            "event routed to its watch"
        );
    }
    Ok(())
}

async fn collect_n_responses(
    c: &mut Ctx,
    stream: &mut WatchStream,
    n: usize,
) -> Res<Vec<WatchResponse>> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let mut got = collect(c, stream, 0, false).await?;
        out.append(&mut got);
    }
    Ok(out)
}

async fn txn_atomic(c: &mut Ctx) -> Res {
    let (mut cl, mut stream) = open(c, "t/", WatchOptions::new().with_prefix()).await?;
    let t = Txn::new()
        .when([Compare::version("t/a", CompareOp::Equal, 0)])
        .and_then([
            TxnOp::put("t/a", "1", None),
            TxnOp::put("t/b", "1", None),
            TxnOp::put("t/c", "1", None),
        ]);
    ok(cl.txn(t).await, "txn")?;
    let resps = collect(c, &mut stream, 3, false).await?;
    check_eq!(resps.len(), 1, "responses carrying the txn");
    check_eq!(
        event_summary(&resps)
            .iter()
            .map(|e| e.2)
            .collect::<Vec<_>>(),
        vec![c.r(1); 3],
        "revisions"
    );
    Ok(())
}

async fn delete_range_events(c: &mut Ctx) -> Res {
    let (mut cl, mut stream) = open(c, "d/", WatchOptions::new().with_prefix()).await?;
    for k in ["d/a", "d/b"] {
        ok(cl.put(k, "1", None).await, "put")?;
    }
    ok(
        cl.delete("d/", Some(DeleteOptions::new().with_prefix()))
            .await,
        "del",
    )?;
    let resps = collect(c, &mut stream, 4, false).await?;
    let want = vec![
        ("PUT".into(), "d/a".into(), c.r(1)),
        ("PUT".into(), "d/b".into(), c.r(2)),
        ("DELETE".into(), "d/a".into(), c.r(3)),
        ("DELETE".into(), "d/b".into(), c.r(3)),
    ];
    check_eq!(event_summary(&resps), want, "events");
    Ok(())
}

/// Converts etcd-client responses into the checker's records.
pub fn to_record(
    name: &str,
    key: &str,
    range_end: Option<&str>,
    start: i64,
    prev_kv: bool,
    resps: &[WatchResponse],
) -> wcheck::WatchRecord {
    let responses = resps
        .iter()
        .filter(|r| !r.created() || !r.events().is_empty())
        .map(|r| wcheck::WatchResponse {
            header_revision: r.header().map(|h| h.revision()).unwrap_or(0),
            events: r.events().iter().map(to_event).collect(),
            fragment: false,
        })
        .collect();
    wcheck::WatchRecord {
        name: name.to_string(),
        key: key.to_string(),
        range_end: range_end.map(str::to_string),
        start_revision: start,
        prev_kv,
        responses,
        resumes: None,
    }
}

fn to_kv(kv: &etcd_client::KeyValue) -> wcheck::KeyValue {
    wcheck::KeyValue {
        key: String::from_utf8_lossy(kv.key()).into_owned(),
        value: String::from_utf8_lossy(kv.value()).into_owned(),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
        version: kv.version(),
    }
}

fn to_event(e: &etcd_client::Event) -> wcheck::WatchEvent {
    let kind = if e.event_type() == EventType::Put {
        wcheck::EventType::Put
    } else {
        wcheck::EventType::Delete
    };
    wcheck::WatchEvent {
        kind,
        kv: e.kv().map(to_kv).expect("event kv"),
        prev_kv: e.prev_kv().map(to_kv),
    }
}

/// Writes `n` random puts/deletes over 10 keys under `o/`; returns how many revisions they made.
async fn random_writes(c: &mut Ctx, cl: &mut etcd_client::Client, n: usize) -> Res<i64> {
    let mut revs = 0;
    for _ in 0..n {
        let key = format!("o/{}", c.rng.random_range(0..10));
        if c.rng.random_bool(0.2) {
            let r = ok(cl.delete(key, None).await, "del")?;
            revs += i64::from(r.deleted() > 0);
        } else {
            let v = c.rng.random_range(0..1000).to_string();
            ok(cl.put(key, v, None).await, "put")?;
            revs += 1;
        }
    }
    Ok(revs)
}

async fn ordered_no_gaps(c: &mut Ctx) -> Res {
    let opts = WatchOptions::new().with_prefix().with_prev_key();
    let (mut cl, mut stream) = open(c, "o/", opts).await?;
    let revs = random_writes(c, &mut cl, 300).await?;
    let resps = collect(c, &mut stream, usize::try_from(revs).unwrap_or(0), false).await?;
    let record = to_record("o", "o/", Some("o0"), c.r(1), true, &resps);
    // A full watch from the first revision is the ground truth for the same stream.
    let mut full = ok(
        cl.watch(
            "o/",
            Some(
                WatchOptions::new()
                    .with_prefix()
                    .with_prev_key()
                    .with_start_revision(c.r(1)),
            ),
        )
        .await,
        "watch",
    )?;
    let truth_resps = collect(c, &mut full, usize::try_from(revs).unwrap_or(0), false).await?;
    let truth_record = to_record("truth", "o/", Some("o0"), c.r(1), true, &truth_resps);
    let truth_events = truth_record
        .responses
        .iter()
        .flat_map(|r| r.events.clone())
        .collect();
    let truth = wcheck::GroundTruth::new(c.r(1), truth_events);
    let violations = wcheck::check_watch(Some(&truth), &[record]);
    c.record(
        "checker",
        serde_json::json!(
            violations
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        ),
    );
    check!(violations.is_empty(), "watch violations: {violations:?}");
    Ok(())
}

async fn resume(c: &mut Ctx) -> Res {
    let opts = WatchOptions::new().with_prefix();
    let (mut cl, mut stream) = open(c, "o/", opts).await?;
    let first = random_writes(c, &mut cl, 50).await?;
    let resps1 = collect(c, &mut stream, usize::try_from(first).unwrap_or(0), false).await?;
    drop(stream);
    let last = resps1
        .iter()
        .flat_map(|r| r.events())
        .filter_map(|e| e.kv())
        .map(|kv| kv.mod_revision())
        .max()
        .unwrap_or(c.r(0));
    let second = random_writes(c, &mut cl, 50).await?;
    let opts = WatchOptions::new()
        .with_prefix()
        .with_start_revision(last + 1);
    let mut stream2 = ok(cl.watch("o/", Some(opts)).await, "rewatch")?;
    let resps2 = collect(c, &mut stream2, usize::try_from(second).unwrap_or(0), false).await?;
    let r1 = to_record("first", "o/", Some("o0"), c.r(1), false, &resps1);
    let mut r2 = to_record("resumed", "o/", Some("o0"), last + 1, false, &resps2);
    r2.resumes = Some("first".into());
    let violations = wcheck::check_watch(None, &[r1, r2]);
    c.record(
        "checker",
        serde_json::json!(
            violations
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        ),
    );
    check!(violations.is_empty(), "watch violations: {violations:?}");
    let total: usize = resps1.iter().chain(&resps2).map(|r| r.events().len()).sum();
    check_eq!(
        i64::try_from(total).unwrap_or(0),
        first + second,
        "events across both watches"
    );
    Ok(())
}

async fn created_header(c: &mut Ctx) -> Res {
    let mut cl = c.client().await?;
    ok(cl.put("a", "1", None).await, "put")?;
    ok(cl.put("a", "2", None).await, "put")?;
    let mut stream = ok(cl.watch("k", None).await, "watch")?;
    let resps = collect(c, &mut stream, 0, false).await?;
    check!(resps[0].created(), "created");
    check_eq!(
        resps[0].header().map(|h| h.revision()),
        Some(c.r(2)),
        "created header revision"
    );
    Ok(())
}

async fn ctl_watch_rev(c: &mut Ctx) -> Res {
    c.ctl_ok("put k 1", "OK").await?;
    c.ctl_ok("del k", "1").await?;
    let rev = c.r(1);
    let endpoint = c.endpoints[0].clone();
    let args: Vec<String> = ["watch", "k", &format!("--rev={rev}")]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let out =
        crate::drivers::etcdctl::run_for(&c.etcdctl_bin, &endpoint, &args, Duration::from_secs(2))
            .await?;
    c.record(
        "etcdctl watch (2 s)",
        serde_json::json!({"stdout": out.stdout}),
    );
    check_eq!(
        out.stdout.as_str(),
        "PUT\nk\n1\nDELETE\nk\n\n",
        "watch output"
    );
    Ok(())
}
