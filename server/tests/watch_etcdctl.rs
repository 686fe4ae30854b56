//! etcdctl's `watch` (--prefix, --rev, --prev-kv, -i, `-- command`, a compacted --rev) prints
//! the same stdout and exits the same way against ketch as against real etcd 3.4: the same
//! script runs against each server on fresh ports and the transcripts are compared.

mod common;

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{same_transcript_as_etcd, transcript_of};

/// How long a watching etcdctl is given to print what it receives before it is stopped.
const WATCH_SETTLE: Duration = Duration::from_millis(800);

fn etcdctl(endpoint: &str, args: &[&str]) -> String {
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .args(args)
        .output()
        .expect("running etcdctl");
    format!(
        "$ etcdctl {}\n{}[exit {:?}]\n",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        out.status.code()
    )
}

fn spawn_watch(endpoint: &str, args: &[&str]) -> Child {
    Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawning etcdctl watch")
}

/// Stops a long-running watcher (by its PID) and returns what it printed.
fn finish(mut child: Child, label: &str) -> String {
    std::thread::sleep(WATCH_SETTLE);
    let _ = child.kill();
    let out = child.wait_with_output().expect("collecting etcdctl output");
    format!("$ {label}\n{}", String::from_utf8_lossy(&out.stdout))
}

fn script(endpoint: &str) -> String {
    let mut t = String::new();
    for args in [
        ["put", "foo/a", "1"],
        ["put", "foo/b", "2"],
        ["put", "foo/a", "3"],
    ] {
        t += &etcdctl(endpoint, &args);
    }
    t += &etcdctl(endpoint, &["del", "foo/a"]);
    let w = spawn_watch(
        endpoint,
        &["watch", "--prefix", "foo/", "--rev=2", "--prev-kv"],
    );
    std::thread::sleep(WATCH_SETTLE);
    t += &etcdctl(endpoint, &["put", "foo/c", "4"]);
    t += &finish(w, "watch --prefix foo/ --rev=2 --prev-kv");

    let w = spawn_watch(endpoint, &["watch", "foo/b", "--rev=1"]);
    t += &finish(w, "watch foo/b --rev=1");

    let cmd =
        "echo exec $ETCD_WATCH_EVENT_TYPE $ETCD_WATCH_KEY $ETCD_WATCH_VALUE $ETCD_WATCH_REVISION";
    let w = spawn_watch(
        endpoint,
        &["watch", "foo/c", "--rev=2", "--", "sh", "-c", cmd],
    );
    t += &finish(w, "watch foo/c --rev=2 -- sh -c ...");

    let mut w = spawn_watch(endpoint, &["watch", "-i"]);
    let mut stdin = w.stdin.take().expect("piped stdin");
    writeln!(stdin, "watch --prefix foo/ --rev=4").expect("writing to watch -i");
    std::thread::sleep(WATCH_SETTLE);
    t += &etcdctl(endpoint, &["put", "foo/d", "5"]);
    t += &finish(w, "watch -i (watch --prefix foo/ --rev=4)");
    drop(stdin);

    t += &etcdctl(endpoint, &["compaction", "5"]);
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .args(["watch", "foo/a", "--rev=2"])
        .output()
        .expect("running etcdctl");
    t += &format!(
        "$ watch foo/a --rev=2 (compacted)\n{}{}[exit {:?}]\n",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        out.status.code()
    );
    t
}

#[test]
fn etcdctl_watch_prints_what_it_prints_against_etcd() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let ketch = same_transcript_as_etcd(tmp.path(), |bin, dir| transcript_of(bin, dir, script));
    assert!(
        ketch.contains("exec \"PUT\" \"foo/c\" \"4\" 6"),
        "the exec form ran: {ketch}"
    );
}
