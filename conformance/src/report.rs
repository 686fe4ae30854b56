//! The run report: a markdown matrix (scenario x target) and the full JSON.

use std::fmt::Write as _;
use std::path::Path;

use crate::runner::{ScenarioReport, Status};

/// What produced a run (written at the top of both files).
#[derive(Clone, Debug, serde::Serialize)]
pub struct RunInfo {
    pub command: String,
    pub targets: Vec<String>,
    pub seed: u64,
    pub git_revision: String,
    pub etcd_version: String,
    pub started_utc: String,
    pub duration_s: u64,
}

/// Per target: (pass, fail, skip).
pub fn totals(reports: &[ScenarioReport], target: usize) -> (usize, usize, usize) {
    let mut t = (0, 0, 0);
    for r in reports {
        match r.outcomes.get(target).map(|o| &o.status) {
            Some(Status::Pass) => t.0 += 1,
            Some(Status::Fail(_)) => t.1 += 1,
            Some(Status::Skip(_)) => t.2 += 1,
            None => {}
        }
    }
    t
}

fn cell(status: &Status) -> String {
    let text = match status {
        Status::Pass => "pass".to_string(),
        Status::Fail(why) => format!("**fail**: {why}"),
        Status::Skip(why) => format!("skipped: {why}"),
    };
    table_text(&text)
}

/// Longest cell text in the markdown matrix (report.json has everything).
const CELL_CHARS_MAX: usize = 300;

/// Escapes a cell for a markdown table and cuts it to CELL_CHARS_MAX characters.
fn table_text(text: &str) -> String {
    let one_line = text.replace('|', "\\|").replace('\n', " ");
    if one_line.chars().count() <= CELL_CHARS_MAX {
        return one_line;
    }
    let cut: String = one_line.chars().take(CELL_CHARS_MAX).collect();
    format!("{cut}...")
}

/// The markdown matrix.
pub fn markdown(info: &RunInfo, reports: &[ScenarioReport]) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# ketch-conformance run\n");
    let _ = writeln!(md, "- command: `{}`", info.command);
    let _ = writeln!(md, "- git revision: {}", info.git_revision);
    let _ = writeln!(md, "- etcd: {}", info.etcd_version);
    let _ = writeln!(
        md,
        "- started: {} UTC, took {} s, seed {}",
        info.started_utc, info.duration_s, info.seed
    );
    for (i, t) in info.targets.iter().enumerate() {
        let (p, f, s) = totals(reports, i);
        let _ = writeln!(
            md,
            "- {t}: {p} pass, {f} fail, {s} skipped of {}",
            reports.len()
        );
    }
    let diff = info.targets.len() == 2;
    let _ = write!(md, "\n| scenario | area |");
    for t in &info.targets {
        let _ = write!(md, " {t} |");
    }
    if diff {
        let _ = write!(md, " first difference |");
    }
    let _ = write!(md, "\n|---|---|");
    for _ in &info.targets {
        let _ = write!(md, "---|");
    }
    if diff {
        let _ = write!(md, "---|");
    }
    md.push('\n');
    for r in reports {
        let _ = write!(md, "| {} | {} |", r.name, r.area);
        for o in &r.outcomes {
            let _ = write!(md, " {} |", cell(&o.status));
        }
        if diff {
            let d = table_text(r.difference.as_deref().unwrap_or("none"));
            let _ = write!(md, " {d} |");
        }
        md.push('\n');
    }
    md
}

/// Writes `report.md` and `report.json` into `dir`.
pub fn write(dir: &Path, info: &RunInfo, reports: &[ScenarioReport]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("report.md"), markdown(info, reports))?;
    let json = serde_json::json!({"run": info, "scenarios": reports});
    std::fs::write(
        dir.join("report.json"),
        serde_json::to_string_pretty(&json)?,
    )?;
    Ok(())
}
