//! One Watch stream: its watchers, and the task that serves them on the shard that accepted
//! the stream. The task reads the client's requests, the hub's broadcast of applied batches
//! (for synced watchers) and the MVCC history (for unsynced ones: created with a past start
//! revision, or lagging behind the broadcast ring), and writes responses to a bounded channel
//! that the gRPC layer drains. Only this task touches the stream's state.
//!
//! Invariant: a watcher has been sent every matching event below its next revision and none
//! at or above it; events go out in revision order, each revision whole (unless fragmenting).
//! A synced watcher's next revision is `max(next_rev, seen_rev + 1)`: dispatching a batch
//! advances the stream's `seen_rev` only, so its cost does not grow with the watcher count.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use futures_lite::StreamExt;
use ketch_proto::mvccpb::{Event, event::EventType};
use ketch_proto::watch_request::RequestUnion;
use ketch_proto::{WatchCreateRequest, WatchRequest, WatchResponse};
use prost::Message;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tonic::{Status, Streaming};

use super::{EventBatch, event_revision};
use crate::grpc::auth::Credentials;
use crate::node::Node;

/// Responses buffered per stream before the task waits for the client to read.
pub const OUTBOUND_CAPACITY: usize = 64;
/// Most events one catch-up read takes from history for one watcher (etcd sends at most
/// 1000 revisions per unsynced response).
const CATCHUP_EVENTS_MAX: usize = 1000;
/// Most unsynced watchers caught up per step, so one step holds the store's read lock briefly.
const CATCHUP_WATCHERS_MAX: usize = 64;
/// etcd's `clientv3.InvalidWatchID`.
const INVALID_WATCH_ID: i64 = -1;
const FILTER_NOPUT: i32 = 0;
const FILTER_NODELETE: i32 = 1;
const ERR_EMPTY_RANGE: &str = "mvcc: watcher range is empty";
const ERR_DUPLICATE_ID: &str = "mvcc: duplicate watch ID provided on the WatchStream";

pub type Outbound = flume::Sender<Result<WatchResponse, Status>>;

#[derive(Debug)]
struct Watcher {
    key: Vec<u8>,
    range_end: Vec<u8>,
    no_put: bool,
    no_delete: bool,
    prev_kv: bool,
    fragment: bool,
    progress_notify: bool,
    /// No event was sent since the last progress tick (etcd's `progress[id]`).
    progress_due: bool,
    next_rev: i64,
    synced: bool,
}

impl Watcher {
    /// etcd's conventions: empty range_end = one key, "\0" = every key from `key` on.
    fn matches(&self, k: &[u8]) -> bool {
        match self.range_end.as_slice() {
            [] => k == self.key.as_slice(),
            [0] => k >= self.key.as_slice(),
            end => k >= self.key.as_slice() && k < end,
        }
    }

    /// The event as this watcher must see it, or `None` if filtered out.
    fn view(&self, e: &Event) -> Option<Event> {
        let kv = e.kv.as_ref()?;
        if !self.matches(&kv.key) {
            return None;
        }
        let is_put = e.r#type == EventType::Put as i32;
        if (is_put && self.no_put) || (!is_put && self.no_delete) {
            return None;
        }
        let mut e = e.clone();
        if !self.prev_kv {
            e.prev_kv = None;
        }
        Some(e)
    }
}

/// Why the stream's task stops: the client went away.
struct Gone;

/// A stream's watchers, indexed so that an event reaches the watchers of its key without a
/// scan over every watcher of the stream: single-key watchers by key, range watchers apart.
#[derive(Debug, Default)]
struct WatcherSet {
    all: BTreeMap<i64, Watcher>,
    by_key: HashMap<Vec<u8>, BTreeSet<i64>>,
    ranged: BTreeSet<i64>,
    unsynced: BTreeSet<i64>,
}

impl WatcherSet {
    fn insert(&mut self, id: i64, w: Watcher) {
        if w.range_end.is_empty() {
            self.by_key.entry(w.key.clone()).or_default().insert(id);
        } else {
            self.ranged.insert(id);
        }
        if !w.synced {
            self.unsynced.insert(id);
        }
        let old = self.all.insert(id, w);
        assert!(old.is_none(), "watch ID {id} inserted twice");
    }

    fn remove(&mut self, id: i64) -> Option<Watcher> {
        let w = self.all.remove(&id)?;
        if let Some(ids) = self.by_key.get_mut(&w.key) {
            ids.remove(&id);
            if ids.is_empty() {
                self.by_key.remove(&w.key);
            }
        }
        self.ranged.remove(&id);
        self.unsynced.remove(&id);
        Some(w)
    }

    fn contains(&self, id: i64) -> bool {
        self.all.contains_key(&id)
    }

    /// Marks `id` synced from `next_rev` on.
    fn synced_from(&mut self, id: i64, next_rev: i64) {
        let w = self.all.get_mut(&id).expect("known watcher");
        w.synced = true;
        w.next_rev = next_rev;
        self.unsynced.remove(&id);
    }

    /// Every synced watcher becomes unsynced at its next revision (`seen_rev + 1` at least).
    fn unsync_all(&mut self, seen_rev: i64) {
        for (id, w) in self.all.iter_mut() {
            if w.synced {
                w.next_rev = w.next_rev.max(seen_rev + 1);
                w.synced = false;
            }
            self.unsynced.insert(*id);
        }
    }

    /// The watchers that may want an event on `key`: those of that key, then the ranges.
    fn candidates<'a>(&'a self, key: &[u8]) -> impl Iterator<Item = i64> + 'a {
        let exact = self.by_key.get(key).into_iter().flatten();
        exact.chain(self.ranged.iter()).copied()
    }
}

pub struct StreamState {
    node: Arc<Node>,
    out: Outbound,
    watchers: WatcherSet,
    next_auto_id: i64,
    /// Every batch up to this revision has been handed to the synced watchers.
    seen_rev: i64,
    /// A progress request waiting for every watcher to be synced through this revision.
    pending_progress: Option<i64>,
    fragment_bytes: usize,
    /// The stream's token or certificate name: each create is permission-checked with it.
    creds: Credentials,
}

enum Wake {
    Closed,
    Request(Option<Result<WatchRequest, Status>>),
    Batch(Option<Result<Arc<EventBatch>, BroadcastStreamRecvError>>),
    Tick,
    CatchUp,
}

/// Serves one Watch stream until the client goes away.
pub async fn run(
    node: Arc<Node>,
    inbound: Streaming<WatchRequest>,
    out: Outbound,
    closed: flume::Receiver<()>,
    creds: Credentials,
) {
    // Subscribe before reading the revision: every batch after it reaches this stream.
    let mut batches = BroadcastStream::new(node.watch.subscribe());
    let seen_rev = node.raft.store().read().revision();
    let fragment_bytes = node.limits.max_request_bytes + crate::grpc::GRPC_OVERHEAD_BYTES;
    let mut s = StreamState {
        node: node.clone(),
        out,
        watchers: WatcherSet::default(),
        next_auto_id: 0,
        seen_rev,
        pending_progress: None,
        fragment_bytes,
        creds,
    };
    let interval = node.watch.progress_interval;
    let mut inbound = Some(inbound);
    let mut closed = Box::pin(closed.into_recv_async());
    let mut tick: Pin<Box<dyn Future<Output = ()>>> = Box::pin(sleep(jittered(interval)));
    let mut catch_up_first = false;
    loop {
        catch_up_first = !catch_up_first;
        let has_unsynced = !s.watchers.unsynced.is_empty();
        let wake = std::future::poll_fn(|cx| {
            if has_unsynced && catch_up_first {
                return Poll::Ready(Wake::CatchUp);
            }
            if closed.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Wake::Closed);
            }
            if let Some(r) = inbound.as_mut()
                && let Poll::Ready(req) = r.poll_next(cx)
            {
                return Poll::Ready(Wake::Request(req));
            }
            if let Poll::Ready(b) = batches.poll_next(cx) {
                return Poll::Ready(Wake::Batch(b));
            }
            if tick.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Wake::Tick);
            }
            if has_unsynced {
                return Poll::Ready(Wake::CatchUp);
            }
            Poll::Pending
        })
        .await;
        let step = match wake {
            Wake::Closed | Wake::Batch(None) | Wake::Request(Some(Err(_))) => return,
            // The client closed its side: etcd keeps sending events until it cancels.
            Wake::Request(None) => {
                inbound = None;
                Ok(())
            }
            Wake::Request(Some(Ok(req))) => s.handle_request(req).await,
            Wake::Batch(Some(Ok(batch))) => s.dispatch(&batch).await,
            Wake::Batch(Some(Err(BroadcastStreamRecvError::Lagged(_)))) => {
                s.lagged();
                Ok(())
            }
            Wake::Tick => {
                tick = Box::pin(sleep(jittered(interval)));
                s.progress_tick().await
            }
            Wake::CatchUp => s.catch_up_step().await,
        };
        if step.is_err() || s.answer_progress().await.is_err() {
            return;
        }
    }
}

async fn sleep(d: Duration) {
    glommio::timer::sleep(d).await;
}

/// etcd adds up to a tenth of the interval so that watchers created together do not all
/// get their notifications at the same moment.
fn jittered(interval: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as u64);
    let tenth = (interval.as_nanos() as u64 / 10).max(1);
    interval + Duration::from_nanos(nanos % tenth)
}

impl StreamState {
    fn header(&self, revision: i64) -> Option<ketch_proto::ResponseHeader> {
        Some(self.node.header(revision))
    }

    fn store_revision(&self) -> i64 {
        self.node.raft.store().read().revision()
    }

    async fn send(&self, resp: WatchResponse) -> Result<(), Gone> {
        self.out.send_async(Ok(resp)).await.map_err(|_| Gone)
    }

    async fn send_events(&self, resp: WatchResponse, fragment: bool) -> Result<(), Gone> {
        if !fragment {
            return self.send(resp).await;
        }
        for part in fragments(resp, self.fragment_bytes) {
            self.send(part).await?;
        }
        Ok(())
    }

    async fn handle_request(&mut self, req: WatchRequest) -> Result<(), Gone> {
        match req.request_union {
            Some(RequestUnion::CreateRequest(c)) => self.create(c).await,
            Some(RequestUnion::CancelRequest(c)) => {
                if self.watchers.remove(c.watch_id).is_some() {
                    let resp = WatchResponse {
                        header: self.header(self.store_revision()),
                        watch_id: c.watch_id,
                        canceled: true,
                        ..Default::default()
                    };
                    self.send(resp).await?;
                }
                Ok(())
            }
            Some(RequestUnion::ProgressRequest(_)) => {
                self.pending_progress = Some(self.store_revision());
                Ok(())
            }
            None => Ok(()),
        }
    }

    async fn create(&mut self, c: WatchCreateRequest) -> Result<(), Gone> {
        let key = if c.key.is_empty() {
            vec![0]
        } else {
            c.key.to_vec()
        };
        let ws_rev = self.store_revision();
        let refused = |reason: &str| WatchResponse {
            header: self.header(ws_rev),
            watch_id: INVALID_WATCH_ID,
            created: true,
            canceled: true,
            cancel_reason: reason.to_string(),
            ..Default::default()
        };
        let end: &[u8] = &c.range_end;
        if let Err(reason) =
            crate::grpc::auth::watch_refusal(&self.node, &self.creds, &key, end).await
        {
            return self.send(refused(&reason)).await;
        }
        if !end.is_empty() && end != [0] && key.as_slice() >= end {
            return self.send(refused(ERR_EMPTY_RANGE)).await;
        }
        let id = if c.watch_id == 0 {
            while self.watchers.contains(self.next_auto_id) {
                self.next_auto_id += 1;
            }
            self.next_auto_id += 1;
            self.next_auto_id - 1
        } else if self.watchers.contains(c.watch_id) {
            return self.send(refused(ERR_DUPLICATE_ID)).await;
        } else {
            c.watch_id
        };
        let start_rev = if c.start_revision == 0 {
            ws_rev + 1
        } else {
            c.start_revision
        };
        let synced = start_rev > ws_rev;
        let watcher = Watcher {
            key,
            range_end: c.range_end.to_vec(),
            no_put: c.filters.contains(&FILTER_NOPUT),
            no_delete: c.filters.contains(&FILTER_NODELETE),
            prev_kv: c.prev_kv,
            fragment: c.fragment,
            progress_notify: c.progress_notify,
            progress_due: true,
            next_rev: if synced { start_rev } else { start_rev.max(1) },
            synced,
        };
        self.watchers.insert(id, watcher);
        let resp = WatchResponse {
            header: self.header(ws_rev),
            watch_id: id,
            created: true,
            ..Default::default()
        };
        self.send(resp).await
    }

    /// Hands one applied batch to the synced watchers: one response per revision per
    /// watcher with matching events, header revision = that revision (as etcd's `notify`).
    async fn dispatch(&mut self, batch: &EventBatch) -> Result<(), Gone> {
        let mut responses = Vec::new();
        for group in batch
            .events
            .chunk_by(|a, b| event_revision(a) == event_revision(b))
        {
            let rev = event_revision(&group[0]);
            // By watch ID, as etcd answers; each watcher's events in revision order.
            let mut hits: BTreeMap<i64, Vec<Event>> = BTreeMap::new();
            for e in group {
                let Some(kv) = e.kv.as_ref() else { continue };
                for id in self.watchers.candidates(&kv.key) {
                    let w = &self.watchers.all[&id];
                    if !w.synced || rev < w.next_rev {
                        continue;
                    }
                    if let Some(ev) = w.view(e) {
                        hits.entry(id).or_default().push(ev);
                    }
                }
            }
            for (id, events) in hits {
                let w = self.watchers.all.get_mut(&id).expect("candidate");
                w.progress_due = false;
                responses.push((id, rev, events, w.fragment));
            }
        }
        self.seen_rev = self.seen_rev.max(batch.last_revision());
        for (id, rev, events, fragment) in responses {
            let resp = WatchResponse {
                header: self.header(rev),
                watch_id: id,
                events,
                ..Default::default()
            };
            self.send_events(resp, fragment).await?;
        }
        Ok(())
    }

    /// Batches were lost to the ring: every synced watcher catches up from history.
    fn lagged(&mut self) {
        self.watchers.unsync_all(self.seen_rev);
    }

    /// Sends unsynced watchers their next events from history (etcd's `syncWatchers`): a
    /// watcher whose next revision was compacted away is cancelled with the compact revision.
    async fn catch_up_step(&mut self) -> Result<(), Gone> {
        let mut responses = Vec::new();
        {
            let store = self.node.raft.store();
            let store = store.read();
            let cur = store.revision();
            let compact = store.compact_revision();
            let unsynced: Vec<i64> = self
                .watchers
                .unsynced
                .iter()
                .copied()
                .take(CATCHUP_WATCHERS_MAX)
                .collect();
            for id in unsynced {
                let w = &self.watchers.all[&id];
                let history = if w.next_rev < compact {
                    Err(ketch_mvcc::MvccError::Compacted)
                } else {
                    store.events_since(&w.key, &w.range_end, w.next_rev, CATCHUP_EVENTS_MAX)
                };
                let Ok(history) = history else {
                    self.watchers.remove(id);
                    let resp = WatchResponse {
                        header: Some(self.node.header(0)),
                        watch_id: id,
                        compact_revision: compact,
                        canceled: true,
                        ..Default::default()
                    };
                    responses.push((resp, false));
                    continue;
                };
                let events: Vec<Event> = history.iter().filter_map(|e| w.view(e)).collect();
                if history.len() < CATCHUP_EVENTS_MAX {
                    self.watchers.synced_from(id, cur + 1);
                } else {
                    let next = history.last().map_or(cur, event_revision) + 1;
                    self.watchers
                        .all
                        .get_mut(&id)
                        .expect("listed above")
                        .next_rev = next;
                }
                let w = self.watchers.all.get_mut(&id).expect("listed above");
                if !events.is_empty() {
                    w.progress_due = false;
                    let resp = WatchResponse {
                        header: Some(self.node.header(cur)),
                        watch_id: id,
                        events,
                        ..Default::default()
                    };
                    responses.push((resp, w.fragment));
                }
            }
        }
        for (resp, fragment) in responses {
            self.send_events(resp, fragment).await?;
        }
        Ok(())
    }

    /// etcd's progress ticker: each synced watcher that asked for progress notifications and
    /// got no event since the last tick is told the revision it has seen everything up to.
    async fn progress_tick(&mut self) -> Result<(), Gone> {
        let mut due = Vec::new();
        for (id, w) in self.watchers.all.iter_mut() {
            if !w.progress_notify {
                continue;
            }
            if w.progress_due && w.synced {
                // Everything below the watcher's next revision has been sent.
                due.push((*id, w.next_rev.max(self.seen_rev + 1) - 1));
            }
            w.progress_due = true;
        }
        for (id, rev) in due {
            let resp = WatchResponse {
                header: self.header(rev),
                watch_id: id,
                ..Default::default()
            };
            self.send(resp).await?;
        }
        Ok(())
    }

    /// Answers a progress request once every watcher has been sent everything up to the
    /// revision current when it was asked (etcd's response with watch ID -1).
    async fn answer_progress(&mut self) -> Result<(), Gone> {
        let Some(rev) = self.pending_progress else {
            return Ok(());
        };
        if self.seen_rev < rev || !self.watchers.unsynced.is_empty() {
            return Ok(());
        }
        self.pending_progress = None;
        let resp = WatchResponse {
            header: self.header(rev),
            watch_id: INVALID_WATCH_ID,
            ..Default::default()
        };
        self.send(resp).await
    }
}

/// etcd's `sendFragments`: a response over `limit` bytes with several events is split into
/// responses of at most `limit` bytes (one event at least), all but the last marked
/// `fragment`.
pub fn fragments(resp: WatchResponse, limit: usize) -> Vec<WatchResponse> {
    if resp.encoded_len() < limit || resp.events.len() < 2 {
        return vec![resp];
    }
    let mut out = Vec::new();
    let mut template = resp.clone();
    template.events = Vec::new();
    template.fragment = true;
    let mut cur = template.clone();
    for ev in resp.events {
        cur.events.push(ev);
        if cur.events.len() > 1 && cur.encoded_len() >= limit {
            let ev = cur.events.pop().expect("just pushed");
            out.push(std::mem::replace(&mut cur, template.clone()));
            cur.events.push(ev);
        }
    }
    cur.fragment = false;
    out.push(cur);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ketch_proto::mvccpb::KeyValue;

    fn put(key: &str, rev: i64, value_len: usize) -> Event {
        Event {
            r#type: EventType::Put as i32,
            kv: Some(KeyValue {
                key: key.as_bytes().to_vec().into(),
                mod_revision: rev,
                value: vec![b'x'; value_len].into(),
                ..Default::default()
            }),
            prev_kv: None,
        }
    }

    #[test]
    fn fragments_split_big_responses_and_keep_every_event_in_order() {
        let events: Vec<Event> = (0..10).map(|i| put(&format!("k{i}"), 5, 100)).collect();
        let resp = WatchResponse {
            watch_id: 3,
            events: events.clone(),
            ..Default::default()
        };
        let parts = fragments(resp.clone(), 350);
        assert!(parts.len() > 1);
        let (last, init) = parts.split_last().unwrap();
        assert!(init.iter().all(|p| p.fragment) && !last.fragment);
        assert!(
            parts
                .iter()
                .all(|p| p.watch_id == 3 && !p.events.is_empty())
        );
        let joined: Vec<Event> = parts.into_iter().flat_map(|p| p.events).collect();
        assert_eq!(joined, events);
        assert_eq!(
            fragments(resp, 1 << 20).len(),
            1,
            "small responses stay whole"
        );
    }

    fn watcher(key: &str, range_end: &str, synced: bool, next_rev: i64) -> Watcher {
        Watcher {
            key: key.as_bytes().to_vec(),
            range_end: range_end.as_bytes().to_vec(),
            no_put: false,
            no_delete: false,
            prev_kv: false,
            fragment: false,
            progress_notify: false,
            progress_due: false,
            next_rev,
            synced,
        }
    }

    #[test]
    fn watcher_set_finds_the_watchers_of_a_key_and_every_range() {
        let mut set = WatcherSet::default();
        set.insert(1, watcher("a", "", true, 5));
        set.insert(2, watcher("b", "", true, 5));
        set.insert(3, watcher("a", "c", true, 5));
        set.insert(4, watcher("a", "", false, 2));
        let ids = |set: &WatcherSet, k: &str| set.candidates(k.as_bytes()).collect::<Vec<_>>();
        assert_eq!(ids(&set, "a"), vec![1, 4, 3]);
        assert_eq!(ids(&set, "b"), vec![2, 3]);
        assert_eq!(
            ids(&set, "zz"),
            vec![3],
            "ranges are candidates for any key"
        );
        assert_eq!(set.unsynced.iter().copied().collect::<Vec<_>>(), vec![4]);

        assert!(set.remove(1).is_some() && set.remove(1).is_none());
        set.remove(4);
        assert_eq!(ids(&set, "a"), vec![3]);
        assert!(
            !set.by_key.contains_key(b"a".as_slice()),
            "empty key entries go"
        );
        assert!(set.unsynced.is_empty());

        set.synced_from(3, 9);
        set.unsync_all(20);
        let (w2, w3) = (&set.all[&2], &set.all[&3]);
        assert!(!w2.synced && !w3.synced);
        assert_eq!(
            (w2.next_rev, w3.next_rev),
            (21, 21),
            "resume after what was seen"
        );
        assert_eq!(set.unsynced.len(), 2);
        set.synced_from(2, 30);
        assert_eq!(set.unsynced.iter().copied().collect::<Vec<_>>(), vec![3]);
    }

    #[test]
    fn watcher_ranges_and_filters_follow_etcd() {
        let mut w = watcher("a", "", true, 1);
        assert!(w.matches(b"a") && !w.matches(b"ab"));
        w.range_end = vec![0];
        assert!(w.matches(b"zz") && !w.matches(b"0"));
        w.range_end = b"b".to_vec();
        assert!(w.matches(b"az") && !w.matches(b"b"));
        w.no_put = true;
        assert!(w.view(&put("a", 2, 1)).is_none());
    }
}
