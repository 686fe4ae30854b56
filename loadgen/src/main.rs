//! `ketch-loadgen`: command-line entry point (see `ketch-loadgen --help` and docs/loadgen.md).

use anyhow::{Context, Result};
use clap::Parser;
use ketch_loadgen::cli::{Cli, Cmd};
use ketch_loadgen::{compare, report, run, runfolder};

fn main() -> Result<()> {
    let argv: Vec<String> = std::env::args().collect();
    let cli = Cli::parse();
    // One thread: tokio's current-thread runtime, whose tasks and I/O driver share the
    // thread without the multi-thread scheduler's queues and wake-ups (a unary call cost the
    // tool about 6 us of CPU on it against 10-12 us on a one-worker multi-thread runtime).
    let mut builder = if cli.common.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(cli.common.threads);
        b
    };
    let rt = builder
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    if let Cmd::Compare(args) = &cli.cmd {
        return rt.block_on(compare::run(args, &cli.common));
    }
    let out = rt.block_on(run::run(&cli.common, &cli.cmd))?;
    if cli.common.json {
        println!("{}", serde_json::to_string_pretty(&out.summary)?);
    } else {
        print!("{}", report::text(&out.summary));
    }
    if let Some(dir) = &cli.common.output {
        runfolder::write(
            dir,
            &out,
            &argv,
            &cli.common.endpoints,
            cli.common.server_data_dir.as_deref(),
        )?;
        eprintln!("run folder: {}", dir.display());
    }
    Ok(())
}
