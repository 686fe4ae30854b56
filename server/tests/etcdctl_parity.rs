//! etcdctl parity: the real etcdctl 3.4 gives the same stdout, stderr and exit code against
//! ketch as against etcd 3.4.23 for every command in scripts/tutorial-commands (the tutorial's
//! single-node steps, put/get/del with their flags, txn, compaction, error cases). Both servers
//! run one after the other on the same ports with the same flags, so member and cluster IDs
//! agree; only what legitimately differs (timings, raft term and index, db size) is masked,
//! by `normalize` below.

mod common;

use std::path::{Path, PathBuf};

use std::time::Duration;

use common::{ServerProcess, free_port, ketch_bin};
use ketch_conformance::normalize::mask_status_table_row;
use regex::Regex;

fn commands() -> Vec<(Vec<String>, Option<String>)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/tutorial-commands");
    let text = std::fs::read_to_string(&path).expect("reading scripts/tutorial-commands");
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|line| match line.split_once("<<< ") {
            Some((args, input)) => (shell_words(args), Some(input.replace('|', "\n") + "\n")),
            None => (shell_words(line), None),
        })
        .collect()
}

/// Splits like a POSIX shell for the subset the command file uses: blanks separate words,
/// double quotes group (and may be empty).
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let (mut word, mut in_word, mut quoted) = (String::new(), false, false);
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                }
                in_word = false;
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// Commands run with the endpoint given as a URL (`http://127.0.0.1:port`) after the tutorial's.
/// These open one connection per endpoint, and etcdctl 3.4 then sends the URL itself as the
/// HTTP/2 `:authority`, which ketch's client port has to accept as etcd does (see
/// server/src/authority.rs).
const URL_ENDPOINT_COMMANDS: &[&[&str]] = &[
    &["endpoint", "status", "-w", "table"],
    &["endpoint", "hashkv"],
    &["endpoint", "hashkv", "--rev=10"],
    &["endpoint", "hashkv", "--rev=-1"],
    &["defrag"],
    &["move-leader", "1"],
    &["get", "foo"],
];

fn all_commands() -> Vec<(String, Vec<String>, Option<String>)> {
    let words = |c: &[&str]| c.iter().map(|w| w.to_string()).collect();
    commands()
        .into_iter()
        .map(|(args, input)| (String::new(), args, input))
        .chain(
            URL_ENDPOINT_COMMANDS
                .iter()
                .map(|c| ("http://".to_string(), words(c), None)),
        )
        .collect()
}

fn run_etcdctl(endpoint: &str, args: &[String], input: Option<&str>) -> String {
    let out = common::etcdctl_output(endpoint, args, input);
    // The endpoint is shown when it is a URL (both servers listen on the same ports).
    let shown = match endpoint.starts_with("http") {
        true => format!("--endpoints={endpoint} "),
        false => String::new(),
    };
    format!(
        "$ etcdctl {shown}{}\n{}stderr: {}exit: {}\n",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        out.status.code().unwrap_or(-1)
    )
}

/// The one place where values that legitimately differ between two servers are masked.
fn normalize(text: &str) -> String {
    let rules: &[(&str, &str)] = &[
        // Timings.
        (r"took = [0-9.]+[a-zµ]+", "took = <t>"),
        (r#""ts":"[^"]+""#, r#""ts":"<t>""#),
        // Raft term and index: each server counts its own elections and internal entries.
        (r#""raft_term":\d+"#, r#""raft_term":<n>"#),
        (r#""RaftTerm" : \d+"#, r#""RaftTerm" : <n>"#),
        (
            r#""(raftIndex|raftTerm|raftAppliedIndex|dbSize|dbSizeInUse)":\d+"#,
            r#""$1":<n>"#,
        ),
        // etcdctl's client id in retry warnings.
        (r"client-[0-9a-f-]+", "client-<id>"),
    ];
    let mut text = text.to_string();
    for (pattern, replacement) in rules {
        text = Regex::new(pattern)
            .unwrap()
            .replace_all(&text, *replacement)
            .into_owned();
    }
    text.lines()
        .map(mask_status_table_row)
        .collect::<Vec<_>>()
        .join("\n")
}

fn transcript(bin: &Path, dir: &Path, client_port: u16, peer_port: u16) -> String {
    let mut server = ServerProcess::start_on(bin, dir, client_port, peer_port, &[]);
    server.wait_healthy(Duration::from_secs(20));
    let endpoint = server.endpoint();
    let out: String = all_commands()
        .iter()
        .map(|(scheme, args, input)| {
            run_etcdctl(&format!("{scheme}{endpoint}"), args, input.as_deref())
        })
        .collect();
    let code = server.terminate(Duration::from_secs(10));
    // etcd re-raises SIGTERM after its cleanup (it dies by the signal); ketch exits 0.
    if bin == ketch_bin() {
        assert_eq!(
            code,
            Some(0),
            "ketch did not exit 0 on SIGTERM:\n{}",
            server.log_tail()
        );
    }
    normalize(&out)
}

#[test]
fn etcdctl_output_matches_etcd() {
    let dir = tempfile::tempdir().unwrap();
    let (client_port, peer_port) = (free_port(), free_port());
    let etcd = transcript(
        &PathBuf::from("etcd"),
        &dir.path().join("etcd"),
        client_port,
        peer_port,
    );
    let ketch = transcript(
        &ketch_bin(),
        &dir.path().join("ketch"),
        client_port,
        peer_port,
    );
    // Guard against a vacuous pass: the transcripts must hold a served tutorial.
    for (name, t) in [("etcd", &etcd), ("ketch", &ketch)] {
        assert!(
            t.contains("foo\nhello world\n"),
            "{name} did not serve `get foo`:\n{t}"
        );
        assert_eq!(
            t.matches("$ etcdctl ").count(),
            all_commands().len(),
            "{name} transcript incomplete"
        );
    }
    if std::env::var_os("KETCH_PARITY_PRINT").is_some() {
        eprintln!("{ketch}");
    }
    let mismatches: Vec<String> = etcd
        .split("$ etcdctl ")
        .zip(ketch.split("$ etcdctl "))
        .filter(|(e, k)| e != k)
        .map(|(e, k)| format!("--- etcd:\n$ etcdctl {e}\n+++ ketch:\n$ etcdctl {k}"))
        .collect();
    assert!(
        mismatches.is_empty(),
        "{} of {} commands differ:\n{}",
        mismatches.len(),
        all_commands().len(),
        mismatches.join("\n")
    );
}
