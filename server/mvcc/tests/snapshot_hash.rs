//! Snapshot format and hash_kv: a round trip restores an equal store (same ranges at every
//! revision, same leases, same hash, byte-identical re-snapshot); corruption anywhere (a
//! flipped bit, truncation, bad magic) is refused; equal histories hash equal and a single
//! differing write changes the hash; a frozen store keeps the state of its freeze whatever the
//! live store does afterwards (the snapshot is serialised while apply goes on).

use bytes::Bytes;
use ketch_mvcc::{MvccError, Store};
use ketch_proto::{CompactionRequest, DeleteRangeRequest, PutRequest, RangeRequest};

fn filled() -> Store {
    let mut s = Store::new();
    s.grant_lease(42).unwrap();
    for i in 0..50u32 {
        let key = Bytes::from(format!("key/{:02}", i % 17));
        let lease = if i % 5 == 0 { 42 } else { 0 };
        let put = PutRequest {
            key,
            value: Bytes::from(vec![i as u8; i as usize]),
            lease,
            ..Default::default()
        };
        s.put(&put, &mut Vec::new()).unwrap();
    }
    let del = DeleteRangeRequest {
        key: Bytes::from_static(b"key/03"),
        range_end: Bytes::from_static(b"key/06"),
        prev_kv: false,
    };
    s.delete_range(&del, &mut Vec::new()).unwrap();
    s.compact(&CompactionRequest {
        revision: 20,
        physical: false,
    })
    .unwrap();
    s
}

fn snapshot(s: &Store) -> Vec<u8> {
    let mut out = Vec::new();
    s.write_snapshot(&mut out).unwrap();
    out
}

fn all_at(s: &Store, rev: i64) -> Result<Vec<ketch_proto::mvccpb::KeyValue>, MvccError> {
    let req = RangeRequest {
        key: Bytes::from_static(b"\0"),
        range_end: Bytes::from_static(b"\0"),
        revision: rev,
        ..Default::default()
    };
    s.range(&req).map(|r| r.kvs)
}

#[test]
fn round_trip_restores_an_equal_store() {
    let s = filled();
    let bytes = snapshot(&s);
    let r = Store::read_snapshot(&mut bytes.as_slice()).unwrap();
    assert_eq!(
        (r.revision(), r.compact_revision()),
        (s.revision(), s.compact_revision())
    );
    for rev in 1..=s.revision() {
        assert_eq!(all_at(&r, rev), all_at(&s, rev), "rev {rev}");
    }
    assert_eq!(r.keys_of_lease(42), s.keys_of_lease(42));
    assert!(!r.keys_of_lease(42).is_empty());
    assert_eq!(r.hash_kv(0), s.hash_kv(0));
    assert_eq!(r.size_bytes(), s.size_bytes());
    assert_eq!(snapshot(&r), bytes);
}

#[test]
fn corruption_is_refused() {
    let bytes = snapshot(&filled());
    for i in (0..bytes.len()).step_by(7) {
        let mut bad = bytes.clone();
        bad[i] ^= 0x10;
        assert!(
            matches!(
                Store::read_snapshot(&mut bad.as_slice()),
                Err(MvccError::Snapshot(_))
            ),
            "flip at {i}"
        );
    }
    for len in [0, 3, 11, bytes.len() / 2, bytes.len() - 1] {
        assert!(
            matches!(
                Store::read_snapshot(&mut &bytes[..len]),
                Err(MvccError::Snapshot(_))
            ),
            "truncated to {len}"
        );
    }
}

#[test]
fn hash_is_equal_for_equal_histories_and_sensitive_to_one_write() {
    let (a, b) = (filled(), filled());
    assert_eq!(a.hash_kv(0), b.hash_kv(0));
    assert_eq!(a.hash_kv(0).unwrap().1, 20, "returns the compact revision");
    let mut c = filled();
    let put = PutRequest {
        key: Bytes::from_static(b"key/01"),
        value: Bytes::from_static(b"x"),
        ..Default::default()
    };
    c.put(&put, &mut Vec::new()).unwrap();
    assert_ne!(a.hash_kv(0), c.hash_kv(0));
    assert_eq!(
        a.hash_kv(a.revision()),
        c.hash_kv(a.revision()),
        "up to the old revision they agree"
    );
    assert_eq!(a.hash_kv(20), Err(MvccError::Compacted));
    assert_eq!(a.hash_kv(a.revision() + 1), Err(MvccError::FutureRev));
    // A negative revision hashes no write: the CRC-32C of etcd's bucket name "key" alone,
    // 1084519789 as etcd 3.4.23 answers `endpoint hashkv --rev=-1`.
    assert_eq!(a.hash_kv(-1), Ok((1_084_519_789, 20)));
    assert_eq!(a.hash_kv(-1).unwrap().0, crc32c::crc32c(b"key"));
}

#[test]
fn a_frozen_store_is_not_changed_by_later_writes_deletes_compaction_or_leases() {
    let mut s = filled();
    let before = snapshot(&s);
    let frozen = s.freeze();
    for i in 0..200u32 {
        let put = PutRequest {
            key: Bytes::from(format!("key/{:02}", i % 23)),
            value: Bytes::from(vec![0xAB; 64]),
            ..Default::default()
        };
        s.put(&put, &mut Vec::new()).unwrap();
    }
    let del = DeleteRangeRequest {
        key: Bytes::from_static(b"key/00"),
        range_end: Bytes::from_static(b"key/10"),
        prev_kv: false,
    };
    s.delete_range(&del, &mut Vec::new()).unwrap();
    s.grant_lease(7).unwrap();
    s.compact(&CompactionRequest {
        revision: s.revision() - 5,
        physical: true,
    })
    .unwrap();
    assert_ne!(snapshot(&s), before, "the live store moved on");
    let mut from_frozen = Vec::new();
    frozen.append_snapshot(&mut from_frozen);
    assert_eq!(
        from_frozen, before,
        "the frozen copy still holds the state at its freeze"
    );
    assert_eq!(frozen.revision(), 52);
}
