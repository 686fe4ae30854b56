//! The auth side of applying one raft entry (pure, no clock beyond what the caller passes):
//! the auth entries themselves, converted to `ketch_auth::AuthRequest` and their answers back
//! to raft responses, and etcd's `authApplierV3` permission checks on KV writes, txns and
//! lease revocations, run on every member with the proposer's identity from the header.

use ketch_auth::{AuthError, AuthInfo, AuthRequest, AuthResponse, AuthStore, Password, Perm};
use ketch_mvcc::Store;
use ketch_proto::ketchpb::{RaftRequest, RequestHeader, raft_request, raft_response};
use ketch_proto::{
    DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest, request_op,
};

/// The user name internal proposals (the leader's lease revocations) carry: etcd revokes
/// expired leases `WithRoot`.
const INTERNAL_USER: &str = ketch_auth::ROOT_USER;

/// Who proposed an entry; an entry without a header carried no credential.
pub fn who_of(header: Option<&RequestHeader>) -> AuthInfo {
    header.map_or_else(AuthInfo::anonymous, |h| AuthInfo {
        user: h.username.clone(),
        revision: h.auth_revision,
    })
}

/// The header of a proposal made by `who`.
pub fn header_of(who: &AuthInfo) -> Option<RequestHeader> {
    (who.revision != 0).then(|| RequestHeader {
        username: who.user.clone(),
        auth_revision: who.revision,
    })
}

/// The header of the member's own proposals that etcd makes as root (revoking expired
/// leases): the root user at any revision. While auth is on, `root` exists and holds the
/// root role (the store refuses to take either away), so these pass every check.
pub fn internal_header() -> Option<RequestHeader> {
    Some(RequestHeader {
        username: INTERNAL_USER.to_string(),
        auth_revision: u64::MAX,
    })
}

/// The auth request an entry carries, or `None` for every other entry.
pub fn auth_request_of(req: &RaftRequest) -> Option<Result<AuthRequest, AuthError>> {
    use raft_request::Request as Q;
    let r = match req.request.as_ref()? {
        Q::AuthEnable(_) => AuthRequest::AuthEnable,
        Q::AuthDisable(_) => AuthRequest::AuthDisable,
        Q::Authenticate(a) => AuthRequest::Authenticate {
            name: a.name.clone(),
            token_prefix: a.simple_token.clone(),
        },
        Q::AuthUserAdd(a) => AuthRequest::UserAdd {
            name: a.name.clone(),
            password: if a.no_password {
                Password::None
            } else {
                Password::Hash(a.hashed_password.clone())
            },
        },
        Q::AuthUserDelete(a) => a.into(),
        Q::AuthUserChangePassword(a) => AuthRequest::UserChangePassword {
            name: a.name.clone(),
            password_hash: a.hashed_password.clone(),
        },
        Q::AuthUserGrantRole(a) => a.into(),
        Q::AuthUserRevokeRole(a) => a.into(),
        Q::AuthUserGet(a) => a.into(),
        Q::AuthUserList(_) => AuthRequest::UserList,
        Q::AuthRoleAdd(a) => a.into(),
        Q::AuthRoleDelete(a) => a.into(),
        Q::AuthRoleGet(a) => a.into(),
        Q::AuthRoleList(_) => AuthRequest::RoleList,
        Q::AuthRoleGrantPermission(a) => return Some(AuthRequest::role_grant_permission(a)),
        Q::AuthRoleRevokePermission(a) => a.into(),
        _ => return None,
    };
    Some(Ok(r))
}

/// The raft response of an applied auth request, its header revision the KV revision (as
/// etcd's `newHeader`); the server fills in the member's identity.
pub fn auth_response(resp: AuthResponse, kv_revision: i64) -> raft_response::Response {
    use raft_response::Response as R;
    let header = Some(ketch_proto::ResponseHeader {
        revision: kv_revision,
        ..Default::default()
    });
    macro_rules! with_header {
        ($variant:ident, $r:expr) => {{
            let mut r = $r;
            r.header = header;
            R::$variant(r)
        }};
    }
    match resp {
        AuthResponse::AuthEnable(r) => with_header!(AuthEnable, r),
        AuthResponse::AuthDisable(r) => with_header!(AuthDisable, r),
        AuthResponse::Authenticate(r) => with_header!(Authenticate, r),
        AuthResponse::UserAdd(r) => with_header!(AuthUserAdd, r),
        AuthResponse::UserDelete(r) => with_header!(AuthUserDelete, r),
        AuthResponse::UserChangePassword(r) => with_header!(AuthUserChangePassword, r),
        AuthResponse::UserGrantRole(r) => with_header!(AuthUserGrantRole, r),
        AuthResponse::UserRevokeRole(r) => with_header!(AuthUserRevokeRole, r),
        AuthResponse::UserGet(r) => with_header!(AuthUserGet, r),
        AuthResponse::UserList(r) => with_header!(AuthUserList, r),
        AuthResponse::RoleAdd(r) => with_header!(AuthRoleAdd, r),
        AuthResponse::RoleDelete(r) => with_header!(AuthRoleDelete, r),
        AuthResponse::RoleGet(r) => with_header!(AuthRoleGet, r),
        AuthResponse::RoleList(r) => with_header!(AuthRoleList, r),
        AuthResponse::RoleGrantPermission(r) => with_header!(AuthRoleGrantPermission, r),
        AuthResponse::RoleRevokePermission(r) => with_header!(AuthRoleRevokePermission, r),
    }
}

/// etcd's `authApplierV3` checks for one KV or lease entry, before the MVCC store applies it.
/// Nothing to check while auth is off.
pub fn check_entry(
    auth: &AuthStore,
    mvcc: &Store,
    who: &AuthInfo,
    req: &RaftRequest,
) -> Result<(), AuthError> {
    use raft_request::Request as Q;
    if !auth.enabled() {
        return Ok(());
    }
    let checks = Checks { auth, mvcc, who };
    match req.request.as_ref() {
        Some(Q::Put(r)) => checks.put(r),
        Some(Q::DeleteRange(r)) => checks.delete_range(r),
        Some(Q::Txn(r)) => checks.txn(r),
        Some(Q::LeaseRevoke(r)) => checks.lease_keys(r.id),
        // etcd 3.4 checks neither compaction nor lease grants nor checkpoints at apply.
        _ => Ok(()),
    }
}

struct Checks<'a> {
    auth: &'a AuthStore,
    mvcc: &'a Store,
    who: &'a AuthInfo,
}

impl Checks<'_> {
    fn read(&self, key: &[u8], range_end: &[u8]) -> Result<(), AuthError> {
        self.auth.check(self.who, key, range_end, Perm::Read)
    }

    fn write(&self, key: &[u8], range_end: &[u8]) -> Result<(), AuthError> {
        self.auth.check(self.who, key, range_end, Perm::Write)
    }

    /// Put: write the key; if it attaches a lease, write every key already on that lease
    /// (else the user could attach a key to a lease they cannot revoke); read the key for
    /// `prev_kv`.
    fn put(&self, r: &PutRequest) -> Result<(), AuthError> {
        self.write(&r.key, &[])?;
        if r.lease != 0 {
            self.lease_keys(r.lease)?;
        }
        if r.prev_kv {
            self.read(&r.key, &[])?;
        }
        Ok(())
    }

    fn delete_range(&self, r: &DeleteRangeRequest) -> Result<(), AuthError> {
        self.write(&r.key, &r.range_end)?;
        if r.prev_kv {
            self.read(&r.key, &r.range_end)?;
        }
        Ok(())
    }

    /// LeaseRevoke (and a put attaching the lease): write on every key of the lease.
    fn lease_keys(&self, lease: i64) -> Result<(), AuthError> {
        for key in self.mvcc.keys_of_lease(lease) {
            self.write(&key, &[])?;
        }
        Ok(())
    }

    /// etcd's `checkTxnAuth`: read every compare's range, then each branch's operations.
    fn txn(&self, r: &TxnRequest) -> Result<(), AuthError> {
        for c in &r.compare {
            self.read(&c.key, &c.range_end)?;
        }
        self.ops(&r.success)?;
        self.ops(&r.failure)
    }

    /// etcd's `checkTxnReqsPermission`, with one deliberate difference: etcd 3.4.23 checks
    /// nothing inside a nested txn (any user could read and write anything through one);
    /// ketch checks nested txns with the same rules.
    fn ops(&self, ops: &[RequestOp]) -> Result<(), AuthError> {
        use request_op::Request as Op;
        for op in ops {
            match &op.request {
                Some(Op::RequestRange(RangeRequest { key, range_end, .. })) => {
                    self.read(key, range_end)?;
                }
                Some(Op::RequestPut(p)) => self.write(&p.key, &[])?,
                Some(Op::RequestDeleteRange(d)) => {
                    if d.prev_kv {
                        self.read(&d.key, &d.range_end)?;
                    }
                    self.write(&d.key, &d.range_end)?;
                }
                Some(Op::RequestTxn(t)) => self.txn(t)?,
                None => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use ketch_auth::PERM_READWRITE;
    use ketch_proto::authpb;
    use ketch_proto::ketchpb::{AuthenticateInternal, UserAddInternal};
    use ketch_proto::{
        AuthEnableRequest, AuthRoleAddRequest, AuthRoleGrantPermissionRequest,
        AuthUserGrantRoleRequest, LeaseGrantRequest, LeaseRevokeRequest, TxnRequest,
    };
    use ketch_raft::StateStore;

    use super::*;
    use crate::lease::state::{ReplicatedStore, StoreError};
    use raft_request::Request as Q;

    /// bcrypt's cheapest cost: these tests check rules, not hashing.
    const TEST_COST: u32 = 4;

    fn as_user(who: &AuthInfo, r: Q) -> RaftRequest {
        RaftRequest {
            request: Some(r),
            header: header_of(who),
            ..RaftRequest::default()
        }
    }

    fn user(name: &str, s: &ReplicatedStore) -> AuthInfo {
        AuthInfo {
            user: name.to_string(),
            revision: s.auth().revision(),
        }
    }

    fn apply(s: &mut ReplicatedStore, req: RaftRequest) -> Result<(), StoreError> {
        s.apply(&req, &mut Vec::new()).map(|_| ())
    }

    fn put(key: &str, lease: i64) -> Q {
        Q::Put(PutRequest {
            key: key.to_string().into(),
            value: "v".into(),
            lease,
            ..Default::default()
        })
    }

    fn add_user(s: &mut ReplicatedStore, name: &str, role: &str) {
        let hashed_password = ketch_auth::hash_password("pw", TEST_COST).unwrap();
        let add = UserAddInternal {
            name: name.to_string(),
            hashed_password,
            no_password: false,
        };
        let nobody = AuthInfo::anonymous();
        apply(s, as_user(&nobody, Q::AuthUserAdd(add))).unwrap();
        let grant = AuthUserGrantRoleRequest {
            user: name.to_string(),
            role: role.to_string(),
        };
        apply(s, as_user(&nobody, Q::AuthUserGrantRole(grant))).unwrap();
    }

    /// root (root role), and alice with read-write on [a, b); auth on.
    fn store_with_auth() -> ReplicatedStore {
        let mut s = ReplicatedStore::default();
        let nobody = AuthInfo::anonymous();
        let role = AuthRoleAddRequest { name: "rw".into() };
        apply(&mut s, as_user(&nobody, Q::AuthRoleAdd(role))).unwrap();
        let perm = AuthRoleGrantPermissionRequest {
            name: "rw".into(),
            perm: Some(authpb::Permission {
                perm_type: PERM_READWRITE,
                key: "a".into(),
                range_end: "b".into(),
            }),
        };
        apply(&mut s, as_user(&nobody, Q::AuthRoleGrantPermission(perm))).unwrap();
        add_user(&mut s, "root", "root");
        add_user(&mut s, "alice", "rw");
        apply(
            &mut s,
            as_user(&nobody, Q::AuthEnable(AuthEnableRequest {})),
        )
        .unwrap();
        assert!(s.auth().enabled());
        s
    }

    fn denied(r: Result<(), StoreError>) -> Option<AuthError> {
        match r {
            Err(StoreError::Auth(e)) => Some(e),
            _ => None,
        }
    }

    #[test]
    fn kv_writes_are_checked_at_apply_with_the_proposers_identity() {
        let mut s = store_with_auth();
        let alice = user("alice", &s);
        apply(&mut s, as_user(&alice, put("a1", 0))).unwrap();
        let outside = apply(&mut s, as_user(&alice, put("z", 0)));
        assert_eq!(denied(outside), Some(AuthError::PermissionDenied));
        let anonymous = apply(&mut s, as_user(&AuthInfo::anonymous(), put("a2", 0)));
        assert_eq!(denied(anonymous), Some(AuthError::UserEmpty));
        let stale = AuthInfo {
            revision: alice.revision - 1,
            ..alice.clone()
        };
        let old = apply(&mut s, as_user(&stale, put("a3", 0)));
        assert_eq!(denied(old), Some(AuthError::AuthOldRevision));
        assert_eq!(s.revision(), 2, "only the permitted put was applied");
    }

    #[test]
    fn nested_txns_are_checked_unlike_etcd_3_4() {
        let mut s = store_with_auth();
        let alice = user("alice", &s);
        let read_z = RequestOp {
            request: Some(request_op::Request::RequestRange(RangeRequest {
                key: "z".into(),
                ..Default::default()
            })),
        };
        let inner = TxnRequest {
            success: vec![read_z],
            ..Default::default()
        };
        let outer = TxnRequest {
            success: vec![RequestOp {
                request: Some(request_op::Request::RequestTxn(inner)),
            }],
            ..Default::default()
        };
        let r = apply(&mut s, as_user(&alice, Q::Txn(outer)));
        assert_eq!(denied(r), Some(AuthError::PermissionDenied));
    }

    #[test]
    fn leases_holding_foreign_keys_cannot_be_revoked_or_reused_but_expire_as_root() {
        let mut s = store_with_auth();
        let root = user("root", &s);
        let alice = user("alice", &s);
        let grant = Q::LeaseGrant(LeaseGrantRequest { id: 9, ttl: 60 });
        apply(&mut s, as_user(&root, grant)).unwrap();
        apply(&mut s, as_user(&root, put("z", 9))).unwrap();
        let reuse = apply(&mut s, as_user(&alice, put("a1", 9)));
        assert_eq!(denied(reuse), Some(AuthError::PermissionDenied));
        let revoke = || Q::LeaseRevoke(LeaseRevokeRequest { id: 9 });
        let r = apply(&mut s, as_user(&alice, revoke()));
        assert_eq!(denied(r), Some(AuthError::PermissionDenied));
        let expiry = RaftRequest {
            request: Some(revoke()),
            header: internal_header(),
            ..RaftRequest::default()
        };
        apply(&mut s, expiry).unwrap();
        assert!(!s.lease_exists(9));
    }

    #[test]
    fn authenticate_names_its_token_after_the_raft_index() {
        let mut s = store_with_auth();
        let login = AuthenticateInternal {
            name: "alice".into(),
            simple_token: "abcdefghijklmnop".into(),
        };
        let req = as_user(&AuthInfo::anonymous(), Q::Authenticate(login));
        let resp = s.apply_at(42, &req, &mut Vec::new()).unwrap();
        let Some(raft_response::Response::Authenticate(r)) = resp.response else {
            panic!("{resp:?}");
        };
        assert_eq!(r.token, "abcdefghijklmnop.42");
        assert_eq!(s.applied_index(), 42);
        let who = s
            .auth()
            .resolve_token(&r.token, std::time::Instant::now())
            .unwrap();
        assert_eq!(who.user, "alice");
    }

    #[test]
    fn auth_state_is_in_the_snapshot() {
        let s = store_with_auth();
        let mut bytes = Vec::new();
        s.write_snapshot(&mut bytes).unwrap();
        let mut back = ReplicatedStore::default();
        back.read_snapshot(&mut bytes.as_slice()).unwrap();
        assert_eq!(back.auth().state(), s.auth().state());
        assert!(back.auth().enabled());
    }
}
