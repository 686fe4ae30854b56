//! `ketch-loadgen compare`: starts etcd and ketch from their binaries (fresh data dir per run,
//! same flags, loopback ports), runs a list of cases against each in alternation, one loadgen
//! child process per run (pinned to other CPUs than the server when asked), and writes one
//! report folder: README.md with the table and ratios, comparison plots, and every run folder.

use std::fmt::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::cli::Common;
use crate::connect;
use crate::machine;
use crate::report::Summary;
use crate::runfolder::shell_quote;
use crate::svg::{self, Chart, Series};

/// How long a started server may take to answer a Status request.
pub const SERVER_READY_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a server may take to exit after SIGTERM before it is killed.
pub const SERVER_STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// Ports the comparison picks from (client and peer).
pub const PORT_RANGE: std::ops::Range<u16> = 40000..41000;

#[derive(Debug, Clone, Args)]
pub struct CompareArgs {
    /// etcd binary.
    #[arg(long, default_value = "/usr/bin/etcd")]
    pub etcd_bin: PathBuf,
    /// ketch binary (default: target/release/ketch, else `ketch` on PATH, if any).
    #[arg(long)]
    pub ketch_bin: Option<PathBuf>,
    /// Cases to run, comma separated (see --list-cases).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "put-1,put-100,range-l,range-s,put-100-open-2k,put-100-open"
    )]
    pub cases: Vec<String>,
    /// Print the known cases and exit.
    #[arg(long)]
    pub list_cases: bool,
    /// Measured duration of each run.
    #[arg(long, default_value = "10s", value_parser = crate::cli::parse_duration)]
    pub case_duration: Duration,
    /// Rounds: each round runs every case against every target, alternating targets.
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
    /// CPUs for the servers (taskset list, e.g. "0"); empty = no pinning.
    #[arg(long, default_value = "")]
    pub server_cpus: String,
    /// CPUs for the load generator (taskset list, e.g. "1"); empty = no pinning.
    #[arg(long, default_value = "")]
    pub loadgen_cpus: String,
    /// Parent folder of the report folder.
    #[arg(long, default_value = "results")]
    pub results_dir: PathBuf,
    /// Report folder (default: <results-dir>/<date>-compare-<shortrev>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// A paragraph (markdown) put at the top of the report: conditions, purpose.
    #[arg(long)]
    pub note: Option<String>,
}

/// A named load: loadgen arguments after the global ones.
pub struct Case {
    pub name: &'static str,
    pub about: &'static str,
    pub conns: usize,
    pub clients: usize,
    pub rate: Option<f64>,
    pub args: &'static [&'static str],
    /// Key/value put before the run (range cases read it).
    pub seed_key: Option<&'static str>,
}

const PUT: &[&str] = &[
    "put",
    "--key-size",
    "8",
    "--val-size",
    "256",
    "--sequential-keys",
    "--key-space-size",
    "100000",
];

/// `put` on 1,000 keys with 1,000 watchers open (10 streams, one watcher per key).
const PUT_K1000_WATCHED: &[&str] = &[
    "put",
    "--key-size",
    "8",
    "--val-size",
    "256",
    "--sequential-keys",
    "--key-space-size",
    "1000",
    "--watchers",
    "1000",
    "--watch-streams",
    "10",
];

/// The same puts without the watchers: the baseline of the watched case.
const PUT_K1000: &[&str] = PUT_K1000_WATCHED.split_at(8).0;

pub const CASES: &[Case] = &[
    Case {
        name: "put-1",
        about: "put, 1 client, 1 conn, keys 8 B, values 256 B",
        conns: 1,
        clients: 1,
        rate: None,
        args: PUT,
        seed_key: None,
    },
    Case {
        name: "put-100",
        about: "put, 100 clients, 10 conns, keys 8 B, values 256 B",
        conns: 10,
        clients: 100,
        rate: None,
        args: PUT,
        seed_key: None,
    },
    Case {
        name: "range-l",
        about: "range foo (256 B) linearizable, 100 clients, 10 conns",
        conns: 10,
        clients: 100,
        rate: None,
        args: &["range", "foo", "--consistency", "l"],
        seed_key: Some("foo"),
    },
    Case {
        name: "range-s",
        about: "range foo (256 B) serializable, 100 clients, 10 conns",
        conns: 10,
        clients: 100,
        rate: None,
        args: &["range", "foo", "--consistency", "s"],
        seed_key: Some("foo"),
    },
    Case {
        name: "put-100-open-2k",
        about: "put, open loop at 2,000/s, 100 clients, 10 conns (latency from intended send time)",
        conns: 10,
        clients: 100,
        rate: Some(2_000.0),
        args: PUT,
        seed_key: None,
    },
    Case {
        name: "put-100-open",
        about: "put, open loop at 10,000/s, 100 clients, 10 conns (latency from intended send time)",
        conns: 10,
        clients: 100,
        rate: Some(10_000.0),
        args: PUT,
        seed_key: None,
    },
    Case {
        name: "txn-put-100",
        about: "txn-put (1 op), 100 clients, 10 conns",
        conns: 10,
        clients: 100,
        rate: None,
        args: &[
            "txn-put",
            "--key-size",
            "8",
            "--val-size",
            "256",
            "--key-space-size",
            "100000",
        ],
        seed_key: None,
    },
    Case {
        name: "watch-latency",
        about: "watch-latency, 10 streams x 10 watchers, 100 puts/s",
        conns: 10,
        clients: 10,
        rate: None,
        args: &["watch-latency", "--put-rate", "100", "--val-size", "256"],
        seed_key: None,
    },
    Case {
        name: "put-100-k1000",
        about: "put, 100 clients, 10 conns, 1,000 keys in sequence, no watchers \
                (baseline of put-100-watch-1000)",
        conns: 10,
        clients: 100,
        rate: None,
        args: PUT_K1000,
        seed_key: None,
    },
    Case {
        name: "put-100-watch-1000",
        about: "put-100-k1000 with 1,000 watchers open (10 streams, one watcher per key): \
                every put produces one event",
        conns: 10,
        clients: 100,
        rate: None,
        args: PUT_K1000_WATCHED,
        seed_key: None,
    },
    Case {
        name: "lease-keepalive-100",
        about: "lease-keepalive, 100 clients, 10 conns",
        conns: 10,
        clients: 100,
        rate: None,
        args: &["lease-keepalive"],
        seed_key: None,
    },
];

fn case(name: &str) -> Result<&'static Case> {
    CASES
        .iter()
        .find(|c| c.name == name)
        .with_context(|| format!("unknown case {name:?} (see --list-cases)"))
}

/// A server under test and why it may be unusable.
struct Target {
    name: &'static str,
    bin: PathBuf,
    /// Set once the server failed to start or serve; it is then skipped.
    unusable: Option<String>,
}

/// One measured run.
struct RunResult {
    round: usize,
    case: &'static str,
    target: &'static str,
    summary: Summary,
    folder: String,
    /// Server CPU time during the loadgen run, per request, in microseconds.
    server_cpu_us_per_request: Option<f64>,
    /// 1-minute load average just before the run (the machine's other load).
    load_before: f64,
    /// Median 4 KiB fdatasync latency in the data dir's filesystem just before the run.
    fsync_p50_before: Option<Duration>,
}

pub async fn run(a: &CompareArgs, common: &Common) -> Result<()> {
    if a.list_cases {
        for c in CASES {
            println!("{:<20} {}", c.name, c.about);
        }
        return Ok(());
    }
    let cases: Vec<&Case> = a.cases.iter().map(|n| case(n)).collect::<Result<_>>()?;
    // Read once: other work may commit while the comparison runs.
    let git = machine::git_rev();
    let out = report_dir(a, git.as_ref())?;
    std::fs::create_dir_all(&out)?;
    let mut targets = vec![Target {
        name: "etcd",
        bin: a.etcd_bin.clone(),
        unusable: None,
    }];
    let ketch_note = match find_ketch(a) {
        Some(bin) => {
            targets.push(Target {
                name: "ketch",
                bin,
                unusable: None,
            });
            None
        }
        None => Some(
            "no ketch binary found (looked at --ketch-bin, target/release/ketch, PATH)".to_string(),
        ),
    };
    let mut results = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    for round in 0..a.rounds {
        for (ci, c) in cases.iter().enumerate() {
            // Alternate which target goes first, so neither always runs on a warmer machine.
            let order: Vec<usize> = if (round + ci) % 2 == 0 {
                (0..targets.len()).collect()
            } else {
                (0..targets.len()).rev().collect()
            };
            for ti in order {
                if targets[ti].unusable.is_some() {
                    continue;
                }
                match run_one(a, common, &out, round, c, &targets[ti]).await {
                    Ok(Ok(r)) => results.push(r),
                    Ok(Err(why)) if targets[ti].name == "ketch" => {
                        eprintln!("ketch failed {}: {why}", c.name);
                        failures.push(format!("round {round}, `{}` on ketch: {why}", c.name));
                    }
                    Ok(Err(why)) => bail!("etcd, case {}: {why}", c.name),
                    Err(e) if targets[ti].name == "ketch" => {
                        eprintln!("ketch unusable: {e:#}");
                        targets[ti].unusable = Some(format!("{e:#}"));
                    }
                    Err(e) => return Err(e.context(format!("etcd, case {}", c.name))),
                }
            }
        }
    }
    let unusable = targets
        .iter()
        .find(|t| t.name == "ketch")
        .and_then(|t| t.unusable.clone());
    let headline = headline(
        ketch_note.or(unusable).as_deref(),
        results.iter().any(|r| r.target == "ketch"),
        &failures,
    );
    let readme = write_report(a, common, &out, &cases, &results, &headline, git)?;
    println!("{readme}");
    eprintln!("report: {}", out.join("README.md").display());
    Ok(())
}

/// What the report says first: whether ketch was measured, and what failed.
pub fn headline(unusable: Option<&str>, ketch_measured: bool, failures: &[String]) -> String {
    let mut h = match (unusable, ketch_measured) {
        (Some(why), false) => {
            format!("**ketch was not measured**: {why}. This report measures etcd alone.")
        }
        (Some(why), true) => format!(
            "ketch was measured until it became unusable ({why}); later runs measure etcd alone."
        ),
        (None, _) => {
            "Both servers were measured, alternating, with the same flags and cases.".to_string()
        }
    };
    if !failures.is_empty() {
        h.push_str("\n\nRuns that failed (no figures):\n");
        for f in failures {
            h.push_str(&format!("\n- {f}"));
        }
    }
    h
}

fn report_dir(a: &CompareArgs, git: Option<&machine::GitRev>) -> Result<PathBuf> {
    if let Some(o) = &a.out {
        return Ok(o.clone());
    }
    let date = &machine::utc_timestamp(machine::unix_now())[..10];
    let rev = git.map_or("norev".to_string(), |g| g.commit[..7].to_string());
    let dir = a.results_dir.join(format!("{date}-compare-{rev}"));
    if dir.exists() {
        bail!(
            "{} already exists: pass --out for another folder",
            dir.display()
        );
    }
    Ok(dir)
}

fn find_ketch(a: &CompareArgs) -> Option<PathBuf> {
    if let Some(b) = &a.ketch_bin {
        return Some(b.clone());
    }
    let local = PathBuf::from("target/release/ketch");
    if local.is_file() {
        return Some(local);
    }
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("ketch"))
            .find(|f| f.is_file())
    })
}

/// A free loopback port in [`PORT_RANGE`], found by binding it.
pub fn free_port(skip: &[u16]) -> Result<u16> {
    let span = (PORT_RANGE.end - PORT_RANGE.start) as u64;
    let offset = rand::random_range(0..span);
    for i in 0..span {
        let port = PORT_RANGE.start + ((offset + i) % span) as u16;
        if !skip.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no free port in {PORT_RANGE:?}")
}

/// A started server process, stopped (SIGTERM, then SIGKILL) and its data dir removed on drop.
pub struct ServerGuard {
    child: Child,
    dir: PathBuf,
    pub client_url: String,
    pub data_dir: PathBuf,
}

impl ServerGuard {
    /// The server's process id (to pause it with SIGSTOP in tests, for example).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ServerGuard {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the pid of a child we spawned and have not reaped yet.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = std::time::Instant::now() + SERVER_STOP_TIMEOUT;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts `bin` with etcd's flags as a one-member cluster on fresh loopback ports and a fresh
/// data dir, optionally under `taskset -c cpus`.
pub fn start_server(bin: &Path, name: &str, cpus: &str) -> Result<ServerGuard> {
    let client = free_port(&[])?;
    let peer = free_port(&[client])?;
    let dir = std::env::temp_dir().join(format!(
        "ketch-loadgen-{name}-{}-{client}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let data_dir = dir.join("data");
    let (cu, pu) = (
        format!("http://127.0.0.1:{client}"),
        format!("http://127.0.0.1:{peer}"),
    );
    let log = std::fs::File::create(dir.join("server.log"))?;
    let mut cmd = if cpus.is_empty() {
        Command::new(bin)
    } else {
        let mut c = Command::new("taskset");
        c.args(["-c", cpus]).arg(bin);
        c
    };
    cmd.args(member_flags(name, &data_dir, &cu, &pu))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    Ok(ServerGuard {
        child,
        dir,
        client_url: cu,
        data_dir,
    })
}

/// etcd's flags for a one-member cluster `name` (ketch takes the same).
pub fn member_flags(
    name: &str,
    data_dir: &Path,
    client_url: &str,
    peer_url: &str,
) -> Vec<std::ffi::OsString> {
    let mut v: Vec<std::ffi::OsString> = vec!["--name".into(), name.into(), "--data-dir".into()];
    v.push(data_dir.into());
    for (flag, url) in [
        ("--listen-client-urls", client_url),
        ("--advertise-client-urls", client_url),
        ("--listen-peer-urls", peer_url),
        ("--initial-advertise-peer-urls", peer_url),
    ] {
        v.extend([flag.into(), url.into()]);
    }
    v.extend([
        "--initial-cluster".into(),
        format!("{name}={peer_url}").into(),
    ]);
    v
}

/// Waits until the server answers Status, or says why it did not.
pub async fn wait_ready(s: &mut ServerGuard) -> Result<()> {
    let deadline = tokio::time::Instant::now() + SERVER_READY_TIMEOUT;
    loop {
        if let Some(status) = s.child.try_wait()? {
            let log = std::fs::read_to_string(s.dir.join("server.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(5).collect();
            bail!(
                "server exited ({status}) before serving; log tail: {}",
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            );
        }
        if connect::connect_one(
            &s.client_url,
            &connect::Dial::plain(Duration::from_millis(500)),
        )
        .await
        .is_ok()
        {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("server did not answer Status within {SERVER_READY_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn run_one(
    a: &CompareArgs,
    common: &Common,
    out: &Path,
    round: usize,
    c: &Case,
    t: &Target,
) -> Result<Result<RunResult, String>> {
    let mut server = start_server(&t.bin, t.name, &a.server_cpus)?;
    wait_ready(&mut server).await?;
    if let Some(key) = c.seed_key {
        let mut cl = connect::connect_one(
            &server.client_url,
            &connect::Dial::plain(common.dial_timeout),
        )
        .await?;
        cl.put(key, vec![b'v'; 256], None)
            .await
            .context("seeding the range key")?;
    }
    let folder = format!("r{round}-{}-{}", c.name, t.name);
    let args = loadgen_args(a, common, c, &server, &out.join(&folder));
    eprintln!(
        "round {round} {} on {}: {}",
        c.name,
        t.name,
        args.iter()
            .map(|s| shell_quote(s))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let (prog, rest) = args.split_first().expect("non-empty command");
    let load_before = machine::load_1min();
    let fsync_p50_before = machine::fsync_probe(&server.dir).ok().map(|(p50, _)| p50);
    let cpu0 = machine::process_cpu(server.pid());
    let output = tokio::process::Command::new(prog)
        .args(rest)
        .env("RUST_LIB_BACKTRACE", "0")
        .stderr(Stdio::piped())
        .output()
        .await?;
    let cpu1 = machine::process_cpu(server.pid());
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprint!("{stderr}");
    if !output.status.success() {
        // The case failed on a server that serves: report it and go on with the next case.
        let last = stderr
            .lines()
            .find(|l| l.starts_with("Error:"))
            .or_else(|| stderr.lines().rev().find(|l| !l.trim().is_empty()));
        return Ok(Err(format!(
            "loadgen exited with {}: {}",
            output.status,
            last.unwrap_or("no message")
        )));
    }
    let summary: Summary =
        serde_json::from_slice(&output.stdout).context("parsing loadgen JSON")?;
    drop(server);
    let server_cpu_us_per_request = match (cpu0, cpu1) {
        (Some(a), Some(b)) if summary.requests > 0 => {
            Some((b - a).as_secs_f64() * 1e6 / summary.requests as f64)
        }
        _ => None,
    };
    Ok(Ok(RunResult {
        round,
        case: c.name,
        target: t.name,
        summary,
        folder,
        server_cpu_us_per_request,
        load_before,
        fsync_p50_before,
    }))
}

fn loadgen_args(
    a: &CompareArgs,
    common: &Common,
    c: &Case,
    s: &ServerGuard,
    folder: &Path,
) -> Vec<String> {
    let exe = std::env::current_exe().map_or("ketch-loadgen".into(), |p| p.display().to_string());
    let mut v: Vec<String> = Vec::new();
    if !a.loadgen_cpus.is_empty() {
        v.extend(["taskset".into(), "-c".into(), a.loadgen_cpus.clone()]);
    }
    v.push(exe);
    v.extend([
        "--endpoints".into(),
        s.client_url.clone(),
        "--conns".into(),
        c.conns.to_string(),
        "--clients".into(),
        c.clients.to_string(),
    ]);
    v.extend([
        "--duration".into(),
        format!("{}ms", a.case_duration.as_millis()),
        "--threads".into(),
        common.threads.to_string(),
    ]);
    if let Some(r) = c.rate {
        v.extend(["--rate".into(), r.to_string()]);
    }
    v.extend([
        "--json".into(),
        "--output".into(),
        folder.display().to_string(),
    ]);
    v.extend(["--server-data-dir".into(), s.data_dir.display().to_string()]);
    v.extend(c.args.iter().map(|s| s.to_string()));
    v
}

fn main_op(s: &Summary) -> Option<&crate::stats::OpSummary> {
    s.ops.iter().max_by_key(|o| o.requests)
}

fn ms(s: Option<f64>) -> String {
    s.map_or("-".into(), |v| format!("{:.2}", v * 1000.0))
}

fn version_of(bin: &Path) -> String {
    Command::new(bin)
        .arg("--version")
        .output()
        .ok()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .take(2)
                .collect::<Vec<_>>()
                .join("; ")
        })
        .unwrap_or_else(|| "unknown".into())
}

fn write_report(
    a: &CompareArgs,
    common: &Common,
    out: &Path,
    cases: &[&Case],
    results: &[RunResult],
    headline: &str,
    git: Option<machine::GitRev>,
) -> Result<String> {
    let m = machine::machine(Some(&std::env::temp_dir()));
    let mut r = String::new();
    let _ = writeln!(
        r,
        "# ketch vs etcd: {}\n",
        machine::utc_timestamp(machine::unix_now())
    );
    let _ = writeln!(r, "{headline}\n");
    if let Some(note) = &a.note {
        let _ = writeln!(r, "{note}\n");
    }
    let _ = writeln!(r, "## Setup\n");
    let _ = writeln!(
        r,
        "- etcd: `{}` ({})",
        a.etcd_bin.display(),
        version_of(&a.etcd_bin)
    );
    if let Some(k) = find_ketch(a) {
        let _ = writeln!(r, "- ketch: `{}` ({})", k.display(), version_of(&k));
    }
    let _ = writeln!(
        r,
        "- machine: {} x {}, {:.1} GiB RAM, kernel {}",
        m.logical_cpus,
        m.cpu_model,
        m.memory_bytes as f64 / (1u64 << 30) as f64,
        m.kernel
    );
    if let Some(d) = &m.disk {
        let _ = writeln!(
            r,
            "- data dirs on: {} ({}, model {}, rotational {:?})",
            d.source,
            d.fs_type,
            d.model.as_deref().unwrap_or("?"),
            d.rotational
        );
    }
    let _ = writeln!(
        r,
        "- git: {}",
        git.map_or("unknown".into(), |g| format!(
            "{}{}",
            g.commit,
            if g.dirty { " (dirty)" } else { "" }
        ))
    );
    let pin = if a.server_cpus.is_empty() && a.loadgen_cpus.is_empty() {
        "not pinned (both share all CPUs)".to_string()
    } else {
        format!(
            "server on CPUs `{}`, loadgen on CPUs `{}` (taskset)",
            if a.server_cpus.is_empty() {
                "all"
            } else {
                &a.server_cpus
            },
            if a.loadgen_cpus.is_empty() {
                "all"
            } else {
                &a.loadgen_cpus
            }
        )
    };
    let _ = writeln!(r, "- pinning: {pin}");
    let _ = writeln!(
        r,
        "- each run: fresh server (one member, fresh data dir, loopback ports), {} s measured, loadgen with {} tokio threads; {} round(s)",
        a.case_duration.as_secs_f64(),
        common.threads,
        a.rounds
    );
    let _ = writeln!(
        r,
        "- command: `{}`\n",
        std::env::args()
            .map(|s| shell_quote(&s))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let _ = writeln!(r, "## Cases\n");
    for c in cases {
        let _ = writeln!(r, "- `{}`: {}", c.name, c.about);
    }
    let _ = writeln!(
        r,
        "\n## Results\n\nLatencies in ms; throughput = successful requests/s of the case's main operation; loadgen CPU = the tool's own CPU time per request (getrusage); server CPU = the server \
         process's CPU time during the run per request (/proc/<pid>/stat); load before = the \
         1-minute load average before the run (well above what our own runs leave behind means \
         other work was running and the figures are suspect); fsync p50 = median latency of 100 \
         4 KiB write+fdatasync calls in the data dir's filesystem just before the run (what the \
         disk offered a WAL; about 0.1-0.2 ms on this machine kind when idle); send lag p99 = \
         open-loop cases only, how late the load generator itself sent (included in the \
         latencies, which count from the intended send time).\n"
    );
    let _ = writeln!(
        r,
        "| case | server | round | req/s | p50 | p99 | p99.9 | max | errors | send lag p99 | loadgen CPU µs/req | server CPU µs/req | load before | fsync p50 ms | run folder |"
    );
    let _ = writeln!(
        r,
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    );
    for x in results {
        let Some(op) = main_op(&x.summary) else {
            continue;
        };
        let fsync = x
            .fsync_p50_before
            .map_or("n/a".into(), |d| format!("{:.2}", d.as_secs_f64() * 1000.0));
        let server_cpu = x
            .server_cpu_us_per_request
            .map_or("n/a".into(), |v| format!("{v:.1}"));
        let lag = x
            .summary
            .send_lag
            .as_ref()
            .map_or("n/a".into(), |l| format!("{:.3}", l.p99_s * 1000.0));
        let _ = writeln!(
            r,
            "| {} | {} | {} | {:.0} | {} | {} | {} | {:.2} | {} | {lag} | {:.1} | {server_cpu} | {:.2} | {fsync} | [{}]({}/report.txt) |",
            x.case,
            x.target,
            x.round,
            op.requests_per_s,
            ms(op.percentile_s(50.0)),
            ms(op.percentile_s(99.0)),
            ms(op.percentile_s(99.9)),
            op.slowest_s * 1000.0,
            x.summary.ops.iter().map(|o| o.errors).sum::<u64>(),
            x.summary.cpu.per_request_us,
            x.load_before,
            x.folder,
            x.folder
        );
    }
    ratio_table(&mut r, cases, results);
    let _ = writeln!(r, "\n## Plots\n");
    for c in cases {
        let file = format!("latency-{}.svg", c.name);
        std::fs::write(out.join(&file), case_plot(c, results))?;
        let _ = writeln!(r, "![{} latency]({file})", c.name);
    }
    let _ = writeln!(
        r,
        "\nEach run folder also holds its throughput over time (`throughput.svg`), full latency curve, time series CSV and HdrHistogram log."
    );
    std::fs::write(out.join("README.md"), &r)?;
    Ok(r)
}

fn mean(v: impl Iterator<Item = f64>) -> Option<f64> {
    let v: Vec<f64> = v.collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

fn ratio_table(r: &mut String, cases: &[&Case], results: &[RunResult]) {
    let _ = writeln!(r, "\n### ketch / etcd (mean over rounds)\n");
    let _ = writeln!(
        r,
        "| case | etcd req/s | ketch req/s | throughput ketch/etcd | p99 etcd | p99 ketch | p99 ketch/etcd |"
    );
    let _ = writeln!(r, "|---|---:|---:|---:|---:|---:|---:|");
    for c in cases {
        let pick = |t: &str, f: &dyn Fn(&crate::stats::OpSummary) -> Option<f64>| {
            mean(
                results
                    .iter()
                    .filter(|x| x.case == c.name && x.target == t)
                    .filter_map(|x| main_op(&x.summary).and_then(f)),
            )
        };
        let rps = |o: &crate::stats::OpSummary| Some(o.requests_per_s);
        let p99 = |o: &crate::stats::OpSummary| o.percentile_s(99.0);
        let (er, kr, ep, kp) = (
            pick("etcd", &rps),
            pick("ketch", &rps),
            pick("etcd", &p99),
            pick("ketch", &p99),
        );
        let ratio = |k: Option<f64>, e: Option<f64>| match (k, e) {
            (Some(k), Some(e)) if e > 0.0 => format!("{:.2}", k / e),
            _ => "n/a".into(),
        };
        let n = |v: Option<f64>| v.map_or("n/a".into(), |v| format!("{v:.0}"));
        let _ = writeln!(
            r,
            "| {} | {} | {} | {} | {} | {} | {} |",
            c.name,
            n(er),
            n(kr),
            ratio(kr, er),
            ms(ep),
            ms(kp),
            ratio(kp, ep)
        );
    }
}

/// Latency by percentile for one case, one curve per server and round.
fn case_plot(c: &Case, results: &[RunResult]) -> String {
    let series = results
        .iter()
        .filter(|x| x.case == c.name)
        .filter_map(|x| {
            let op = main_op(&x.summary)?;
            Some(Series {
                name: format!("{} r{}", x.target, x.round),
                points: op
                    .percentiles
                    .iter()
                    .map(|p| (svg::nines(p.percentile), p.seconds * 1000.0))
                    .collect(),
            })
        })
        .collect();
    svg::render(&Chart {
        title: &format!("{}: {} latency by percentile", c.name, c.args[0]),
        x_label: "percentile",
        y_label: "latency (ms)",
        x_ticks: svg::nines_ticks(4),
        series,
    })
}
