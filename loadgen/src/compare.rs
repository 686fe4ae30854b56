//! Comparison runs (filled in below).
use crate::cli::Common;
use anyhow::Result;
use clap::Args;

#[derive(Debug, Clone, Args)]
pub struct CompareArgs {}

pub async fn run(_a: &CompareArgs, _c: &Common) -> Result<()> {
    anyhow::bail!("compare: not written yet")
}
