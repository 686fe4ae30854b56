//! The run folder: what produced the figures (command, endpoints, server versions, machine, git
//! revision) and what they are (summary, report, time series, interval log, plots).

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::connect::EndpointStatus;
use crate::machine::{self, GitRev, Machine};
use crate::report;
use crate::run::RunOutput;

/// Files every run folder holds.
pub const RUN_FOLDER_FILES: [&str; 8] = [
    "command.txt",
    "run.json",
    "summary.json",
    "report.txt",
    "timeseries.csv",
    "latency.hlog",
    "latency-percentiles.svg",
    "throughput.svg",
];

#[derive(Debug, Serialize)]
pub struct RunMeta<'a> {
    pub command: &'a [String],
    pub started_utc: String,
    pub endpoints: &'a [String],
    pub servers: &'a [EndpointStatus],
    pub machine: Machine,
    pub git: Option<GitRev>,
}

/// Quotes an argument for a POSIX shell when it needs it.
pub fn shell_quote(a: &str) -> String {
    if !a.is_empty()
        && a.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c))
    {
        a.to_string()
    } else {
        format!("'{}'", a.replace('\'', r"'\''"))
    }
}

/// Writes the run folder `dir`, which must not exist or be empty (run folders are never edited).
pub fn write(
    dir: &Path,
    out: &RunOutput,
    argv: &[String],
    endpoints: &[String],
    data_dir: Option<&Path>,
) -> Result<()> {
    if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
        bail!(
            "{} exists and is not empty: run folders are never overwritten",
            dir.display()
        );
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let put = |name: &str, bytes: &[u8]| {
        std::fs::write(dir.join(name), bytes).with_context(|| format!("writing {name}"))
    };
    let cmd: Vec<String> = argv.iter().map(|a| shell_quote(a)).collect();
    put("command.txt", format!("{}\n", cmd.join(" ")).as_bytes())?;
    let meta = RunMeta {
        command: argv,
        started_utc: machine::utc_timestamp(out.start_unix),
        endpoints,
        servers: &out.statuses,
        machine: machine::machine(data_dir),
        git: machine::git_rev(),
    };
    put("run.json", serde_json::to_string_pretty(&meta)?.as_bytes())?;
    put(
        "summary.json",
        serde_json::to_string_pretty(&out.summary)?.as_bytes(),
    )?;
    put("report.txt", report::text(&out.summary).as_bytes())?;
    put("timeseries.csv", out.series.csv().as_bytes())?;
    put("latency.hlog", &out.series.hlog(out.start_unix))?;
    let title = format!("{} latency by percentile", out.summary.workload);
    let hists: Vec<(String, &_)> = out
        .recorder
        .ops
        .iter()
        .map(|(op, s)| (op.to_string(), &s.hist))
        .collect();
    put(
        "latency-percentiles.svg",
        report::percentile_plot(&title, &hists).as_bytes(),
    )?;
    let title = format!("{} throughput", out.summary.workload);
    put(
        "throughput.svg",
        report::throughput_plot(&title, &out.series.rows).as_bytes(),
    )?;
    Ok(())
}
