//! JSON gateway parity: the same sequence of HTTP requests (KV, txn, compaction, leases and
//! their `/v3/kv/lease` aliases, cluster, maintenance, streaming watch and keep-alive, the
//! `/v3beta` prefix, malformed bodies, unknown paths, wrong methods) is sent to etcd 3.4.23 and
//! then to ketch on the same ports with the same flags (so member and cluster IDs agree); the
//! status, content type and body of every answer must be identical after masking what
//! legitimately differs (raft term and index, db size, hash, a lease's remaining TTL, and the
//! wording of JSON type errors, which is Go's and jsonpb's; syntax errors are compared).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{ServerProcess, free_port, ketch_bin};
use regex::Regex;

/// How long one streamed answer is read for its expected lines.
const STREAM_READ_TIMEOUT: Duration = Duration::from_secs(3);
const HEALTH_TIMEOUT: Duration = Duration::from_secs(20);

/// One request of the script: method, path, body, and for streams the lines to read.
struct Case {
    method: &'static str,
    path: &'static str,
    body: &'static str,
    stream_lines: usize,
    /// The error text is a JSON type error's (Go's vs prost-reflect's): compare all but it.
    mask_message: bool,
    /// Sent on another connection once the stream's first line arrived (a live watch event).
    then: Option<&'static Case>,
    /// When non-zero, the body is a put of a value this large (the request size limits).
    value_bytes: usize,
}

const fn post(path: &'static str, body: &'static str) -> Case {
    Case {
        method: "POST",
        path,
        body,
        stream_lines: 0,
        mask_message: false,
        then: None,
        value_bytes: 0,
    }
}

const fn stream(path: &'static str, body: &'static str, lines: usize) -> Case {
    Case {
        stream_lines: lines,
        ..post(path, body)
    }
}

const fn malformed(path: &'static str, body: &'static str) -> Case {
    Case {
        mask_message: true,
        ..post(path, body)
    }
}

// foo = Zm9v, bar = YmFy, baz = YmF6, a = YQ==, "\0" = AA==
#[rustfmt::skip]
const SCRIPT: &[Case] = &[
    post("/v3/kv/put", r#"{"key":"Zm9v","value":"YmFy"}"#),
    post("/v3/kv/put", r#"{"key":"Zm9v","value":"YmF6","prev_kv":true}"#),
    post("/v3/kv/put", r#"{"key":"YQ==","value":"YmFy","prevKv":true}"#),
    post("/v3/kv/put", r#"{"key":"YQ==","value":"YmFy","lease":"123"}"#),
    post("/v3/kv/put", r#"{"value":"YmFy"}"#),
    post("/v3/kv/range", r#"{"key":"Zm9v"}"#),
    post("/v3/kv/range", r#"{"key":"AA==","range_end":"AA==","sort_order":"DESCEND","sort_target":"KEY"}"#),
    post("/v3/kv/range", r#"{"key":"AA==","range_end":"AA==","count_only":true}"#),
    post("/v3/kv/range", r#"{"key":"AA==","range_end":"AA==","limit":"1","keys_only":true}"#),
    post("/v3/kv/range", r#"{"key":"Zm9v","bogus":1} trailing"#),
    post("/v3/kv/range", ""),
    post("/v3/kv/range", "{}"),
    post("/v3/kv/range", r#"{"key":"#),
    post("/v3/kv/range", "[1]"),
    post("/v3/kv/range", "{bad"),
    post("/v3/kv/range", r#"{"key":"Zm9v",}"#),
    post("/v3/kv/range", r#"{"key" "x"}"#),
    post("/v3/kv/put", r#"{"key":"Zm9v","lease":1x}"#),
    post("/v3/kv/range", "nul"),
    // Above --max-request-bytes (1.5 MiB), then above the gRPC receive limit (2 MiB).
    Case { value_bytes: 1_600_002, ..post("/v3/kv/put", "") },
    Case { value_bytes: 2_200_002, ..post("/v3/kv/put", "") },
    malformed("/v3/kv/range", r#"{"key":5}"#),
    malformed("/v3/kv/range", r#"{"key":"Zm9v","sort_order":"NOPE"}"#),
    // Bytes decode by Go's base64 rules, wording included (compared, not masked): a refused
    // symbol, a missing second '=', no padding, garbage after it, a nested field; then a
    // newline inside and non-zero trailing bits, which Go accepts (key "a" both times).
    post("/v3/kv/range", r#"{"key":"not base64!"}"#),
    post("/v3/kv/range", r#"{"key":"YQ= "}"#),
    post("/v3/kv/range", r#"{"key":"YWJjZ"}"#),
    post("/v3/kv/range", r#"{"key":"YWI=x"}"#),
    post("/v3/kv/txn", r#"{"compare":[{"key":"YQ==","value":"YQ"}]}"#),
    post("/v3/kv/put", r#"{"key":"YQ=\n=","value":"YR=="}"#),
    post("/v3/kv/range", r#"{"key":"YR=="}"#),
    post("/v3beta/kv/range", r#"{"key":"Zm9v"}"#),
    post("/v3alpha/kv/range", r#"{"key":"Zm9v"}"#),
    post("/v3/kv/nope", "{}"),
    post("/v3/kv/lease/grant", "{}"),
    Case { method: "GET", ..post("/v3/kv/range", "") },
    Case { method: "PUT", ..post("/v3/kv/put", "{}") },
    Case { method: "OPTIONS", ..post("/v3/kv/put", "") },
    Case { method: "OPTIONS", ..post("/v3/kv/nope", "") },
    post("/v3/kv/txn", r#"{"compare":[{"key":"Zm9v","result":"EQUAL","target":"VALUE","value":"YmF6"}],"success":[{"request_range":{"key":"Zm9v"}},{"request_put":{"key":"Zm9v","value":"YmFy","prev_kv":true}}],"failure":[{"request_delete_range":{"key":"Zm9v"}}]}"#),
    post("/v3/kv/txn", r#"{"compare":[{"key":"Zm9v","result":2,"target":1,"version":"100"}],"success":[{"requestRange":{"key":"Zm9v"}}],"failure":[{"requestTxn":{}}]}"#),
    post("/v3/kv/txn", r#"{"success":[{"request_put":{"key":"YQ=="}},{"request_put":{"key":"YQ=="}}]}"#),
    post("/v3/kv/deleterange", r#"{"key":"YQ==","prev_kv":true}"#),
    post("/v3/kv/deleterange", r#"{"key":"YQ=="}"#),
    post("/v3/kv/compaction", r#"{"revision":"3"}"#),
    post("/v3/kv/compaction", r#"{"revision":"200"}"#),
    post("/v3/kv/compaction", r#"{"revision":"2"}"#),
    post("/v3/kv/range", r#"{"key":"Zm9v","revision":"2"}"#),
    post("/v3/kv/range", r#"{"key":"Zm9v","revision":4}"#),
    stream("/v3/watch", r#"{"create_request":{"key":"Zm9v","start_revision":"4","prev_kv":true}}"#, 2),
    stream("/v3/watch", r#"{"create_request":{"key":"Zm9v","start_revision":"1"}}"#, 2),
    stream("/v3beta/watch", r#"{"create_request":{"key":"AA==","range_end":"AA==","start_revision":"5","filters":["NODELETE"]}}{"create_request":{"key":"YQ==","start_revision":"5"}}"#, 4),
    post("/v3/watch", "{bad"),
    Case { then: Some(&LIVE_PUT), ..stream("/v3/watch", r#"{"create_request":{"key":"bGl2ZQ==","prev_kv":true}}"#, 2) },
    post("/v3/lease/grant", r#"{"TTL":"30","ID":"100"}"#),
    post("/v3/lease/grant", r#"{"TTL":"30","ID":"100"}"#),
    post("/v3/lease/grant", r#"{"TTL":"9000000000","ID":"101"}"#),
    post("/v3/kv/put", r#"{"key":"bGs=","value":"dg==","lease":"100"}"#),
    post("/v3/lease/timetolive", r#"{"ID":"100","keys":true}"#),
    post("/v3/kv/lease/timetolive", r#"{"ID":100}"#),
    post("/v3/lease/leases", "{}"),
    post("/v3/kv/lease/leases", ""),
    stream("/v3/lease/keepalive", r#"{"ID":"100"}{"ID":"100"}"#, 2),
    stream("/v3/lease/keepalive", r#"{"ID":"5"}"#, 1),
    post("/v3/kv/lease/revoke", r#"{"ID":"100"}"#),
    post("/v3/lease/revoke", r#"{"ID":"100"}"#),
    post("/v3/lease/timetolive", r#"{"ID":"100"}"#),
    post("/v3/kv/range", r#"{"key":"bGs="}"#),
    post("/v3/cluster/member/list", "{}"),
    post("/v3/maintenance/status", "{}"),
    post("/v3/maintenance/hash", "{}"),
    post("/v3/maintenance/hashkv", "{}"),
    post("/v3/maintenance/alarm", "{}"),
    post("/v3/maintenance/defragment", "{}"),
];

/// The write a live watch in the script waits for.
const LIVE_PUT: Case = post("/v3/kv/put", r#"{"key":"bGl2ZQ==","value":"MQ=="}"#);

/// Answers that differ because the gRPC service (not the gateway) answers differently from
/// etcd; printed, not failed, until the service is fixed. etcd 3.4's Alarm and Defragment
/// answers carry no header; ketch's maintenance service fills one.
const KNOWN_SERVICE_DIFFERENCES: &[&str] = &[];

#[test]
fn gateway_answers_as_etcd_does() {
    // etcd 3.4.23 from PATH (apt-get install etcd-server), as the etcdctl parity test.
    let etcd = Path::new("etcd");
    let dir = tempfile::tempdir().expect("temp dir");
    let (client, peer) = (free_port(), free_port());
    let on_etcd = replay(etcd, &dir.path().join("etcd"), client, peer);
    let on_ketch = replay(&ketch_bin(), &dir.path().join("ketch"), client, peer);
    let mut mismatches = Vec::new();
    for ((case, e), k) in SCRIPT.iter().zip(&on_etcd).zip(&on_ketch) {
        // The script must exercise what it claims: every stream answered its lines on etcd.
        assert!(
            case.stream_lines == 0 || e.matches("{\"result\":").count() == case.stream_lines,
            "etcd's answer to {} {} is short: {e}",
            case.path,
            case.body
        );
        let (e, k) = (normalize(e, case), normalize(k, case));
        if e != k && KNOWN_SERVICE_DIFFERENCES.contains(&case.path) {
            eprintln!(
                "known service difference on {}:\n  etcd:  {e}\n  ketch: {k}",
                case.path
            );
        } else if e != k {
            mismatches.push(format!(
                "{} {} {}\n  etcd:  {e}\n  ketch: {k}",
                case.method, case.path, case.body
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} answers differ:\n{}",
        mismatches.len(),
        SCRIPT.len(),
        mismatches.join("\n")
    );
}

fn replay(bin: &Path, data_dir: &Path, client: u16, peer: u16) -> Vec<String> {
    let mut server = ServerProcess::start_on(bin, data_dir, client, peer, &[]);
    server.wait_healthy(HEALTH_TIMEOUT);
    let answers = SCRIPT.iter().map(|c| exchange(client, c)).collect();
    server.kill9();
    answers
}

/// Sends one request and returns "status content-type body" (the body de-chunked; for a
/// stream, its first `stream_lines` lines).
fn exchange(port: u16, case: &Case) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connecting");
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("read timeout");
    let body = if case.value_bytes > 0 {
        big_put_body(case.value_bytes)
    } else {
        case.body.to_string()
    };
    write!(
        s,
        "{} {} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        case.method,
        case.path,
        body.len(),
        body
    )
    .expect("sending request");
    let deadline = Instant::now() + STREAM_READ_TIMEOUT;
    let mut raw = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let (mut sent_then, mut then_answer) = (false, String::new());
    loop {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&chunk[..n]),
            Err(_) if Instant::now() < deadline => {}
            Err(_) => break,
        }
        let lines_read = parse(&raw).2.matches('\n').count();
        if let Some(then) = case.then.filter(|_| lines_read >= 1 && !sent_then) {
            sent_then = true;
            then_answer = exchange(port, then);
        }
        if case.stream_lines > 0 && lines_read >= case.stream_lines {
            break;
        }
        if Instant::now() >= deadline {
            break;
        }
    }
    let (status, content_type, mut body) = parse(&raw);
    if case.stream_lines > 0 {
        body = body.split_inclusive('\n').take(case.stream_lines).collect();
    }
    format!("{status} {content_type} {body}{then_answer}")
}

/// A put of key `big` whose value is `value_bytes` bytes, base64 encoded by hand (the test
/// needs no base64 crate: 'x' * 3 encodes as "eHh4").
fn big_put_body(value_bytes: usize) -> String {
    assert_eq!(value_bytes % 3, 0, "whole base64 groups");
    format!(
        r#"{{"key":"Ymln","value":"{}"}}"#,
        "eHh4".repeat(value_bytes / 3)
    )
}

/// Status line, content type and de-chunked body of a raw HTTP/1.1 answer.
fn parse(raw: &[u8]) -> (String, String, String) {
    let text = String::from_utf8_lossy(raw);
    let Some((head, rest)) = text.split_once("\r\n\r\n") else {
        return (format!("incomplete: {text}"), String::new(), String::new());
    };
    let mut lines = head.lines();
    let status = lines.next().unwrap_or("").to_string();
    let header = |name: &str| {
        head.lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
    };
    let chunked = header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    let headers = format!(
        "{} cors={}",
        header("content-type").unwrap_or_default(),
        header("access-control-allow-origin").unwrap_or_default()
    );
    (status, headers, body)
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || after.len() < n {
            out.push_str(&after[..n.min(after.len())]);
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].strip_prefix("\r\n").unwrap_or(&after[n..]);
    }
    out
}

/// Orders a stream's lines by watch ID, stably: events of one watch keep their order, but
/// neither server promises an order between different watches' catch-up.
fn order_by_watch(answer: &str) -> String {
    let id = Regex::new(r#""watch_id":"(\d+)""#).expect("valid pattern");
    let mut lines: Vec<&str> = answer.split_inclusive('\n').collect();
    let key = |l: &str| -> u64 { id.captures(l).and_then(|c| c[1].parse().ok()).unwrap_or(0) };
    lines.sort_by_key(|l| key(l));
    lines.concat()
}

/// Masks what legitimately differs between the two servers.
fn normalize(answer: &str, case: &Case) -> String {
    let mut out = if case.stream_lines > 0 {
        order_by_watch(answer)
    } else {
        answer.to_string()
    };
    let mut mask = |pattern: &str, with: &str| {
        out = Regex::new(pattern)
            .expect("valid pattern")
            .replace_all(&out, with)
            .into_owned();
    };
    mask(
        r#""(raft_term|raftTerm|raftIndex|raftAppliedIndex|dbSize|dbSizeInUse)":"\d+""#,
        r#""$1":"N""#,
    );
    mask(r#""hash":\d+"#, r#""hash":N"#);
    if case.path.ends_with("/timetolive") {
        mask(r#""TTL":"\d+""#, r#""TTL":"N""#);
    }
    if case.mask_message {
        mask(r#""(error|message)":"(?:[^"\\]|\\.)*""#, r#""$1":"M""#);
    }
    out
}
