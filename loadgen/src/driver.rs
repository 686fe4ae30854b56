//! Runs a workload with N concurrent client tasks, admitted by a [`Pacer`], recording every
//! request into a shared [`Recorder`]; a ticker takes the per-second intervals meanwhile.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::pacing::{DueTimer, Pacer, Ticket};
use crate::stats::Recorder;
use crate::timeseries::{Interval, TimeSeries};

/// What one request did: the operation type it counts under and whether it succeeded.
#[derive(Debug)]
pub struct Outcome {
    pub op: &'static str,
    pub result: Result<(), String>,
}

/// A request generator. `client` is the client task's index; the ticket holds the request's
/// number and, in open loop, when it was due.
pub trait Workload: Send + Sync + 'static {
    /// The operation type a request that timed out is counted under.
    fn main_op(&self) -> &'static str;
    fn run(&self, client: usize, ticket: Ticket) -> impl Future<Output = Outcome> + Send;
}

/// Something that wants to see each second's interval as it is taken (progress bar).
pub type IntervalObserver = Box<dyn FnMut(&Interval, u64) + Send>;

/// Settings of one measured phase.
#[derive(Debug, Clone, Copy)]
pub struct DriveConfig {
    pub clients: usize,
    pub request_timeout: Duration,
    pub interval: Duration,
}

/// A shared recorder, as client tasks and the interval ticker both write to it.
pub type SharedRecorder = Arc<Mutex<Recorder>>;

/// Runs `workload` until the pacer stops admitting, then returns the elapsed time.
/// The time series receives one entry per interval (and a last partial one).
pub async fn drive<W: Workload>(
    workload: Arc<W>,
    pacer: Arc<Pacer>,
    cfg: DriveConfig,
    recorder: SharedRecorder,
    series: Arc<Mutex<TimeSeries>>,
    mut observer: Option<IntervalObserver>,
) -> Duration {
    let start = pacer.start();
    let timer = pacer.is_open_loop().then(|| {
        Arc::new(DueTimer::start().expect("starting the load generator's due timer thread"))
    });
    let mut tasks = Vec::with_capacity(cfg.clients);
    for client in 0..cfg.clients {
        let (w, p, r) = (workload.clone(), pacer.clone(), recorder.clone());
        tasks.push(tokio::spawn(client_loop(
            w,
            p,
            timer.clone(),
            r,
            client,
            cfg.request_timeout,
        )));
    }
    let all = futures::future::join_all(tasks);
    tokio::pin!(all);
    let mut tick = tokio::time::interval_at(start + cfg.interval, cfg.interval);
    // A late tick must not be followed by a burst of near-empty intervals.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            res = &mut all => {
                for r in res { r.expect("client task panicked"); }
                break;
            }
            _ = tick.tick() => {
                let iv = take_interval(&recorder, &series, start);
                if let Some(obs) = observer.as_mut() {
                    obs(&iv, recorder.lock().expect("recorder lock").total_requests());
                }
            }
        }
    }
    let elapsed = start.elapsed();
    take_interval(&recorder, &series, start);
    elapsed
}

/// Closes the current interval of every operation into the time series.
pub fn take_interval(
    recorder: &SharedRecorder,
    series: &Arc<Mutex<TimeSeries>>,
    start: Instant,
) -> Interval {
    let now = Instant::now();
    let taken: Vec<_> = {
        let mut rec = recorder.lock().expect("recorder lock");
        rec.ops
            .iter_mut()
            .map(|(op, s)| {
                let (h, e) = s.take_interval();
                (*op, h, e)
            })
            .collect()
    };
    series
        .lock()
        .expect("series lock")
        .push(now.duration_since(start), taken)
}

async fn client_loop<W: Workload>(
    workload: Arc<W>,
    pacer: Arc<Pacer>,
    timer: Option<Arc<DueTimer>>,
    recorder: SharedRecorder,
    client: usize,
    request_timeout: Duration,
) {
    while let Some(ticket) = pacer.admit() {
        if let Some(due) = ticket.intended {
            let timer = timer
                .as_ref()
                .expect("an open-loop pacer comes with a due timer");
            timer.sleep_until(due).await;
            // How late the generator itself sent: charged to the latency below, so reported.
            let lag = Instant::now().saturating_duration_since(due);
            recorder.lock().expect("recorder lock").record_send_lag(lag);
        }
        // Open loop: charge from the intended send time, not from when we got round to it.
        let t0 = ticket.intended.unwrap_or_else(Instant::now);
        let outcome =
            match tokio::time::timeout(request_timeout, workload.run(client, ticket)).await {
                Ok(o) => o,
                Err(_) => Outcome {
                    op: workload.main_op(),
                    result: Err(format!("request timed out after {request_timeout:?}")),
                },
            };
        let latency = t0.elapsed();
        recorder
            .lock()
            .expect("recorder lock")
            .record(outcome.op, latency, outcome.result);
    }
}
