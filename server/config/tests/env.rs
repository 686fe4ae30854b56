//! Checks the environment rules against etcd 3.4.23 (measured on this machine): every flag
//! reads `ETCD_<FLAG>`, a variable for a flag also given on the command line is a fatal
//! conflict (even when empty), empty variables are ignored, bad values name the variable;
//! and ketch's `KETCH_<FLAG>` aliases.

mod common;

use common::{parse_env, url_strings};
use ketch_config::{ConfigError, unrecognized_env_warnings};

fn ok_env(args: &[&str], env: &[(&str, &str)]) -> ketch_config::Config {
    parse_env(args, env).unwrap_or_else(|e| panic!("{args:?} {env:?}: {e:?}"))
}

fn invalid_env(args: &[&str], env: &[(&str, &str)]) -> String {
    match parse_env(args, env) {
        Err(ConfigError::Invalid(msg)) => msg,
        other => panic!("{args:?} {env:?}: expected a validation error, got {other:?}"),
    }
}

#[test]
fn etcd_variables_set_flags() {
    let cfg = ok_env(
        &[],
        &[
            ("ETCD_NAME", "infra1"),
            ("ETCD_DATA_DIR", "/var/lib/etcd"),
            ("ETCD_LISTEN_CLIENT_URLS", "http://127.0.0.1:12379"),
            ("ETCD_ADVERTISE_CLIENT_URLS", "http://127.0.0.1:12379"),
            ("ETCD_HEARTBEAT_INTERVAL", "200"),
            ("ETCD_ELECTION_TIMEOUT", "2000"),
            ("ETCD_SNAPSHOT_COUNT", "5000"),
            ("ETCD_INITIAL_CLUSTER_TOKEN", "tok"),
            ("ETCD_INITIAL_CLUSTER_STATE", "existing"),
            ("ETCD_CLIENT_CERT_AUTH", "true"),
            ("ETCD_QUOTA_BACKEND_BYTES", "1073741824"),
        ],
    );
    assert_eq!(cfg.name, "infra1");
    assert_eq!(cfg.data_dir.to_str(), Some("/var/lib/etcd"));
    assert_eq!(
        url_strings(&cfg.listen_client_urls),
        ["http://127.0.0.1:12379"]
    );
    assert_eq!(
        (cfg.heartbeat_interval_ms, cfg.election_timeout_ms),
        (200, 2000)
    );
    assert_eq!(cfg.snapshot_count, 5000);
    assert_eq!(cfg.initial_cluster_token, "tok");
    assert_eq!(cfg.initial_cluster_state.as_str(), "existing");
    assert!(cfg.client_tls.client_cert_auth);
    assert_eq!(cfg.quota_backend_bytes, 1 << 30);
    // etcd logs "recognized and used environment variable ETCD_NAME=infra1".
    assert!(
        cfg.notices
            .iter()
            .any(|n| n.message == "recognized and used environment variable ETCD_NAME=infra1")
    );
}

#[test]
fn ketch_variables_are_aliases() {
    let cfg = ok_env(&[], &[("KETCH_NAME", "k1"), ("KETCH_SHARDS", "2")]);
    assert_eq!((cfg.name.as_str(), cfg.shards), ("k1", Some(2)));
    // Both set to the same value is fine; different values are ambiguous.
    let cfg = ok_env(&[], &[("ETCD_NAME", "same"), ("KETCH_NAME", "same")]);
    assert_eq!(cfg.name, "same");
    assert_eq!(
        invalid_env(&[], &[("ETCD_NAME", "a"), ("KETCH_NAME", "b")]),
        "conflicting environment variables ETCD_NAME=a and KETCH_NAME=b; set only one"
    );
    // ketch-only settings have no ETCD_ form.
    assert_eq!(ok_env(&[], &[("ETCD_SHARDS", "2")]).shards, None);
}

#[test]
fn flag_and_variable_together_is_fatal_as_in_etcd() {
    // etcd 3.4.23 `ETCD_NAME=envname etcd --name flagname` (also with ETCD_NAME empty):
    // C | pkg/flags: conflicting environment variable "ETCD_NAME" is shadowed by
    // corresponding command-line flag (either unset environment variable or disable flag)
    let want = "conflicting environment variable \"ETCD_NAME\" is shadowed by corresponding command-line flag (either unset environment variable or disable flag)";
    assert_eq!(
        invalid_env(&["--name", "flagname"], &[("ETCD_NAME", "envname")]),
        want
    );
    assert_eq!(
        invalid_env(&["--name", "flagname"], &[("ETCD_NAME", "")]),
        want
    );
    assert!(
        invalid_env(&["--name=x"], &[("KETCH_NAME", "y")])
            .starts_with("conflicting environment variable \"KETCH_NAME\" is shadowed")
    );
    let err = parse_env(&["--name=x"], &[("ETCD_NAME", "y")])
        .map(|_| ())
        .unwrap_err();
    assert_eq!(err.exit_code(), 1);
}

#[test]
fn empty_variables_are_ignored() {
    assert_eq!(ok_env(&[], &[("ETCD_NAME", "")]).name, "default");
}

#[test]
fn bad_values_name_the_variable() {
    // Messages printed by etcd 3.4.23 for the same variables (measured).
    let cases = [
        (
            "ETCD_HEARTBEAT_INTERVAL",
            "abc",
            "invalid value \"abc\" for ETCD_HEARTBEAT_INTERVAL: parse error",
        ),
        (
            "ETCD_LISTEN_CLIENT_URLS",
            "foo",
            "invalid value \"foo\" for ETCD_LISTEN_CLIENT_URLS: URL scheme must be http, https, unix, or unixs: foo",
        ),
        (
            "ETCD_ENABLE_V2",
            "abc",
            "invalid value \"abc\" for ETCD_ENABLE_V2: parse error",
        ),
        (
            "ETCD_VERSION",
            "3.4.23",
            "invalid value \"3.4.23\" for ETCD_VERSION: parse error",
        ),
        (
            "KETCH_IO_MEMORY_BYTES",
            "1M",
            "invalid value \"1M\" for KETCH_IO_MEMORY_BYTES: parse error",
        ),
    ];
    for (key, value, want) in cases {
        assert_eq!(invalid_env(&[], &[(key, value)]), want, "{key}");
    }
}

#[test]
fn environment_values_are_validated_like_flags() {
    assert_eq!(
        invalid_env(&[], &[("ETCD_ELECTION_TIMEOUT", "300")]),
        "--election-timeout[300ms] should be at least as 5 times as --heartbeat-interval[100ms]"
    );
    // A variable counts as setting the flag explicitly (etcd 3.4.23 refuses
    // ETCD_LISTEN_CLIENT_URLS without an advertise URL; measured).
    assert_eq!(
        invalid_env(&[], &[("ETCD_LISTEN_CLIENT_URLS", "http://127.0.0.1:1")]),
        "--advertise-client-urls is required when --listen-client-urls is set explicitly"
    );
    let cfg = ok_env(
        &[],
        &[
            ("ETCD_LISTEN_CLIENT_URLS", "http://127.0.0.1:1"),
            ("KETCH_ADVERTISE_CLIENT_URLS", "http://127.0.0.1:1"),
        ],
    );
    assert_eq!(
        url_strings(&cfg.advertise_client_urls),
        ["http://127.0.0.1:1"]
    );
}

#[test]
fn unknown_variables_only_warn() {
    // etcd 3.4.23: "W | pkg/flags: unrecognized environment variable ETCD_UNKNOWN_VAR=1",
    // and it starts.
    let env = [("ETCD_UNKNOWN_VAR", "1")];
    let cfg = ok_env(&[], &env);
    let vars = [
        ("ETCD_UNKNOWN_VAR".to_owned(), "1".to_owned()),
        ("ETCD_NAME".to_owned(), "x".to_owned()),
        ("ETCDCTL_API".to_owned(), "3".to_owned()),
        ("KETCH_NOPE".to_owned(), "2".to_owned()),
        ("KETCH_SHARDS".to_owned(), "2".to_owned()),
        ("ETCD_SHARDS".to_owned(), "2".to_owned()),
        ("PATH".to_owned(), "/bin".to_owned()),
    ];
    assert_eq!(
        unrecognized_env_warnings(&cfg, vars),
        [
            "unrecognized environment variable ETCD_UNKNOWN_VAR=1",
            "unrecognized environment variable KETCH_NOPE=2",
            "unrecognized environment variable ETCD_SHARDS=2",
        ]
    );
}
