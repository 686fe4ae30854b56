//! Latency statistics: one HdrHistogram per operation type (bounded memory whatever the run
//! length) plus exact count, min, max, mean and stddev, and an error table by message.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Largest latency the histograms track, in microseconds (one hour); larger values saturate.
pub const HIST_MAX_US: u64 = 3_600_000_000;
/// Significant decimal digits kept by every histogram (0.1% relative error).
pub const HIST_SIGFIG: u8 = 3;
/// Percentiles printed in the report: etcd benchmark's list plus p99.99.
pub const REPORT_PERCENTILES: [f64; 9] = [10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9, 99.99];
/// Buckets of the text response-time histogram (etcd's report uses 10 + 1).
pub const REPORT_HISTOGRAM_BUCKETS: usize = 10;

/// An empty latency histogram in microseconds.
pub fn new_histogram_us() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_US, HIST_SIGFIG).expect("static histogram bounds")
}

/// Microseconds in `d`, at least 1 (HdrHistogram's lowest trackable value).
pub fn duration_to_us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

/// Everything measured for one operation type.
#[derive(Debug, Clone)]
pub struct OpStats {
    /// Successful latencies of the whole run.
    pub hist: Histogram<u64>,
    /// Successful latencies since the last interval was taken (time series, interval log).
    pub interval: Histogram<u64>,
    pub interval_errors: u64,
    pub errors: BTreeMap<String, u64>,
    sum_ns: u128,
    sum_sq_s: f64,
    min_ns: u64,
    max_ns: u64,
}

impl Default for OpStats {
    fn default() -> Self {
        OpStats {
            hist: new_histogram_us(),
            interval: new_histogram_us(),
            interval_errors: 0,
            errors: BTreeMap::new(),
            sum_ns: 0,
            sum_sq_s: 0.0,
            min_ns: u64::MAX,
            max_ns: 0,
        }
    }
}

impl OpStats {
    /// Records one request. Failed requests go to the error table only, as in etcd's report.
    pub fn record(&mut self, latency: Duration, result: Result<(), String>) {
        match result {
            Ok(()) => {
                let us = duration_to_us(latency);
                self.hist.saturating_record(us);
                self.interval.saturating_record(us);
                let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
                self.sum_ns += u128::from(ns);
                self.sum_sq_s += latency.as_secs_f64() * latency.as_secs_f64();
                self.min_ns = self.min_ns.min(ns);
                self.max_ns = self.max_ns.max(ns);
            }
            Err(message) => {
                *self.errors.entry(message).or_insert(0) += 1;
                self.interval_errors += 1;
            }
        }
    }

    pub fn ok_count(&self) -> u64 {
        self.hist.len()
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Takes the interval histogram and error count, leaving empty ones.
    pub fn take_interval(&mut self) -> (Histogram<u64>, u64) {
        let h = std::mem::replace(&mut self.interval, new_histogram_us());
        (h, std::mem::take(&mut self.interval_errors))
    }

    /// The summary of this operation over `elapsed`.
    pub fn summary(&self, op: &str, elapsed: Duration) -> OpSummary {
        let n = self.ok_count();
        let (mean_s, stddev_s) = mean_stddev_s(n, self.sum_ns, self.sum_sq_s);
        let elapsed_s = elapsed.as_secs_f64();
        OpSummary {
            op: op.to_string(),
            requests: n,
            errors: self.error_count(),
            total_s: elapsed_s,
            slowest_s: if n == 0 {
                0.0
            } else {
                self.max_ns as f64 / 1e9
            },
            fastest_s: if n == 0 {
                0.0
            } else {
                self.min_ns as f64 / 1e9
            },
            average_s: mean_s,
            stddev_s,
            requests_per_s: if elapsed_s > 0.0 {
                n as f64 / elapsed_s
            } else {
                0.0
            },
            percentiles: capped(percentiles_s(&self.hist, &REPORT_PERCENTILES), self.max_ns),
            histogram: linear_buckets(&self.hist, REPORT_HISTOGRAM_BUCKETS),
            error_table: self.errors.clone(),
        }
    }
}

/// Caps percentiles at the exact maximum: HdrHistogram reports the top of a value's bucket,
/// which may lie above the slowest request actually seen.
fn capped(mut ps: Vec<Percentile>, max_ns: u64) -> Vec<Percentile> {
    let max_s = max_ns as f64 / 1e9;
    for p in &mut ps {
        p.seconds = p.seconds.min(max_s);
    }
    ps
}

/// Exact mean and population standard deviation (seconds) from running sums.
fn mean_stddev_s(n: u64, sum_ns: u128, sum_sq_s: f64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 0.0);
    }
    let mean = sum_ns as f64 / 1e9 / n as f64;
    let var = (sum_sq_s / n as f64 - mean * mean).max(0.0);
    (mean, var.sqrt())
}

/// `(percentile, seconds)` pairs; the value is the highest value equivalent to the recorded one
/// (HdrHistogram's convention, never below the true value).
pub fn percentiles_s(h: &Histogram<u64>, percentiles: &[f64]) -> Vec<Percentile> {
    percentiles
        .iter()
        .map(|&p| Percentile {
            percentile: p,
            seconds: if h.is_empty() {
                0.0
            } else {
                h.value_at_quantile(p / 100.0) as f64 / 1e6
            },
        })
        .collect()
}

/// Linear buckets between the smallest and largest recorded values, as etcd's report prints.
pub fn linear_buckets(h: &Histogram<u64>, buckets: usize) -> Vec<Bucket> {
    if h.is_empty() || buckets == 0 {
        return Vec::new();
    }
    let (lo, hi) = (h.min() as f64, h.max() as f64);
    let width = ((hi - lo) / buckets as f64).max(f64::MIN_POSITIVE);
    let mut out: Vec<Bucket> = (0..=buckets)
        .map(|i| Bucket {
            upper_s: (lo + width * i as f64) / 1e6,
            count: 0,
        })
        .collect();
    for v in h.iter_recorded() {
        let value = h.highest_equivalent(v.value_iterated_to()).min(h.max()) as f64;
        let idx = (((value - lo) / width).ceil() as usize).min(buckets);
        out[idx].count += v.count_at_value();
    }
    out
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct Percentile {
    pub percentile: f64,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct Bucket {
    pub upper_s: f64,
    pub count: u64,
}

/// The shape of etcd benchmark's report for one operation type.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct OpSummary {
    pub op: String,
    pub requests: u64,
    pub errors: u64,
    pub total_s: f64,
    pub slowest_s: f64,
    pub fastest_s: f64,
    pub average_s: f64,
    pub stddev_s: f64,
    pub requests_per_s: f64,
    pub percentiles: Vec<Percentile>,
    pub histogram: Vec<Bucket>,
    pub error_table: BTreeMap<String, u64>,
}

impl OpSummary {
    /// The latency at `percentile` in seconds, if it is one of the reported ones.
    pub fn percentile_s(&self, percentile: f64) -> Option<f64> {
        self.percentiles
            .iter()
            .find(|p| (p.percentile - percentile).abs() < 1e-9)
            .map(|p| p.seconds)
    }
}

/// Open loop: how late the generator sent requests after their intended send times. The
/// latencies include this lag (they count from the intended time), so a large lag means the
/// generator, not the server, was the bottleneck.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SendLag {
    pub samples: u64,
    pub p50_s: f64,
    pub p99_s: f64,
    pub p999_s: f64,
    pub max_s: f64,
}

/// All operation types of a run, keyed by operation name.
#[derive(Debug, Default)]
pub struct Recorder {
    pub ops: BTreeMap<&'static str, OpStats>,
    /// Open loop: how late each request left the generator after its intended send time.
    pub send_lag: Option<Histogram<u64>>,
}

impl Recorder {
    pub fn record_send_lag(&mut self, lag: Duration) {
        let h = self.send_lag.get_or_insert_with(new_histogram_us);
        h.saturating_record(duration_to_us(lag));
    }

    /// The send lag's percentiles, when the run was open loop.
    pub fn send_lag_summary(&self) -> Option<SendLag> {
        let h = self.send_lag.as_ref()?;
        let [p50, p99, p999] = percentiles_s(h, &[50.0, 99.0, 99.9])
            .try_into()
            .expect("three percentiles asked, three answered");
        Some(SendLag {
            samples: h.len(),
            p50_s: p50.seconds,
            p99_s: p99.seconds,
            p999_s: p999.seconds,
            max_s: h.max() as f64 / 1e6,
        })
    }

    pub fn record(&mut self, op: &'static str, latency: Duration, result: Result<(), String>) {
        self.ops.entry(op).or_default().record(latency, result);
    }

    pub fn summaries(&self, elapsed: Duration) -> Vec<OpSummary> {
        self.ops
            .iter()
            .map(|(op, s)| s.summary(op, elapsed))
            .collect()
    }

    pub fn total_requests(&self) -> u64 {
        self.ops
            .values()
            .map(|s| s.ok_count() + s.error_count())
            .sum()
    }
}
