//! etcd's auth through the JSON gateway: `/v3/auth/*` (including the answers etcdctl hides,
//! such as `root user does not have root role`), logins, the `Authorization` header carrying a
//! token (a bogus one, one after `auth disable`), and the maintenance service's untranslated
//! auth errors answer the same status and body on ketch as on etcd 3.4.23; only the member
//! and cluster IDs, the raft term and the token itself (random letters, raft index) are masked.
//! And a token left unused for `--auth-token-ttl` expires on both, while using it keeps it.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use common::{ETCD_BIN, ServerProcess, ketch_bin, require_etcd, same_transcript_as_etcd};
use regex::Regex;

const READ_TIMEOUT: Duration = Duration::from_secs(20);
/// The cheapest bcrypt cost, for both servers (logins check passwords).
const FAST_BCRYPT: [&str; 2] = ["--bcrypt-cost", "4"];

/// Where a step takes its `Authorization` header from.
#[derive(Clone, Copy)]
enum Token {
    None,
    Fixed(&'static str),
    /// The token of the last successful login.
    Last,
}

// a = YQ==, b = Yg==
#[rustfmt::skip]
const SCRIPT: &[(&str, &str, Token)] = &[
    ("/v3/auth/user/add", r#"{"name":"root","password":"pw"}"#, Token::None),
    ("/v3/auth/user/add", r#"{"name":""}"#, Token::None),
    ("/v3/auth/enable", "{}", Token::None),
    ("/v3/auth/user/grant", r#"{"user":"root","role":"root"}"#, Token::None),
    ("/v3/auth/role/grant", r#"{"name":"r3"}"#, Token::None),
    ("/v3/auth/role/add", r#"{"name":""}"#, Token::None),
    ("/v3/auth/role/add", r#"{"name":"r1"}"#, Token::None),
    ("/v3/auth/role/grant", r#"{"name":"r1","perm":{"permType":"READ","key":"YQ==","range_end":"Yg=="}}"#, Token::None),
    ("/v3/auth/enable", "{}", Token::None),
    ("/v3/kv/range", r#"{"key":"YQ=="}"#, Token::None),
    ("/v3/auth/authenticate", r#"{"name":"root","password":"bad"}"#, Token::None),
    ("/v3/auth/authenticate", r#"{"name":"root","password":"pw"}"#, Token::None),
    ("/v3/kv/put", r#"{"key":"YQ==","value":"Yg=="}"#, Token::Last),
    ("/v3/kv/range", r#"{"key":"YQ=="}"#, Token::Fixed("bogus")),
    ("/v3/kv/range", r#"{"key":"YQ=="}"#, Token::Fixed("bogus.5")),
    ("/v3/kv/range", r#"{"key":"YQ==","keys_only":true}"#, Token::Last),
    ("/v3/maintenance/hash", "{}", Token::None),
    ("/v3/maintenance/hash", "{}", Token::Fixed("bogus")),
    ("/v3/auth/user/list", "{}", Token::Last),
    ("/v3/auth/role/get", r#"{"role":"r1"}"#, Token::Last),
    ("/v3/auth/role/get", r#"{"role":"root"}"#, Token::Last),
    ("/v3/auth/role/list", "{}", Token::Last),
    ("/v3/auth/user/delete", r#"{"name":"root"}"#, Token::Last),
    ("/v3/auth/disable", "{}", Token::Last),
    ("/v3/kv/range", r#"{"key":"YQ==","keys_only":true}"#, Token::Last),
    ("/v3/kv/range", r#"{"key":"YQ==","keys_only":true}"#, Token::None),
    ("/v3/auth/authenticate", r#"{"name":"root","password":"pw"}"#, Token::None),
];

fn post(port: u16, path: &str, body: &str, token: Option<&str>) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connecting");
    s.set_read_timeout(Some(READ_TIMEOUT))
        .expect("read timeout");
    let auth = token.map_or(String::new(), |t| format!("Authorization: {t}\r\n"));
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("sending request");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("reading the answer");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.lines().next().unwrap_or("");
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    format!("{status} {body}")
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].strip_prefix("\r\n").unwrap_or(&after[n..]);
    }
    out
}

fn transcript(bin: &Path, dir: &Path) -> String {
    let mut server = ServerProcess::start(bin, dir, &FAST_BCRYPT);
    server.wait_healthy(Duration::from_secs(20));
    let token_re = Regex::new(r#""token":"([^"]*)""#).expect("regex");
    let ids = Regex::new(r#""(cluster_id|member_id|raft_term)":"\d+""#).expect("regex");
    let mut last = String::new();
    let mut t = String::new();
    for (path, body, token) in SCRIPT {
        let (token, sent) = match token {
            Token::None => (None, "-"),
            Token::Fixed(t) => (Some(*t), *t),
            Token::Last => (Some(last.as_str()), "LAST"),
        };
        let answer = post(server.client_port, path, body, token);
        if let Some(c) = token_re.captures(&answer) {
            last = c[1].to_string();
        }
        let answer = ids.replace_all(&answer, r#""$1":"X""#);
        let answer = token_re.replace_all(&answer, r#""token":"TOKEN""#);
        t += &format!("> {path} {body} [auth {sent}]\n{answer}\n");
    }
    server.kill9();
    t
}

#[test]
fn gateway_auth_answers_as_etcd_does() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let ketch = same_transcript_as_etcd(tmp.path(), transcript);
    for expected in [
        "etcdserver: root user does not have root role",
        "etcdserver: invalid auth token",
        r#"{"error":"auth: user name is empty","message":"auth: user name is empty","code":2}"#,
        r#""token":"TOKEN""#,
    ] {
        assert!(
            ketch.contains(expected),
            "missing {expected:?} in:\n{ketch}"
        );
    }
}

/// A token unused for `--auth-token-ttl` seconds is invalid; each use restarts its TTL.
fn token_ttl_transcript(bin: &Path, dir: &Path) -> String {
    let flags = [FAST_BCRYPT[0], FAST_BCRYPT[1], "--auth-token-ttl", "2"];
    let mut server = ServerProcess::start(bin, dir, &flags);
    server.wait_healthy(Duration::from_secs(20));
    let port = server.client_port;
    for (path, body) in [
        ("/v3/auth/user/add", r#"{"name":"root","password":"pw"}"#),
        ("/v3/auth/user/grant", r#"{"user":"root","role":"root"}"#),
        ("/v3/auth/enable", "{}"),
    ] {
        post(port, path, body, None);
    }
    let login = post(
        port,
        "/v3/auth/authenticate",
        r#"{"name":"root","password":"pw"}"#,
        None,
    );
    let token_re = Regex::new(r#""token":"([^"]*)""#).expect("regex");
    let token = token_re.captures(&login).map(|c| c[1].to_string());
    let token = token.unwrap_or_else(|| panic!("no token in {login}"));
    let mut t = String::new();
    for pause_ms in [0, 1200, 1200, 3500] {
        std::thread::sleep(Duration::from_millis(pause_ms));
        let answer = post(port, "/v3/auth/user/list", "{}", Some(&token));
        let users = answer.contains(r#""users":["root"]"#);
        t += &format!(
            "after {pause_ms} ms idle: {}\n",
            if users { "ok" } else { &answer }
        );
    }
    server.kill9();
    t
}

#[test]
fn tokens_expire_after_the_ttl_unless_used() {
    let etcd_bin = require_etcd(ETCD_BIN);
    let tmp = tempfile::tempdir().expect("temp dir");
    // Both servers at once: the test is mostly waiting.
    let (ketch, etcd) = std::thread::scope(|s| {
        let ketch = s.spawn(|| token_ttl_transcript(&ketch_bin(), &tmp.path().join("ketch")));
        let etcd = token_ttl_transcript(etcd_bin, &tmp.path().join("etcd"));
        (ketch.join().expect("ketch side"), etcd)
    });
    assert_eq!(ketch, etcd, "ketch:\n{ketch}\netcd:\n{etcd}");
    assert!(
        ketch.ends_with("after 3500 ms idle: HTTP/1.1 401 Unauthorized {\"error\":\"etcdserver: invalid auth token\",\"message\":\"etcdserver: invalid auth token\",\"code\":16}\n"),
        "{ketch}"
    );
}
