//! `--quota-backend-bytes` and the NOSPACE alarm, against real etcd 3.4: the same etcdctl
//! script runs against each (fill the store with 20 kB values until a put fails, then check
//! that puts, txns with a put and lease grants are refused while reads, read-only txns,
//! deletes, compaction and defrag are served, that `alarm list` and `endpoint status` show the
//! alarm, and that `alarm disarm` after freeing space lets puts in again); stdout, stderr's
//! `Error:` lines and exit codes must be identical. Only the number of puts that fit differs
//! (etcd counts its bbolt file, ketch its retained writes), so it is checked to be in a range
//! and left out of the comparison; the alarm's member ID is the same (same flags, same IDs).

mod common;

use std::time::Duration;

use common::{ServerProcess, ketch_bin, require_etcd};

const ETCD_BIN: &str = "/usr/bin/etcd";
const QUOTA_BYTES: &str = "300000";
const VALUE_BYTES: usize = 20_000;
const MAX_PUTS: usize = 40;

fn etcdctl(endpoint: &str, args: &[&str], stdin: Option<&str>) -> (String, String, Option<i32>) {
    let out = common::etcdctl_output(endpoint, args, stdin);
    // etcdctl's client logs a JSON retry line with timestamps and UUIDs; its `Error:` line is
    // what users see.
    let errors: String = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.starts_with("Error"))
        .map(|l| format!("{l}\n"))
        .collect();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        errors,
        out.status.code(),
    )
}

struct Script {
    endpoint: String,
    text: String,
}

impl Script {
    fn step(&mut self, args: &[&str]) -> String {
        self.step_in(args, None)
    }

    fn step_in(&mut self, args: &[&str], stdin: Option<&str>) -> String {
        let (out, err, code) = etcdctl(&self.endpoint, args, stdin);
        let shown: Vec<&str> = args
            .iter()
            .map(|a| if a.len() > 40 { "<value>" } else { a })
            .collect();
        self.text += &format!("$ etcdctl {}\n{out}{err}[exit {code:?}]\n", shown.join(" "));
        out
    }
}

/// Runs the script; returns the transcript and how many puts fitted.
fn run(bin: &std::path::Path, dir: &std::path::Path) -> (String, usize) {
    let mut server = ServerProcess::start(bin, dir, &["--quota-backend-bytes", QUOTA_BYTES]);
    server.wait_healthy(Duration::from_secs(20));
    let mut s = Script {
        endpoint: server.endpoint(),
        text: String::new(),
    };
    let value = "a".repeat(VALUE_BYTES);
    let fitted = (1..=MAX_PUTS)
        .find(|i| {
            let (_, err, code) = etcdctl(&s.endpoint, &["put", &format!("k{i}"), &value], None);
            code != Some(0) && err.contains("database space exceeded")
        })
        .unwrap_or_else(|| panic!("{MAX_PUTS} puts of {VALUE_BYTES} B never hit the quota"))
        - 1;
    s.step(&["put", "x", "y"]);
    s.step(&["alarm", "list"]);
    let (status, _, _) = etcdctl(&s.endpoint, &["endpoint", "status", "-w", "json"], None);
    let (member_id, errors) = status_of(&status);
    s.text += &format!("endpoint status errors: {errors}\n");
    s.step(&["get", "k1", "--print-value-only", "--keys-only"]);
    // stdin: no compares, one op on success, none on failure (each list ends with a blank line).
    s.step_in(&["txn"], Some("\nput a b\n\n\n"));
    s.step_in(&["txn"], Some("\nget k1 --keys-only\n\n\n"));
    s.step(&["lease", "grant", "10"]);
    // How many keys there are and the revision differ with `fitted`: checked, not compared.
    // Seen once on etcd (busy machine): one key more than puts that succeeded, i.e. the put
    // that first answered NOSPACE was stored all the same; its quota check reads a bbolt size
    // that grows at batch commits. Tolerated: the count is not what this test compares.
    let (deleted, _, code) = etcdctl(&s.endpoint, &["del", "k", "--prefix"], None);
    let deleted: usize = deleted.trim().parse().expect("del prints a count");
    assert_eq!(code, Some(0), "deletes are served under NOSPACE");
    assert!(
        (fitted..=fitted + 1).contains(&deleted),
        "{deleted} keys deleted after {fitted} puts fitted"
    );
    s.step(&["put", "x", "y"]);
    let rev = revision_of(&s.endpoint);
    let (compacted, _, _) = etcdctl(&s.endpoint, &["compact", &rev.to_string()], None);
    assert_eq!(compacted.trim(), format!("compacted revision {rev}"));
    etcdctl(&s.endpoint, &["defrag"], None);
    s.step(&["alarm", "disarm"]);
    s.step(&["alarm", "list"]);
    s.step(&["put", "x", "y"]);
    s.step(&["get", "x", "--print-value-only"]);
    s.step(&["alarm", "disarm"]);
    server.kill9();
    (s.text.replace(&member_id, "<member>"), fitted)
}

/// The member ID (decimal, as alarms print it) and the errors of `endpoint status -w json`.
fn status_of(json: &str) -> (String, serde_json::Value) {
    let v: serde_json::Value = serde_json::from_str(json).expect("endpoint status JSON");
    let status = &v[0]["Status"];
    let member = status["header"]["member_id"].as_u64().expect("member_id");
    (member.to_string(), status["errors"].clone())
}

fn revision_of(endpoint: &str) -> i64 {
    let (out, _, _) = etcdctl(endpoint, &["get", "x", "-w", "json"], None);
    let v: serde_json::Value = serde_json::from_str(&out).expect("get JSON");
    v["header"]["revision"].as_i64().expect("revision")
}

#[test]
fn nospace_alarm_refuses_growth_and_is_disarmed_as_on_etcd() {
    let etcd = require_etcd(ETCD_BIN);
    let tmp = tempfile::tempdir().expect("tempdir");
    let (want, etcd_fitted) = run(etcd, &tmp.path().join("etcd"));
    let (got, ketch_fitted) = run(&ketch_bin(), &tmp.path().join("ketch"));
    println!("puts that fitted: etcd {etcd_fitted}, ketch {ketch_fitted}\n{got}");
    let quota = QUOTA_BYTES.parse::<usize>().expect("quota");
    assert!(
        (quota / VALUE_BYTES / 2..=quota / VALUE_BYTES).contains(&ketch_fitted),
        "ketch took {ketch_fitted} puts of {VALUE_BYTES} B under a {quota} B quota"
    );
    assert!(
        got.contains("alarm:NOSPACE"),
        "the alarm was listed:\n{got}"
    );
    assert_eq!(got, want, "ketch (left) vs etcd (right)");
}
