//! systemd's readiness protocol end to end: a real unix datagram socket (a path one and an
//! abstract `@name` one) is handed to a real ketch process in `NOTIFY_SOCKET`; the test asserts
//! `READY=1` arrives once and only when the client port already answers `/health`, `STOPPING=1`
//! follows SIGTERM, then the process exits 0 and sends nothing more; without `NOTIFY_SOCKET`
//! (or with one nobody listens on) ketch serves and stops as usual; and every message etcd
//! 3.4 sends under the same socket, ketch sends too. The deploy files are exercised as systemd
//! would use them: ketch.service's ExecStart run in a clean environment made of ketch.env's
//! variables (ports and data dir moved to temp ones) must notify the same way, and
//! `install.sh --self-check` (its dry run and `systemd-analyze verify`) must pass.

mod common;

use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{ServerProcess, free_port, http_get, ketch_bin, require_etcd};

const ETCD_BIN: &str = "/usr/bin/etcd";
/// A debug ketch on a busy 2-core machine can take several seconds to elect itself.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the socket is watched for stray messages after the process exited.
const QUIET_AFTER_EXIT: Duration = Duration::from_millis(300);
/// systemd caps a notification datagram far below this.
const DATAGRAM_MAX_BYTES: usize = 4096;

/// What `NOTIFY_SOCKET` the server under test gets.
enum NotifyEnv<'a> {
    Set(&'a str),
    Unset,
}

/// A script that sets (or removes) `NOTIFY_SOCKET` and `exec`s `bin`: the helper's child PID is
/// then the server's own, so its guard signals and kills the right process, and the test
/// process's environment (possibly systemd's own `NOTIFY_SOCKET`) is never inherited blindly.
fn wrapper(dir: &Path, bin: &Path, env: NotifyEnv) -> PathBuf {
    let assignment = match env {
        NotifyEnv::Set(value) => format!("NOTIFY_SOCKET='{value}'"),
        NotifyEnv::Unset => "-u NOTIFY_SOCKET".to_string(),
    };
    let script = format!(
        "#!/bin/sh\nexec env {assignment} '{}' \"$@\"\n",
        bin.display()
    );
    let path = dir.join("server-with-notify-env.sh");
    std::fs::write(&path, script).expect("writing wrapper");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

/// A unique abstract socket name (no leading `@`) for this process and moment.
fn abstract_name(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("ketch-notify-test-{tag}-{}-{nanos}", std::process::id())
}

/// Waits for one datagram until `deadline`; `None` on timeout.
fn recv_until(socket: &UnixDatagram, deadline: Instant) -> Option<String> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return None;
    }
    socket
        .set_read_timeout(Some(left))
        .expect("set_read_timeout");
    let mut buf = [0u8; DATAGRAM_MAX_BYTES];
    match socket.recv(&mut buf) {
        Ok(n) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            None
        }
        Err(e) => panic!("recv on the notify socket: {e}"),
    }
}

fn is_healthy(port: u16) -> bool {
    http_get(port, "/health").is_some_and(|b| b.contains("\"health\":\"true\""))
}

/// What one server run sent on the notify socket, and how it ended.
struct NotifyRun {
    before_signal: Vec<String>,
    after_signal: Vec<String>,
    exit_code: Option<i32>,
}

/// Starts `bin` with `NOTIFY_SOCKET=value` (bound by `socket`), waits for `READY=1` asserting
/// `/health` answers the moment it arrives, sends SIGTERM and collects the rest until exit.
fn run_with_socket(bin: &Path, dir: &Path, socket: &UnixDatagram, value: &str) -> NotifyRun {
    let wrapped = wrapper(dir, bin, NotifyEnv::Set(value));
    observe(
        ServerProcess::start(&wrapped, &dir.join("data"), &[]),
        socket,
    )
}

/// Watches `socket` while `server` starts, serves and stops on SIGTERM.
fn observe(mut server: ServerProcess, socket: &UnixDatagram) -> NotifyRun {
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    let mut before_signal = Vec::new();
    while !before_signal.iter().any(|m: &String| m.contains("READY=1")) {
        let Some(msg) = recv_until(socket, deadline) else {
            panic!(
                "no READY=1 within {STARTUP_TIMEOUT:?} (got {before_signal:?}); log:\n{}",
                server.log_tail()
            );
        };
        if msg.contains("READY=1") {
            // Checked once, without retry: a READY=1 sent before the member serves fails here.
            assert!(
                is_healthy(server.client_port),
                "READY=1 arrived but /health does not answer healthy yet; log:\n{}",
                server.log_tail()
            );
        }
        before_signal.push(msg);
    }
    // Nothing else is announced while the member serves (e.g. no second READY=1).
    while let Some(msg) = recv_until(socket, Instant::now() + QUIET_AFTER_EXIT) {
        before_signal.push(msg);
    }
    let exit_code = server.terminate(SHUTDOWN_TIMEOUT);
    let exited = server.child.try_wait().ok().flatten().is_some();
    assert!(
        exited,
        "server did not exit within {SHUTDOWN_TIMEOUT:?} of SIGTERM"
    );
    let mut after_signal = Vec::new();
    while let Some(msg) = recv_until(socket, Instant::now() + QUIET_AFTER_EXIT) {
        after_signal.push(msg);
    }
    NotifyRun {
        before_signal,
        after_signal,
        exit_code,
    }
}

fn assert_ketch_protocol(run: &NotifyRun) {
    assert_eq!(run.before_signal, ["READY=1"], "messages while serving");
    assert_eq!(run.after_signal, ["STOPPING=1"], "messages after SIGTERM");
    assert_eq!(run.exit_code, Some(0), "ketch exits 0 after SIGTERM");
}

#[test]
fn path_socket_gets_ready_when_healthy_then_stopping() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).expect("binding the notify socket");
    let value = path.to_str().expect("utf-8 temp path");
    let run = run_with_socket(&ketch_bin(), dir.path(), &socket, value);
    assert_ketch_protocol(&run);
}

#[test]
fn abstract_socket_gets_ready_when_healthy_then_stopping() {
    let dir = tempfile::tempdir().expect("tempdir");
    let name = abstract_name("abstract");
    let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("abstract address");
    let socket = UnixDatagram::bind_addr(&addr).expect("binding the abstract socket");
    let run = run_with_socket(&ketch_bin(), dir.path(), &socket, &format!("@{name}"));
    assert_ketch_protocol(&run);
}

/// Starts ketch with `env`, asserts it serves and exits 0 on SIGTERM; returns its log.
fn serves_and_stops(env: NotifyEnv) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let wrapped = wrapper(dir.path(), &ketch_bin(), env);
    let mut server = ServerProcess::start(&wrapped, &dir.path().join("data"), &[]);
    server.wait_healthy(STARTUP_TIMEOUT);
    let version = http_get(server.client_port, "/version").unwrap_or_default();
    assert!(
        version.contains("etcdserver"),
        "/version answers: {version}"
    );
    assert_eq!(server.terminate(SHUTDOWN_TIMEOUT), Some(0), "exit code");
    std::fs::read_to_string(&server.log).unwrap_or_default()
}

#[test]
fn without_notify_socket_ketch_serves_and_stops_silently() {
    let log = serves_and_stops(NotifyEnv::Unset);
    assert!(
        !log.contains("systemd"),
        "no systemd notification is attempted without NOTIFY_SOCKET; log:\n{log}"
    );
}

#[test]
fn unreachable_notify_socket_is_logged_not_fatal() {
    let missing =
        std::env::temp_dir().join(format!("ketch-no-listener-{}.sock", std::process::id()));
    let log = serves_and_stops(NotifyEnv::Set(missing.to_str().expect("utf-8 path")));
    assert!(
        log.contains("notifying systemd (READY=1) failed"),
        "the failed READY=1 is logged; log:\n{log}"
    );
}

/// etcd 3.4.23 sends `READY=1` (go-systemd's SdNotify) once it serves and nothing at shutdown;
/// ketch must send at least what etcd sends, so a unit written for etcd works for ketch.
#[test]
fn ketch_sends_every_message_etcd_sends() {
    let etcd = require_etcd(ETCD_BIN);
    let mut sent = Vec::new();
    for bin in [etcd.to_path_buf(), ketch_bin()] {
        let dir = tempfile::tempdir().expect("tempdir");
        let name = abstract_name("compare");
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("abstract address");
        let socket = UnixDatagram::bind_addr(&addr).expect("binding the abstract socket");
        let run = run_with_socket(&bin, dir.path(), &socket, &format!("@{name}"));
        let all: Vec<String> = run
            .before_signal
            .into_iter()
            .chain(run.after_signal)
            .collect();
        eprintln!("{}: {all:?}, exit {:?}", bin.display(), run.exit_code);
        sent.push(all);
    }
    let (etcd_sent, ketch_sent) = (&sent[0], &sent[1]);
    assert!(
        etcd_sent.iter().any(|m| m == "READY=1"),
        "etcd sent {etcd_sent:?}"
    );
    for msg in etcd_sent {
        assert!(
            ketch_sent.contains(msg),
            "etcd sends {msg:?}, ketch does not (ketch sent {ketch_sent:?})"
        );
    }
}

/// The deploy files, relative to this crate.
fn deploy_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scripts/deploy")
        .join(name)
}

/// `NAME=value` lines of an EnvironmentFile, comments and blank lines skipped.
fn env_file_vars(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l
                .split_once('=')
                .unwrap_or_else(|| panic!("not NAME=value: {l}"));
            (k.to_string(), v.to_string())
        })
        .collect()
}

/// The unit's ExecStart arguments after the binary, with `$NAME` expanded from `env` the way
/// systemd splits an unquoted `$NAME` (on whitespace; empty gives no argument).
fn exec_start_args(unit: &str, env: &[(String, String)]) -> Vec<String> {
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart= in the unit");
    let mut words = line.split_whitespace();
    assert_eq!(
        words.next(),
        Some("/usr/local/bin/ketch"),
        "ExecStart binary"
    );
    words
        .flat_map(|w| match w.strip_prefix('$') {
            Some(name) => env
                .iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.split_whitespace().map(String::from).collect())
                .unwrap_or_default(),
            None => vec![w.to_string()],
        })
        .collect()
}

fn sh_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', "'\\''"))
}

/// A script that drops the arguments it is given (the process helper's own flags) and `exec`s
/// ketch with `args` in a clean environment made of `env` only, from `dir`: the unit's
/// ExecStart as systemd runs it, with the helper's PID guard around it.
fn as_systemd_runs_it(dir: &Path, args: &[String], env: &[(String, String)]) -> PathBuf {
    let env_words: Vec<String> = env
        .iter()
        .map(|(k, v)| sh_quote(&format!("{k}={v}")))
        .collect();
    let arg_words: Vec<String> = args.iter().map(|a| sh_quote(a)).collect();
    let text = format!(
        "#!/bin/sh\ncd {} || exit 99\nexec env -i {} {} {}\n",
        sh_quote(&dir.display().to_string()),
        env_words.join(" "),
        sh_quote(&ketch_bin().display().to_string()),
        arg_words.join(" ")
    );
    let path = dir.join("as-systemd.sh");
    std::fs::write(&path, text).expect("writing the ExecStart script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

/// ketch.service's ExecStart, run as systemd runs it (clean environment: the unit's
/// `Environment=` lines, then ketch.env, then NOTIFY_SOCKET), on temp ports and data dir.
#[test]
fn unit_exec_start_with_env_file_notifies_and_stops() {
    let unit = std::fs::read_to_string(deploy_file("ketch.service")).expect("reading unit");
    let env_text = std::fs::read_to_string(deploy_file("ketch.env")).expect("reading env file");
    let dir = tempfile::tempdir().expect("tempdir");
    let (client_port, peer_port) = (free_port(), free_port());
    let data_dir = dir.path().join("default.ketch");
    let unit_env = unit
        .lines()
        .filter_map(|l| l.strip_prefix("Environment="))
        .flat_map(env_file_vars);
    let mut env: Vec<(String, String)> = unit_env.chain(env_file_vars(&env_text)).collect();
    for (key, value) in env.iter_mut() {
        *value = value
            .replace(":2379", &format!(":{client_port}"))
            .replace(":2380", &format!(":{peer_port}"));
        if key == "ETCD_DATA_DIR" {
            *value = data_dir.display().to_string();
        }
    }
    let sock = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&sock).expect("binding the notify socket");
    env.push(("NOTIFY_SOCKET".into(), sock.display().to_string()));
    let script = as_systemd_runs_it(dir.path(), &exec_start_args(&unit, &env), &env);
    let server = ServerProcess::start_on(&script, &data_dir, client_port, peer_port, &[]);
    let log = server.log.clone();
    let run = observe(server, &socket);
    assert_ketch_protocol(&run);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        !text.contains("unrecognized environment variable"),
        "every variable of ketch.env is one ketch reads:\n{text}"
    );
    assert!(
        data_dir.join("member").is_dir(),
        "data went to ETCD_DATA_DIR"
    );
}

/// scripts/deploy/install.sh --self-check: its dry run prints every step and changes nothing,
/// it refuses non-root installs and bad arguments, and `systemd-analyze verify` accepts the
/// unit with no warning (and rejects a broken copy).
#[test]
fn install_script_self_check_passes() {
    let out = Command::new(deploy_file("install.sh"))
        .arg("--self-check")
        .stdin(Stdio::null())
        .output()
        .expect("running install.sh --self-check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    assert!(
        out.status.success() && last.ends_with(" passed, 0 failed"),
        "self-check failed:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let passed: usize = last.split(' ').next().unwrap().parse().unwrap();
    assert!(passed >= 16, "every check ran:\n{stdout}");
}
