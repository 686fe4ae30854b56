//! Request admission: closed loop (send as soon as a client is free, as etcd's benchmark does)
//! or open loop at a fixed rate, where request `n` is due at `start + n / rate` whatever the
//! server does. Latency is then measured from that intended time, so a stalled server is
//! charged for every request it kept waiting (no coordinated omission).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

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
