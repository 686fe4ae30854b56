//! The member's state as etcd 3.4's backend holds it: the buckets and their pairs, byte for
//! byte as etcd writes them (docs/snapshot-save.md lists them). Pure: no I/O.

use ketch_auth::{AuthState, Password};
use ketch_mvcc::{FrozenStore, Revision};
use ketch_proto::authpb;
use ketch_proto::etcdserverpb::AlarmMember;
use ketch_raft::MemberView;
use prost::Message;

use super::bbolt::Bucket;

/// etcd's `revBytesLen`: main (8 bytes BE), '_', sub (8 bytes BE).
const REVISION_BYTES: usize = 17;
const TOMBSTONE_MARK: u8 = b't';

/// One lease as etcd's lessor persists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseRecord {
    pub id: i64,
    pub ttl: i64,
    /// The last checkpointed remaining TTL, 0 when none.
    pub remaining_ttl: i64,
}

/// Everything the exported backend holds, frozen at one applied raft index.
pub struct BackendState {
    pub mvcc: FrozenStore,
    pub leases: Vec<LeaseRecord>,
    /// The replicated membership, as the Cluster API lists it.
    pub members: Vec<MemberView>,
    pub alarms: Vec<AlarmMember>,
    pub auth: AuthState,
    /// The raft index of the last entry applied to this state (etcd's `consistent_index`).
    pub consistent_index: u64,
    /// `clusterVersion` (`3.4.0`).
    pub cluster_version: String,
}

/// etcd's buckets for `state`, sorted by name. `members_removed` is left empty: ketch keeps
/// removed IDs outside the replicated state, and etcd's restore empties the bucket anyway.
pub fn etcd_buckets(state: &BackendState) -> Vec<Bucket> {
    let mut buckets = vec![
        bucket("alarm", alarm_entries(&state.alarms)),
        bucket("auth", auth_entries(&state.auth)),
        bucket("authRoles", role_entries(&state.auth)),
        bucket("authUsers", user_entries(&state.auth)),
        bucket(
            "cluster",
            vec![(
                b"clusterVersion".to_vec(),
                state.cluster_version.clone().into(),
            )],
        ),
        bucket("key", key_entries(&state.mvcc)),
        bucket("lease", lease_entries(&state.leases)),
        bucket("members", member_entries(&state.members)),
        bucket("members_removed", Vec::new()),
        bucket("meta", meta_entries(state)),
    ];
    buckets.sort_by(|a, b| a.name.cmp(&b.name));
    buckets
}

fn bucket(name: &str, mut entries: Vec<(Vec<u8>, Vec<u8>)>) -> Bucket {
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    Bucket {
        name: name.as_bytes().to_vec(),
        entries,
    }
}

/// etcd's `revToBytes`.
fn revision_bytes(rev: Revision) -> Vec<u8> {
    let mut b = Vec::with_capacity(REVISION_BYTES + 1);
    b.extend_from_slice(&(rev.main as u64).to_be_bytes());
    b.push(b'_');
    b.extend_from_slice(&(rev.sub as u64).to_be_bytes());
    b
}

/// Every retained write by revision; a tombstone's key ends with 't' and its value is a
/// `KeyValue` holding the key only.
fn key_entries(mvcc: &FrozenStore) -> Vec<(Vec<u8>, Vec<u8>)> {
    mvcc.retained_writes()
        .into_iter()
        .map(|w| {
            let mut k = revision_bytes(w.revision);
            if w.tombstone {
                k.push(TOMBSTONE_MARK);
            }
            (k, w.kv.encode_to_vec())
        })
        .collect()
}

/// `consistent_index` (u64 BE) and, once compacted, both compaction marks (revision bytes
/// of the compact revision: ketch compacts synchronously, so scheduled equals finished).
fn meta_entries(state: &BackendState) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = vec![(
        b"consistent_index".to_vec(),
        state.consistent_index.to_be_bytes().to_vec(),
    )];
    let compacted = state.mvcc.compact_revision();
    if compacted > 0 {
        let rev = revision_bytes(Revision::new(compacted, 0));
        out.push((b"finishedCompactRev".to_vec(), rev.clone()));
        out.push((b"scheduledCompactRev".to_vec(), rev));
    }
    out
}

/// Key: the lease ID (8 bytes BE); value: `leasepb.Lease` (ID 1, TTL 2, RemainingTTL 3).
fn lease_entries(leases: &[LeaseRecord]) -> Vec<(Vec<u8>, Vec<u8>)> {
    leases
        .iter()
        .map(|l| {
            let mut v = Vec::new();
            for (tag, n) in [(1u32, l.id), (2, l.ttl), (3, l.remaining_ttl)] {
                if n != 0 {
                    prost::encoding::int64::encode(tag, &n, &mut v);
                }
            }
            (l.id.to_be_bytes().to_vec(), v)
        })
        .collect()
}

/// Key: the member ID in lower-case hex; value: etcd's member JSON (`id`, `peerURLs`,
/// `isLearner` if set, `name` and `clientURLs` if not empty, in that order).
fn member_entries(members: &[MemberView]) -> Vec<(Vec<u8>, Vec<u8>)> {
    members
        .iter()
        .map(|m| {
            let (id, m, is_learner) = (m.id, &m.member, m.is_learner);
            let mut s = format!("{{\"id\":{id},\"peerURLs\":{}", json_of(&m.peer_urls));
            if is_learner {
                s.push_str(",\"isLearner\":true");
            }
            if !m.name.is_empty() {
                s.push_str(&format!(",\"name\":{}", json_of(&m.name)));
            }
            if !m.client_urls.is_empty() {
                s.push_str(&format!(",\"clientURLs\":{}", json_of(&m.client_urls)));
            }
            s.push('}');
            (format!("{id:x}").into_bytes(), s.into_bytes())
        })
        .collect()
}

/// JSON text of a string or a string list (serde_json never fails on these).
fn json_of<T: serde::Serialize + ?Sized>(v: &T) -> String {
    serde_json::to_string(v).expect("strings serialise")
}

/// Key: the `AlarmMember` protobuf; value empty.
fn alarm_entries(alarms: &[AlarmMember]) -> Vec<(Vec<u8>, Vec<u8>)> {
    alarms
        .iter()
        .map(|a| (a.encode_to_vec(), Vec::new()))
        .collect()
}

/// `authRevision` (u64 BE), and `authEnabled` (one byte 1) while auth is on.
fn auth_entries(auth: &AuthState) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = vec![(
        b"authRevision".to_vec(),
        auth.revision().to_be_bytes().to_vec(),
    )];
    if auth.enabled() {
        out.push((b"authEnabled".to_vec(), vec![1]));
    }
    out
}

/// Key: the user name; value: `authpb.User` (bcrypt hash, sorted roles, options).
fn user_entries(auth: &AuthState) -> Vec<(Vec<u8>, Vec<u8>)> {
    auth.users()
        .values()
        .map(|u| {
            let (password, no_password) = match &u.password {
                Password::None => (Vec::new(), true),
                Password::Hash(h) => (h.clone().into_bytes(), false),
            };
            let user = authpb::User {
                name: u.name.clone().into_bytes().into(),
                password: password.into(),
                roles: u.roles.clone(),
                options: Some(authpb::UserAddOptions { no_password }),
            };
            (u.name.clone().into_bytes(), user.encode_to_vec())
        })
        .collect()
}

/// Key: the role name; value: `authpb.Role` with its permissions in etcd's order.
fn role_entries(auth: &AuthState) -> Vec<(Vec<u8>, Vec<u8>)> {
    auth.roles()
        .values()
        .map(|r| {
            let role = authpb::Role {
                name: r.name.clone().into_bytes().into(),
                key_permission: r.perms.iter().map(|p| p.to_proto()).collect(),
            };
            (r.name.clone().into_bytes(), role.encode_to_vec())
        })
        .collect()
}
