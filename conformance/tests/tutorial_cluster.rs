//! Replays the fault-tolerance part of etcd's local-cluster tutorial — three members from
//! scripts/Procfile on the tutorial's ports, run by scripts/cluster, driven by the real etcdctl —
//! against real etcd 3.4.23 and then against ketch, checks the tutorial's facts on each (the
//! stopped member's endpoint fails, the restarted one serves the key written while it was down),
//! and requires the two transcripts to be equal once timestamps, client UUIDs, pids and the
//! state directory are masked. ketch's binary: $KETCH_BIN, else the workspace's target/debug/ketch.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use regex::Regex;

const ETCD_BIN: &str = "/usr/bin/etcd";
const ETCDCTL_BIN: &str = "/usr/bin/etcdctl";
/// Client and peer ports of scripts/Procfile (etcd's tutorial).
const TUTORIAL_PORTS: [u16; 6] = [12379, 12380, 22379, 22380, 32379, 32380];
const CLIENT_PORTS: [u16; 3] = [12379, 22379, 32379];
/// How long scripts/cluster waits for members to answer /health.
const RUNNER_HEALTH_TIMEOUT_SECS: u32 = 20;
/// Wall-clock bound on one command (etcdctl gives up after its 5 s command timeout).
const COMMAND_LIMIT: Duration = Duration::from_secs(40);

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf()
}

fn ketch_bin() -> PathBuf {
    std::env::var_os("KETCH_BIN").map_or_else(
        || {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map_or_else(|| workspace().join("target"), PathBuf::from);
            target.join("debug/ketch")
        },
        PathBuf::from,
    )
}

/// One command of the transcript and what it printed.
struct Step {
    command: String,
    stdout: String,
    stderr: String,
    code: Option<i32>,
}

impl Step {
    fn render(&self) -> String {
        let mut text = format!("$ {}\n{}", self.command, self.stdout);
        if !self.stderr.is_empty() {
            text += &format!("[stderr]\n{}", self.stderr);
        }
        text + &format!("[exit {:?}]\n", self.code)
    }
}

/// Runs `cmd` with its output in files (no pipe a member could hold open), killed past
/// `COMMAND_LIMIT`.
fn run_bounded(mut cmd: Command, label: String, scratch: &Path) -> Step {
    let out_path = scratch.join("cmd.stdout");
    let err_path = scratch.join("cmd.stderr");
    cmd.stdin(Stdio::null())
        .stdout(File::create(&out_path).expect("stdout file"))
        .stderr(File::create(&err_path).expect("stderr file"));
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("{label}: {e}"));
    let deadline = Instant::now() + COMMAND_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{label}: still running after {COMMAND_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Step {
        command: label,
        stdout: std::fs::read_to_string(&out_path).expect("stdout"),
        stderr: std::fs::read_to_string(&err_path).expect("stderr"),
        code: status.code(),
    }
}

/// A cluster of scripts/Procfile run by scripts/cluster in its own state directory; dropping
/// it stops every member the runner started.
struct TutorialCluster {
    state: tempfile::TempDir,
    server_bin: PathBuf,
}

impl TutorialCluster {
    fn new(server_bin: PathBuf) -> Self {
        Self {
            state: tempfile::tempdir().expect("temp dir"),
            server_bin,
        }
    }

    fn runner_command(&self, args: &[&str]) -> Command {
        let ws = workspace();
        let mut cmd = Command::new("bash");
        cmd.arg(ws.join("scripts/cluster"))
            .arg("-f")
            .arg(ws.join("scripts/Procfile"))
            .arg("--dir")
            .arg(self.state.path().join("members"))
            .args(["--timeout", &RUNNER_HEALTH_TIMEOUT_SECS.to_string()])
            .args(args)
            .env("KETCH_BIN", &self.server_bin);
        clear_etcd_env(&mut cmd);
        cmd
    }

    fn runner(&self, args: &[&str]) -> Step {
        let label = format!("scripts/cluster {}", args.join(" "));
        run_bounded(self.runner_command(args), label, self.state.path())
    }

    fn etcdctl(&self, args: &[&str]) -> Step {
        let mut cmd = Command::new(ETCDCTL_BIN);
        cmd.args(args);
        clear_etcd_env(&mut cmd);
        cmd.env("ETCDCTL_API", "3");
        run_bounded(
            cmd,
            format!("etcdctl {}", args.join(" ")),
            self.state.path(),
        )
    }
}

impl Drop for TutorialCluster {
    fn drop(&mut self) {
        let mut cmd = self.runner_command(&["stop"]);
        cmd.stdout(Stdio::null());
        match cmd.status() {
            Ok(s) if s.success() => {}
            other => eprintln!("scripts/cluster stop failed: {other:?}"),
        }
    }
}

/// The members and etcdctl must see only the flags the tutorial gives, not the caller's.
fn clear_etcd_env(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        if key.starts_with("ETCD_") || key.starts_with("ETCDCTL_") {
            cmd.env_remove(key);
        }
    }
}

fn require_tutorial_ports_free() {
    for port in TUTORIAL_PORTS {
        if let Err(e) = TcpListener::bind(("127.0.0.1", port)) {
            panic!(
                "tutorial port 127.0.0.1:{port} is taken ({e}): this test runs etcd's tutorial \
                 cluster on ports {TUTORIAL_PORTS:?}; stop whatever listens there"
            );
        }
    }
}

/// The tutorial's steps through scripts/cluster and etcdctl against `server_bin`.
fn tutorial_transcript(server_bin: PathBuf) -> Vec<Step> {
    require_tutorial_ports_free();
    let cluster = TutorialCluster::new(server_bin);
    let mut steps = Vec::new();
    let start = cluster.runner(&["start"]);
    let started = start.code == Some(0);
    steps.push(start);
    if !started {
        return steps;
    }
    steps.push(cluster.etcdctl(&[
        "--write-out=table",
        "--endpoints=localhost:12379",
        "member",
        "list",
    ]));
    for port in CLIENT_PORTS {
        let endpoint = format!("--endpoints=localhost:{port}");
        let (key, value) = (format!("foo{port}"), format!("bar{port}"));
        steps.push(cluster.etcdctl(&[&endpoint, "put", &key, &value]));
    }
    for port in CLIENT_PORTS {
        let endpoint = format!("--endpoints=localhost:{port}");
        steps.push(cluster.etcdctl(&[&endpoint, "get", "foo", "--prefix"]));
    }
    steps.push(cluster.runner(&["run", "stop", "infra2"]));
    steps.push(cluster.runner(&["run", "status"]));
    steps.push(cluster.etcdctl(&["--endpoints=localhost:12379", "put", "key", "hello"]));
    steps.push(cluster.etcdctl(&["--endpoints=localhost:32379", "get", "key"]));
    steps.push(cluster.etcdctl(&["--endpoints=localhost:22379", "get", "key"]));
    steps.push(cluster.runner(&["run", "restart", "infra2"]));
    steps.push(cluster.etcdctl(&["--endpoints=localhost:22379", "get", "key"]));
    // Beyond the tutorial: the headers (cluster and member IDs, revision) and the members as
    // JSON, from the restarted member.
    steps.push(cluster.etcdctl(&["--endpoints=localhost:22379", "get", "key", "-w", "json"]));
    steps.push(cluster.etcdctl(&[
        "--endpoints=localhost:22379",
        "member",
        "list",
        "-w",
        "json",
    ]));
    steps.push(cluster.runner(&["stop"]));
    drop(cluster);
    steps
}

/// Masks what legitimately differs between two runs: log timestamps, etcdctl's client UUID,
/// pids, the temp state directory, and grpc-go's wording of why its dial to the stopped member
/// failed (client-side timing: "all SubConns are in TransientFailure" or "connection refused").
fn masked(steps: &[Step]) -> String {
    let rules = [
        (r#""ts":"[^"]*""#, r#""ts":"<ts>""#),
        (r"client-[0-9a-f-]{36}", "client-<uuid>"),
        (r"pid \d+", "pid <pid>"),
        (r"log \S*/members/", "log <dir>/"),
        (
            r#"latest balancer error: [^}]*"\}"#,
            r#"latest balancer error: <detail>"}"#,
        ),
        (r#""raft_term":\d+"#, r#""raft_term":<term>"#),
    ];
    let mut text: String = steps.iter().map(Step::render).collect();
    for (pattern, replacement) in rules {
        text = Regex::new(pattern)
            .expect("pattern")
            .replace_all(&text, replacement)
            .into_owned();
    }
    text
}

fn step<'a>(steps: &'a [Step], command: &str, nth: usize) -> &'a Step {
    steps
        .iter()
        .filter(|s| s.command == command)
        .nth(nth)
        .unwrap_or_else(|| panic!("no step #{nth} `{command}`"))
}

/// The tutorial's facts, asserted on each target before the transcripts are compared, so two
/// equally broken runs cannot pass.
fn check_tutorial_facts(target: &str, steps: &[Step]) {
    let transcript = masked(steps);
    let fail = |what: &str| panic!("{target}: {what}\n--- transcript ---\n{transcript}");
    if steps[0].code != Some(0) {
        fail("scripts/cluster start failed");
    }
    let members = step(
        steps,
        "etcdctl --write-out=table --endpoints=localhost:12379 member list",
        0,
    );
    for name in ["| infra1 |", "| infra2 |", "| infra3 |"] {
        if !members.stdout.contains(name) {
            fail("member list lacks a member");
        }
    }
    for port in CLIENT_PORTS {
        let get = step(
            steps,
            &format!("etcdctl --endpoints=localhost:{port} get foo --prefix"),
            0,
        );
        if get.stdout != "foo12379\nbar12379\nfoo22379\nbar22379\nfoo32379\nbar32379\n" {
            fail("a member does not serve the three keys");
        }
    }
    let via_3 = step(steps, "etcdctl --endpoints=localhost:32379 get key", 0);
    let via_2 = step(steps, "etcdctl --endpoints=localhost:22379 get key", 0);
    let after_restart = step(steps, "etcdctl --endpoints=localhost:22379 get key", 1);
    if via_3.stdout != "key\nhello\n" {
        fail("infra3 does not serve the key written with infra2 down");
    }
    if via_2.code == Some(0) {
        fail("the stopped infra2 answered");
    }
    if after_restart.stdout != "key\nhello\n" {
        fail("the restarted infra2 does not serve the key written while it was down");
    }
}

#[test]
fn etcd_tutorial_fault_tolerance_matches_on_ketch() {
    let began = Instant::now();
    let ketch = ketch_bin();
    assert!(
        ketch.is_file(),
        "no ketch binary at {} (cargo build -p ketch, or set KETCH_BIN)",
        ketch.display()
    );
    let etcd_steps = tutorial_transcript(PathBuf::from(ETCD_BIN));
    check_tutorial_facts("etcd", &etcd_steps);
    let ketch_steps = tutorial_transcript(ketch);
    check_tutorial_facts("ketch", &ketch_steps);
    let (etcd_text, ketch_text) = (masked(&etcd_steps), masked(&ketch_steps));
    let out = Path::new(env!("CARGO_TARGET_TMPDIR"));
    std::fs::write(out.join("tutorial_cluster-etcd.txt"), &etcd_text).expect("write");
    std::fs::write(out.join("tutorial_cluster-ketch.txt"), &ketch_text).expect("write");
    eprintln!(
        "both runs took {:?}; transcripts in {}",
        began.elapsed(),
        out.display()
    );
    if etcd_text != ketch_text {
        let first = etcd_text
            .lines()
            .zip(ketch_text.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(0);
        panic!(
            "transcripts differ from line {}\n--- etcd ---\n{etcd_text}\n--- ketch ---\n{ketch_text}",
            first + 1
        );
    }
}
