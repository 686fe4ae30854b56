//! `etcdctl snapshot save` against ketch gives a file that real etcd's tools accept: the same
//! write history (puts, a delete, a lease with a key, a compaction) is run on ketch and on real
//! etcd 3.4, `snapshot status` must report the same revision and key count for both files,
//! and ketch's file, restored with `etcdctl snapshot restore`, must start a REAL etcd that
//! serves the keys with the values, revisions, versions and lease ketch served.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{ServerProcess, etcdctl_output, free_port, ketch_bin, require_etcd};
use serde_json::Value;

const ETCD_BIN: &str = "/usr/bin/etcd";
const READY: Duration = Duration::from_secs(20);

fn ctl(endpoint: &str, args: &[&str]) -> String {
    let out = etcdctl_output(endpoint, args, None);
    assert!(
        out.status.success(),
        "etcdctl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not json ({e}): {text}"))
}

/// The write history; returns the lease ID granted (hex, as etcdctl prints it).
fn write_history(endpoint: &str) -> String {
    for args in [["put", "a", "1"], ["put", "a", "2"], ["put", "b", "x"]] {
        ctl(endpoint, &args);
    }
    ctl(endpoint, &["del", "a"]);
    let granted = ctl(endpoint, &["lease", "grant", "600"]);
    let lease = granted
        .split_whitespace()
        .nth(1)
        .expect("lease id")
        .to_string();
    ctl(endpoint, &["put", "c", "leased", "--lease", &lease]);
    ctl(endpoint, &["put", "a", "3"]);
    ctl(endpoint, &["put", "d", "dd"]);
    ctl(endpoint, &["compaction", "4"]);
    ctl(endpoint, &["put", "e", "ee"]);
    ctl(endpoint, &["put", "e", "ee2"]);
    lease
}

/// Saves a snapshot of the member at `endpoint` to `file` and returns `snapshot status`.
fn save_and_status(endpoint: &str, file: &Path) -> Value {
    let file = file.to_str().expect("utf-8 path");
    let saved = ctl(endpoint, &["snapshot", "save", file]);
    assert!(saved.contains("Snapshot saved at"), "{saved}");
    json(&ctl(endpoint, &["snapshot", "status", file, "-w", "json"]))
}

/// Every live key with what etcd serves of it, and the header revision.
fn all_keys(endpoint: &str) -> (Vec<Value>, i64) {
    let v = json(&ctl(endpoint, &["get", "", "--prefix", "-w", "json"]));
    let kvs = v["kvs"].as_array().cloned().unwrap_or_default();
    (kvs, v["header"]["revision"].as_i64().expect("revision"))
}

#[test]
fn ketch_snapshot_restores_into_real_etcd() {
    let etcd = require_etcd(ETCD_BIN);
    let dir = tempfile::tempdir().expect("temp dir");

    // The same history on real etcd: what `snapshot status` must report.
    let mut reference = ServerProcess::start(etcd, &dir.path().join("etcd"), &[]);
    reference.wait_healthy(READY);
    write_history(&reference.endpoint());
    let want = save_and_status(&reference.endpoint(), &dir.path().join("etcd.snap"));
    reference.kill9();

    let mut ketch = ServerProcess::start(&ketch_bin(), &dir.path().join("ketch"), &[]);
    ketch.wait_healthy(READY);
    let lease = write_history(&ketch.endpoint());
    let file = dir.path().join("ketch.snap");
    let got = save_and_status(&ketch.endpoint(), &file);
    let (served, revision) = all_keys(&ketch.endpoint());
    ketch.kill9();

    assert_eq!(got["revision"], want["revision"], "ketch {got} etcd {want}");
    assert_eq!(got["totalKey"], want["totalKey"], "ketch {got} etcd {want}");
    assert_eq!(got["revision"].as_i64(), Some(revision));
    assert_eq!(served.len(), 5, "{served:?}");

    // Restore ketch's file the way an operator would, and run real etcd on it.
    let restored = dir.path().join("restored");
    let peer_port = free_port();
    let peer = format!("http://127.0.0.1:{peer_port}");
    let out = etcdctl_output(
        "127.0.0.1:1",
        &[
            "snapshot",
            "restore",
            file.to_str().expect("utf-8 path"),
            "--data-dir",
            restored.to_str().expect("utf-8 path"),
            "--name",
            "default",
            "--initial-cluster",
            &format!("default={peer}"),
            "--initial-advertise-peer-urls",
            &peer,
        ],
        None,
    );
    assert!(
        out.status.success(),
        "restore failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut etcd_on_ketch = ServerProcess::start_on(etcd, &restored, free_port(), peer_port, &[]);
    etcd_on_ketch.wait_healthy(READY);
    let endpoint = etcd_on_ketch.endpoint();
    let (read_back, etcd_revision) = all_keys(&endpoint);
    assert_eq!(
        read_back, served,
        "keys real etcd serves from ketch's snapshot"
    );
    assert_eq!(etcd_revision, revision);

    // The lease came along with its key; the compaction too.
    let ttl = ctl(&endpoint, &["lease", "timetolive", &lease, "--keys"]);
    assert!(ttl.contains("attached keys([c])"), "{ttl}");
    let compacted = etcdctl_output(&endpoint, &["get", "a", "--rev", "3"], None);
    assert!(
        String::from_utf8_lossy(&compacted.stderr).contains("required revision has been compacted"),
        "{compacted:?}"
    );
    let at_4 = json(&ctl(&endpoint, &["get", "b", "--rev", "4", "-w", "json"]));
    assert_eq!(
        at_4["kvs"][0]["value"], "eA==",
        "b@4 survives the compaction"
    );
}
