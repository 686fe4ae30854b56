//! Every auth rule observed on etcd 3.4.23 (transcripts in docs/auth.md), replayed against
//! `AuthStore`: the same requests in the same order must give the same errors, gRPC codes,
//! listings, permission decisions and auth revisions.

mod common;

use common::*;
use ketch_auth::{
    AuthError, AuthInfo, AuthRequest, AuthResponse, GrpcCode, PERM_READ, PERM_READWRITE,
    PERM_WRITE, Password, Perm,
};

fn role_perms(h: &mut Harness, role: &str) -> Vec<(i32, Vec<u8>, Vec<u8>)> {
    match h.apply(AuthRequest::RoleGet { role: role.into() }).unwrap() {
        AuthResponse::RoleGet(r) => r
            .perm
            .iter()
            .map(|p| (p.perm_type, p.key.to_vec(), p.range_end.to_vec()))
            .collect(),
        other => panic!("{other:?}"),
    }
}

fn user_roles(h: &mut Harness, user: &str) -> Vec<String> {
    match h.apply(AuthRequest::UserGet { name: user.into() }).unwrap() {
        AuthResponse::UserGet(r) => r.roles,
        other => panic!("{other:?}"),
    }
}

#[test]
fn enable_needs_a_root_user_holding_the_root_role() {
    let mut h = Harness::new();
    assert_eq!(
        h.apply(AuthRequest::AuthEnable),
        Err(AuthError::RootUserNotExist)
    );
    h.ok(user_add("root", "pw"));
    assert_eq!(
        h.apply(AuthRequest::AuthEnable),
        Err(AuthError::RootRoleNotExist)
    );
    // The role "root" may be granted without existing, and that is enough.
    h.ok(grant_role("root", "root"));
    assert_eq!(
        h.apply(AuthRequest::RoleGet {
            role: "root".into()
        }),
        Err(AuthError::RoleNotFound)
    );
    let before = h.store.revision();
    h.ok(AuthRequest::AuthEnable);
    assert!(h.store.enabled());
    assert_eq!(
        h.store.revision(),
        before,
        "AuthEnable does not bump the revision"
    );
    // Enabled: enabling again needs root, and is then a no-op.
    assert_eq!(
        h.apply_as(AuthRequest::AuthEnable, &AuthInfo::anonymous()),
        Err(AuthError::UserEmpty)
    );
    h.ok(AuthRequest::AuthEnable);
    assert_eq!(h.store.revision(), before);
}

#[test]
fn disable_bumps_the_revision_once_and_needs_root_while_enabled() {
    let mut h = Harness::new();
    h.enable_with_root();
    h.ok(user_add("u", "p"));
    let u = h.who("u");
    assert_eq!(
        h.apply_as(AuthRequest::AuthDisable, &u),
        Err(AuthError::PermissionDenied)
    );
    let rev = h.store.revision();
    h.ok(AuthRequest::AuthDisable);
    assert_eq!(h.store.revision(), rev + 1);
    // Disabled: anyone may disable again; nothing changes.
    h.apply_as(AuthRequest::AuthDisable, &AuthInfo::anonymous())
        .unwrap();
    assert_eq!(h.store.revision(), rev + 1);
    // And anyone may manage users, even delete root.
    h.apply_as(
        AuthRequest::UserDelete {
            name: "root".into(),
        },
        &AuthInfo::anonymous(),
    )
    .unwrap();
    assert_eq!(
        h.apply(AuthRequest::AuthEnable),
        Err(AuthError::RootUserNotExist)
    );
}

#[test]
fn user_add_rules() {
    let mut h = Harness::new();
    assert_eq!(h.apply(user_add("", "x")), Err(AuthError::UserEmpty));
    h.ok(user_add("root", "pw"));
    assert_eq!(
        h.apply(user_add("root", "pw2")),
        Err(AuthError::UserAlreadyExist)
    );
    h.ok(AuthRequest::UserAdd {
        name: "alice".into(),
        password: Password::None,
    });
    h.ok(user_add("bob", "bpw"));
    h.ok(user_add("carol", "cpw"));
    h.ok(user_add("Zed", "z"));
    match h.apply(AuthRequest::UserList).unwrap() {
        // Byte order, as bolt lists them: upper case first.
        AuthResponse::UserList(r) => assert_eq!(r.users, ["Zed", "alice", "bob", "carol", "root"]),
        other => panic!("{other:?}"),
    }
    assert_eq!(user_roles(&mut h, "alice"), Vec::<String>::new());
}

#[test]
fn no_password_users_cannot_log_in_with_any_password() {
    let mut h = Harness::new();
    h.enable_with_root();
    h.ok(AuthRequest::UserAdd {
        name: "np".into(),
        password: Password::None,
    });
    let e = h.store.check_password("np", "").unwrap_err();
    assert_eq!(e, AuthError::NoPasswordUser);
    assert_eq!(e.grpc_code(), GrpcCode::Unknown);
    assert_eq!(
        e.to_string(),
        "auth: authentication failed, password was given for no password user"
    );
    // Changing the password keeps the option (etcd 3.4.23: still refused).
    let hash = ketch_auth::hash_password("newpw", TEST_BCRYPT_COST).unwrap();
    h.ok(AuthRequest::UserChangePassword {
        name: "np".into(),
        password_hash: hash,
    });
    assert_eq!(
        h.store.check_password("np", "newpw"),
        Err(AuthError::NoPasswordUser)
    );
    // An Authenticate entry for it (proposed by a confused member) fails on apply.
    let req = AuthRequest::Authenticate {
        name: "np".into(),
        token_prefix: "x".repeat(16),
    };
    assert_eq!(
        h.apply_as(req, &AuthInfo::anonymous()),
        Err(AuthError::AuthFailed)
    );
}

#[test]
fn passwords_are_checked_on_their_first_72_bytes_as_etcd_does() {
    let mut h = Harness::new();
    h.enable_with_root();
    let long = "x".repeat(80);
    h.ok(user_add("long", &long));
    let other = format!("{}DIFFERENT", "x".repeat(72));
    assert!(h.store.check_password("long", &other).is_ok());
    assert_eq!(
        h.store.check_password("long", "x"),
        Err(AuthError::AuthFailed)
    );
    assert_eq!(
        h.store.check_password("nobody", "x"),
        Err(AuthError::AuthFailed)
    );
    assert_eq!(
        h.store.check_password("root", "wrong"),
        Err(AuthError::AuthFailed)
    );
}

#[test]
fn role_and_grant_rules() {
    let mut h = Harness::new();
    h.ok(user_add("bob", "bpw"));
    h.ok(AuthRequest::RoleAdd { name: "r1".into() });
    assert_eq!(
        h.apply(AuthRequest::RoleAdd { name: "r1".into() }),
        Err(AuthError::RoleAlreadyExist)
    );
    assert_eq!(
        h.apply(AuthRequest::RoleAdd { name: "".into() }),
        Err(AuthError::RoleEmpty)
    );
    h.ok(AuthRequest::RoleAdd { name: "r2".into() });
    h.ok(grant_role("bob", "r2"));
    let rev = h.store.revision();
    h.ok(grant_role("bob", "r1"));
    h.ok(grant_role("bob", "r1"));
    assert_eq!(
        h.store.revision(),
        rev + 1,
        "a repeated grant changes nothing"
    );
    assert_eq!(user_roles(&mut h, "bob"), ["r1", "r2"]);
    assert_eq!(
        h.apply(grant_role("bob", "nor")),
        Err(AuthError::RoleNotFound)
    );
    assert_eq!(
        h.apply(grant_role("nou", "r1")),
        Err(AuthError::UserNotFound)
    );
    assert_eq!(
        h.apply(AuthRequest::UserRevokeRole {
            name: "bob".into(),
            role: "r3".into()
        }),
        Err(AuthError::RoleNotGranted)
    );
    assert_eq!(
        h.apply(AuthRequest::UserGet { name: "nou".into() }),
        Err(AuthError::UserNotFound)
    );
    // Deleting a role takes it from its users.
    h.ok(AuthRequest::RoleDelete { role: "r2".into() });
    assert_eq!(user_roles(&mut h, "bob"), ["r1"]);
    assert_eq!(
        h.apply(AuthRequest::RoleDelete { role: "r2".into() }),
        Err(AuthError::RoleNotFound)
    );
    match h.apply(AuthRequest::RoleList).unwrap() {
        AuthResponse::RoleList(r) => assert_eq!(r.roles, ["r1"]),
        other => panic!("{other:?}"),
    }
}

#[test]
fn grant_permission_updates_only_the_first_same_key_entry() {
    // The etcdctl sequence of docs/auth.md; `role get r1 -w json` printed exactly this list.
    let mut h = Harness::new();
    h.ok(AuthRequest::RoleAdd { name: "r1".into() });
    h.ok(grant_perm("r1", PERM_READ, b"foo", b""));
    h.ok(grant_perm("r1", PERM_WRITE, b"a", b"z"));
    h.ok(grant_perm("r1", PERM_READWRITE, b"p", &prefix_end(b"p")));
    h.ok(grant_perm("r1", PERM_READ, b"k", b"\0"));
    h.ok(grant_perm("r1", PERM_READWRITE, b"a", b"z"));
    h.ok(grant_perm("r1", PERM_READ, b"a", b"c"));
    h.ok(grant_perm("r1", PERM_WRITE, b"a", b"c"));
    let want: Vec<(i32, Vec<u8>, Vec<u8>)> = vec![
        (PERM_READWRITE, b"a".to_vec(), b"z".to_vec()),
        (PERM_READ, b"a".to_vec(), b"c".to_vec()),
        (PERM_WRITE, b"a".to_vec(), b"c".to_vec()),
        (PERM_READ, b"foo".to_vec(), b"".to_vec()),
        (PERM_READ, b"k".to_vec(), b"\0".to_vec()),
        (PERM_READWRITE, b"p".to_vec(), b"q".to_vec()),
    ];
    assert_eq!(role_perms(&mut h, "r1"), want);
    // Revoking [a, c) removes both entries; revoking again finds none.
    let revoke = |key: &[u8], end: &[u8]| AuthRequest::RoleRevokePermission {
        role: "r1".into(),
        key: key.to_vec(),
        range_end: end.to_vec(),
    };
    h.ok(revoke(b"a", b"c"));
    assert_eq!(role_perms(&mut h, "r1").len(), 4);
    assert_eq!(
        h.apply(revoke(b"a", b"c")),
        Err(AuthError::PermissionNotGranted)
    );
    assert_eq!(
        h.apply(revoke(b"nothere", b"")),
        Err(AuthError::PermissionNotGranted)
    );
    let nor = AuthRequest::RoleRevokePermission {
        role: "nor".into(),
        key: b"foo".to_vec(),
        range_end: vec![],
    };
    assert_eq!(h.apply(nor), Err(AuthError::RoleNotFound));
    assert_eq!(
        h.apply(grant_perm("nor", PERM_READ, b"a", b"")),
        Err(AuthError::RoleNotFound)
    );
}

#[test]
fn a_grant_without_permission_is_refused_before_raft() {
    let req = ketch_proto::AuthRoleGrantPermissionRequest {
        name: "r".into(),
        perm: None,
    };
    let e = AuthRequest::role_grant_permission(&req).unwrap_err();
    assert_eq!(e, AuthError::PermissionNotGiven);
    assert_eq!(e.grpc_code(), GrpcCode::InvalidArgument);
}

#[test]
fn root_cannot_be_removed_while_enabled() {
    let mut h = Harness::new();
    h.enable_with_root();
    let revoke = AuthRequest::UserRevokeRole {
        name: "root".into(),
        role: "root".into(),
    };
    assert_eq!(h.apply(revoke.clone()), Err(AuthError::InvalidAuthMgmt));
    assert_eq!(
        h.apply(AuthRequest::UserDelete {
            name: "root".into()
        }),
        Err(AuthError::InvalidAuthMgmt)
    );
    assert_eq!(
        h.apply(AuthRequest::RoleDelete {
            role: "root".into()
        }),
        Err(AuthError::InvalidAuthMgmt)
    );
    assert_eq!(
        AuthError::InvalidAuthMgmt.grpc_code(),
        GrpcCode::InvalidArgument
    );
    h.ok(AuthRequest::AuthDisable);
    h.ok(revoke);
    h.ok(AuthRequest::RoleDelete {
        role: "root".into(),
    });
    assert_eq!(
        h.apply(AuthRequest::UserDelete {
            name: "nope".into()
        }),
        Err(AuthError::UserNotFound)
    );
    let pw = AuthRequest::UserChangePassword {
        name: "nope".into(),
        password_hash: "h".into(),
    };
    assert_eq!(h.apply(pw), Err(AuthError::UserNotFound));
}

#[test]
fn admin_requests_and_self_service_reads() {
    let mut h = Harness::new();
    h.enable_with_root();
    h.ok(user_add("bob", "bpw"));
    h.ok(AuthRequest::RoleAdd { name: "r1".into() });
    h.ok(AuthRequest::RoleAdd { name: "r2".into() });
    h.ok(grant_role("bob", "r1"));
    let bob = h.who("bob");
    assert_eq!(
        h.apply_as(AuthRequest::UserList, &bob),
        Err(AuthError::PermissionDenied)
    );
    assert_eq!(
        h.apply_as(AuthRequest::RoleList, &bob),
        Err(AuthError::PermissionDenied)
    );
    assert!(
        h.apply_as(AuthRequest::UserGet { name: "bob".into() }, &bob)
            .is_ok()
    );
    let get_root = AuthRequest::UserGet {
        name: "root".into(),
    };
    assert_eq!(
        h.apply_as(get_root.clone(), &bob),
        Err(AuthError::PermissionDenied)
    );
    assert!(
        h.apply_as(AuthRequest::RoleGet { role: "r1".into() }, &bob)
            .is_ok()
    );
    let get_r2 = AuthRequest::RoleGet { role: "r2".into() };
    assert_eq!(h.apply_as(get_r2, &bob), Err(AuthError::PermissionDenied));
    // No credential, or a certificate naming an unknown user.
    let anon = AuthInfo::anonymous();
    assert_eq!(
        h.apply_as(get_root.clone(), &anon),
        Err(AuthError::UserEmpty)
    );
    assert_eq!(
        h.apply_as(AuthRequest::RoleList, &anon),
        Err(AuthError::UserEmpty)
    );
    let ghost = h.who("ghost");
    assert_eq!(
        h.apply_as(AuthRequest::UserList, &ghost),
        Err(AuthError::UserNotFound)
    );
    // A user granted "root" (even without a root role object) is an admin.
    h.ok(user_add("carol", "cpw"));
    h.ok(grant_role("carol", "root"));
    let carol = h.who("carol");
    assert!(h.apply_as(AuthRequest::UserList, &carol).is_ok());
    assert!(
        h.store
            .check(&carol, b"anything", b"\0", Perm::Write)
            .is_ok()
    );
}

#[test]
fn bob_reads_and_writes_as_on_etcd() {
    let mut h = Harness::new();
    h.ok(user_add("root", "pw"));
    h.ok(user_add("bob", "bpw"));
    h.ok(AuthRequest::RoleAdd { name: "r1".into() });
    h.ok(grant_perm("r1", PERM_READ, b"foo", b""));
    h.ok(grant_perm("r1", PERM_WRITE, b"a", b"z"));
    h.ok(grant_perm("r1", PERM_READWRITE, b"p", &prefix_end(b"p")));
    h.ok(grant_perm("r1", PERM_READ, b"k", b"\0"));
    h.ok(grant_perm("r1", PERM_READWRITE, b"a", b"z"));
    h.ok(grant_role("bob", "r1"));
    h.ok(grant_role("root", "root"));
    h.ok(AuthRequest::AuthEnable);
    let bob = h.who("bob");
    let allowed = |h: &Harness, key: &[u8], end: &[u8], perm| h.store.check(&bob, key, end, perm);
    assert!(allowed(&h, b"foo", b"", Perm::Read).is_ok());
    assert!(allowed(&h, b"foo", b"", Perm::Write).is_ok());
    assert!(allowed(&h, b"a", b"z", Perm::Read).is_ok());
    assert!(allowed(&h, b"a", b"c", Perm::Read).is_ok());
    assert!(allowed(&h, b"k", b"\0", Perm::Read).is_ok());
    assert!(allowed(&h, b"kk", b"zz", Perm::Read).is_ok());
    assert!(allowed(&h, b"p", b"q", Perm::Read).is_ok());
    assert_eq!(
        allowed(&h, b"\0", b"\0", Perm::Read),
        Err(AuthError::PermissionDenied)
    );
    assert!(allowed(&h, b"a", b"c", Perm::Write).is_ok());
    assert!(allowed(&h, b"a", b"z", Perm::Write).is_ok());
    assert_eq!(
        allowed(&h, b"a", b"zz", Perm::Write),
        Err(AuthError::PermissionDenied)
    );
    assert_eq!(
        AuthError::PermissionDenied.grpc_code(),
        GrpcCode::PermissionDenied
    );
    // Without a credential: "user name is empty"; a deleted user: denied.
    let anon = AuthInfo::anonymous();
    assert_eq!(
        h.store.check(&anon, b"foo", b"", Perm::Read),
        Err(AuthError::UserEmpty)
    );
    let ghost = h.who("ghost");
    assert_eq!(
        h.store.check(&ghost, b"foo", b"", Perm::Read),
        Err(AuthError::PermissionDenied)
    );
    // Auth off: everyone may do everything.
    h.ok(AuthRequest::AuthDisable);
    assert!(h.store.check(&anon, b"\0", b"\0", Perm::Write).is_ok());
}

#[test]
fn empty_key_grants_cover_nothing_and_inverted_requests_follow_their_key() {
    // The gateway run of docs/auth.md.
    let mut h = Harness::new();
    h.enable_with_root();
    h.ok(user_add("u", "p"));
    h.ok(AuthRequest::RoleAdd { name: "e".into() });
    h.ok(grant_perm("e", PERM_READ, b"", b"\0"));
    h.ok(grant_perm("e", PERM_READ, b"", b""));
    h.ok(grant_role("u", "e"));
    let u = h.who("u");
    for (key, end) in [(&b"a"[..], &b""[..]), (b"\0", b"\0"), (b"a", b"b")] {
        assert_eq!(
            h.store.check(&u, key, end, Perm::Read),
            Err(AuthError::PermissionDenied)
        );
    }
    h.ok(AuthRequest::RoleAdd { name: "x".into() });
    h.ok(grant_perm("x", PERM_READ, b"b", b"a"));
    h.ok(grant_role("u", "x"));
    h.ok(AuthRequest::RoleDelete { role: "x".into() });
    h.ok(grant_perm("e", PERM_READ, b"b", b"d"));
    let u = h.who("u");
    let verdicts: Vec<bool> = [
        (&b"b"[..], &b""[..]),
        (b"b", b"d"),
        (b"c", b"b"),
        (b"c", b"c"),
        (b"d", b"c"),
        (b"e", b"a"),
        (b"b", b"e"),
        (b"d", b"d"),
    ]
    .iter()
    .map(|(k, e)| h.store.check(&u, k, e, Perm::Read).is_ok())
    .collect();
    assert_eq!(
        verdicts,
        [true, true, true, true, false, false, false, false]
    );
}

#[test]
fn auth_revision_counts_as_etcd_metrics_showed() {
    // The gateway run of docs/auth.md: etcd_debugging_auth_revision read 19 at the end.
    let mut h = Harness::new();
    assert_eq!(h.store.revision(), 1);
    h.ok(user_add("root", "pw"));
    assert_eq!(
        h.apply(AuthRequest::AuthEnable),
        Err(AuthError::RootRoleNotExist)
    );
    h.ok(grant_role("root", "root"));
    h.ok(AuthRequest::AuthEnable);
    assert_eq!(h.store.revision(), 3);
    h.ok(user_add("u", "p"));
    h.ok(AuthRequest::RoleAdd { name: "e".into() });
    h.ok(grant_perm("e", PERM_READ, b"", b"\0"));
    h.ok(grant_perm("e", PERM_READ, b"", b""));
    h.ok(grant_role("u", "e"));
    h.ok(AuthRequest::RoleAdd { name: "x".into() });
    h.ok(grant_perm("x", PERM_READ, b"b", b"a"));
    h.ok(grant_role("u", "x"));
    h.ok(AuthRequest::RoleDelete { role: "x".into() });
    h.ok(grant_perm("e", PERM_READ, b"b", b"d"));
    h.ok(AuthRequest::UserDelete { name: "u".into() });
    h.ok(AuthRequest::UserAdd {
        name: "v".into(),
        password: Password::None,
    });
    h.ok(AuthRequest::UserDelete { name: "v".into() });
    let revoke = AuthRequest::RoleRevokePermission {
        role: "e".into(),
        key: vec![],
        range_end: vec![0],
    };
    h.ok(revoke.clone());
    // Failures and reads leave the revision alone.
    assert!(h.apply(revoke).is_err());
    h.apply(AuthRequest::UserList).unwrap();
    h.login("root", "pw").unwrap();
    h.ok(AuthRequest::AuthDisable);
    h.ok(AuthRequest::AuthDisable);
    h.ok(AuthRequest::UserDelete {
        name: "root".into(),
    });
    assert_eq!(h.store.revision(), 19);
}

#[test]
fn messages_and_codes_are_etcds() {
    let table = [
        (
            AuthError::RootUserNotExist,
            GrpcCode::FailedPrecondition,
            "etcdserver: root user does not exist",
        ),
        (
            AuthError::RootRoleNotExist,
            GrpcCode::FailedPrecondition,
            "etcdserver: root user does not have root role",
        ),
        (
            AuthError::UserAlreadyExist,
            GrpcCode::FailedPrecondition,
            "etcdserver: user name already exists",
        ),
        (
            AuthError::UserEmpty,
            GrpcCode::InvalidArgument,
            "etcdserver: user name is empty",
        ),
        (
            AuthError::UserNotFound,
            GrpcCode::FailedPrecondition,
            "etcdserver: user name not found",
        ),
        (
            AuthError::RoleAlreadyExist,
            GrpcCode::FailedPrecondition,
            "etcdserver: role name already exists",
        ),
        (
            AuthError::RoleNotFound,
            GrpcCode::FailedPrecondition,
            "etcdserver: role name not found",
        ),
        (
            AuthError::RoleEmpty,
            GrpcCode::InvalidArgument,
            "etcdserver: role name is empty",
        ),
        (
            AuthError::AuthFailed,
            GrpcCode::InvalidArgument,
            "etcdserver: authentication failed, invalid user ID or password",
        ),
        (
            AuthError::PermissionDenied,
            GrpcCode::PermissionDenied,
            "etcdserver: permission denied",
        ),
        (
            AuthError::RoleNotGranted,
            GrpcCode::FailedPrecondition,
            "etcdserver: role is not granted to the user",
        ),
        (
            AuthError::PermissionNotGranted,
            GrpcCode::FailedPrecondition,
            "etcdserver: permission is not granted to the role",
        ),
        (
            AuthError::AuthNotEnabled,
            GrpcCode::FailedPrecondition,
            "etcdserver: authentication is not enabled",
        ),
        (
            AuthError::InvalidAuthToken,
            GrpcCode::Unauthenticated,
            "etcdserver: invalid auth token",
        ),
        (
            AuthError::InvalidAuthMgmt,
            GrpcCode::InvalidArgument,
            "etcdserver: invalid auth management",
        ),
        (
            AuthError::AuthOldRevision,
            GrpcCode::InvalidArgument,
            "etcdserver: revision of auth store is old",
        ),
    ];
    for (err, code, msg) in table {
        assert_eq!((err.grpc_code(), err.to_string().as_str()), (code, msg));
    }
}

#[test]
fn maintenance_admin_errors_are_etcds_untranslated_ones() {
    // etcd 3.4.23, `> /v3/maintenance/hash` with auth on: code 2 (Unknown) and these texts.
    let mut h = Harness::new();
    h.enable_with_root();
    h.ok(user_add("u", "p"));
    let anon = h.store.check_admin(&AuthInfo::anonymous()).unwrap_err();
    assert_eq!(anon.unmapped_message(), "auth: user name is empty");
    let u = h.store.check_admin(&h.who("u")).unwrap_err();
    assert_eq!(u.unmapped_message(), "auth: permission denied");
    let token = h.store.resolve_token("bad.1", h.now).unwrap_err();
    assert_eq!(token.unmapped_message(), "auth: invalid auth token");
}

#[test]
fn client_certificate_names_act_as_users() {
    // etcd 3.4.23 with --client-cert-auth (docs/auth.md, transcript 15).
    let mut h = Harness::new();
    h.enable_with_root();
    h.ok(user_add("bob", "bpw"));
    h.ok(AuthRequest::RoleAdd { name: "r".into() });
    h.ok(grant_perm("r", PERM_READWRITE, b"b", &prefix_end(b"b")));
    h.ok(grant_role("bob", "r"));
    let cn = |h: &Harness, name: &str| h.store.auth_info_from_cert(name);
    assert!(
        h.store
            .check(&cn(&h, "root"), b"secret", b"", Perm::Read)
            .is_ok()
    );
    assert!(h.store.check_admin(&cn(&h, "root")).is_ok());
    assert!(
        h.store
            .check(&cn(&h, "bob"), b"b1", b"", Perm::Write)
            .is_ok()
    );
    let denied = Err(AuthError::PermissionDenied);
    assert_eq!(
        h.store.check(&cn(&h, "bob"), b"secret", b"", Perm::Read),
        denied
    );
    assert_eq!(h.store.check_admin(&cn(&h, "bob")), denied);
    assert_eq!(
        h.store.check(&cn(&h, "ghost"), b"b1", b"", Perm::Read),
        denied
    );
    assert_eq!(
        h.store.check_admin(&cn(&h, "ghost")),
        Err(AuthError::UserNotFound)
    );
}
