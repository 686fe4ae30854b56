//! Checks command-line parsing against etcd 3.4.23's Go-flag behaviour: accepted syntaxes,
//! and for bad input the exact message and exit code etcd gives (each expected message was
//! printed by /usr/bin/etcd 3.4.23 for the same arguments on this machine).

mod common;

use std::time::Duration;

use common::{invalid_err, ok, parse, url_strings, usage_err};
use ketch_config::{AutoCompaction, ClusterState, ConfigError, LogLevel};

#[test]
fn all_go_flag_syntaxes_are_accepted() {
    for args in [
        &["--name=n1"][..],
        &["--name", "n1"],
        &["-name=n1"],
        &["-name", "n1"],
        &["--name=other", "--name", "n1"], // the last one wins
    ] {
        assert_eq!(ok(args).name, "n1", "{args:?}");
    }
    // A value may itself start with '-' when given as the next argument.
    assert_eq!(
        ok(&["--initial-cluster-token", "-tok"]).initial_cluster_token,
        "-tok"
    );
}

#[test]
fn bool_flags_take_a_value_only_with_equals() {
    assert!(!ok(&["--strict-reconfig-check=false"]).strict_reconfig_check);
    assert!(!ok(&["-strict-reconfig-check=0"]).strict_reconfig_check);
    assert!(ok(&["--client-cert-auth"]).client_tls.client_cert_auth);
    assert!(ok(&["--auto-tls=T"]).client_tls.auto_tls);
    // `--enable-v2 false` makes "false" a positional argument, as in Go.
    assert_eq!(
        invalid_err(&["--enable-v2", "false"]),
        "'false' is not a valid flag"
    );
    assert_eq!(
        usage_err(&["--enable-v2=abc"]),
        "invalid boolean value \"abc\" for -enable-v2: parse error"
    );
}

#[test]
fn syntax_errors_match_etcd() {
    assert_eq!(usage_err(&["--foo"]), "flag provided but not defined: -foo");
    assert_eq!(usage_err(&["-foo"]), "flag provided but not defined: -foo");
    assert_eq!(usage_err(&["---x"]), "bad flag syntax: ---x");
    assert_eq!(usage_err(&["-=x"]), "bad flag syntax: -=x");
    assert_eq!(usage_err(&["--name"]), "flag needs an argument: -name");
    assert_eq!(invalid_err(&["extra"]), "'extra' is not a valid flag");
    // `--` ends the flags; what follows is positional.
    assert_eq!(
        invalid_err(&["--", "--name=x"]),
        "'--name=x' is not a valid flag"
    );
    assert_eq!(parse(&["--foo"]).map(|_| ()).unwrap_err().exit_code(), 2);
    assert_eq!(parse(&["extra"]).map(|_| ()).unwrap_err().exit_code(), 1);
}

#[test]
fn value_errors_match_etcd() {
    let cases: &[(&str, &str)] = &[
        (
            "--heartbeat-interval=abc",
            "invalid value \"abc\" for flag -heartbeat-interval: parse error",
        ),
        (
            "--snapshot-count=-1",
            "invalid value \"-1\" for flag -snapshot-count: parse error",
        ),
        (
            "--snapshot-count=0x10x",
            "invalid value \"0x10x\" for flag -snapshot-count: parse error",
        ),
        (
            "--snapshot-count=99999999999999999999",
            "invalid value \"99999999999999999999\" for flag -snapshot-count: value out of range",
        ),
        (
            "--max-txn-ops=-1",
            "invalid value \"-1\" for flag -max-txn-ops: parse error",
        ),
        (
            "--max-request-bytes=abc",
            "invalid value \"abc\" for flag -max-request-bytes: parse error",
        ),
        (
            "--max-concurrent-streams=abc",
            "invalid value \"abc\" for flag -max-concurrent-streams: strconv.ParseUint: parsing \"abc\": invalid syntax",
        ),
        (
            "--grpc-keepalive-interval=abc",
            "invalid value \"abc\" for flag -grpc-keepalive-interval: parse error",
        ),
        (
            "--initial-cluster-state=bogus",
            "invalid value \"bogus\" for flag -initial-cluster-state: invalid value",
        ),
        (
            "--listen-client-urls=foo",
            "invalid value \"foo\" for flag -listen-client-urls: URL scheme must be http, https, unix, or unixs: foo",
        ),
        (
            "--listen-client-urls=http://localhost:2379/path",
            "invalid value \"http://localhost:2379/path\" for flag -listen-client-urls: URL must not contain a path: http://localhost:2379/path",
        ),
        (
            "--listen-client-urls=http://127.0.0.1",
            "invalid value \"http://127.0.0.1\" for flag -listen-client-urls: URL address does not have the form \"host:port\": http://127.0.0.1",
        ),
        (
            "--listen-client-urls=http://[::1:2379",
            "invalid value \"http://[::1:2379\" for flag -listen-client-urls: parse \"http://[::1:2379\": missing ']' in host",
        ),
        (
            "--listen-client-urls=127.0.0.1:2379",
            "invalid value \"127.0.0.1:2379\" for flag -listen-client-urls: parse \"127.0.0.1:2379\": first path segment in URL cannot contain colon",
        ),
    ];
    for (arg, want) in cases {
        assert_eq!(usage_err(&[arg]), *want, "{arg}");
    }
}

#[test]
fn numbers_use_go_literal_syntax() {
    let cfg = ok(&[
        "--snapshot-count=0x10",
        "--heartbeat-interval=1_0",
        "--election-timeout=0o1750",
    ]);
    assert_eq!(cfg.snapshot_count, 16);
    assert_eq!(cfg.heartbeat_interval_ms, 10);
    assert_eq!(cfg.election_timeout_ms, 1000);
    assert_eq!(
        ok(&["--quota-backend-bytes=-5"]).effective_quota_backend_bytes(),
        None
    );
    assert_eq!(
        ok(&["--quota-backend-bytes=1024"]).effective_quota_backend_bytes(),
        Some(1024)
    );
    let cfg = ok(&[
        "--grpc-keepalive-min-time=1m30s",
        "--experimental-warning-apply-duration=1.5s",
    ]);
    assert_eq!(cfg.grpc_keepalive_min_time, Duration::from_secs(90));
    assert_eq!(
        cfg.experimental.warning_apply_duration,
        Duration::from_millis(1500)
    );
}

#[test]
fn validation_errors_match_etcd() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--election-timeout=400"],
            "--election-timeout[400ms] should be at least as 5 times as --heartbeat-interval[100ms]",
        ),
        (
            &["--election-timeout=60000", "--heartbeat-interval=10000"],
            "--election-timeout[60000ms] is too long, and should be set less than 50000ms",
        ),
        (
            &["--heartbeat-interval=0"],
            "--heartbeat-interval must be >0 (set to 0ms)",
        ),
        (
            &["--auto-compaction-mode=foo"],
            "unknown auto-compaction-mode \"foo\"",
        ),
        (&["--logger=bogus"], "unknown logger option \"bogus\""),
        (
            &[
                "--listen-client-urls=http://example.com:2379",
                "--advertise-client-urls=http://a:1",
            ],
            "expected IP in URL for binding (http://example.com:2379)",
        ),
        (
            &["--listen-client-urls=http://127.0.0.1:41379"],
            "--advertise-client-urls is required when --listen-client-urls is set explicitly",
        ),
        (
            &["--advertise-client-urls=http://:2379"],
            "--advertise-client-urls \"http://:2379\" must be \"host:port\" (unexpected empty host (http://:2379))",
        ),
    ];
    for (args, want) in cases {
        assert_eq!(invalid_err(args), *want, "{args:?}");
    }
    let err = parse(&["--election-timeout=400"]).map(|_| ()).unwrap_err();
    assert_eq!(err.exit_code(), 1);
    assert_eq!(
        err.stderr_text(),
        "error verifying flags, --election-timeout[400ms] should be at least as 5 times as --heartbeat-interval[100ms]. See 'ketch --help'."
    );
}

#[test]
fn election_timeout_may_be_exactly_five_heartbeats() {
    let cfg = ok(&["--heartbeat-interval=200", "--election-timeout=1000"]);
    assert_eq!(
        (cfg.heartbeat_interval_ms, cfg.election_timeout_ms),
        (200, 1000)
    );
    assert!(ok(&["--election-timeout=50000"]).election_timeout_ms == 50_000);
}

#[test]
fn help_and_version_are_not_errors() {
    for arg in ["-h", "--help", "-help", "--h"] {
        let err = parse(&[arg]).map(|_| ()).unwrap_err();
        assert_eq!(err, ConfigError::HelpRequested, "{arg}");
        assert_eq!(err.exit_code(), 0);
    }
    let err = parse(&["--version"]).map(|_| ()).unwrap_err();
    assert_eq!(err, ConfigError::VersionRequested);
    assert_eq!(err.exit_code(), 0);
    let text = ketch_config::version_text();
    let keys: Vec<&str> = text.lines().filter_map(|l| l.split(": ").next()).collect();
    assert_eq!(
        keys,
        [
            "ketch Version",
            "etcd API Version",
            "Git SHA",
            "Rust Version",
            "Rust OS/Arch"
        ]
    );
    assert!(text.contains("etcd API Version: 3.4\n"));
}

#[test]
fn v2_and_discovery_and_proxy_are_refused_clearly() {
    assert!(invalid_err(&["--enable-v2=true"]).contains("only the v3 API"));
    assert!(invalid_err(&["--enable-v2"]).contains("--enable-v2=true is not supported"));
    assert!(!ok(&["--enable-v2=false"]).enable_v2);
    assert!(invalid_err(&["--experimental-enable-v2v3=/v2"]).contains("v3 API"));
    assert!(
        invalid_err(&["--discovery=https://discovery.etcd.io/x"])
            .starts_with("--discovery is not supported")
    );
    assert!(invalid_err(&["--proxy=on"]).contains("--proxy=on is not supported"));
    assert!(ok(&["--proxy=off"]).name == "default");
}

#[test]
fn name_alone_derives_initial_cluster_and_data_dir() {
    // etcd 3.4.23 `--name foo`: initial-cluster foo=<advertise peer URLs>, data dir foo.etcd.
    let cfg = ok(&[
        "--name",
        "foo",
        "--initial-advertise-peer-urls",
        "http://127.0.0.1:41380",
    ]);
    assert_eq!(cfg.initial_cluster, "foo=http://127.0.0.1:41380");
    assert_eq!(cfg.data_dir.to_str(), Some("foo.ketch"));
    // With the default name and a changed advertise URL the default cluster stays, and the
    // bootstrap check then fails as etcd's does.
    let cfg = ok(&["--initial-advertise-peer-urls", "http://127.0.0.1:41380"]);
    assert_eq!(cfg.initial_cluster, "default=http://localhost:2380");
    // An explicit --initial-cluster is never rewritten.
    let cfg = ok(&[
        "--name",
        "a",
        "--initial-cluster",
        "a=http://localhost:2380",
    ]);
    assert_eq!(cfg.initial_cluster, "a=http://localhost:2380");
    assert_eq!(
        ok(&["--data-dir", "/var/lib/k"]).data_dir.to_str(),
        Some("/var/lib/k")
    );
}

#[test]
fn url_lists_are_sorted_and_empty_keeps_the_default() {
    let cfg = ok(&[
        "--listen-client-urls=http://127.0.0.1:2,http://127.0.0.1:1",
        "--advertise-client-urls=https://b:1,http://a:1",
    ]);
    assert_eq!(
        url_strings(&cfg.listen_client_urls),
        ["http://127.0.0.1:1", "http://127.0.0.1:2"]
    );
    assert_eq!(
        url_strings(&cfg.advertise_client_urls),
        ["http://a:1", "https://b:1"]
    );
    let cfg = ok(&["--listen-peer-urls="]);
    assert_eq!(
        url_strings(&cfg.listen_peer_urls),
        ["http://localhost:2380"]
    );
}

#[test]
fn other_settings_parse() {
    let cfg = ok(&[
        "--initial-cluster-state=existing",
        "--log-level=debug",
        "--logger=zap",
        "--log-outputs=stderr,stdout,stderr",
        "--auto-compaction-mode=revision",
        "--auto-compaction-retention=1000",
        "--cert-file=c.pem",
        "--key-file=k.pem",
        "--trusted-ca-file=ca.pem",
        "--peer-client-cert-auth",
        "--peer-auto-tls",
        "--listen-metrics-urls=http://127.0.0.1:9000",
        "--enable-pprof",
        "--wal-dir=/w",
        "--shards=3",
        "--io-memory-bytes=2097152",
        "--experimental-enable-lease-checkpoint",
    ]);
    assert_eq!(cfg.initial_cluster_state, ClusterState::Existing);
    assert_eq!(cfg.log_level, LogLevel::Debug);
    assert_eq!(cfg.log_outputs, ["stderr", "stdout"]);
    assert_eq!(cfg.auto_compaction, AutoCompaction::Revision(1000));
    assert!(cfg.client_tls.is_enabled() && cfg.client_tls.trusted_ca_file == "ca.pem");
    assert!(cfg.peer_tls.client_cert_auth && cfg.peer_tls.auto_tls);
    assert_eq!(
        url_strings(&cfg.listen_metrics_urls),
        ["http://127.0.0.1:9000"]
    );
    assert!(cfg.enable_pprof);
    assert_eq!(cfg.effective_wal_dir().to_str(), Some("/w"));
    assert_eq!((cfg.shards, cfg.effective_shards()), (Some(3), 3));
    assert_eq!(cfg.io_memory_bytes, 2 * 1024 * 1024);
    assert!(cfg.experimental.enable_lease_checkpoint);
}

#[test]
fn auto_compaction_retention_follows_etcd() {
    let periodic = |r: &str| ok(&[&format!("--auto-compaction-retention={r}")]).auto_compaction;
    assert_eq!(
        periodic("1"),
        AutoCompaction::Periodic(Duration::from_secs(3600))
    );
    assert_eq!(
        periodic("30m"),
        AutoCompaction::Periodic(Duration::from_secs(1800))
    );
    assert_eq!(periodic("0"), AutoCompaction::Disabled);
    assert_eq!(
        invalid_err(&["--auto-compaction-retention=abc"]),
        "error parsing AutoCompactionRetention: time: invalid duration \"abc\""
    );
}

#[test]
fn logging_rules_match_etcd() {
    assert_eq!(
        invalid_err(&["--log-outputs=stderr,stdout"]),
        "--logger=capnslog supports only 1 value in '--log-outputs', got [\"stderr\" \"stdout\"]"
    );
    assert_eq!(
        invalid_err(&["--logger=zap", "--log-outputs=default,stderr"]),
        "multi logoutput for \"default\" is not supported yet"
    );
    // etcd 3.4.23 panics on an unknown level; ketch refuses it cleanly.
    assert!(invalid_err(&["--log-level=bogus"]).starts_with("unknown log level \"bogus\""));
    assert_eq!(ok(&["--log-output=stdout"]).log_outputs, ["stdout"]);
}

#[test]
fn ketch_flags_are_validated() {
    assert_eq!(invalid_err(&["--shards=0"]), "--shards must be at least 1");
    assert_eq!(
        usage_err(&["--shards=x"]),
        "invalid value \"x\" for flag -shards: parse error"
    );
    assert_eq!(
        invalid_err(&["--io-memory-bytes=0"]),
        "--io-memory-bytes must be greater than 0"
    );
}

#[test]
fn etcd2_flags_are_ignored_with_a_warning() {
    let cfg = ok(&["--snapshot", "-v"]);
    let warned: Vec<&str> = cfg.notices.iter().map(|n| n.message.as_str()).collect();
    assert!(warned.contains(&"flag \"-snapshot\" is no longer supported - ignoring."));
    // etcd: `--config x` ignores --config (a bool flag), then 'x' is positional.
    assert_eq!(invalid_err(&["--config", "x"]), "'x' is not a valid flag");
}

#[test]
fn gateway_subcommands_are_refused() {
    assert_eq!(
        invalid_err(&["gateway"]),
        "'etcd gateway' is not supported by ketch"
    );
    assert_eq!(
        invalid_err(&["grpc-proxy", "start"]),
        "'etcd grpc-proxy' is not supported by ketch"
    );
}

#[test]
fn default_host_rewrite_applies_only_to_defaults_on_0_0_0_0() {
    let mut cfg = ok(&[
        "--name=n",
        "--listen-peer-urls=http://0.0.0.0:2380",
        "--listen-client-urls=http://0.0.0.0:2379",
        "--advertise-client-urls=http://localhost:2379",
    ]);
    assert!(cfg.apply_default_host("10.0.0.5"));
    assert_eq!(
        url_strings(&cfg.initial_advertise_peer_urls),
        ["http://10.0.0.5:2380"]
    );
    assert_eq!(
        url_strings(&cfg.advertise_client_urls),
        ["http://10.0.0.5:2379"]
    );
    assert_eq!(cfg.initial_cluster, "n=http://10.0.0.5:2380");
    let mut cfg = ok(&[]);
    assert!(!cfg.apply_default_host("10.0.0.5"));
}
