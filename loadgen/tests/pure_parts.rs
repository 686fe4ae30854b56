//! The pure helpers behave as documented: duration parsing, consistency flags, leader targeting,
//! key layout, watch value stamps and the "nines" axis; checked on hand-picked inputs.

use std::time::Duration;

use ketch_loadgen::cli::{parse_duration, serializable};
use ketch_loadgen::compare::headline;
use ketch_loadgen::connect::{EndpointStatus, dial_targets, endpoint_url};
use ketch_loadgen::svg::nines;
use ketch_loadgen::workloads::{KeyGen, STAMP_BYTES, value_stamp};

#[test]
fn durations_parse_with_units() {
    assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
    assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
    assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
    assert_eq!(parse_duration("1.5m").unwrap(), Duration::from_secs(90));
    assert_eq!(parse_duration("40us").unwrap(), Duration::from_micros(40));
    assert!(parse_duration("10 parsecs").is_err());
    assert!(parse_duration("").is_err());
}

#[test]
fn consistency_is_l_or_s() {
    assert!(!serializable("l").unwrap());
    assert!(serializable("s").unwrap());
    assert!(serializable("x").is_err());
}

fn status(ep: &str, member: u64, leader: u64) -> EndpointStatus {
    EndpointStatus {
        endpoint: ep.into(),
        version: "3.4.23".into(),
        member_id: member,
        leader_id: leader,
        raft_term: 2,
        raft_index: 10,
        db_size_bytes: 20480,
    }
}

#[test]
fn target_leader_picks_the_leaders_endpoint() {
    let s = [
        status("a:1", 1, 2),
        status("b:2", 2, 2),
        status("c:3", 3, 2),
    ];
    assert_eq!(dial_targets(&s, false).unwrap(), ["a:1", "b:2", "c:3"]);
    assert_eq!(dial_targets(&s, true).unwrap(), ["b:2"]);
    let leaderless = [status("a:1", 1, 0)];
    assert!(dial_targets(&leaderless, true).is_err());
    assert_eq!(
        endpoint_url("127.0.0.1:2379", false),
        "http://127.0.0.1:2379"
    );
    assert_eq!(
        endpoint_url("127.0.0.1:2379", true),
        "https://127.0.0.1:2379"
    );
    assert_eq!(endpoint_url("https://h:1", false), "https://h:1");
}

#[test]
fn keys_hold_their_number_big_endian_at_the_end() {
    let k = KeyGen {
        key_size: 10,
        key_space: 1000,
        sequential: true,
    };
    assert_eq!(k.key(0x0102), [0, 0, 0, 0, 0, 0, 0, 0, 1, 2]);
    assert_eq!(k.number(1005), 5);
    let short = KeyGen {
        key_size: 2,
        key_space: 1 << 16,
        sequential: false,
    };
    assert_eq!(short.key(0x0a0b), [0x0a, 0x0b]);
    for _ in 0..100 {
        assert!(short.number(0) < 1 << 16);
    }
}

#[test]
fn value_stamps_round_trip() {
    let base = tokio::time::Instant::now();
    let mut v = vec![b'v'; 32];
    v[..STAMP_BYTES].copy_from_slice(&1_500_000u64.to_le_bytes());
    assert_eq!(
        value_stamp(base, &v).unwrap() - base,
        Duration::from_micros(1500)
    );
    assert!(value_stamp(base, b"short").is_none());
}

#[test]
fn nines_axis() {
    assert!((nines(90.0) - 1.0).abs() < 1e-9);
    assert!((nines(99.9) - 3.0).abs() < 1e-9);
    assert_eq!(nines(0.0), 0.0);
}

#[test]
fn compare_headline_says_what_was_measured() {
    let h = headline(Some("no ketch binary found"), false, &[]);
    assert!(h.starts_with("**ketch was not measured**: no ketch binary found"));
    let h = headline(
        None,
        true,
        &["round 0, `watch-latency` on ketch: Unimplemented".into()],
    );
    assert!(h.starts_with("Both servers were measured"));
    assert!(h.contains("- round 0, `watch-latency` on ketch: Unimplemented"));
    let h = headline(Some("server exited"), true, &[]);
    assert!(h.starts_with("ketch was measured until it became unusable (server exited)"));
}

#[test]
fn every_comparison_case_parses_as_a_loadgen_command() {
    use clap::Parser;
    use ketch_loadgen::cli::{Cli, Cmd};
    use ketch_loadgen::compare::CASES;
    for c in CASES {
        let argv = ["ketch-loadgen", "--endpoints", "127.0.0.1:1"]
            .into_iter()
            .chain(c.args.iter().copied());
        let cli = Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("case {}: {e}", c.name));
        let watchers = match &cli.cmd {
            Cmd::Put { watch, .. } => watch.watchers,
            _ => 0,
        };
        // The watched case and its baseline differ only in the watchers.
        let expected = if c.name == "put-100-watch-1000" {
            1000
        } else {
            0
        };
        assert_eq!(watchers, expected, "case {}", c.name);
    }
}

#[test]
fn grpc_messages_are_percent_decoded_and_bad_frames_refused() {
    use ketch_loadgen::grpc::{decode_frame, encode_frame, percent_decode};
    use ketch_proto::etcdserverpb::RangeResponse;
    assert_eq!(
        percent_decode(b"etcdserver: request timed out"),
        "etcdserver: request timed out"
    );
    assert_eq!(percent_decode(b"a%20b%25c%e2%9c%93"), "a b%c\u{2713}");
    assert_eq!(percent_decode(b"100%"), "100%", "a lone % stays");
    assert_eq!(percent_decode(b"%zz"), "%zz", "an invalid escape stays");

    let msg = RangeResponse {
        count: 7,
        ..Default::default()
    };
    let frame = encode_frame(&msg);
    assert_eq!(frame[0], 0, "uncompressed");
    assert_eq!(
        u32::from_be_bytes(frame[1..5].try_into().unwrap()) as usize,
        frame.len() - 5
    );
    assert_eq!(decode_frame::<RangeResponse>(frame.clone()).unwrap(), msg);
    let short = frame.slice(..frame.len() - 1);
    assert!(decode_frame::<RangeResponse>(short).is_err(), "truncated");
    let mut compressed = frame.to_vec();
    compressed[0] = 1;
    assert!(decode_frame::<RangeResponse>(compressed.into()).is_err());
    assert!(decode_frame::<RangeResponse>(bytes::Bytes::from_static(b"\0\0")).is_err());
}
