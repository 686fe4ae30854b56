//! `ketch-conformance`: runs the scenario catalogue against ketch, etcd, both, or given endpoints.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use ketch_conformance::catalogue;
use ketch_conformance::report::{self, RunInfo};
use ketch_conformance::runner::{self, RunConfig, Status, Target};
use ketch_conformance::servers::{ServerKind, ServerSpec};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum TargetArg {
    Ketch,
    Etcd,
    Both,
}

#[derive(Debug, Parser)]
#[command(
    name = "ketch-conformance",
    about = "etcd conformance scenarios against ketch and etcd"
)]
struct Args {
    /// Which servers to start and test.
    #[arg(long, value_enum, default_value = "etcd")]
    target: TargetArg,
    /// Use a server someone else started (comma-separated client URLs) instead of starting one.
    #[arg(long)]
    endpoints: Option<String>,
    /// Only scenarios whose area equals, or whose name contains, one of these (comma-separated).
    #[arg(long)]
    scenario: Option<String>,
    /// Only the fast subset (what CI runs).
    #[arg(long)]
    fast: bool,
    /// List the selected scenarios with counts per area, and exit.
    #[arg(long)]
    list: bool,
    /// Seed for everything random.
    #[arg(long, env = "KETCH_CONFORMANCE_SEED", default_value_t = 1)]
    seed: u64,
    /// Write report.md and report.json into this directory.
    #[arg(long)]
    report: Option<PathBuf>,
    #[arg(long, default_value = "etcd")]
    etcd_bin: PathBuf,
    #[arg(long, default_value = "etcdctl")]
    etcdctl_bin: PathBuf,
    /// Default: $KETCH_BIN, else target/{release,debug}/ketch in the workspace.
    #[arg(long, env = "KETCH_BIN")]
    ketch_bin: Option<PathBuf>,
    /// Seconds a started server has to become healthy.
    #[arg(long, default_value_t = 15)]
    ready_timeout: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let scenarios = catalogue::select(args.scenario.as_deref(), args.fast);
    if args.list {
        print_list(&scenarios);
        return Ok(());
    }
    if scenarios.is_empty() {
        bail!("no scenario matches {:?}", args.scenario);
    }
    let targets = targets(&args)?;
    let cfg = RunConfig {
        etcdctl_bin: which(&args.etcdctl_bin)?,
        seed: args.seed,
    };
    eprintln!(
        "seed {} (set --seed or KETCH_CONFORMANCE_SEED to reproduce)",
        args.seed
    );
    let started = Instant::now();
    let started_utc = utc_now();
    // Read at the start: other work may be committed while a long run goes on.
    let git_revision = git_revision();
    let mut reports = Vec::with_capacity(scenarios.len());
    for s in &scenarios {
        let r = runner::run_scenario(s, &targets, &cfg).await;
        print_line(&r);
        reports.push(r);
    }
    let info = RunInfo {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        targets: targets.iter().map(Target::label).collect(),
        seed: args.seed,
        git_revision,
        etcd_version: tool_version(&args.etcd_bin),
        started_utc,
        duration_s: started.elapsed().as_secs(),
    };
    let mut failed = false;
    for (i, t) in info.targets.iter().enumerate() {
        let (p, f, s) = report::totals(&reports, i);
        eprintln!("{t}: {p} pass, {f} fail, {s} skipped of {}", reports.len());
        failed |= f > 0;
    }
    let diffs = reports.iter().filter(|r| r.difference.is_some()).count();
    if targets.len() == 2 {
        eprintln!("differences: {diffs}");
    }
    if let Some(dir) = &args.report {
        report::write(dir, &info, &reports).context("writing report")?;
        eprintln!("report written to {}", dir.display());
    }
    if failed || diffs > 0 {
        std::process::exit(1);
    }
    Ok(())
}

fn print_list(scenarios: &[ketch_conformance::scenario::Scenario]) {
    for s in scenarios {
        let fast = if s.fast { " [fast]" } else { "" };
        println!("{:<12} {}{fast}  {}", s.area.name(), s.name, s.about);
    }
    println!();
    for (area, n) in catalogue::counts(scenarios) {
        println!("{:<12} {n}", area.name());
    }
    println!("{:<12} {}", "total", scenarios.len());
}

fn print_line(r: &runner::ScenarioReport) {
    let cells: Vec<String> = r
        .outcomes
        .iter()
        .map(|o| match &o.status {
            Status::Pass => format!("{}=pass ({} ms)", o.target, o.duration_ms),
            Status::Fail(why) => format!("{}=FAIL: {why}", o.target),
            Status::Skip(why) => format!("{}=skip: {why}", o.target),
        })
        .collect();
    let diff = r
        .difference
        .as_deref()
        .map(|d| format!(" DIFF {d}"))
        .unwrap_or_default();
    eprintln!("{:<48} {}{diff}", r.name, cells.join("  "));
}

fn targets(args: &Args) -> anyhow::Result<Vec<Target>> {
    if let Some(eps) = &args.endpoints {
        let list = eps.split(',').map(|e| with_scheme(e.trim())).collect();
        return Ok(vec![Target::External(list)]);
    }
    let ready_timeout = Duration::from_secs(args.ready_timeout);
    let etcd = ServerSpec {
        kind: ServerKind::Etcd,
        bin: which(&args.etcd_bin)?,
        ready_timeout,
    };
    let ketch = ServerSpec {
        kind: ServerKind::Ketch,
        bin: ketch_bin(args),
        ready_timeout,
    };
    Ok(match args.target {
        TargetArg::Etcd => vec![Target::Spawn(etcd)],
        TargetArg::Ketch => vec![Target::Spawn(ketch)],
        TargetArg::Both => vec![Target::Spawn(etcd), Target::Spawn(ketch)],
    })
}

fn with_scheme(e: &str) -> String {
    if e.starts_with("http://") {
        e.to_string()
    } else {
        format!("http://{e}")
    }
}

/// $KETCH_BIN, else the workspace's target/release/ketch, else target/debug/ketch.
fn ketch_bin(args: &Args) -> PathBuf {
    if let Some(p) = &args.ketch_bin {
        return p.clone();
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(Path::new("."));
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"));
    let release = target_dir.join("release/ketch");
    if release.exists() {
        release
    } else {
        target_dir.join("debug/ketch")
    }
}

/// Resolves a bare program name on PATH (so reports and errors show the real path).
fn which(bin: &Path) -> anyhow::Result<PathBuf> {
    if bin.components().count() > 1 {
        return Ok(bin.to_path_buf());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(bin))
        .find(|p| p.exists())
        .with_context(|| format!("{} not found on PATH", bin.display()))
}

fn git_revision() -> String {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output();
    out.ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".to_string())
}

fn tool_version(bin: &Path) -> String {
    let out = std::process::Command::new(bin).arg("--version").output();
    out.ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(str::to_string)
        })
        .unwrap_or_else(|| "unknown".to_string())
}

fn utc_now() -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%S"])
        .output();
    out.ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}
