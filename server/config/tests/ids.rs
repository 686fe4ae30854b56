//! Checks member and cluster IDs against values measured from real etcd 3.4.23 on this
//! machine (`starting member <id> in cluster <id>` log lines and `etcdctl member list -w json`).

use ketch_config::{ClusterState, Config, ConfigError, Id, cluster_id, member_id};
use std::ffi::OsString;

fn parse(args: &[&str]) -> Config {
    let argv = std::iter::once("ketch")
        .chain(args.iter().copied())
        .map(OsString::from);
    Config::parse_from(argv, |_| None).expect("valid flags")
}

#[test]
fn single_default_member() {
    // etcd with default peer URL and token; `etcdctl member list -w json` gave
    // member 10276657743932975437 (8e9e05c52164694d), cluster 14841639068965178418.
    let boot = parse(&[]).bootstrap().expect("bootstrap");
    assert_eq!(boot.local_member_id, Id(10276657743932975437));
    assert_eq!(boot.local_member_id.to_string(), "8e9e05c52164694d");
    assert_eq!(boot.cluster_id, Id(14841639068965178418));
    assert_eq!(boot.cluster_id.to_string(), "cdf818194e3a8c32");
}

#[test]
fn single_named_member() {
    // `etcd --name foo --initial-advertise-peer-urls http://127.0.0.1:41380` (initial cluster
    // derived from the name): "starting member ec1314ea52838568 in cluster dfd396ec7b4c7b9e".
    let boot = parse(&[
        "--name",
        "foo",
        "--initial-advertise-peer-urls",
        "http://127.0.0.1:41380",
    ])
    .bootstrap()
    .expect("bootstrap");
    assert_eq!(boot.local_member_id.to_string(), "ec1314ea52838568");
    assert_eq!(boot.cluster_id.to_string(), "dfd396ec7b4c7b9e");
}

const TUTORIAL_CLUSTER: &str =
    "infra1=http://127.0.0.1:12380,infra2=http://127.0.0.1:22380,infra3=http://127.0.0.1:32380";

#[test]
fn tutorial_three_member_cluster() {
    // etcd's Procfile cluster (token etcd-cluster-1); each member started alone logged
    // "starting member <id> in cluster ef37ad9dc622a7c4" with these IDs (they are also the IDs
    // in etcd's documentation).
    let want = [
        ("infra1", "8211f1d0f64f3269"),
        ("infra2", "91bc3c398fb3c146"),
        ("infra3", "fd422379fda50e48"),
    ];
    for (i, (name, id)) in want.iter().enumerate() {
        let peer = format!("http://127.0.0.1:{}2380", i + 1);
        let boot = parse(&[
            "--name",
            name,
            "--initial-advertise-peer-urls",
            &peer,
            "--initial-cluster-token",
            "etcd-cluster-1",
            "--initial-cluster",
            TUTORIAL_CLUSTER,
            "--initial-cluster-state",
            "new",
        ])
        .bootstrap()
        .expect("bootstrap");
        assert_eq!(boot.local_member_id.to_string(), *id, "{name}");
        assert_eq!(boot.cluster_id.to_string(), "ef37ad9dc622a7c4");
        let listed: Vec<String> = boot.members.iter().map(|m| m.id.to_string()).collect();
        assert_eq!(
            listed,
            ["8211f1d0f64f3269", "91bc3c398fb3c146", "fd422379fda50e48"]
        );
    }
}

#[test]
fn three_members_one_with_two_peer_urls() {
    // A real 3-member etcd cluster, token tok-x, m2 advertising two peer URLs given out of
    // order; `etcdctl member list -w json`: m1 7429246533011814398, m2 c52cc709d2af36ff,
    // m3 30217da9bbdd1108, cluster_id 8247442615838074693 (7274cd5cbe726745).
    let cluster = "m1=http://127.0.0.1:36163,m2=http://127.0.0.1:47827,m2=http://127.0.0.1:41607,m3=http://127.0.0.1:38133";
    let boot = parse(&[
        "--name",
        "m2",
        "--initial-advertise-peer-urls",
        "http://127.0.0.1:47827,http://127.0.0.1:41607",
        "--initial-cluster-token",
        "tok-x",
        "--initial-cluster",
        cluster,
    ])
    .bootstrap()
    .expect("bootstrap");
    let ids: Vec<(String, String)> = boot
        .members
        .iter()
        .map(|m| (m.name.clone(), m.id.to_string()))
        .collect();
    let want = [
        ("m3", "30217da9bbdd1108"),
        ("m1", "6719fc5c24f8b7fe"),
        ("m2", "c52cc709d2af36ff"),
    ];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(a, b)| ((*a).into(), (*b).into()))
        .collect();
    assert_eq!(ids, want);
    assert_eq!(boot.members[1].id, Id(7429246533011814398));
    assert_eq!(boot.local_member_id.to_string(), "c52cc709d2af36ff");
    assert_eq!(boot.cluster_id, Id(8247442615838074693));
    assert_eq!(boot.cluster_id.to_string(), "7274cd5cbe726745");
}

#[test]
fn id_functions_sort_their_inputs() {
    let a = member_id(&["http://b:1", "http://a:1"], "t");
    let b = member_id(&["http://a:1", "http://b:1"], "t");
    assert_eq!(a, b);
    assert_ne!(a, member_id(&["http://a:1", "http://b:1"], "u"));
    assert_eq!(cluster_id(&[Id(1), Id(2)]), cluster_id(&[Id(2), Id(1)]));
}

#[test]
fn bootstrap_errors_match_etcd() {
    // Messages etcd 3.4.23 logged (C | etcdmain: ...) and exited 1 with, measured.
    let base = [
        "--name",
        "foo",
        "--initial-advertise-peer-urls",
        "http://127.0.0.1:41380",
    ];
    let err = |extra: &[&str]| {
        let args: Vec<&str> = base.iter().chain(extra).copied().collect();
        match parse(&args).bootstrap() {
            Err(ConfigError::Bootstrap(msg)) => msg,
            other => panic!("{extra:?}: expected a bootstrap error, got {other:?}"),
        }
    };
    assert_eq!(
        err(&["--initial-cluster", "bar=http://127.0.0.1:41380"]),
        "couldn't find local name \"foo\" in the initial cluster configuration"
    );
    assert_eq!(
        err(&["--initial-cluster="]),
        "couldn't find local name \"foo\" in the initial cluster configuration"
    );
    assert_eq!(
        err(&["--initial-cluster", "foo=http://127.0.0.1:41390"]),
        "--initial-cluster has foo=http://127.0.0.1:41390 but missing from --initial-advertise-peer-urls=http://127.0.0.1:41380 (resolved urls: \"http://127.0.0.1:41380\" != \"http://127.0.0.1:41390\")"
    );
    assert_eq!(
        err(&[
            "--initial-cluster",
            "foo=http://127.0.0.1:41380,foo=http://127.0.0.1:41390"
        ]),
        "--initial-cluster has foo=http://127.0.0.1:41390 but missing from --initial-advertise-peer-urls=http://127.0.0.1:41380 (len([\"http://127.0.0.1:41380\"]) != len([\"http://127.0.0.1:41380\" \"http://127.0.0.1:41390\"]))"
    );
    assert_eq!(
        err(&["--initial-cluster", "foo=bogus"]),
        "error setting up initial cluster: URL scheme must be http, https, unix, or unixs: bogus"
    );
    assert_eq!(
        err(&[
            "--initial-cluster",
            "foo=http://127.0.0.1:41380,bar=http://127.0.0.1:41380"
        ]),
        "initial cluster bar=http://127.0.0.1:41380,foo=http://127.0.0.1:41380 has duplicate url"
    );
    assert_eq!(ConfigError::Bootstrap(String::new()).exit_code(), 1);
}

#[test]
fn joining_an_existing_cluster_skips_the_advertise_check() {
    let cfg = parse(&[
        "--name",
        "foo",
        "--initial-cluster-state",
        "existing",
        "--initial-cluster",
        "foo=http://127.0.0.1:9,bar=http://127.0.0.1:8",
    ]);
    assert_eq!(cfg.initial_cluster_state, ClusterState::Existing);
    assert_eq!(cfg.bootstrap().expect("join").members.len(), 2);
}
