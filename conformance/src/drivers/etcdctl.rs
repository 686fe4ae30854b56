//! Runs the real `etcdctl` binary (ETCDCTL_API=3) and captures stdout, stderr and exit code.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

/// One etcdctl invocation may take this long before it is killed.
const ETCDCTL_TIMEOUT: Duration = Duration::from_secs(30);

/// What one etcdctl run printed.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct CtlOutput {
    pub args: Vec<String>,
    pub stdout: String,
    pub stderr: String,
    /// None when killed by a signal or the timeout.
    pub code: Option<i32>,
}

impl CtlOutput {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }
}

/// Runs `etcdctl --endpoints=<endpoints> <args>` with optional stdin.
pub async fn run(
    bin: &Path,
    endpoints: &str,
    args: &[String],
    stdin: Option<&str>,
) -> std::io::Result<CtlOutput> {
    let mut cmd = tokio::process::Command::new(bin);
    cmd.env("ETCDCTL_API", "3")
        .env_remove("ETCDCTL_ENDPOINTS")
        .arg(format!("--endpoints={endpoints}"))
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn()?;
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin piped");
        pipe.write_all(input.as_bytes()).await?;
        drop(pipe);
    }
    let out = tokio::time::timeout(ETCDCTL_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "etcdctl timed out"))??;
    Ok(CtlOutput {
        args: args.to_vec(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        code: out.status.code(),
    })
}

/// Runs a long-running etcdctl command (e.g. `watch`) for `duration`, then kills it and returns
/// what it printed so far (`code` is None: it was killed).
pub async fn run_for(
    bin: &Path,
    endpoints: &str,
    args: &[String],
    duration: Duration,
) -> std::io::Result<CtlOutput> {
    let mut child = tokio::process::Command::new(bin)
        .env("ETCDCTL_API", "3")
        .env_remove("ETCDCTL_ENDPOINTS")
        .arg(format!("--endpoints={endpoints}"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    tokio::time::sleep(duration).await;
    child.start_kill()?;
    let out = child.wait_with_output().await?;
    Ok(CtlOutput {
        args: args.to_vec(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        code: None,
    })
}

/// Splits a command line on spaces, keeping 'single-quoted' parts together.
pub fn split_args(line: &str) -> Vec<String> {
    let mut args = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut has_token = false;
    for ch in line.chars() {
        match ch {
            '\'' => {
                quoted = !quoted;
                has_token = true;
            }
            ' ' if !quoted => {
                if has_token {
                    args.push(std::mem::take(&mut cur));
                    has_token = false;
                }
            }
            _ => {
                cur.push(ch);
                has_token = true;
            }
        }
    }
    if has_token {
        args.push(cur);
    }
    args
}

#[cfg(test)]
mod tests {
    use super::split_args;

    #[test]
    fn splits_with_quotes_and_empty_args() {
        assert_eq!(split_args("put a 'b c'"), vec!["put", "a", "b c"]);
        assert_eq!(split_args("get '' --prefix"), vec!["get", "", "--prefix"]);
    }
}
