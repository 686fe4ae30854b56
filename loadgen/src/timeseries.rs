//! Per-interval (per-second) time series: one row per operation type per interval, and the same
//! intervals as an HdrHistogram interval log (V2 deflate encoding, values in microseconds).

use std::time::Duration;

use hdrhistogram::Histogram;
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use serde::Serialize;

/// One operation type during one interval.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Row {
    /// End of the interval, seconds since the run started.
    pub t_s: f64,
    pub op: &'static str,
    pub requests: u64,
    pub errors: u64,
    pub requests_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

/// The rows of one interval (handed to observers such as the progress bar).
#[derive(Debug, Clone, Default)]
pub struct Interval {
    pub rows: Vec<Row>,
}

/// The whole run's series. Memory grows by one row per op per interval and by one compressed
/// histogram line (a few hundred bytes) per op per interval.
#[derive(Default)]
pub struct TimeSeries {
    pub rows: Vec<Row>,
    hlog_lines: Vec<u8>,
    serializer: V2DeflateSerializer,
    last_end: Duration,
}

impl TimeSeries {
    /// Adds the interval that ends at `end` (offset from the run start).
    pub fn push(
        &mut self,
        end: Duration,
        taken: Vec<(&'static str, Histogram<u64>, u64)>,
    ) -> Interval {
        let span = end.saturating_sub(self.last_end);
        let start = self.last_end;
        self.last_end = end;
        let mut iv = Interval::default();
        if span.is_zero() {
            return iv;
        }
        for (op, h, errors) in taken {
            let row = row_of(end, span, op, &h, errors);
            self.append_hlog(op, &h, start, span);
            self.rows.push(row.clone());
            iv.rows.push(row);
        }
        iv
    }

    fn append_hlog(&mut self, op: &str, h: &Histogram<u64>, start: Duration, span: Duration) {
        // A builder without comments, times or divisor writes no header lines: just the interval.
        let mut w = IntervalLogWriterBuilder::new()
            .begin_log_with(&mut self.hlog_lines, &mut self.serializer)
            .expect("writing to memory");
        // Tags may not contain ',' ' ' or '\n'; op names never do.
        w.write_histogram(h, start, span, Tag::new(op))
            .expect("serializing a histogram to memory");
    }

    /// The CSV of all rows, header first.
    pub fn csv(&self) -> String {
        let mut out =
            String::from("t_s,op,requests,errors,requests_per_s,p50_ms,p99_ms,p999_ms,max_ms\n");
        for r in &self.rows {
            out.push_str(&format!(
                "{:.3},{},{},{},{:.1},{:.3},{:.3},{:.3},{:.3}\n",
                r.t_s,
                r.op,
                r.requests,
                r.errors,
                r.requests_per_s,
                r.p50_ms,
                r.p99_ms,
                r.p999_ms,
                r.max_ms
            ));
        }
        out
    }

    /// The HdrHistogram interval log, with a header giving the start time and the unit.
    pub fn hlog(&self, start_unix: Duration) -> Vec<u8> {
        let mut out = Vec::new();
        let mut ser = V2DeflateSerializer::new();
        let header_time = std::time::UNIX_EPOCH + start_unix;
        {
            let mut builder = IntervalLogWriterBuilder::new();
            builder
                .add_comment("ketch-loadgen interval log: values (and Interval_Max) in microseconds, tag = operation")
                .with_start_time(header_time)
                .with_base_time(header_time);
            builder
                .begin_log_with(&mut out, &mut ser)
                .expect("writing to memory");
        }
        out.extend_from_slice(b"\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"\n");
        out.extend_from_slice(&self.hlog_lines);
        out
    }
}

fn row_of(end: Duration, span: Duration, op: &'static str, h: &Histogram<u64>, errors: u64) -> Row {
    let q = |q: f64| {
        if h.is_empty() {
            0.0
        } else {
            h.value_at_quantile(q) as f64 / 1000.0
        }
    };
    Row {
        t_s: end.as_secs_f64(),
        op,
        requests: h.len(),
        errors,
        requests_per_s: h.len() as f64 / span.as_secs_f64(),
        p50_ms: q(0.5),
        p99_ms: q(0.99),
        p999_ms: q(0.999),
        max_ms: if h.is_empty() {
            0.0
        } else {
            h.max() as f64 / 1000.0
        },
    }
}
