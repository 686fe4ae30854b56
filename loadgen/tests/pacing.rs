//! The open-loop rate limiter holds its rate and the stop rules stop where they should; checked
//! by driving a no-op workload (no server) and counting what the driver admitted and recorded.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ketch_loadgen::driver::{self, DriveConfig, Outcome, Workload};
use ketch_loadgen::pacing::{DueTimer, Pacer, StopRule, Ticket, intended_offset};
use ketch_loadgen::stats::Recorder;
use ketch_loadgen::timeseries::TimeSeries;
use tokio::time::Instant;

/// Records how late each request was sent relative to its intended time.
#[derive(Default)]
struct Noop {
    sent: AtomicU64,
    max_late_us: AtomicU64,
}

impl Workload for Noop {
    fn main_op(&self) -> &'static str {
        "noop"
    }
    async fn run(&self, _client: usize, t: Ticket) -> Outcome {
        self.sent.fetch_add(1, Ordering::Relaxed);
        if let Some(due) = t.intended {
            let late = Instant::now().saturating_duration_since(due).as_micros() as u64;
            self.max_late_us.fetch_max(late, Ordering::Relaxed);
        }
        Outcome {
            op: "noop",
            result: Ok(()),
        }
    }
}

async fn drive(
    rate: Option<f64>,
    stop: StopRule,
    clients: usize,
) -> (Arc<Noop>, Recorder, TimeSeries, Duration) {
    let w = Arc::new(Noop::default());
    let rec = Arc::new(Mutex::new(Recorder::default()));
    let series = Arc::new(Mutex::new(TimeSeries::default()));
    let pacer = Arc::new(Pacer::new(Instant::now(), rate, stop));
    let cfg = DriveConfig {
        clients,
        request_timeout: Duration::from_secs(5),
        interval: Duration::from_millis(250),
    };
    let elapsed = driver::drive(w.clone(), pacer, cfg, rec.clone(), series.clone(), None).await;
    let rec = Arc::try_unwrap(rec).ok().unwrap().into_inner().unwrap();
    let series = Arc::try_unwrap(series).ok().unwrap().into_inner().unwrap();
    (w, rec, series, elapsed)
}

#[test]
fn intended_times_are_evenly_spaced() {
    assert_eq!(intended_offset(0, 1000.0), Duration::ZERO);
    assert_eq!(intended_offset(1000, 1000.0), Duration::from_secs(1));
    assert_eq!(intended_offset(3, 4.0), Duration::from_millis(750));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_holds_its_rate_for_a_duration() {
    let rate = 2000.0;
    let stop = StopRule {
        total: None,
        duration: Some(Duration::from_millis(1500)),
    };
    let (w, rec, series, elapsed) = drive(Some(rate), stop, 8).await;
    // Exactly the tickets due before the end of the duration: 1.5 s x 2000/s.
    assert_eq!(w.sent.load(Ordering::Relaxed), 3000);
    assert_eq!(rec.ops["noop"].ok_count(), 3000);
    let achieved = 3000.0 / elapsed.as_secs_f64();
    assert!(
        (achieved - rate).abs() / rate < 0.05,
        "achieved {achieved:.0}/s, elapsed {elapsed:?}"
    );
    // At every interval end the cumulative count follows the schedule (no burst up front and
    // pause after, which would average out to the same total); slack for a loaded CI machine.
    let mut done = 0u64;
    for r in series.rows.iter().filter(|r| r.t_s < 1.45) {
        done += r.requests;
        let due = rate * r.t_s;
        assert!(
            (done as f64 - due).abs() < 0.1 * due + 100.0,
            "{done} done by {:.3}s, {due:.0} due",
            r.t_s
        );
    }
    assert!(series.rows.len() >= 5, "intervals: {:?}", series.rows);
    // Sending never lagged far behind schedule on a no-op workload.
    let late = w.max_late_us.load(Ordering::Relaxed);
    assert!(late < 250_000, "a request went out {late} us late");
    // Every send's lateness was recorded, and the worst one is the one the workload saw
    // (the recorder rounds up to whole microseconds, and counts at least 1; its histogram
    // keeps 3 significant digits, so a maximum reads back up to 0.1% high: 4,956 us as
    // 4,959 us once).
    let lag = rec
        .send_lag_summary()
        .expect("open loop records its send lag");
    assert_eq!(lag.samples, 3000);
    assert!(
        lag.max_s * 1e6 <= late as f64 * 1.001 + 2.0,
        "{lag:?} vs {late} us"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_loop_has_no_send_lag() {
    let stop = StopRule {
        total: Some(50),
        duration: None,
    };
    let (_, rec, _, _) = drive(None, stop, 2).await;
    assert!(rec.send_lag_summary().is_none());
}

/// The due timer never wakes a sleeper before its instant, wakes them all, and wakes the ones
/// due earlier no later than the ones due after them (checked with sleepers registered out of
/// order, from several tasks).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn due_timer_wakes_each_sleeper_at_or_after_its_instant() {
    let timer = Arc::new(DueTimer::start().unwrap());
    let base = Instant::now() + Duration::from_millis(20);
    // 40 sleepers due every 0.5 ms, registered in a shuffled order.
    let order: Vec<u64> = (0..40).map(|i| (i * 17) % 40).collect();
    let woke = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in order {
        let (t, woke) = (timer.clone(), woke.clone());
        let due = base + Duration::from_micros(500 * i);
        tasks.push(tokio::spawn(async move {
            t.sleep_until(due).await;
            let now = Instant::now();
            assert!(now >= due, "sleeper {i} woke {:?} early", due - now);
            woke.lock().unwrap().push((i, now));
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut by_due = woke.lock().unwrap().clone();
    assert_eq!(by_due.len(), 40);
    by_due.sort_by_key(|(i, _)| *i);
    for pair in by_due.windows(2) {
        // Tasks record after waking, so allow the two to race by a little.
        assert!(
            pair[0].1 <= pair[1].1 + Duration::from_millis(5),
            "sleeper {} woke well after sleeper {}",
            pair[0].0,
            pair[1].0
        );
    }
    // An instant already past returns at once.
    tokio::time::timeout(
        Duration::from_secs(1),
        timer.sleep_until(Instant::now() - Duration::from_millis(1)),
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn total_stops_at_exactly_total_in_both_modes() {
    let stop = StopRule {
        total: Some(777),
        duration: None,
    };
    let (w, rec, _, _) = drive(None, stop, 5).await;
    assert_eq!(w.sent.load(Ordering::Relaxed), 777);
    assert_eq!(rec.total_requests(), 777);
    let (w, _, _, elapsed) = drive(Some(1000.0), stop, 5).await;
    assert_eq!(w.sent.load(Ordering::Relaxed), 777);
    // 777 requests at 1000/s: the last is due at 0.776 s.
    assert!(
        elapsed >= Duration::from_millis(776) && elapsed < Duration::from_millis(1100),
        "{elapsed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_loop_stops_after_its_duration() {
    let stop = StopRule {
        total: None,
        duration: Some(Duration::from_millis(300)),
    };
    let (w, _, _, elapsed) = drive(None, stop, 3).await;
    assert!(w.sent.load(Ordering::Relaxed) > 100);
    assert!(
        elapsed >= Duration::from_millis(300) && elapsed < Duration::from_millis(600),
        "{elapsed:?}"
    );
}
