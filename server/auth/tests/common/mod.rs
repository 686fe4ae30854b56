//! Shared helpers for the ketch-auth tests: a store driven entry by entry, with a raft index
//! and a clock that the test advances.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use ketch_auth::{
    ApplyContext, AuthConfig, AuthError, AuthInfo, AuthRequest, AuthResponse, AuthStore, Password,
    Permission, hash_password,
};

/// bcrypt's minimum cost: the tests hash many passwords.
pub const TEST_BCRYPT_COST: u32 = 4;

pub struct Harness {
    pub store: AuthStore,
    pub index: u64,
    pub start: Instant,
    pub now: Instant,
}

impl Harness {
    pub fn new() -> Harness {
        Harness::with_ttl(Duration::from_secs(300))
    }

    pub fn with_ttl(token_ttl: Duration) -> Harness {
        let now = Instant::now();
        Harness {
            store: AuthStore::new(AuthConfig { token_ttl }),
            index: 100,
            start: now,
            now,
        }
    }

    pub fn advance(&mut self, d: Duration) {
        self.now += d;
    }

    /// Applies one entry as the next raft index.
    pub fn apply_as(
        &mut self,
        req: AuthRequest,
        who: &AuthInfo,
    ) -> Result<AuthResponse, AuthError> {
        self.index += 1;
        let ctx = ApplyContext {
            index: self.index,
            now: self.now,
        };
        self.store.apply(&req, who, &ctx)
    }

    /// Applies as root (a valid admin identity whether or not auth is on).
    pub fn apply(&mut self, req: AuthRequest) -> Result<AuthResponse, AuthError> {
        let root = self.who("root");
        self.apply_as(req, &root)
    }

    pub fn ok(&mut self, req: AuthRequest) {
        let what = format!("{req:?}");
        if let Err(e) = self.apply(req) {
            panic!("{what}: {e}");
        }
    }

    /// The identity a token or certificate for `user` would give right now.
    pub fn who(&self, user: &str) -> AuthInfo {
        self.store.auth_info_from_cert(user)
    }

    /// etcd's Authenticate: password check on the "proposer", then the raft entry.
    pub fn login(&mut self, user: &str, password: &str) -> Result<String, AuthError> {
        self.store.check_password(user, password)?;
        let req = AuthRequest::Authenticate {
            name: user.into(),
            token_prefix: ketch_auth::gen_token_prefix(),
        };
        match self.apply_as(req, &AuthInfo::anonymous())? {
            AuthResponse::Authenticate(r) => Ok(r.token),
            other => panic!("authenticate answered {other:?}"),
        }
    }

    /// `etcdctl user add`, `role add`, `user grant-role root root`, `auth enable`.
    pub fn enable_with_root(&mut self) {
        self.ok(user_add("root", "pw"));
        self.ok(AuthRequest::RoleAdd {
            name: "root".into(),
        });
        self.ok(grant_role("root", "root"));
        self.ok(AuthRequest::AuthEnable);
    }
}

/// UserAdd with a bcrypt hash of `password`; hashes are cached per password (bcrypt is the
/// slowest thing these tests do, and salts do not matter to them).
pub fn user_add(name: &str, password: &str) -> AuthRequest {
    thread_local! {
        static HASHES: std::cell::RefCell<std::collections::HashMap<String, String>> =
            Default::default();
    }
    let hash = HASHES.with(|h| {
        h.borrow_mut()
            .entry(password.to_string())
            .or_insert_with(|| hash_password(password, TEST_BCRYPT_COST).unwrap())
            .clone()
    });
    AuthRequest::UserAdd {
        name: name.into(),
        password: Password::Hash(hash),
    }
}

pub fn grant_role(user: &str, role: &str) -> AuthRequest {
    AuthRequest::UserGrantRole {
        user: user.into(),
        role: role.into(),
    }
}

pub fn grant_perm(role: &str, perm_type: i32, key: &[u8], range_end: &[u8]) -> AuthRequest {
    AuthRequest::RoleGrantPermission {
        name: role.into(),
        perm: Permission {
            perm_type,
            key: key.to_vec(),
            range_end: range_end.to_vec(),
        },
    }
}

/// etcdctl's `--prefix` range end (clientv3.GetPrefixRangeEnd).
pub fn prefix_end(key: &[u8]) -> Vec<u8> {
    let mut end = key.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// A seed from `KETCH_AUTH_SEED`, or a fresh one; printed so a failure can be replayed.
pub fn seed(test: &str) -> u64 {
    let seed = std::env::var("KETCH_AUTH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("{test}: seed {seed} (replay with KETCH_AUTH_SEED={seed})");
    seed
}
