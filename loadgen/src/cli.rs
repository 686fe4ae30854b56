//! Command line: etcd benchmark's workload names and flags, plus open loop, output and compare.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// Requests per run when neither --total nor --duration is given (etcd's tool default).
pub const DEFAULT_TOTAL: u64 = 10_000;

#[derive(Debug, Parser)]
#[command(
    name = "ketch-loadgen",
    version,
    about = "Load generator for etcd v3 compatible endpoints (etcd benchmark's workloads, \
             open loop, HdrHistogram)"
)]
pub struct Cli {
    #[command(flatten)]
    pub common: Common,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Debug, Clone, Args)]
pub struct Common {
    /// gRPC endpoints (comma separated host:port or URLs).
    #[arg(
        long,
        global = true,
        value_delimiter = ',',
        default_value = "127.0.0.1:2379"
    )]
    pub endpoints: Vec<String>,
    /// gRPC connections (channels), spread over the endpoints.
    #[arg(long, global = true, default_value_t = 1)]
    pub conns: usize,
    /// Concurrent clients, sharing the connections round-robin.
    #[arg(long, global = true, default_value_t = 1)]
    pub clients: usize,
    /// Requests to send (default 10000 unless --duration is given).
    #[arg(long, global = true)]
    pub total: Option<u64>,
    /// Run for this long (e.g. 10s, 500ms, 2m); with --total, whichever comes first.
    #[arg(long, global = true, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Open loop: send at this many requests/s in total, latency measured from each request's
    /// intended send time. Without it: closed loop, as etcd's benchmark.
    #[arg(long, global = true)]
    pub rate: Option<f64>,
    /// Connect only to the leader's endpoint.
    #[arg(long, global = true)]
    pub target_leader: bool,
    /// Dial timeout.
    #[arg(long, global = true, default_value = "5s", value_parser = parse_duration)]
    pub dial_timeout: Duration,
    /// TLS: the CA certificate (PEM) that signed the servers' certificates.
    #[arg(long, global = true)]
    pub cacert: Option<PathBuf>,
    /// TLS: client certificate (PEM), with --key.
    #[arg(long, global = true)]
    pub cert: Option<PathBuf>,
    /// TLS: the client certificate's private key (PEM), with --cert.
    #[arg(long = "key", id = "tls_key", value_name = "KEY", global = true)]
    pub key: Option<PathBuf>,
    /// Per-request timeout (a timed-out request counts as an error).
    #[arg(long, global = true, default_value = "30s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// Tokio worker threads of the load generator (1 measured best on 2 cores shared with the
    /// server: fewer cross-thread wake-ups per request).
    #[arg(long, global = true, default_value_t = 1)]
    pub threads: usize,
    /// Print the summary as JSON on stdout instead of the text report.
    #[arg(long, global = true)]
    pub json: bool,
    /// Write a run folder here (must not exist or be empty).
    #[arg(long, global = true)]
    pub output: Option<PathBuf>,
    /// The server's data dir, to describe its disk in the run folder.
    #[arg(long, global = true)]
    pub server_data_dir: Option<PathBuf>,
    /// Time-series interval.
    #[arg(long, global = true, default_value = "1s", value_parser = parse_duration)]
    pub interval: Duration,
}

#[derive(Debug, Clone, Args)]
pub struct KeyArgs {
    /// Key size in bytes.
    #[arg(long, default_value_t = 8)]
    pub key_size: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 8)]
    pub val_size: usize,
    /// Number of distinct keys.
    #[arg(long, default_value_t = 1)]
    pub key_space_size: u64,
    /// Take keys in sequence instead of at random.
    #[arg(long)]
    pub sequential_keys: bool,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Cmd {
    /// Puts.
    Put {
        #[command(flatten)]
        keys: KeyArgs,
        /// Compact every this often (0 = never).
        #[arg(long, default_value = "0s", value_parser = parse_duration)]
        compact_interval: Duration,
        /// Keep this many revisions when compacting.
        #[arg(long, default_value_t = 1000)]
        compact_index_delta: i64,
        #[command(flatten)]
        watch: PutWatchArgs,
    },
    /// Ranges over KEY (or [KEY, END)).
    Range {
        key: String,
        end: Option<String>,
        #[command(flatten)]
        read: ReadArgs,
        /// Return only the keys.
        #[arg(long)]
        keys_only: bool,
    },
    /// Transactions of --txn-ops puts.
    TxnPut {
        #[command(flatten)]
        keys: KeyArgs,
        #[arg(long, default_value_t = 1)]
        txn_ops: usize,
    },
    /// Transactions, reads and writes in --rw-ratio.
    TxnMixed {
        #[command(flatten)]
        keys: KeyArgs,
        /// Reads per write.
        #[arg(long, default_value_t = 1.0)]
        rw_ratio: f64,
        /// Range end for reads ("" = single key).
        #[arg(long, default_value = "")]
        end_key: String,
        /// Limit of each read.
        #[arg(long, default_value_t = 50)]
        range_limit: i64,
        /// l (linearizable) or s (serializable).
        #[arg(long, default_value = "l")]
        consistency: String,
    },
    /// Watch streams x watchers, then puts; records watcher creation and event latency.
    Watch {
        #[command(flatten)]
        w: WatchArgs,
        #[arg(long = "watch-per-stream", default_value_t = 100)]
        watch_per_stream: usize,
        #[arg(long, default_value_t = 32)]
        key_size: usize,
        #[arg(long, default_value_t = 1)]
        key_space_size: u64,
        #[arg(long)]
        sequential_keys: bool,
    },
    /// Put-to-event latency with streams x watchers on one key.
    WatchLatency {
        #[command(flatten)]
        w: WatchArgs,
        #[arg(long, default_value_t = 10)]
        watchers_per_stream: usize,
        #[arg(long, default_value_t = 32)]
        key_size: usize,
    },
    /// Lease keep-alive round trips, one lease per client.
    LeaseKeepalive,
    /// Start etcd (and ketch when it serves), run a workload list against each, write a report.
    Compare(crate::compare::CompareArgs),
}

/// Watchers kept open and drained while `put` runs (the cost of watching on the write path).
#[derive(Debug, Clone, Args)]
pub struct PutWatchArgs {
    /// Watchers opened before the puts start and drained until they end (0 = none). Each
    /// event's put-to-event latency is recorded under `watch-event`.
    #[arg(long, default_value_t = 0)]
    pub watchers: usize,
    /// Watch streams the watchers share (a multiple of it is required); streams are spread
    /// over the connections.
    #[arg(long, default_value_t = 10)]
    pub watch_streams: usize,
    /// Every watcher watches the whole key range the puts write, so each put reaches every
    /// watcher. Default: watcher j watches key j mod --key-space-size, as etcd's `watch`.
    #[arg(long)]
    pub watch_prefix: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ReadArgs {
    /// l (linearizable) or s (serializable).
    #[arg(long, default_value = "l")]
    pub consistency: String,
    /// Maximum keys returned (0 = no limit).
    #[arg(long, default_value_t = 0)]
    pub limit: i64,
    /// Return only the count.
    #[arg(long)]
    pub count_only: bool,
}

#[derive(Debug, Clone, Args)]
pub struct WatchArgs {
    /// Watch streams.
    #[arg(long, default_value_t = 10)]
    pub streams: usize,
    /// Puts in total (etcd's name; same as --total).
    #[arg(long)]
    pub put_total: Option<u64>,
    /// Puts per second (0 = as fast as possible; same as --rate).
    #[arg(long)]
    pub put_rate: Option<f64>,
    /// Value size (at least 8: the send timestamp).
    #[arg(long, default_value_t = 32)]
    pub val_size: usize,
    /// Ask for the previous key-value with each event.
    #[arg(long, alias = "prevkey")]
    pub prevkv: bool,
}

/// Parses `10s`, `500ms`, `2m`, `1h`, `250us` or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("bad duration {s:?}"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1e3,
        "us" | "µs" => n / 1e6,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("bad duration unit in {s:?} (use h, m, s, ms, us)")),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("bad duration {s:?}"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// `l` → false, `s` → true (serializable).
pub fn serializable(consistency: &str) -> Result<bool, String> {
    match consistency {
        "l" => Ok(false),
        "s" => Ok(true),
        other => Err(format!("--consistency must be l or s, got {other:?}")),
    }
}
