//! Simple tokens and auth revisions through `AuthStore`, as observed on etcd 3.4.23: token
//! shape, sliding TTL, which changes invalidate tokens (password change, user delete, auth
//! disable) and which do not (permission changes, seen live), the stale-revision check, and
//! that two members applying the same entries hand out the same tokens.

mod common;

use std::time::Duration;

use common::*;
use ketch_auth::{
    AuthError, AuthInfo, AuthRequest, AuthResponse, PERM_READ, PERM_WRITE, Perm, token_index,
};

fn setup() -> Harness {
    let mut h = Harness::with_ttl(Duration::from_secs(3));
    h.enable_with_root();
    h.ok(user_add("u", "p"));
    h.ok(AuthRequest::RoleAdd { name: "r".into() });
    h.ok(grant_perm("r", PERM_READ, b"a", b""));
    h.ok(grant_role("u", "r"));
    h
}

#[test]
fn token_is_sixteen_letters_dot_raft_index() {
    let mut h = setup();
    let token = h.login("u", "p").unwrap();
    let (prefix, index) = token.split_once('.').unwrap();
    assert_eq!(prefix.len(), 16);
    assert!(prefix.bytes().all(|b| b.is_ascii_alphabetic()));
    assert_eq!(index.parse::<u64>().unwrap(), h.index);
    assert_eq!(token_index(&token), Some(h.index));
    let who = h.store.resolve_token(&token, h.now).unwrap();
    assert_eq!(
        who,
        AuthInfo {
            user: "u".into(),
            revision: h.store.revision()
        }
    );
    assert!(h.store.check(&who, b"a", b"", Perm::Read).is_ok());
}

#[test]
fn authenticate_errors() {
    let mut h = Harness::new();
    h.ok(user_add("root", "pw"));
    assert_eq!(
        h.store.check_password("root", "pw"),
        Err(AuthError::AuthNotEnabled)
    );
    let req = AuthRequest::Authenticate {
        name: "root".into(),
        token_prefix: "a".repeat(16),
    };
    assert_eq!(
        h.apply_as(req, &AuthInfo::anonymous()),
        Err(AuthError::AuthNotEnabled)
    );
    h.ok(grant_role("root", "root"));
    h.ok(AuthRequest::AuthEnable);
    assert_eq!(h.login("root", "bad"), Err(AuthError::AuthFailed));
    assert_eq!(h.login("", ""), Err(AuthError::AuthFailed));
    let req = AuthRequest::Authenticate {
        name: "gone".into(),
        token_prefix: "a".repeat(16),
    };
    assert_eq!(
        h.apply_as(req, &AuthInfo::anonymous()),
        Err(AuthError::AuthFailed)
    );
    assert_eq!(h.store.check_password("root", "pw"), Ok(h.store.revision()));
}

#[test]
fn ttl_restarts_on_every_use() {
    // etcd --auth-token-ttl 3: used at 0, 2, 4 s it lives; idle 5 s it is gone.
    let mut h = setup();
    let token = h.login("u", "p").unwrap();
    for _ in 0..3 {
        assert!(h.store.resolve_token(&token, h.now).is_ok());
        h.advance(Duration::from_secs(2));
    }
    h.advance(Duration::from_secs(3));
    assert_eq!(
        h.store.resolve_token(&token, h.now),
        Err(AuthError::InvalidAuthToken)
    );
}

#[test]
fn expire_drops_idle_tokens() {
    let mut h = setup();
    h.login("u", "p").unwrap();
    h.advance(Duration::from_secs(2));
    let fresh = h.login("root", "pw").unwrap();
    h.advance(Duration::from_secs(2));
    h.store.expire_tokens(h.now);
    assert_eq!(h.store.token_count(), 1);
    assert!(h.store.resolve_token(&fresh, h.now).is_ok());
}

#[test]
fn password_change_and_delete_invalidate_only_that_users_tokens() {
    let mut h = setup();
    let t_u = h.login("u", "p").unwrap();
    let t_root = h.login("root", "pw").unwrap();
    let hash = ketch_auth::hash_password("p2", TEST_BCRYPT_COST).unwrap();
    h.ok(AuthRequest::UserChangePassword {
        name: "u".into(),
        password_hash: hash,
    });
    assert_eq!(
        h.store.resolve_token(&t_u, h.now),
        Err(AuthError::InvalidAuthToken)
    );
    assert!(h.store.resolve_token(&t_root, h.now).is_ok());
    assert_eq!(h.login("u", "p"), Err(AuthError::AuthFailed));
    let t_u = h.login("u", "p2").unwrap();
    h.ok(AuthRequest::UserDelete { name: "u".into() });
    assert_eq!(
        h.store.resolve_token(&t_u, h.now),
        Err(AuthError::InvalidAuthToken)
    );
}

#[test]
fn permission_changes_keep_tokens_and_apply_at_once() {
    let mut h = setup();
    let token = h.login("u", "p").unwrap();
    let who = h.store.resolve_token(&token, h.now).unwrap();
    assert_eq!(
        h.store.check(&who, b"z", b"", Perm::Read),
        Err(AuthError::PermissionDenied)
    );
    h.ok(grant_perm("r", PERM_READ, b"z", b""));
    // The old identity is from an older revision: a write proposed with it fails on apply.
    assert_eq!(
        h.store.check(&who, b"z", b"", Perm::Read),
        Err(AuthError::AuthOldRevision)
    );
    // Resolving the same token again gives the current revision and the new permission.
    let who = h.store.resolve_token(&token, h.now).unwrap();
    assert!(h.store.check(&who, b"z", b"", Perm::Read).is_ok());
    assert_eq!(
        h.store.check(&who, b"z", b"", Perm::Write),
        Err(AuthError::PermissionDenied)
    );
    h.ok(AuthRequest::UserRevokeRole {
        name: "u".into(),
        role: "r".into(),
    });
    let who = h.store.resolve_token(&token, h.now).unwrap();
    assert_eq!(
        h.store.check(&who, b"a", b"", Perm::Read),
        Err(AuthError::PermissionDenied)
    );
}

#[test]
fn disable_drops_every_token_and_enable_does_not_bring_them_back() {
    let mut h = setup();
    let token = h.login("u", "p").unwrap();
    h.ok(AuthRequest::AuthDisable);
    // etcd answers a stale token with "invalid auth token" even while auth is off.
    assert_eq!(
        h.store.resolve_token(&token, h.now),
        Err(AuthError::InvalidAuthToken)
    );
    assert_eq!(
        h.store.resolve_token("bogus", h.now),
        Err(AuthError::InvalidAuthToken)
    );
    assert_eq!(
        h.store.resolve_token("", h.now),
        Err(AuthError::InvalidAuthToken)
    );
    h.ok(AuthRequest::AuthEnable);
    assert_eq!(
        h.store.resolve_token(&token, h.now),
        Err(AuthError::InvalidAuthToken)
    );
}

#[test]
fn members_applying_the_same_entries_agree() {
    let mut a = setup();
    let mut b = setup();
    let entries = vec![
        AuthRequest::Authenticate {
            name: "u".into(),
            token_prefix: "abcdefghijklmnop".into(),
        },
        grant_perm("r", PERM_WRITE, b"b", b"c"),
        AuthRequest::Authenticate {
            name: "root".into(),
            token_prefix: "ABCDEFGHIJKLMNOP".into(),
        },
    ];
    let mut tokens = Vec::new();
    for req in entries {
        let ra = a.apply(req.clone());
        let rb = b.apply(req);
        assert_eq!(ra, rb);
        if let Ok(AuthResponse::Authenticate(r)) = ra {
            tokens.push(r.token);
        }
    }
    assert_eq!(a.store.view(), b.store.view());
    assert_eq!(tokens.len(), 2);
    for t in tokens {
        assert_eq!(
            a.store.resolve_token(&t, a.now),
            b.store.resolve_token(&t, b.now)
        );
    }
}
