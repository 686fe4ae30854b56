//! The watch workloads: `streams` watch streams with `watchers_per_stream` watchers each, spread
//! over the key space; creation latency is measured per watcher, then timestamped puts run and
//! every event's put-to-event latency is recorded by the stream's receiver task.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use etcd_client::{Client, WatchRequestSender, WatchResponseStream};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::driver::SharedRecorder;
use crate::workloads::{KeyGen, value_stamp};

/// Largest key space the watch workloads accept (they keep a watcher count per key).
pub const WATCH_KEY_SPACE_MAX: u64 = 1 << 20;
/// How long the receivers may take to deliver the last events once the puts are done.
pub const WATCH_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy)]
pub struct WatchSpec {
    pub streams: usize,
    pub watchers_per_stream: usize,
    pub keys: KeyGen,
    pub prev_kv: bool,
    /// Every watcher watches the whole key range `keys` can produce instead of one key.
    pub whole_range: bool,
    /// Operation name the event latencies are recorded under.
    pub event_op: &'static str,
}

/// Watcher `j` (over all streams) watches key number `j % key_space`.
pub fn watchers_per_key(spec: &WatchSpec) -> Result<Vec<u64>> {
    if spec.keys.key_space == 0 || spec.keys.key_space > WATCH_KEY_SPACE_MAX {
        bail!("watch key space must be 1..={WATCH_KEY_SPACE_MAX}");
    }
    let watchers = (spec.streams * spec.watchers_per_stream) as u64;
    if spec.whole_range {
        return Ok(vec![watchers; spec.keys.key_space as usize]);
    }
    let mut per_key = vec![0u64; spec.keys.key_space as usize];
    for j in 0..watchers {
        per_key[(j % spec.keys.key_space) as usize] += 1;
    }
    Ok(per_key)
}

/// What watcher `j` (over all streams) watches: key number `j % key_space`, or the whole key
/// range `[key(0), key(key_space - 1)]` as `(key, range_end)`.
pub fn watch_target(spec: &WatchSpec, j: u64) -> (Vec<u8>, Option<Vec<u8>>) {
    if !spec.whole_range {
        return (spec.keys.key(j % spec.keys.key_space), None);
    }
    // Every key the puts write has `key_size` bytes and lies between the first and the last
    // key; appending a zero byte to the last key makes the range end inclusive of it.
    let mut end = spec.keys.key(spec.keys.key_space - 1);
    end.push(0);
    (spec.keys.key(0), Some(end))
}

/// Live watch streams and the count of events their receivers have recorded.
pub struct Watchers {
    /// The request side of each stream, kept open for the stream's lifetime.
    _senders: Vec<WatchRequestSender>,
    receivers: Vec<JoinHandle<()>>,
    pub received: Arc<AtomicU64>,
}

/// Opens every stream and watcher, recording each creation under `watch-create`, then starts
/// one receiver task per stream.
pub async fn open(
    conns: &[Client],
    spec: WatchSpec,
    base: Instant,
    recorder: SharedRecorder,
) -> Result<Watchers> {
    let received = Arc::new(AtomicU64::new(0));
    let mut creators = Vec::with_capacity(spec.streams);
    for s in 0..spec.streams {
        let client = conns[s % conns.len()].clone();
        let rec = recorder.clone();
        creators.push(tokio::spawn(open_stream(client, spec, s, rec)));
    }
    let mut receivers = Vec::with_capacity(spec.streams);
    let mut senders = Vec::with_capacity(spec.streams);
    for c in creators {
        let (tx, stream) = c.await.context("watch creator panicked")??;
        senders.push(tx);
        let (rec, n) = (recorder.clone(), received.clone());
        receivers.push(tokio::spawn(receive(stream, base, spec.event_op, rec, n)));
    }
    Ok(Watchers {
        _senders: senders,
        receivers,
        received,
    })
}

async fn open_stream(
    client: Client,
    spec: WatchSpec,
    s: usize,
    rec: SharedRecorder,
) -> Result<(WatchRequestSender, WatchResponseStream)> {
    let mut wc = client.watch_client();
    // (key, options) of this stream's watcher `w`.
    let target = |w: usize| {
        let (key, end) = watch_target(&spec, (s * spec.watchers_per_stream + w) as u64);
        let mut o = etcd_client::WatchOptions::new();
        if let Some(end) = end {
            o = o.with_range(end);
        }
        if spec.prev_kv {
            o = o.with_prev_key();
        }
        (key, Some(o))
    };
    let t0 = Instant::now();
    let (key, opts) = target(0);
    let stream = wc.watch(key, opts).await?;
    let (mut tx, mut rx) = stream.split();
    await_created(&mut rx, t0, &rec).await?;
    for w in 1..spec.watchers_per_stream {
        let t0 = Instant::now();
        let (key, opts) = target(w);
        tx.watch(key, opts).await?;
        await_created(&mut rx, t0, &rec).await?;
    }
    Ok((tx, rx))
}

async fn await_created(
    rx: &mut WatchResponseStream,
    t0: Instant,
    rec: &SharedRecorder,
) -> Result<()> {
    loop {
        match rx.message().await? {
            Some(r) if r.created() => {
                rec.lock()
                    .expect("recorder")
                    .record("watch-create", t0.elapsed(), Ok(()));
                return Ok(());
            }
            Some(r) if r.canceled() => bail!("watch canceled: {}", r.cancel_reason()),
            Some(_) => continue,
            None => bail!("watch stream closed while creating watchers"),
        }
    }
}

async fn receive(
    mut rx: WatchResponseStream,
    base: Instant,
    op: &'static str,
    rec: SharedRecorder,
    received: Arc<AtomicU64>,
) {
    loop {
        match rx.message().await {
            Ok(Some(resp)) => {
                let now = Instant::now();
                let mut rec = rec.lock().expect("recorder");
                for ev in resp.events() {
                    let stamp = ev.kv().and_then(|kv| value_stamp(base, kv.value()));
                    match stamp {
                        Some(sent) => rec.record(op, now.saturating_duration_since(sent), Ok(())),
                        None => {
                            rec.record(op, Duration::ZERO, Err("event without a send stamp".into()))
                        }
                    }
                }
                received.fetch_add(resp.events().len() as u64, Ordering::Relaxed);
            }
            Ok(None) => return,
            Err(e) => {
                let msg = crate::connect::error_message(&e);
                rec.lock()
                    .expect("recorder")
                    .record(op, Duration::ZERO, Err(msg));
                return;
            }
        }
    }
}

impl Watchers {
    /// Waits until `expected` events arrived (or the drain timeout), records any missing ones
    /// as errors, and stops the receivers.
    pub async fn finish(self, expected: u64, rec: &SharedRecorder, event_op: &'static str) {
        let deadline = Instant::now() + WATCH_DRAIN_TIMEOUT;
        while self.received.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        for r in self.receivers {
            r.abort();
            // Wait until the task is gone, so it no longer holds the recorder.
            let _ = r.await;
        }
        let got = self.received.load(Ordering::Relaxed);
        if got < expected {
            let mut rec = rec.lock().expect("recorder");
            for _ in got..expected {
                rec.record(event_op, Duration::ZERO, Err("event not received".into()));
            }
        }
    }
}
