//! Watch: the hub that receives every applied batch of events from the raft core, and the
//! per-stream state (`stream`) that serves etcd's Watch RPC from it.
//!
//! Writes never wait for watchers: the raft core's event sink only pushes the batch into a
//! bounded broadcast ring (`BROADCAST_BATCHES`) and returns. A stream that falls behind loses
//! its place in the ring (it "lags"); its watchers then become unsynced and catch up from the
//! MVCC store's history, as etcd's unsynced watchers do, so memory stays bounded whatever the
//! watchers' speed.

pub mod stream;

use std::sync::Arc;
use std::time::Duration;

use ketch_proto::mvccpb::Event;
use tokio::sync::broadcast;

/// Batches of applied events held for streams that have not read them yet. A stream more
/// than this many batches behind catches up from history instead.
pub const BROADCAST_BATCHES: usize = 256;

/// The events of one applied batch of raft entries, in revision order (one or more
/// revisions, each complete).
#[derive(Debug)]
pub struct EventBatch {
    pub events: Vec<Event>,
}

impl EventBatch {
    pub fn last_revision(&self) -> i64 {
        self.events.last().map_or(0, event_revision)
    }
}

pub fn event_revision(e: &Event) -> i64 {
    e.kv.as_ref().map_or(0, |kv| kv.mod_revision)
}

/// etcd's `minWatchProgressInterval`: a shorter progress interval is raised to it.
const MIN_PROGRESS_INTERVAL: Duration = Duration::from_millis(100);

pub struct WatchHub {
    tx: broadcast::Sender<Arc<EventBatch>>,
    /// Period of progress notifications (`--experimental-watch-progress-notify-interval`).
    pub progress_interval: Duration,
}

impl WatchHub {
    pub fn new(progress_interval: Duration) -> Arc<WatchHub> {
        let (tx, _) = broadcast::channel(BROADCAST_BATCHES);
        Arc::new(WatchHub {
            tx,
            progress_interval: progress_interval.max(MIN_PROGRESS_INTERVAL),
        })
    }

    /// The raft core's event sink: never blocks, allocates nothing when nobody watches.
    pub fn sink(self: &Arc<Self>) -> ketch_raft::EventSink<Event> {
        let hub = self.clone();
        Box::new(move |events: Vec<Event>| {
            if hub.tx.receiver_count() > 0 {
                let _ = hub.tx.send(Arc::new(EventBatch { events }));
            }
        })
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<EventBatch>> {
        self.tx.subscribe()
    }
}
