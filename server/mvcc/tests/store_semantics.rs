//! Unit tests of etcd 3.4's KV semantics on `Store`, one concern per module: revisions,
//! range options, txn, compaction, leases and watch events. Expected values are what etcd
//! 3.4.23 answers for the same requests (the differential test checks that wholesale).

use bytes::Bytes;
use ketch_mvcc::{MvccError, Store};
use ketch_proto::compare::{CompareResult, CompareTarget, TargetUnion};
use ketch_proto::mvccpb::Event;
use ketch_proto::mvccpb::event::EventType;
use ketch_proto::range_request::{SortOrder, SortTarget};
use ketch_proto::{
    CompactionRequest, Compare, DeleteRangeRequest, PutRequest, RangeRequest, RangeResponse,
    RequestOp, TxnRequest, request_op, response_op,
};

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn put(s: &mut Store, k: &str, v: &str) -> i64 {
    let req = PutRequest {
        key: b(k),
        value: b(v),
        ..Default::default()
    };
    s.put(&req, &mut Vec::new())
        .unwrap()
        .header
        .unwrap()
        .revision
}

fn del(s: &mut Store, k: &str, end: &str) -> i64 {
    let req = DeleteRangeRequest {
        key: b(k),
        range_end: b(end),
        ..Default::default()
    };
    s.delete_range(&req, &mut Vec::new()).unwrap().deleted
}

fn range(s: &Store, k: &str, end: &str) -> RangeResponse {
    s.range(&RangeRequest {
        key: b(k),
        range_end: b(end),
        ..Default::default()
    })
    .unwrap()
}

fn keys(r: &RangeResponse) -> Vec<String> {
    r.kvs
        .iter()
        .map(|kv| String::from_utf8(kv.key.to_vec()).unwrap())
        .collect()
}

fn compact(s: &mut Store, rev: i64) -> Result<(), MvccError> {
    s.compact(&CompactionRequest {
        revision: rev,
        physical: true,
    })
    .map(|_| ())
}

mod revisions {
    use super::*;

    #[test]
    fn empty_store_is_at_revision_1_and_each_write_bumps_it_once() {
        let mut s = Store::new();
        assert_eq!(s.revision(), 1);
        assert_eq!(put(&mut s, "a", "1"), 2);
        assert_eq!(put(&mut s, "a", "2"), 3);
        assert_eq!(s.revision(), 3);
        assert_eq!(del(&mut s, "zz", ""), 0, "delete of nothing");
        assert_eq!(s.revision(), 3, "deleting nothing keeps the revision");
        assert_eq!(del(&mut s, "a", ""), 1);
        assert_eq!(s.revision(), 4);
    }

    #[test]
    fn create_mod_and_version_follow_generations() {
        let mut s = Store::new();
        put(&mut s, "k", "1");
        put(&mut s, "k", "2");
        let kv = &range(&s, "k", "").kvs[0];
        assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (2, 3, 2));
        del(&mut s, "k", "");
        put(&mut s, "k", "3");
        let kv = &range(&s, "k", "").kvs[0];
        assert_eq!(
            (kv.create_revision, kv.mod_revision, kv.version),
            (5, 5, 1),
            "new generation"
        );
        let old = s
            .range(&RangeRequest {
                key: b("k"),
                revision: 3,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(old.kvs[0].value, "2");
        let gone = s
            .range(&RangeRequest {
                key: b("k"),
                revision: 4,
                ..Default::default()
            })
            .unwrap();
        assert!(gone.kvs.is_empty(), "tombstoned at 4");
    }

    #[test]
    fn future_revision_is_refused() {
        let s = Store::new();
        let r = s.range(&RangeRequest {
            key: b("a"),
            revision: 2,
            ..Default::default()
        });
        assert_eq!(r, Err(MvccError::FutureRev));
    }
}

mod range_options {
    use super::*;

    fn store() -> Store {
        let mut s = Store::new();
        for (k, v) in [("a", "3"), ("b", "1"), ("c", "2"), ("d", "1")] {
            put(&mut s, k, v);
        }
        put(&mut s, "b", "9"); // b: version 2, mod 6
        s
    }

    #[test]
    fn range_end_conventions() {
        let s = store();
        assert_eq!(keys(&range(&s, "b", "")), ["b"]);
        assert_eq!(keys(&range(&s, "b", "\0")), ["b", "c", "d"]);
        assert_eq!(keys(&range(&s, "b", "d")), ["b", "c"]);
        assert_eq!(keys(&range(&s, "\0", "\0")), ["a", "b", "c", "d"]);
        assert!(range(&s, "c", "b").kvs.is_empty(), "end before key");
    }

    #[test]
    fn limit_sets_more_and_count_is_the_total() {
        let s = store();
        let r = s
            .range(&RangeRequest {
                key: b("a"),
                range_end: b("\0"),
                limit: 2,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(
            (keys(&r), r.more, r.count),
            (vec!["a".into(), "b".into()], true, 4)
        );
        let r = s
            .range(&RangeRequest {
                key: b("a"),
                range_end: b("\0"),
                limit: 4,
                ..Default::default()
            })
            .unwrap();
        assert!(!r.more);
    }

    #[test]
    fn filters_apply_before_limit_and_do_not_change_count() {
        let s = store();
        // mod revisions: a=2 b=6 c=4 d=5; keep mod >= 4 -> b c d; limit 1 -> b, more.
        let req = RangeRequest {
            key: b("a"),
            range_end: b("\0"),
            limit: 1,
            min_mod_revision: 4,
            ..Default::default()
        };
        let r = s.range(&req).unwrap();
        assert_eq!((keys(&r), r.more, r.count), (vec!["b".into()], true, 4));
        let req = RangeRequest {
            key: b("a"),
            range_end: b("\0"),
            max_create_revision: 3,
            ..Default::default()
        };
        assert_eq!(keys(&s.range(&req).unwrap()), ["a", "b"]);
    }

    #[test]
    fn sort_targets_and_orders() {
        let s = store();
        let sorted = |target: SortTarget, order: SortOrder| {
            let req = RangeRequest {
                key: b("a"),
                range_end: b("\0"),
                sort_target: target as i32,
                sort_order: order as i32,
                ..Default::default()
            };
            keys(&s.range(&req).unwrap())
        };
        assert_eq!(
            sorted(SortTarget::Key, SortOrder::Descend),
            ["d", "c", "b", "a"]
        );
        assert_eq!(
            sorted(SortTarget::Key, SortOrder::Ascend),
            ["a", "b", "c", "d"]
        );
        // A non-KEY target with order NONE sorts ascending; ties keep key order.
        assert_eq!(
            sorted(SortTarget::Value, SortOrder::None),
            ["d", "c", "a", "b"]
        );
        assert_eq!(
            sorted(SortTarget::Mod, SortOrder::Descend),
            ["b", "d", "c", "a"]
        );
        assert_eq!(
            sorted(SortTarget::Version, SortOrder::Descend),
            ["b", "a", "c", "d"]
        );
        assert_eq!(
            sorted(SortTarget::Create, SortOrder::Ascend),
            ["a", "b", "c", "d"]
        );
    }

    #[test]
    fn keys_only_and_count_only() {
        let s = store();
        let req = RangeRequest {
            key: b("a"),
            range_end: b("\0"),
            keys_only: true,
            sort_target: SortTarget::Value as i32,
            ..Default::default()
        };
        let r = s.range(&req).unwrap();
        assert_eq!(
            keys(&r),
            ["d", "c", "a", "b"],
            "sorted by the values it then strips"
        );
        assert!(r.kvs.iter().all(|kv| kv.value.is_empty()));
        let req = RangeRequest {
            key: b("a"),
            range_end: b("\0"),
            count_only: true,
            ..Default::default()
        };
        let r = s.range(&req).unwrap();
        assert_eq!((r.kvs.len(), r.count), (0, 4));
    }
}

mod txn {
    use super::*;

    fn cmp(key: &str, target: CompareTarget, result: CompareResult, u: TargetUnion) -> Compare {
        Compare {
            key: b(key),
            target: target as i32,
            result: result as i32,
            target_union: Some(u),
            ..Default::default()
        }
    }

    fn op_put(k: &str, v: &str) -> RequestOp {
        RequestOp {
            request: Some(request_op::Request::RequestPut(PutRequest {
                key: b(k),
                value: b(v),
                ..Default::default()
            })),
        }
    }

    fn op_get(k: &str) -> RequestOp {
        RequestOp {
            request: Some(request_op::Request::RequestRange(RangeRequest {
                key: b(k),
                ..Default::default()
            })),
        }
    }

    #[test]
    fn writes_share_one_revision_with_increasing_sub_and_reads_see_them() {
        let mut s = Store::new();
        let t = TxnRequest {
            success: vec![op_put("a", "1"), op_put("b", "2"), op_get("a")],
            ..Default::default()
        };
        let mut events = Vec::new();
        let r = s.txn(&t, &mut events).unwrap();
        assert!(r.succeeded);
        assert_eq!(r.header.unwrap().revision, 2);
        assert_eq!(s.revision(), 2);
        let Some(response_op::Response::ResponseRange(got)) = &r.responses[2].response else {
            panic!()
        };
        assert_eq!(
            got.kvs[0].value, "1",
            "a range in a txn sees the txn's earlier put"
        );
        assert_eq!(got.header.as_ref().unwrap().revision, 2);
        assert_eq!(events.len(), 2);
    }

    #[test]
    fn read_only_txn_keeps_the_revision() {
        let mut s = Store::new();
        put(&mut s, "a", "1");
        let t = TxnRequest {
            success: vec![op_get("a")],
            ..Default::default()
        };
        assert_eq!(
            s.txn(&t, &mut Vec::new()).unwrap().header.unwrap().revision,
            2
        );
        assert_eq!(s.revision(), 2);
    }

    #[test]
    fn compares_on_missing_keys_use_zero_and_value_compares_fail() {
        let mut s = Store::new();
        let run = |s: &mut Store, c: Compare| {
            s.txn(
                &TxnRequest {
                    compare: vec![c],
                    ..Default::default()
                },
                &mut Vec::new(),
            )
            .unwrap()
            .succeeded
        };
        assert!(run(
            &mut s,
            cmp(
                "x",
                CompareTarget::Version,
                CompareResult::Equal,
                TargetUnion::Version(0)
            )
        ));
        assert!(run(
            &mut s,
            cmp(
                "x",
                CompareTarget::Create,
                CompareResult::Equal,
                TargetUnion::CreateRevision(0)
            )
        ));
        assert!(run(
            &mut s,
            cmp(
                "x",
                CompareTarget::Lease,
                CompareResult::Equal,
                TargetUnion::Lease(0)
            )
        ));
        assert!(!run(
            &mut s,
            cmp(
                "x",
                CompareTarget::Value,
                CompareResult::Equal,
                TargetUnion::Value(Bytes::new())
            )
        ));
        assert!(!run(
            &mut s,
            cmp(
                "x",
                CompareTarget::Value,
                CompareResult::NotEqual,
                TargetUnion::Value(b("v"))
            )
        ));
    }

    #[test]
    fn range_compare_needs_every_key_to_hold() {
        let mut s = Store::new();
        put(&mut s, "a/1", "x");
        put(&mut s, "a/2", "y");
        let mut c = cmp(
            "a/",
            CompareTarget::Value,
            CompareResult::Equal,
            TargetUnion::Value(b("x")),
        );
        c.range_end = b("a0");
        let t = TxnRequest {
            compare: vec![c.clone()],
            ..Default::default()
        };
        assert!(!s.txn(&t, &mut Vec::new()).unwrap().succeeded);
        c.result = CompareResult::Greater as i32;
        c.target_union = Some(TargetUnion::Value(b("w")));
        let t = TxnRequest {
            compare: vec![c],
            ..Default::default()
        };
        assert!(s.txn(&t, &mut Vec::new()).unwrap().succeeded);
    }

    #[test]
    fn cas_on_mod_revision_and_nested_txn() {
        let mut s = Store::new();
        put(&mut s, "lock", "free");
        let cas = |mod_rev| TxnRequest {
            compare: vec![cmp(
                "lock",
                CompareTarget::Mod,
                CompareResult::Equal,
                TargetUnion::ModRevision(mod_rev),
            )],
            success: vec![
                op_put("lock", "taken"),
                RequestOp {
                    request: Some(request_op::Request::RequestTxn(TxnRequest {
                        compare: vec![cmp(
                            "lock",
                            CompareTarget::Value,
                            CompareResult::Equal,
                            TargetUnion::Value(b("free")),
                        )],
                        success: vec![op_put("owner", "me")],
                        ..Default::default()
                    })),
                },
            ],
            failure: vec![op_get("lock")],
        };
        let r = s.txn(&cas(2), &mut Vec::new()).unwrap();
        assert!(r.succeeded);
        let Some(response_op::Response::ResponseTxn(nested)) = &r.responses[1].response else {
            panic!()
        };
        assert!(
            nested.succeeded,
            "nested compares see the state before the txn"
        );
        assert_eq!(
            nested.header,
            Some(Default::default()),
            "nested headers are empty, as etcd's"
        );
        assert_eq!(range(&s, "owner", "").kvs[0].mod_revision, 3);
        assert!(
            !s.txn(&cas(2), &mut Vec::new()).unwrap().succeeded,
            "stale CAS fails"
        );
    }

    #[test]
    fn failing_put_check_leaves_no_trace() {
        let mut s = Store::new();
        put(&mut s, "a", "1");
        let ignore = PutRequest {
            key: b("zz"),
            ignore_value: true,
            ..Default::default()
        };
        let t = TxnRequest {
            success: vec![
                op_put("a", "2"),
                RequestOp {
                    request: Some(request_op::Request::RequestPut(ignore)),
                },
            ],
            ..Default::default()
        };
        let mut events = Vec::new();
        assert_eq!(s.txn(&t, &mut events), Err(MvccError::KeyNotFound));
        assert_eq!((s.revision(), events.len()), (2, 0));
        assert_eq!(range(&s, "a", "").kvs[0].value, "1");
    }
}

mod compaction {
    use super::*;

    #[test]
    fn compaction_bounds_and_errors() {
        let mut s = Store::new();
        put(&mut s, "a", "1"); // 2
        put(&mut s, "a", "2"); // 3
        assert_eq!(compact(&mut s, 4), Err(MvccError::FutureRev));
        compact(&mut s, 2).unwrap();
        assert_eq!(compact(&mut s, 2), Err(MvccError::Compacted));
        assert_eq!(s.compact_revision(), 2);
        let at = |s: &Store, rev| {
            s.range(&RangeRequest {
                key: b("a"),
                revision: rev,
                ..Default::default()
            })
        };
        assert_eq!(at(&s, 1), Err(MvccError::Compacted));
        assert_eq!(
            at(&s, 2).unwrap().kvs[0].value,
            "1",
            "the compaction revision stays readable"
        );
        compact(&mut s, 3).unwrap();
        assert_eq!(at(&s, 3).unwrap().kvs[0].value, "2");
    }

    #[test]
    fn compaction_frees_deleted_keys_and_old_versions() {
        let mut s = Store::new();
        for i in 0..10 {
            put(&mut s, "a", &i.to_string());
        }
        put(&mut s, "gone", "x");
        del(&mut s, "gone", "");
        let before = s.size_bytes();
        let now = s.revision();
        compact(&mut s, now).unwrap();
        assert!(
            s.size_bytes() < before / 5,
            "{} vs {before}",
            s.size_bytes()
        );
        assert_eq!(s.key_count(), 1);
        assert_eq!(range(&s, "a", "").kvs[0].version, 10);
        assert_eq!(s.events_since(b"a", b"", 1, 100), Err(MvccError::Compacted));
        assert_eq!(
            s.events_since(b"\0", b"\0", s.revision(), 100)
                .unwrap()
                .len(),
            0,
            "the delete at the compaction revision is gone"
        );
    }
}

mod leases {
    use super::*;

    #[test]
    fn puts_need_a_granted_lease_and_revoke_deletes_its_keys_in_one_revision() {
        let mut s = Store::new();
        let with_lease = |k: &str, lease| PutRequest {
            key: b(k),
            value: b("v"),
            lease,
            ..Default::default()
        };
        assert_eq!(
            s.put(&with_lease("a", 7), &mut Vec::new()),
            Err(MvccError::LeaseNotFound)
        );
        s.grant_lease(7).unwrap();
        assert_eq!(s.grant_lease(7), Err(MvccError::LeaseExist));
        s.put(&with_lease("b", 7), &mut Vec::new()).unwrap();
        s.put(&with_lease("a", 7), &mut Vec::new()).unwrap();
        put(&mut s, "c", "no lease");
        s.put(&with_lease("c", 7), &mut Vec::new()).unwrap();
        put(&mut s, "c", "detached again");
        assert_eq!(s.keys_of_lease(7), [b("a"), b("b")]);
        let mut events = Vec::new();
        let rev = s
            .revoke_lease(7, &mut events)
            .unwrap()
            .header
            .unwrap()
            .revision;
        assert_eq!(rev, 7);
        assert_eq!(events.len(), 2);
        assert!(
            events
                .iter()
                .all(|e| e.kv.as_ref().unwrap().mod_revision == 7)
        );
        assert!(!s.lease_exists(7));
        assert_eq!(keys(&range(&s, "\0", "\0")), ["c"]);
        assert_eq!(
            s.revoke_lease(7, &mut Vec::new()),
            Err(MvccError::LeaseNotFound)
        );
    }
}

mod events {
    use super::*;

    #[test]
    fn events_carry_etcd_shapes_and_replay_whole_revisions() {
        let mut s = Store::new();
        let mut events: Vec<Event> = Vec::new();
        s.put(
            &PutRequest {
                key: b("a"),
                value: b("1"),
                ..Default::default()
            },
            &mut events,
        )
        .unwrap();
        s.put(
            &PutRequest {
                key: b("a"),
                value: b("2"),
                ..Default::default()
            },
            &mut events,
        )
        .unwrap();
        s.delete_range(
            &DeleteRangeRequest {
                key: b("a"),
                ..Default::default()
            },
            &mut events,
        )
        .unwrap();
        let del = &events[2];
        assert_eq!(del.r#type, EventType::Delete as i32);
        let kv = del.kv.as_ref().unwrap();
        assert_eq!(
            (
                kv.mod_revision,
                kv.create_revision,
                kv.version,
                kv.value.len()
            ),
            (4, 0, 0, 0)
        );
        assert_eq!(del.prev_kv.as_ref().unwrap().value, "2");
        assert!(events[0].prev_kv.is_none(), "a create has no prev_kv");
        assert_eq!(s.events_since(b"a", b"", 1, 100).unwrap(), events);
        // A txn of 3 puts is one revision; max_events 1 still returns all of it.
        let ops = ["x", "y", "z"].map(|k| RequestOp {
            request: Some(request_op::Request::RequestPut(PutRequest {
                key: b(k),
                ..Default::default()
            })),
        });
        s.txn(
            &TxnRequest {
                success: ops.to_vec(),
                ..Default::default()
            },
            &mut Vec::new(),
        )
        .unwrap();
        assert_eq!(s.events_since(b"\0", b"\0", 5, 1).unwrap().len(), 3);
        assert_eq!(s.events_since(b"\0", b"\0", 2, 1).unwrap().len(), 1);
        assert_eq!(
            s.events_since(b"y", b"", 0, 10).unwrap().len(),
            0,
            "0 = from the next revision"
        );
    }
}

mod apply {
    use super::*;
    use ketch_proto::ketchpb::{RaftRequest, raft_request, raft_response};
    use ketch_proto::{AlarmRequest, LeaseGrantRequest, LeaseRevokeRequest};

    fn apply(
        s: &mut Store,
        r: raft_request::Request,
    ) -> Result<raft_response::Response, MvccError> {
        s.apply(
            &RaftRequest {
                request: Some(r),
                header: None,
                ..RaftRequest::default()
            },
            &mut Vec::new(),
        )
        .map(|r| r.response.unwrap())
    }

    #[test]
    fn apply_routes_each_command_and_sets_the_header_revision() {
        let mut s = Store::new();
        let grant = LeaseGrantRequest { ttl: 60, id: 9 };
        let Ok(raft_response::Response::LeaseGrant(g)) =
            apply(&mut s, raft_request::Request::LeaseGrant(grant))
        else {
            panic!()
        };
        assert_eq!((g.id, g.ttl, g.header.unwrap().revision), (9, 60, 1));
        let put = PutRequest {
            key: b("k"),
            value: b("v"),
            lease: 9,
            ..Default::default()
        };
        let Ok(raft_response::Response::Put(p)) = apply(&mut s, raft_request::Request::Put(put))
        else {
            panic!()
        };
        assert_eq!(p.header.unwrap().revision, 2);
        let Ok(raft_response::Response::LeaseRevoke(r)) = apply(
            &mut s,
            raft_request::Request::LeaseRevoke(LeaseRevokeRequest { id: 9 }),
        ) else {
            panic!()
        };
        assert_eq!(r.header.unwrap().revision, 3);
        assert!(range(&s, "k", "").kvs.is_empty());
        let alarm = raft_request::Request::Alarm(AlarmRequest::default());
        assert_eq!(apply(&mut s, alarm), Err(MvccError::NotStoreRequest));
        assert_eq!(
            s.apply(&RaftRequest::default(), &mut Vec::new()),
            Err(MvccError::NotStoreRequest)
        );
        let c = CompactionRequest {
            revision: 3,
            physical: false,
        };
        let Ok(raft_response::Response::Compaction(c)) =
            apply(&mut s, raft_request::Request::Compaction(c))
        else {
            panic!()
        };
        assert_eq!(c.header.unwrap().revision, 3);
    }
}
