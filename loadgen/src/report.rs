//! The run summary (JSON) and its text rendering in the shape of etcd benchmark's report, plus
//! the two plots of a run.

use std::fmt::Write;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::stats::{OpSummary, SendLag};
use crate::svg::{self, Chart, Series};
use crate::timeseries::Row;

/// The load generator's own CPU use during the measured phase.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CpuUse {
    pub user_s: f64,
    pub sys_s: f64,
    /// (user + sys) / requests, in microseconds.
    pub per_request_us: f64,
    /// (user + sys) / wall time: how many cores the tool kept busy.
    pub cores_busy: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    pub tool: String,
    pub workload: String,
    /// "closed-loop" or "open-loop".
    pub mode: String,
    pub rate_per_s: Option<f64>,
    pub clients: usize,
    pub conns: usize,
    pub threads: usize,
    pub elapsed_s: f64,
    /// Requests recorded, all operation types, errors included.
    pub requests: u64,
    pub cpu: CpuUse,
    pub ops: Vec<OpSummary>,
    /// Open loop only: how late the generator sent (included in the latencies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_lag: Option<SendLag>,
}

impl Summary {
    pub fn op(&self, name: &str) -> Option<&OpSummary> {
        self.ops.iter().find(|o| o.op == name)
    }
}

/// Text report: per operation, etcd's Summary / Response time histogram / Latency distribution /
/// Error distribution sections, then the tool's CPU use.
pub fn text(s: &Summary) -> String {
    let mut out = String::new();
    let mode = match s.rate_per_s {
        Some(r) => format!("open loop at {r} req/s (latency from intended send time)"),
        None => "closed loop".to_string(),
    };
    let _ = writeln!(
        out,
        "{}: {} clients over {} conns, {mode}",
        s.workload, s.clients, s.conns
    );
    for op in &s.ops {
        op_text(&mut out, op);
    }
    let _ = writeln!(
        out,
        "\nLoad generator CPU: {:.2}s user + {:.2}s sys = {:.1} us/request, {:.2} cores busy ({} threads)",
        s.cpu.user_s, s.cpu.sys_s, s.cpu.per_request_us, s.cpu.cores_busy, s.threads
    );
    if let Some(l) = &s.send_lag {
        let _ = writeln!(
            out,
            "Send lag (generator's own lateness, included above): p50 {:.3} ms, p99 {:.3} ms, \
             p99.9 {:.3} ms, max {:.3} ms over {} sends",
            l.p50_s * 1e3,
            l.p99_s * 1e3,
            l.p999_s * 1e3,
            l.max_s * 1e3,
            l.samples
        );
    }
    out
}

fn op_text(out: &mut String, op: &OpSummary) {
    let _ = writeln!(out, "\n[{}]\nSummary:", op.op);
    let _ = writeln!(out, "  Total:\t{:.4} secs.", op.total_s);
    let _ = writeln!(out, "  Slowest:\t{:.4} secs.", op.slowest_s);
    let _ = writeln!(out, "  Fastest:\t{:.4} secs.", op.fastest_s);
    let _ = writeln!(out, "  Average:\t{:.4} secs.", op.average_s);
    let _ = writeln!(out, "  Stddev:\t{:.4} secs.", op.stddev_s);
    let _ = writeln!(out, "  Requests/sec:\t{:.4}", op.requests_per_s);
    let _ = writeln!(out, "  Requests:\t{} ok, {} errors", op.requests, op.errors);
    if !op.histogram.is_empty() {
        let _ = writeln!(out, "\nResponse time histogram:");
        let max = op
            .histogram
            .iter()
            .map(|b| b.count)
            .max()
            .unwrap_or(1)
            .max(1);
        for b in &op.histogram {
            let bar = "∎".repeat((b.count * 40 / max) as usize);
            let _ = writeln!(out, "  {:.4} [{}]\t|{bar}", b.upper_s, b.count);
        }
        let _ = writeln!(out, "\nLatency distribution:");
        for p in &op.percentiles {
            let _ = writeln!(out, "  {}% in {:.4} secs.", p.percentile, p.seconds);
        }
    }
    if !op.error_table.is_empty() {
        let _ = writeln!(out, "\nError distribution:");
        for (msg, n) in &op.error_table {
            let _ = writeln!(out, "  [{n}]\t{msg}");
        }
    }
}

/// Latency-by-percentile curve, one series per operation, milliseconds on a nines axis.
pub fn percentile_plot(title: &str, hists: &[(String, &Histogram<u64>)]) -> String {
    let mut series = Vec::new();
    let mut max_nines = 2u32;
    for (name, h) in hists {
        if h.is_empty() {
            continue;
        }
        let points: Vec<(f64, f64)> = h
            .iter_quantiles(5)
            .map(|v| (v.quantile_iterated_to(), v.value_iterated_to()))
            .filter(|(q, _)| *q < 1.0)
            .map(|(q, v)| {
                (
                    svg::nines(q * 100.0),
                    h.highest_equivalent(v) as f64 / 1000.0,
                )
            })
            .collect();
        let top = points.last().map_or(0.0, |p| p.0);
        max_nines = max_nines.max(top.ceil() as u32);
        series.push(Series {
            name: name.clone(),
            points,
        });
    }
    svg::render(&Chart {
        title,
        x_label: "percentile",
        y_label: "latency (ms)",
        x_ticks: svg::nines_ticks(max_nines),
        series,
    })
}

/// Requests per second over time, one series per operation.
pub fn throughput_plot(title: &str, rows: &[Row]) -> String {
    let mut ops: Vec<&str> = rows.iter().map(|r| r.op).collect();
    ops.sort_unstable();
    ops.dedup();
    let series = ops
        .into_iter()
        .map(|op| Series {
            name: op.to_string(),
            points: rows
                .iter()
                .filter(|r| r.op == op)
                .map(|r| (r.t_s, r.requests_per_s))
                .collect(),
        })
        .collect();
    svg::render(&Chart {
        title,
        x_label: "time (s)",
        y_label: "requests/s",
        x_ticks: Vec::new(),
        series,
    })
}
