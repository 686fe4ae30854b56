//! Records the git revision and rustc version for `ketch --version`.
//! `KETCH_GIT_SHA` (e.g. set by CI) wins over asking git.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=KETCH_GIT_SHA");
    let sha = std::env::var("KETCH_GIT_SHA")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| run("git", &["rev-parse", "--short", "HEAD"]));
    if let Some(dir) = run("git", &["rev-parse", "--absolute-git-dir"]) {
        // Re-run when HEAD moves (checkout or commit), so the SHA stays current.
        println!("cargo:rerun-if-changed={dir}/HEAD");
        println!("cargo:rerun-if-changed={dir}/logs/HEAD");
    }
    if let Some(sha) = sha {
        println!("cargo:rustc-env=KETCH_BUILD_GIT_SHA={sha}");
    }
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    if let Some(version) = run(&rustc, &["--version"]) {
        println!("cargo:rustc-env=KETCH_BUILD_RUSTC_VERSION={version}");
    }
}

fn run(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}
