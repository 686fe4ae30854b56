//! Differential test against the real etcd 3.4.23 binary (`/usr/bin/etcd`, or
//! `KETCH_ETCD_BIN`): for each bad invocation, etcd and ketch-config must fail with the same
//! exit code and message; and etcd started on free ports must log the member and cluster IDs
//! `Config::bootstrap` computes. Every etcd runs in a temp dir on 127.0.0.1 ports found free,
//! is bounded in time, and is killed by PID (guard with Drop).

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, sync_channel};
use std::time::{Duration, Instant};

use ketch_config::{Config, ConfigError};

/// How long etcd may take to fail or to log its IDs.
const ETCD_DEADLINE: Duration = Duration::from_secs(20);
/// Bound of the channel carrying etcd's stderr lines to the test.
const STDERR_LINES_MAX: usize = 4096;

fn etcd_bin() -> String {
    let bin = std::env::var("KETCH_ETCD_BIN").unwrap_or_else(|_| "/usr/bin/etcd".to_owned());
    assert!(
        std::path::Path::new(&bin).exists(),
        "real etcd not found at {bin}: install etcd-server (apt) or set KETCH_ETCD_BIN"
    );
    bin
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

/// Kills the etcd it holds (by PID, via `Child::kill`) when dropped.
struct EtcdGuard {
    child: Child,
    lines: Receiver<String>,
    _dir: tempfile::TempDir,
}

impl Drop for EtcdGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_etcd(args: &[String], env: &[(String, String)]) -> EtcdGuard {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut child = Command::new(etcd_bin())
        .args(args)
        .env_clear()
        .envs(env.iter().cloned())
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn etcd");
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, lines) = sync_channel(STDERR_LINES_MAX);
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    EtcdGuard {
        child,
        lines,
        _dir: dir,
    }
}

/// Runs etcd until it exits; returns its exit code and stderr. Panics if it keeps running.
fn etcd_failure(args: &[String], env: &[(String, String)]) -> (i32, String) {
    let mut etcd = spawn_etcd(args, env);
    let deadline = Instant::now() + ETCD_DEADLINE;
    let mut stderr = String::new();
    loop {
        match etcd.lines.recv_timeout(Duration::from_millis(50)) {
            Ok(line) => {
                stderr.push_str(&line);
                stderr.push('\n');
                continue;
            }
            // stderr closed: the process is exiting; give it a moment.
            Err(RecvTimeoutError::Disconnected) => std::thread::sleep(Duration::from_millis(10)),
            Err(RecvTimeoutError::Timeout) => {}
        }
        if let Some(status) = etcd.child.try_wait().expect("try_wait") {
            while let Ok(line) = etcd.lines.recv_timeout(Duration::from_millis(200)) {
                stderr.push_str(&line);
                stderr.push('\n');
            }
            return (status.code().unwrap_or(-1), stderr);
        }
        assert!(
            Instant::now() < deadline,
            "etcd {args:?} did not fail within {ETCD_DEADLINE:?}; stderr:\n{stderr}"
        );
    }
}

fn ketch_result(args: &[String], env: &[(String, String)]) -> Result<Config, ConfigError> {
    let env: HashMap<String, String> = env.iter().cloned().collect();
    let argv = std::iter::once("ketch".to_owned())
        .chain(args.iter().cloned())
        .map(OsString::from);
    let cfg = Config::parse_from(argv, |k| env.get(k).cloned())?;
    cfg.bootstrap()?;
    Ok(cfg)
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

struct Case {
    args: Vec<String>,
    env: Vec<(String, String)>,
}

fn cases(peer: u16, client: u16, other: u16) -> Vec<Case> {
    let base = [
        format!("--listen-peer-urls=http://127.0.0.1:{peer}"),
        format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer}"),
        format!("--listen-client-urls=http://127.0.0.1:{client}"),
        format!("--advertise-client-urls=http://127.0.0.1:{client}"),
    ];
    let with = |extra: &[&str]| Case {
        args: base.iter().cloned().chain(strings(extra)).collect(),
        env: Vec::new(),
    };
    let mismatch = format!("--initial-cluster=default=http://127.0.0.1:{other}");
    let mut cases = vec![
        with(&["--foo"]),
        with(&["--heartbeat-interval=abc"]),
        with(&["--snapshot-count=99999999999999999999"]),
        with(&["--initial-cluster-state=bogus"]),
        with(&["--max-concurrent-streams=abc"]),
        with(&["--enable-v2=abc"]),
        with(&["--listen-metrics-urls=127.0.0.1:2379"]),
        with(&["---x"]),
        with(&["--name"]),
        with(&["extra"]),
        with(&["--election-timeout=400"]),
        with(&["--election-timeout=60000", "--heartbeat-interval=10000"]),
        with(&["--auto-compaction-mode=foo"]),
        with(&["--logger=bogus"]),
        with(&[
            "--name=foo",
            &format!("--initial-cluster=bar=http://127.0.0.1:{peer}"),
        ]),
        with(&[&mismatch]),
        with(&["--initial-cluster=default=bogus"]),
        Case {
            args: strings(&[
                &format!("--listen-peer-urls=http://127.0.0.1:{peer}"),
                &format!("--listen-client-urls=http://127.0.0.1:{client}"),
            ]),
            env: Vec::new(),
        },
    ];
    let env_case = |extra: &[&str], env: &[(&str, &str)]| Case {
        args: base.iter().cloned().chain(strings(extra)).collect(),
        env: env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    };
    cases.push(env_case(&[], &[("ETCD_HEARTBEAT_INTERVAL", "abc")]));
    cases.push(Case {
        args: strings(&[&format!("--listen-peer-urls=http://127.0.0.1:{peer}")]),
        env: vec![(
            "ETCD_LISTEN_CLIENT_URLS".to_owned(),
            format!("http://127.0.0.1:{client}"),
        )],
    });
    cases.push(env_case(&[], &[("ETCD_ELECTION_TIMEOUT", "300")]));
    cases.push(env_case(
        &["--initial-cluster-token=y"],
        &[("ETCD_INITIAL_CLUSTER_TOKEN", "x")],
    ));
    cases.push(env_case(&["--name=n"], &[("ETCD_NAME", "")]));
    cases
}

/// etcd's stderr must contain ketch's message in the place etcd's kind of error puts it.
fn assert_same_failure(case: &Case, etcd: (i32, String), ketch: ConfigError) {
    let (code, stderr) = etcd;
    let ctx = format!(
        "args {:?} env {:?}\netcd stderr:\n{stderr}",
        case.args, case.env
    );
    assert_eq!(
        code,
        ketch.exit_code(),
        "exit code differs for {ctx}\nketch: {ketch:?}"
    );
    let want = match &ketch {
        ConfigError::Usage(msg) => format!("{msg}\nUsage:"),
        ConfigError::Invalid(msg) if msg.starts_with("conflicting environment variable") => {
            format!("pkg/flags: {msg}")
        }
        ConfigError::Invalid(msg) => format!("error verifying flags, {msg}. See 'etcd --help'."),
        ConfigError::Bootstrap(msg) => format!("etcdmain: {msg}"),
        other => panic!("unexpected ketch result {other:?} for {ctx}"),
    };
    assert!(
        stderr.contains(&want),
        "etcd's stderr lacks {want:?} for {ctx}"
    );
}

#[test]
fn bad_invocations_fail_as_etcd_fails() {
    let (peer, client, other) = (free_port(), free_port(), free_port());
    for case in cases(peer, client, other) {
        let ketch = match ketch_result(&case.args, &case.env) {
            Err(e) => e,
            Ok(_) => panic!("ketch accepted {:?} {:?}", case.args, case.env),
        };
        let etcd = etcd_failure(&case.args, &case.env);
        assert_same_failure(&case, etcd, ketch);
    }
}

#[test]
fn bad_config_files_fail_as_etcd_fails() {
    let (peer, client) = (free_port(), free_port());
    let ports = format!(
        "listen-peer-urls: http://127.0.0.1:{peer}\ninitial-advertise-peer-urls: http://127.0.0.1:{peer}\n\
         listen-client-urls: http://127.0.0.1:{client}\nadvertise-client-urls: http://127.0.0.1:{client}\n\
         initial-cluster: default=http://127.0.0.1:{peer}\n"
    );
    for body in [
        "election-timeout: 400\n",
        "snapshot-count: -1\n",
        "name: [1]\n",
        "initial-cluster-state: bogus\n",
    ] {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        file.write_all(format!("{ports}{body}").as_bytes())
            .expect("write");
        let args = vec![format!("--config-file={}", file.path().display())];
        let case = Case {
            args,
            env: Vec::new(),
        };
        let ketch = ketch_result(&case.args, &case.env).map(|_| ()).unwrap_err();
        let etcd = etcd_failure(&case.args, &case.env);
        assert_same_failure(&case, etcd, ketch);
    }
}

/// Starts etcd and returns the `(member, cluster)` IDs from its
/// `starting member <id> in cluster <id>` line.
fn etcd_logged_ids(args: &[String]) -> (String, String) {
    let etcd = spawn_etcd(args, &[]);
    let deadline = Instant::now() + ETCD_DEADLINE;
    let mut seen = String::new();
    while Instant::now() < deadline {
        let line = match etcd.lines.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        if let Some(rest) = line.split("starting member ").nth(1) {
            let words: Vec<&str> = rest.split_whitespace().collect();
            return (words[0].to_owned(), words[3].to_owned());
        }
        seen.push_str(&line);
        seen.push('\n');
    }
    panic!("etcd {args:?} exited or logged no member ID within {ETCD_DEADLINE:?}:\n{seen}");
}

#[test]
fn started_etcd_logs_the_ids_ketch_computes() {
    let (p1, p2, c1) = (free_port(), free_port(), free_port());
    let solo = vec![
        "--name=solo".to_owned(),
        format!("--listen-peer-urls=http://127.0.0.1:{p1},http://127.0.0.1:{p2}"),
        format!("--initial-advertise-peer-urls=http://127.0.0.1:{p2},http://127.0.0.1:{p1}"),
        format!("--listen-client-urls=http://127.0.0.1:{c1}"),
        format!("--advertise-client-urls=http://127.0.0.1:{c1}"),
        "--initial-cluster-token=ketch-config-test".to_owned(),
    ];
    // The second member of a three-member cluster whose other members never start: etcd
    // still computes and logs every ID at bootstrap.
    let (q1, q2, q3, c2) = (free_port(), free_port(), free_port(), free_port());
    let trio = vec![
        "--name=b".to_owned(),
        format!("--listen-peer-urls=http://127.0.0.1:{q2}"),
        format!("--initial-advertise-peer-urls=http://127.0.0.1:{q2}"),
        format!("--listen-client-urls=http://127.0.0.1:{c2}"),
        format!("--advertise-client-urls=http://127.0.0.1:{c2}"),
        format!(
            "--initial-cluster=a=http://127.0.0.1:{q1},b=http://127.0.0.1:{q2},c=http://127.0.0.1:{q3}"
        ),
        "--initial-cluster-token=trio".to_owned(),
    ];
    for args in [solo, trio] {
        let boot = ketch_result(&args, &[])
            .expect("valid flags")
            .bootstrap()
            .expect("bootstrap");
        let (member, cluster) = etcd_logged_ids(&args);
        assert_eq!(member, boot.local_member_id.to_string(), "{args:?}");
        assert_eq!(cluster, boot.cluster_id.to_string(), "{args:?}");
    }
}
