//! Counters and the fsync latency histogram (etcd's `etcd_disk_wal_fsync_duration_seconds`).

use std::time::Duration;

/// Number of finite histogram buckets: upper bounds 0.001 * 2^n s for n in 0..14,
/// the buckets etcd uses for `etcd_disk_wal_fsync_duration_seconds`.
pub const FSYNC_BUCKETS: usize = 14;

/// Upper bound in seconds of finite bucket `n`.
pub fn fsync_bucket_upper_seconds(n: usize) -> f64 {
    0.001 * f64::from(1u32 << n)
}

/// A Prometheus-style histogram: per-bucket counts (not cumulative; see
/// [`Histogram::cumulative_counts`]), plus everything above the last bound, sum and count.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    pub bucket_counts: [u64; FSYNC_BUCKETS],
    pub above_last_bucket: u64,
    pub sum_seconds: f64,
    pub count: u64,
}

impl Histogram {
    pub fn observe(&mut self, d: Duration) {
        let s = d.as_secs_f64();
        match (0..FSYNC_BUCKETS).find(|&n| s <= fsync_bucket_upper_seconds(n)) {
            Some(n) => self.bucket_counts[n] += 1,
            None => self.above_last_bucket += 1,
        }
        self.sum_seconds += s;
        self.count += 1;
    }

    /// `(le, cumulative count)` pairs as Prometheus exposes them, `+Inf` last.
    pub fn cumulative_counts(&self) -> Vec<(f64, u64)> {
        let mut acc = 0;
        let mut out: Vec<(f64, u64)> = (0..FSYNC_BUCKETS)
            .map(|n| {
                acc += self.bucket_counts[n];
                (fsync_bucket_upper_seconds(n), acc)
            })
            .collect();
        out.push((f64::INFINITY, self.count));
        out
    }

    /// Prometheus text exposition of this histogram under `name`.
    pub fn render_prometheus(&self, name: &str, help: &str) -> String {
        let mut s = format!("# HELP {name} {help}\n# TYPE {name} histogram\n");
        for (le, c) in self.cumulative_counts() {
            let le = if le.is_infinite() {
                "+Inf".to_string()
            } else {
                le.to_string()
            };
            s += &format!("{name}_bucket{{le=\"{le}\"}} {c}\n");
        }
        s += &format!(
            "{name}_sum {}\n{name}_count {}\n",
            self.sum_seconds, self.count
        );
        s
    }
}

/// A snapshot of the WAL's counters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WalMetrics {
    /// fdatasync calls on segment files (one per batch, plus one per segment rollover).
    pub fsyncs: u64,
    pub fsync_seconds: Histogram,
    /// Bytes handed to write(2)/io_uring, alignment rewrites and padding included.
    pub bytes_written: u64,
    pub batches: u64,
    pub records: u64,
    pub segment_rollovers: u64,
    /// Whether segment files are written with O_DIRECT.
    pub direct_io: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_follow_etcd_bounds() {
        assert_eq!(fsync_bucket_upper_seconds(0), 0.001);
        assert_eq!(fsync_bucket_upper_seconds(13), 8.192);
        let mut h = Histogram::default();
        h.observe(Duration::from_micros(200));
        h.observe(Duration::from_micros(1500));
        h.observe(Duration::from_secs(10));
        assert_eq!(h.bucket_counts[0], 1);
        assert_eq!(h.bucket_counts[1], 1);
        assert_eq!(h.above_last_bucket, 1);
        let c = h.cumulative_counts();
        assert_eq!(c[1], (0.002, 2));
        assert_eq!(c.last().unwrap().1, 3);
        let text = h.render_prometheus("etcd_disk_wal_fsync_duration_seconds", "x");
        assert!(text.contains("etcd_disk_wal_fsync_duration_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.001\"} 1\n"));
    }
}
