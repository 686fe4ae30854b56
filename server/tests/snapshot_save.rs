//! `etcdctl snapshot save` against ketch gives a file that real etcd's tools accept: the same
//! write history (puts, a delete, a lease with a key, a compaction) is run on ketch and on real
//! etcd 3.4, `snapshot status` must report the same revision and key count for both files,
//! and ketch's file, restored with `etcdctl snapshot restore`, must start a REAL etcd that
//! serves the keys with the values, revisions, versions and lease ketch served. A second test
//! does the same with auth on: users, bcrypt passwords, roles and permissions come along.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{ServerProcess, etcdctl_output, free_port, ketch_bin, require_etcd};
use serde_json::Value;

const ETCD_BIN: &str = "/usr/bin/etcd";
const READY: Duration = Duration::from_secs(20);
/// The revision `write_history` compacts at (the put of `b`; `a`'s delete comes after).
const COMPACTED_AT: i64 = 4;
/// etcd's default `--max-txn-ops`.
const BULK_KEYS: usize = 128;

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
    ctl(endpoint, &["compaction", &COMPACTED_AT.to_string()]);
    ctl(endpoint, &["put", "e", "ee"]);
    ctl(endpoint, &["put", "e", "ee2"]);
    // One txn of BULK_KEYS puts: the key bucket then spans several pages under a branch.
    let puts: String = (0..BULK_KEYS)
        .map(|i| format!("put bulk/{i:04} {}\n", "v".repeat(i + 1)))
        .collect();
    let out = etcdctl_output(endpoint, &["txn"], Some(&format!("\n{puts}\n\n")));
    assert!(out.status.success(), "txn: {out:?}");
    lease
}

/// Saves a snapshot of the member at `endpoint` to `file` (etcdctl flags `auth` added) and
/// returns `snapshot status`.
fn save_and_status(endpoint: &str, file: &Path, auth: &[&str]) -> Value {
    let file = file.to_str().expect("utf-8 path");
    let saved = ctl(endpoint, &[auth, &["snapshot", "save", file]].concat());
    assert!(saved.contains("Snapshot saved at"), "{saved}");
    json(&ctl(endpoint, &["snapshot", "status", file, "-w", "json"]))
}

/// `bin` started as a fresh one-member cluster in `data_dir`, healthy.
fn started(bin: &Path, data_dir: &Path) -> ServerProcess {
    let mut server = ServerProcess::start(bin, data_dir, &[]);
    server.wait_healthy(READY);
    server
}

/// Every key live at `rev` (0 = now) with what etcd serves of it, and the header revision.
fn keys_at(endpoint: &str, rev: i64) -> (Vec<Value>, i64) {
    let rev = rev.to_string();
    let args = ["get", "", "--prefix", "--rev", &rev, "-w", "json"];
    let v = json(&ctl(endpoint, &args));
    let kvs = v["kvs"].as_array().cloned().unwrap_or_default();
    (kvs, v["header"]["revision"].as_i64().expect("revision"))
}

/// The whole key space at every revision from the compaction on: what ketch must hand over.
fn history_from(endpoint: &str, first_rev: i64, last_rev: i64) -> Vec<Vec<Value>> {
    (first_rev..=last_rev)
        .map(|rev| keys_at(endpoint, rev).0)
        .collect()
}

#[test]
fn ketch_snapshot_restores_into_real_etcd() {
    let etcd = require_etcd(ETCD_BIN);
    let dir = tempfile::tempdir().expect("temp dir");

    // The same history on real etcd: what `snapshot status` must report.
    let mut reference = started(etcd, &dir.path().join("etcd"));
    write_history(&reference.endpoint());
    let want = save_and_status(&reference.endpoint(), &dir.path().join("etcd.snap"), &[]);
    reference.kill9();

    let mut ketch = started(&ketch_bin(), &dir.path().join("ketch"));
    let lease = write_history(&ketch.endpoint());
    let file = dir.path().join("ketch.snap");
    let got = save_and_status(&ketch.endpoint(), &file, &[]);
    let (served, revision) = keys_at(&ketch.endpoint(), 0);
    let history = history_from(&ketch.endpoint(), COMPACTED_AT, revision);
    ketch.kill9();

    assert_eq!(got["revision"], want["revision"], "ketch {got} etcd {want}");
    assert_eq!(got["totalKey"], want["totalKey"], "ketch {got} etcd {want}");
    assert_eq!(got["revision"].as_i64(), Some(revision));
    assert_eq!(served.len(), 5 + BULK_KEYS, "{served:?}");

    // Restore ketch's file the way an operator would, and run real etcd on it.
    let etcd_on_ketch = restore_and_start(etcd, &file, &dir.path().join("restored"));
    let endpoint = etcd_on_ketch.endpoint();
    let (read_back, etcd_revision) = keys_at(&endpoint, 0);
    assert_eq!(
        read_back, served,
        "keys real etcd serves from ketch's snapshot"
    );
    assert_eq!(etcd_revision, revision);
    // Every past revision kept reads the same (tombstones included: `a` is gone at 5 and 6).
    assert_eq!(history_from(&endpoint, COMPACTED_AT, revision), history);
    assert!(
        history[1].iter().all(|kv| kv["key"] != "YQ=="),
        "a deleted at 5"
    );

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

/// `etcdctl snapshot restore` of `file` into `data_dir`, then real etcd started on it.
fn restore_and_start(etcd: &Path, file: &Path, data_dir: &Path) -> ServerProcess {
    let peer_port = free_port();
    let peer = format!("http://127.0.0.1:{peer_port}");
    let out = etcdctl_output(
        "127.0.0.1:1",
        &[
            "snapshot",
            "restore",
            file.to_str().expect("utf-8 path"),
            "--data-dir",
            data_dir.to_str().expect("utf-8 path"),
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
    let mut server = ServerProcess::start_on(etcd, data_dir, free_port(), peer_port, &[]);
    server.wait_healthy(READY);
    server
}

/// Users, roles and permissions, then auth on.
fn write_auth(endpoint: &str) {
    let steps: [&[&str]; 9] = [
        &["user", "add", "root:rootpw"],
        &["user", "grant-role", "root", "root"],
        &["user", "add", "alice:alicepw"],
        &["role", "add", "reader"],
        &["role", "grant-permission", "reader", "read", "foo"],
        &[
            "role",
            "grant-permission",
            "reader",
            "readwrite",
            "k",
            "--prefix",
        ],
        &["user", "grant-role", "alice", "reader"],
        &["put", "foo", "bar"],
        &["auth", "enable"],
    ];
    for args in steps {
        ctl(endpoint, args);
    }
}

#[test]
fn auth_state_restores_into_real_etcd() {
    let etcd = require_etcd(ETCD_BIN);
    let dir = tempfile::tempdir().expect("temp dir");
    let root = ["--user", "root:rootpw"];
    let mut reference = started(etcd, &dir.path().join("etcd"));
    write_auth(&reference.endpoint());
    let want = save_and_status(&reference.endpoint(), &dir.path().join("etcd.snap"), &root);
    reference.kill9();

    let mut ketch = started(&ketch_bin(), &dir.path().join("ketch"));
    write_auth(&ketch.endpoint());
    let anonymous = etcdctl_output(&ketch.endpoint(), &["snapshot", "save", "/dev/null"], None);
    assert!(!anonymous.status.success(), "snapshot needs the root role");
    let file = dir.path().join("ketch.snap");
    let got = save_and_status(&ketch.endpoint(), &file, &root);
    ketch.kill9();
    assert_eq!(got["totalKey"], want["totalKey"], "ketch {got} etcd {want}");
    assert_eq!(got["revision"], want["revision"], "ketch {got} etcd {want}");

    let etcd_on_ketch = restore_and_start(etcd, &file, &dir.path().join("restored"));
    let endpoint = etcd_on_ketch.endpoint();
    let alice = |args: &[&str]| {
        let out = etcdctl_output(
            &endpoint,
            &[&["--user", "alice:alicepw"], args].concat(),
            None,
        );
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    assert_eq!(
        alice(&["get", "foo", "--print-value-only"]),
        (true, "bar\n".into())
    );
    assert!(alice(&["put", "k1", "v"]).0, "readwrite on prefix k");
    assert!(!alice(&["put", "foo", "v"]).0, "read only on foo");
    let anonymous = etcdctl_output(&endpoint, &["get", "foo"], None);
    assert!(!anonymous.status.success(), "auth stays on");
    let wrong = etcdctl_output(&endpoint, &["--user", "alice:nope", "get", "foo"], None);
    assert!(!wrong.status.success(), "the password hash came along");
}
