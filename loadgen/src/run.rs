//! One measured run: connect, build the workload from the command line, drive it, summarise.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use etcd_client::{Client, CompactionOptions};
use tokio::time::Instant;

use crate::cli::{Cmd, Common, DEFAULT_TOTAL, KeyArgs, PutWatchArgs, WatchArgs, serializable};
use crate::connect::{self, EndpointStatus};
use crate::driver::{self, DriveConfig, IntervalObserver, SharedRecorder, Workload};
use crate::grpc::{self, KvConn};
use crate::machine::{self, CpuTimes};
use crate::pacing::{Pacer, StopRule};
use crate::report::{CpuUse, Summary};
use crate::stats::Recorder;
use crate::timeseries::{Interval, TimeSeries};
use crate::watch::{self, WatchSpec};
use crate::workloads::{self, KeyGen, RangeSpec, StampedPut};

/// Everything a run measured, for the report and the run folder.
pub struct RunOutput {
    pub summary: Summary,
    pub recorder: Recorder,
    pub series: TimeSeries,
    pub statuses: Vec<EndpointStatus>,
    pub start_unix: Duration,
}

fn keygen(k: &KeyArgs) -> Result<KeyGen> {
    if k.key_space_size == 0 || k.key_size == 0 {
        bail!("--key-size and --key-space-size must be at least 1");
    }
    Ok(KeyGen {
        key_size: k.key_size,
        key_space: k.key_space_size,
        sequential: k.sequential_keys,
    })
}

fn stop_rule(common: &Common, total: Option<u64>) -> StopRule {
    let total = total.or(common.total);
    StopRule {
        total: if total.is_none() && common.duration.is_none() {
            Some(DEFAULT_TOTAL)
        } else {
            total
        },
        duration: common.duration,
    }
}

/// The workload's name as etcd's tool spells it.
pub fn workload_name(cmd: &Cmd) -> &'static str {
    match cmd {
        Cmd::Put { .. } => "put",
        Cmd::Range { .. } => "range",
        Cmd::TxnPut { .. } => "txn-put",
        Cmd::TxnMixed { .. } => "txn-mixed",
        Cmd::Watch { .. } => "watch",
        Cmd::WatchLatency { .. } => "watch-latency",
        Cmd::LeaseKeepalive => "lease-keepalive",
        Cmd::Compare(_) => "compare",
    }
}

/// Runs the workload `cmd` against `common.endpoints`.
pub async fn run(common: &Common, cmd: &Cmd) -> Result<RunOutput> {
    if common.clients == 0 || common.conns == 0 {
        bail!("--clients and --conns must be at least 1");
    }
    let dial = connect::Dial::new(
        common.dial_timeout,
        common.cacert.as_deref(),
        common.cert.as_deref(),
        common.key.as_deref(),
    )?;
    let statuses = connect::statuses(&common.endpoints, &dial).await?;
    let targets = connect::dial_targets(&statuses, common.target_leader)?;
    // etcd-client connections for watch and lease streams and compaction, lean ones for KV
    // calls; each set is opened only when the workload uses it.
    let streams = match cmd {
        Cmd::LeaseKeepalive | Cmd::Watch { .. } | Cmd::WatchLatency { .. } => common.conns,
        Cmd::Put { watch, .. } if watch.watchers > 0 => common.conns,
        Cmd::Put {
            compact_interval, ..
        } if !compact_interval.is_zero() => 1,
        _ => 0,
    };
    let conns = match streams {
        0 => Vec::new(),
        n => connect::connect_all(&targets, n, &dial).await?,
    };
    let kv = match cmd {
        Cmd::LeaseKeepalive | Cmd::Compare(_) => Vec::new(),
        _ => grpc::connect_all(&targets, common.conns, &dial).await?,
    };
    let m = Measure::new(common);
    let phase = match cmd {
        Cmd::Put {
            keys,
            compact_interval,
            compact_index_delta,
            watch: pw,
        } => {
            let kg = keygen(keys)?;
            let compactor = (!compact_interval.is_zero()).then(|| {
                tokio::spawn(compact_loop(
                    conns[0].clone(),
                    *compact_interval,
                    *compact_index_delta,
                    m.recorder.clone(),
                ))
            });
            let stop = stop_rule(common, None);
            let r = if pw.watchers == 0 {
                let w = workloads::Put::new(&kv, kg, keys.val_size);
                Ok(m.drive(w, stop, common.rate).await)
            } else {
                match put_watch_spec(kg, pw) {
                    Ok(spec) => {
                        m.watch(&conns, &kv, spec, keys.val_size, stop, common.rate)
                            .await
                    }
                    Err(e) => Err(e),
                }
            };
            if let Some(c) = compactor {
                c.abort();
                // Wait until the task is gone, so it no longer holds the recorder.
                let _ = c.await;
                // A compaction recorded after the last interval was taken goes in one more.
                if let Ok(phase) = &r {
                    driver::take_interval(&m.recorder, &m.series, Instant::now() - phase.elapsed);
                }
            }
            r?
        }
        Cmd::Range {
            key,
            end,
            read,
            keys_only,
        } => {
            let spec = RangeSpec {
                key: key.as_bytes().to_vec(),
                end: end.as_ref().map(|e| e.as_bytes().to_vec()),
                serializable: serializable(&read.consistency).map_err(anyhow::Error::msg)?,
                limit: read.limit,
                count_only: read.count_only,
                keys_only: *keys_only,
            };
            m.drive(
                workloads::Range::new(&kv, spec),
                stop_rule(common, None),
                common.rate,
            )
            .await
        }
        Cmd::TxnPut { keys, txn_ops } => {
            if *txn_ops == 0 || *txn_ops as u64 > keys.key_space_size {
                bail!("--txn-ops must be 1..=--key-space-size (keys in one txn must differ)");
            }
            let w = workloads::TxnPut::new(&kv, keygen(keys)?, keys.val_size, *txn_ops);
            m.drive(w, stop_rule(common, None), common.rate).await
        }
        Cmd::TxnMixed {
            keys,
            rw_ratio,
            end_key,
            range_limit,
            consistency,
        } => {
            let read = RangeSpec {
                end: (!end_key.is_empty()).then(|| end_key.as_bytes().to_vec()),
                serializable: serializable(consistency).map_err(anyhow::Error::msg)?,
                limit: *range_limit,
                ..RangeSpec::default()
            };
            let w = workloads::TxnMixed::new(&kv, keygen(keys)?, keys.val_size, *rw_ratio, read);
            m.drive(w, stop_rule(common, None), common.rate).await
        }
        Cmd::LeaseKeepalive => {
            let w = workloads::LeaseKeepalive::new(&conns, common.clients).await?;
            m.drive(w, stop_rule(common, None), common.rate).await
        }
        Cmd::Watch {
            w,
            watch_per_stream,
            key_size,
            key_space_size,
            sequential_keys,
        } => {
            let keys = KeyGen {
                key_size: *key_size,
                key_space: *key_space_size,
                sequential: *sequential_keys,
            };
            let spec = WatchSpec {
                streams: w.streams,
                watchers_per_stream: *watch_per_stream,
                keys,
                prev_kv: w.prevkv,
                whole_range: false,
                event_op: "watch-event",
            };
            let (stop, rate) = watch_stop_rate(common, w);
            m.watch(&conns, &kv, spec, w.val_size, stop, rate).await?
        }
        Cmd::WatchLatency {
            w,
            watchers_per_stream,
            key_size,
        } => {
            let keys = KeyGen {
                key_size: *key_size,
                key_space: 1,
                sequential: false,
            };
            let spec = WatchSpec {
                streams: w.streams,
                watchers_per_stream: *watchers_per_stream,
                keys,
                prev_kv: w.prevkv,
                whole_range: false,
                event_op: "watch-latency",
            };
            let (stop, rate) = watch_stop_rate(common, w);
            m.watch(&conns, &kv, spec, w.val_size, stop, rate).await?
        }
        Cmd::Compare(_) => bail!("compare is not a workload"),
    };
    m.finish(common, workload_name(cmd), phase, statuses)
}

/// What the measured phase took: wall time, this process's CPU times around it, and the
/// open-loop rate it ran at (`--rate`, or a watch workload's `--put-rate`).
struct Phase {
    elapsed: Duration,
    cpu0: CpuTimes,
    cpu1: CpuTimes,
    rate: Option<f64>,
}

/// Shared state of one measured phase.
struct Measure {
    recorder: SharedRecorder,
    series: Arc<Mutex<TimeSeries>>,
    cfg: DriveConfig,
    start_unix: Duration,
    threads: usize,
    conns: usize,
}

impl Measure {
    fn new(common: &Common) -> Self {
        Measure {
            recorder: Arc::new(Mutex::new(Recorder::default())),
            series: Arc::new(Mutex::new(TimeSeries::default())),
            cfg: DriveConfig {
                clients: common.clients,
                request_timeout: common.request_timeout,
                interval: common.interval,
            },
            start_unix: machine::unix_now(),
            threads: common.threads,
            conns: common.conns,
        }
    }

    async fn drive<W: Workload>(&self, w: W, stop: StopRule, rate: Option<f64>) -> Phase {
        let cpu0 = machine::cpu_times();
        let pacer = Arc::new(Pacer::new(Instant::now(), rate, stop));
        let observer = progress_observer(pacer.expected_total());
        let elapsed = driver::drive(
            Arc::new(w),
            pacer,
            self.cfg,
            self.recorder.clone(),
            self.series.clone(),
            observer,
        )
        .await;
        if std::io::stderr().is_terminal() {
            eprintln!();
        }
        Phase {
            elapsed,
            cpu0,
            cpu1: machine::cpu_times(),
            rate,
        }
    }

    /// Opens the watchers of `spec`, runs stamped puts with them open, then waits for the
    /// events still on their way.
    async fn watch(
        &self,
        conns: &[Client],
        kv: &[KvConn],
        spec: WatchSpec,
        val_size: usize,
        stop: StopRule,
        rate: Option<f64>,
    ) -> Result<Phase> {
        let per_key = Arc::new(watch::watchers_per_key(&spec)?);
        let base = Instant::now();
        let watchers = watch::open(conns, spec, base, self.recorder.clone()).await?;
        let puts = StampedPut::new(kv, spec.keys, val_size, base, per_key);
        let expected = puts.expected_events.clone();
        let phase = self.drive(puts, stop, rate).await;
        let puts_start = Instant::now() - phase.elapsed;
        watchers
            .finish(
                expected.load(std::sync::atomic::Ordering::Relaxed),
                &self.recorder,
                spec.event_op,
            )
            .await;
        // Events delivered after the puts ended belong in the time series too.
        driver::take_interval(&self.recorder, &self.series, puts_start);
        Ok(Phase {
            cpu1: machine::cpu_times(),
            ..phase
        })
    }

    fn finish(
        self,
        common: &Common,
        workload: &str,
        phase: Phase,
        statuses: Vec<EndpointStatus>,
    ) -> Result<RunOutput> {
        let recorder = Arc::try_unwrap(self.recorder)
            .ok()
            .context("recorder still shared")?
            .into_inner()
            .expect("recorder lock");
        let series = Arc::try_unwrap(self.series)
            .ok()
            .context("series still shared")?
            .into_inner()
            .expect("series lock");
        let requests = recorder.total_requests();
        let Phase {
            elapsed,
            cpu0,
            cpu1,
            rate,
        } = phase;
        let user_s = (cpu1.user.saturating_sub(cpu0.user)).as_secs_f64();
        let sys_s = (cpu1.sys.saturating_sub(cpu0.sys)).as_secs_f64();
        let summary = Summary {
            tool: format!("ketch-loadgen {}", env!("CARGO_PKG_VERSION")),
            workload: workload.to_string(),
            mode: if rate.is_some() {
                "open-loop"
            } else {
                "closed-loop"
            }
            .to_string(),
            rate_per_s: rate,
            clients: common.clients,
            conns: self.conns,
            threads: self.threads,
            elapsed_s: elapsed.as_secs_f64(),
            requests,
            cpu: CpuUse {
                user_s,
                sys_s,
                per_request_us: if requests > 0 {
                    (user_s + sys_s) * 1e6 / requests as f64
                } else {
                    0.0
                },
                cores_busy: (user_s + sys_s) / elapsed.as_secs_f64().max(1e-9),
            },
            ops: recorder.summaries(elapsed),
            send_lag: recorder.send_lag_summary(),
        };
        Ok(RunOutput {
            summary,
            recorder,
            series,
            statuses,
            start_unix: self.start_unix,
        })
    }
}

/// The watch workloads' put phase: `--put-rate` (else `--rate`), and `--put-total` (else
/// `--total`, else etcd's default of 1000 puts unless a duration was asked for).
fn watch_stop_rate(common: &Common, w: &WatchArgs) -> (StopRule, Option<f64>) {
    let rate = w.put_rate.filter(|r| *r > 0.0).or(common.rate);
    let total = w
        .put_total
        .or(common.total)
        .or(common.duration.is_none().then_some(1000));
    let stop = StopRule {
        total,
        duration: common.duration,
    };
    (stop, rate)
}

/// The watchers of `put --watchers N`: N / --watch-streams per stream, on the put key space.
fn put_watch_spec(keys: KeyGen, pw: &PutWatchArgs) -> Result<WatchSpec> {
    let streams = pw.watch_streams.min(pw.watchers);
    if streams == 0 || !pw.watchers.is_multiple_of(streams) {
        bail!("--watchers must be a multiple of --watch-streams (at least 1)");
    }
    Ok(WatchSpec {
        streams,
        watchers_per_stream: pw.watchers / streams,
        keys,
        prev_kv: false,
        whole_range: pw.watch_prefix,
        event_op: "watch-event",
    })
}

/// Compacts to `current revision - delta` every `every`, as etcd's put --compact-interval.
async fn compact_loop(client: Client, every: Duration, delta: i64, rec: SharedRecorder) {
    let mut kv = client.kv_client();
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        let t0 = Instant::now();
        let r = async {
            let rev = kv
                .get("compact-probe", None)
                .await?
                .header()
                .map_or(0, |h| h.revision());
            if rev - delta > 0 {
                kv.compact(rev - delta, Some(CompactionOptions::new()))
                    .await?;
            }
            Ok::<_, etcd_client::Error>(())
        }
        .await;
        let r = r.map_err(|e| connect::error_message(&e));
        rec.lock()
            .expect("recorder")
            .record("compact", t0.elapsed(), r);
    }
}

/// A one-line progress bar on stderr, only when stderr is a terminal.
fn progress_observer(expected: Option<u64>) -> Option<IntervalObserver> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let started = std::time::Instant::now();
    Some(Box::new(move |iv: &Interval, done: u64| {
        let rates: Vec<String> = iv
            .rows
            .iter()
            .map(|r| format!("{} {:.0}/s p99 {:.2}ms", r.op, r.requests_per_s, r.p99_ms))
            .collect();
        let bar = match expected {
            Some(total) if total > 0 => {
                let filled = (done.min(total) * 30 / total) as usize;
                format!(
                    "[{}{}] {done}/{total}",
                    "#".repeat(filled),
                    ".".repeat(30 - filled)
                )
            }
            _ => format!("{done} requests"),
        };
        let mut e = std::io::stderr().lock();
        let _ = write!(
            e,
            "\r\x1b[2K{:>6.1}s {bar} {}",
            started.elapsed().as_secs_f64(),
            rates.join(", ")
        );
        let _ = e.flush();
    }))
}
