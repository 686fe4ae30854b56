//! What the auth tests share: etcdctl runs whose transcripts can be compared between ketch
//! and etcd (masked where runs legitimately differ), and the users and roles they set up.

#![allow(dead_code)]

/// bcrypt's cheapest cost, given to etcd and ketch alike: every `--user` command checks a
/// password, and at etcd's default (10) that takes ~0.3 s in a debug build of ketch.
pub const FAST_BCRYPT: [&str; 2] = ["--bcrypt-cost", "4"];

/// root (password rootpw), and alice (alicepw) with role `app`: read-write on `app/*`.
pub const BASE_SETUP: &[&[&str]] = &[
    &["user", "add", "root", "--new-user-password=rootpw"],
    &["role", "add", "app"],
    &[
        "role",
        "grant-permission",
        "app",
        "readwrite",
        "app/",
        "--prefix",
    ],
    &["user", "add", "alice", "--new-user-password=alicepw"],
    &["user", "grant-role", "alice", "app"],
];

/// Runs etcdctl against `endpoint` (a URL or host:port) with `stdin`; returns the command, its
/// stdout and stderr and its exit code, masked by [`mask`].
pub fn etcdctl(endpoint: &str, args: &[&str], stdin: Option<&str>) -> String {
    let out = crate::common::etcdctl_output(endpoint, args, stdin);
    let text = format!(
        "$ etcdctl {}\n{}{}[exit {:?}]\n",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        out.status.code()
    );
    mask(&text, endpoint)
}

/// Masks etcdctl's log timestamps, its random client IDs and the server's address.
pub fn mask(text: &str, endpoint: &str) -> String {
    let ts = regex::Regex::new(r#""ts":"[^"]*""#).expect("regex");
    let client = regex::Regex::new(r"client-[0-9a-f-]{36}").expect("regex");
    let text = ts.replace_all(text, r#""ts":"TS""#);
    let text = client.replace_all(&text, "client-ID");
    let host_port = endpoint
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    text.replace(host_port, "ENDPOINT")
}

/// Runs each command of `script` in turn; their transcripts, concatenated.
pub fn run_all(endpoint: &str, script: &[&[&str]]) -> String {
    script
        .iter()
        .map(|args| etcdctl(endpoint, args, None))
        .collect()
}
