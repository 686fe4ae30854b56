//! etcdctl's `lease grant/timetolive/list/keep-alive --once/revoke`, `lock` and `elect` print
//! the same stdout and exit codes against ketch as against real etcd 3.4 (generated lease IDs
//! and the one-second-granular remaining TTL normalised), running one script against each.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{same_transcript_as_etcd, transcript_of};

fn run(endpoint: &str, args: &[&str]) -> (String, Option<i32>) {
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running etcdctl");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        out.status.code(),
    )
}

struct Transcript {
    text: String,
    ids: Vec<String>,
}

impl Transcript {
    /// Runs etcdctl and records its output with every known lease ID replaced.
    fn step(&mut self, endpoint: &str, args: &[&str]) -> String {
        let (out, code) = run(endpoint, args);
        let mut shown = format!("$ etcdctl {}\n{out}[exit {code:?}]\n", args.join(" "));
        for (i, id) in self.ids.iter().enumerate() {
            shown = shown.replace(id.as_str(), &format!("<lease{i}>"));
        }
        self.text += &normalise_remaining(&shown);
        out
    }
}

/// `remaining(99s)` and `remaining(100s)` are both right a moment after a 100 s grant.
fn normalise_remaining(s: &str) -> String {
    s.replace("remaining(99s)", "remaining(~100s)")
        .replace("remaining(100s)", "remaining(~100s)")
}

fn granted_id(out: &str) -> String {
    out.split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("no lease ID in {out:?}"))
        .to_string()
}

fn script(endpoint: &str) -> String {
    let mut t = Transcript {
        text: String::new(),
        ids: Vec::new(),
    };
    let out = t.step(endpoint, &["lease", "grant", "100"]);
    t.ids.push(granted_id(&out));
    t.text = t.text.replace(&t.ids[0], "<lease0>");
    let id = t.ids[0].clone();
    t.step(endpoint, &["put", "--lease", &id, "svc/a", "v"]);
    t.step(endpoint, &["lease", "timetolive", &id, "--keys"]);
    t.step(endpoint, &["lease", "list"]);
    t.step(endpoint, &["lease", "keep-alive", "--once", &id]);
    let out = t.step(endpoint, &["lease", "grant", "1"]);
    t.ids.push(granted_id(&out));
    t.text = t.text.replace(&t.ids[1], "<lease1>");
    t.step(endpoint, &["lease", "revoke", &id]);
    t.step(endpoint, &["lease", "timetolive", &id]);
    t.step(endpoint, &["lease", "revoke", &id]);
    t.step(endpoint, &["lease", "keep-alive", "--once", &id]);
    t.step(endpoint, &["lease", "grant", "9000000001"]);
    t.step(endpoint, &["get", "svc/a"]);
    t.step(endpoint, &["put", "--lease", "1234", "x", "y"]);
    t.step(endpoint, &["lock", "mylock", "--", "echo", "locked"]);
    t.text += &elect(endpoint);
    t.text
}

/// A candidate campaigns and wins; `elect -l` observes it. Both are stopped by PID.
fn elect(endpoint: &str) -> String {
    let spawn = |args: &[&str]| {
        Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={endpoint}"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawning etcdctl elect")
    };
    let mut candidate = spawn(&["elect", "myelection", "leader1"]);
    std::thread::sleep(Duration::from_millis(800));
    let mut observer = spawn(&["elect", "-l", "myelection"]);
    std::thread::sleep(Duration::from_millis(800));
    let _ = candidate.kill();
    let _ = observer.kill();
    let c = candidate.wait_with_output().expect("candidate output");
    let o = observer.wait_with_output().expect("observer output");
    let mut text = format!(
        "$ elect myelection leader1\n{}$ elect -l myelection\n{}",
        String::from_utf8_lossy(&c.stdout),
        String::from_utf8_lossy(&o.stdout)
    );
    // The election key ends in the candidate's generated lease ID (hex).
    let re_key = text
        .lines()
        .find_map(|l| l.strip_prefix("myelection/"))
        .map(str::to_string);
    if let Some(lease_hex) = re_key {
        text = text.replace(&lease_hex, "<elect-lease>");
    }
    text
}

#[test]
fn etcdctl_lease_lock_and_elect_print_what_they_print_against_etcd() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let ketch = same_transcript_as_etcd(tmp.path(), |bin, dir| transcript_of(bin, dir, script));
    assert!(
        ketch.contains("granted with TTL(2s)"),
        "minimum TTL: {ketch}"
    );
    assert!(ketch.contains("locked"), "lock ran its command: {ketch}");
    assert!(
        ketch.contains("leader1"),
        "the observer saw the leader: {ketch}"
    );
}
