//! Request admission: closed loop (send as soon as a client is free, as etcd's benchmark does)
//! or open loop at a fixed rate, where request `n` is due at `start + n / rate` whatever the
//! server does. Latency is then measured from that intended time, so a stalled server is
//! charged for every request it kept waiting (no coordinated omission).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

/// When a run ends: after `total` requests, after `duration`, or whichever comes first.
#[derive(Debug, Clone, Copy, Default)]
pub struct StopRule {
    pub total: Option<u64>,
    pub duration: Option<Duration>,
}

/// Offset from the run start at which request `seq` is due at `rate_per_s`.
pub fn intended_offset(seq: u64, rate_per_s: f64) -> Duration {
    Duration::from_secs_f64(seq as f64 / rate_per_s)
}

/// One admitted request: its sequence number and, in open loop, when it was due.
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    pub seq: u64,
    pub intended: Option<Instant>,
}

/// Hands out tickets to any number of client tasks; lock-free.
#[derive(Debug)]
pub struct Pacer {
    start: Instant,
    next: AtomicU64,
    rate_per_s: Option<f64>,
    stop: StopRule,
}

impl Pacer {
    pub fn new(start: Instant, rate_per_s: Option<f64>, stop: StopRule) -> Self {
        if let Some(r) = rate_per_s {
            assert!(r > 0.0 && r.is_finite(), "rate must be positive, got {r}");
        }
        Pacer {
            start,
            next: AtomicU64::new(0),
            rate_per_s,
            stop,
        }
    }

    pub fn start(&self) -> Instant {
        self.start
    }

    /// Whether requests are due at a fixed rate (open loop).
    pub fn is_open_loop(&self) -> bool {
        self.rate_per_s.is_some()
    }

    /// The next ticket, or `None` once the stop rule says the run is over.
    pub fn admit(&self) -> Option<Ticket> {
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        if self.stop.total.is_some_and(|t| seq >= t) {
            return None;
        }
        match self.rate_per_s {
            Some(rate) => {
                let offset = intended_offset(seq, rate);
                if self.stop.duration.is_some_and(|d| offset >= d) {
                    return None;
                }
                Some(Ticket {
                    seq,
                    intended: Some(self.start + offset),
                })
            }
            None => {
                if self
                    .stop
                    .duration
                    .is_some_and(|d| self.start.elapsed() >= d)
                {
                    return None;
                }
                Some(Ticket {
                    seq,
                    intended: None,
                })
            }
        }
    }

    /// Requests expected in total, when the stop rule allows knowing it (progress bar).
    pub fn expected_total(&self) -> Option<u64> {
        let by_rate = match (self.rate_per_s, self.stop.duration) {
            (Some(r), Some(d)) => Some((d.as_secs_f64() * r).ceil() as u64),
            _ => None,
        };
        match (self.stop.total, by_rate) {
            (Some(t), Some(r)) => Some(t.min(r)),
            (t, r) => t.or(r),
        }
    }
}

/// Wakes open-loop clients at their due instants. tokio's timer rounds every deadline up to
/// the next millisecond, which measured 0.6-1.5 ms of send lag here (p50, 100 puts/s) that an
/// open-loop latency, counted from the intended send time, would charge to the server. One
/// std thread with 1 ns timer slack sleeps until the earliest due instant instead, and wakes
/// every client that is due.
#[derive(Debug)]
pub struct DueTimer {
    shared: Arc<(Mutex<DueState>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Debug, Default)]
struct DueState {
    queue: BinaryHeap<Reverse<Due>>,
    stopping: bool,
}

/// One waiting client, ordered by its due instant.
#[derive(Debug)]
struct Due {
    at: std::time::Instant,
    wake: oneshot::Sender<()>,
}

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Due {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.at.cmp(&other.at)
    }
}

impl DueTimer {
    pub fn start() -> std::io::Result<Self> {
        let shared = Arc::new((Mutex::new(DueState::default()), Condvar::new()));
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("loadgen-due-timer".into())
            .spawn(move || due_timer_loop(&s))?;
        Ok(DueTimer {
            shared,
            thread: Some(thread),
        })
    }

    /// Returns at `due` (or at once if it has passed), at most a thread wake-up late.
    pub async fn sleep_until(&self, due: Instant) {
        let at = due.into_std();
        if at <= std::time::Instant::now() {
            return;
        }
        let (tx, rx) = oneshot::channel();
        {
            let (lock, cv) = &*self.shared;
            let mut st = lock.lock().expect("due timer lock");
            let earliest = st.queue.peek().is_none_or(|Reverse(d)| at < d.at);
            st.queue.push(Reverse(Due { at, wake: tx }));
            // The timer thread sleeps until the earliest due instant: wake it only when that
            // changes, which paced clients registering in order rarely do.
            if earliest {
                cv.notify_one();
            }
        }
        // The sender is only dropped when the timer stops, which ends the wait too.
        let _ = rx.await;
    }
}

impl Drop for DueTimer {
    fn drop(&mut self) {
        let (lock, cv) = &*self.shared;
        lock.lock().expect("due timer lock").stopping = true;
        cv.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn due_timer_loop(shared: &(Mutex<DueState>, Condvar)) {
    // Sleep as precisely as the kernel's hrtimers allow (the default slack is 50 us).
    // SAFETY: PR_SET_TIMERSLACK only changes this thread's timer slack; 1 ns is valid.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong);
    }
    let (lock, cv) = shared;
    let mut st = lock.lock().expect("due timer lock");
    loop {
        if st.stopping {
            return;
        }
        let now = std::time::Instant::now();
        while st.queue.peek().is_some_and(|Reverse(d)| d.at <= now) {
            let Reverse(d) = st.queue.pop().expect("peeked");
            let _ = d.wake.send(());
        }
        st = match st.queue.peek() {
            None => cv.wait(st).expect("due timer lock"),
            Some(Reverse(d)) => {
                let wait = d.at.saturating_duration_since(now);
                cv.wait_timeout(st, wait).expect("due timer lock").0
            }
        };
    }
}
