//! `AuthStore`: the auth state machine one member runs. Raft-committed auth entries go through
//! `apply`; the member's request path asks `view()`/`check` before serving, resolves tokens
//! with `resolve_token`, and checks passwords with `password_check` before proposing an
//! Authenticate entry (etcd's split: bcrypt runs once, on the proposer, off the apply path).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ketch_proto::etcdserverpb as pb;

use crate::AuthError;
use crate::request::{AuthRequest, AuthResponse, Password, Permission};
use crate::simple_token::{SimpleTokens, TOKEN_TTL_DEFAULT};
use crate::state::AuthState;
use crate::view::{AuthInfo, AuthView, Perm};

/// Per-member settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// `--auth-token-ttl`: how long a simple token lives after its last use.
    pub token_ttl: Duration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            token_ttl: TOKEN_TTL_DEFAULT,
        }
    }
}

/// Where and when an entry is applied: the raft index names the token an Authenticate
/// entry creates, and `now` starts its TTL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApplyContext {
    pub index: u64,
    pub now: Instant,
}

/// What the proposer needs to check a password off the applying core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordCheck {
    hash: String,
    /// The auth revision the hash was read at: if the store's revision differs once the
    /// Authenticate entry is applied, etcd checks again (the password may have changed).
    pub revision: u64,
}

impl PasswordCheck {
    /// bcrypt comparison (CPU-heavy). Ok(revision) when the password matches.
    pub fn verify(&self, password: &str) -> Result<u64, AuthError> {
        match bcrypt::verify(password, &self.hash) {
            Ok(true) => Ok(self.revision),
            _ => Err(AuthError::AuthFailed),
        }
    }
}

/// Exclusive access to the token table, which `&mut AuthStore` already guarantees.
fn unpoisoned(tokens: &mut Mutex<SimpleTokens>) -> &mut SimpleTokens {
    tokens.get_mut().unwrap_or_else(|e| e.into_inner())
}

/// The auth store of one member. The tokens sit behind their own lock: a lookup restarts a
/// token's TTL, and taking it must not need exclusive access to the whole store (the server
/// resolves a token on every request that carries one, from every core, under a shared lock).
#[derive(Debug)]
pub struct AuthStore {
    config: AuthConfig,
    state: AuthState,
    view: Arc<AuthView>,
    tokens: Mutex<SimpleTokens>,
}

impl Clone for AuthStore {
    fn clone(&self) -> Self {
        AuthStore {
            config: self.config.clone(),
            state: self.state.clone(),
            view: Arc::clone(&self.view),
            tokens: Mutex::new(self.tokens().clone()),
        }
    }
}

impl AuthStore {
    pub fn new(config: AuthConfig) -> AuthStore {
        AuthStore::from_state(config, AuthState::default())
    }

    /// A store over restored state (from a snapshot), with no tokens.
    pub fn from_state(config: AuthConfig, state: AuthState) -> AuthStore {
        let view = Arc::new(AuthView::build(&state));
        AuthStore {
            config,
            state,
            view,
            tokens: Mutex::new(SimpleTokens::default()),
        }
    }

    /// The token table. A panic while it was held leaves nothing half-done worth refusing
    /// the table for (each operation is one map update), so poisoning is ignored.
    fn tokens(&self) -> MutexGuard<'_, SimpleTokens> {
        self.tokens.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn tokens_mut(&mut self) -> &mut SimpleTokens {
        unpoisoned(&mut self.tokens)
    }

    pub fn state(&self) -> &AuthState {
        &self.state
    }

    pub fn enabled(&self) -> bool {
        self.state.enabled()
    }

    pub fn revision(&self) -> u64 {
        self.state.revision()
    }

    /// The permissions as of the last applied entry; cheap to clone and send to other cores.
    pub fn view(&self) -> Arc<AuthView> {
        Arc::clone(&self.view)
    }

    /// `view().check(..)`; see `AuthView::check`.
    pub fn check(
        &self,
        who: &AuthInfo,
        key: &[u8],
        range_end: &[u8],
        perm: Perm,
    ) -> Result<(), AuthError> {
        self.view.check(who, key, range_end, perm)
    }

    /// `view().check_admin(..)`; see `AuthView::check_admin`.
    pub fn check_admin(&self, who: &AuthInfo) -> Result<(), AuthError> {
        self.view.check_admin(who)
    }

    /// Replaces the replicated state (a raft snapshot was installed). Tokens survive, as in
    /// etcd's `Recover`, unless the restored state has auth off.
    pub fn restore(&mut self, state: AuthState) {
        if !state.enabled() {
            self.tokens_mut().clear();
        }
        self.view = Arc::new(AuthView::build(&state));
        self.state = state;
    }

    /// The identity a token stands for (etcd's `AuthInfoFromCtx`): the token's user at the
    /// current auth revision; using it restarts its TTL. Any unknown, expired or malformed
    /// token — also one sent while auth is off — is "invalid auth token". The caller must
    /// first wait until this member applied `simple_token::token_index(token)`.
    pub fn resolve_token(&self, token: &str, now: Instant) -> Result<AuthInfo, AuthError> {
        let mut tokens = self.tokens();
        let user = tokens
            .lookup(token, now, self.config.token_ttl)
            .ok_or(AuthError::InvalidAuthToken)?;
        Ok(AuthInfo {
            user: user.to_string(),
            revision: self.state.revision(),
        })
    }

    /// The identity of a TLS client whose verified certificate has this common name
    /// (etcd's `AuthInfoFromTLS`, used only when no token was sent and
    /// `--client-cert-auth` is on). The user need not exist: checks then deny.
    pub fn auth_info_from_cert(&self, common_name: &str) -> AuthInfo {
        AuthInfo {
            user: common_name.to_string(),
            revision: self.state.revision(),
        }
    }

    /// First half of Authenticate, on the proposer (etcd's `CheckPassword` without the
    /// bcrypt call): auth must be on, the user must exist and have a password.
    pub fn password_check(&self, name: &str) -> Result<PasswordCheck, AuthError> {
        if !self.state.enabled() {
            return Err(AuthError::AuthNotEnabled);
        }
        let user = self.state.users().get(name).ok_or(AuthError::AuthFailed)?;
        match &user.password {
            Password::None => Err(AuthError::NoPasswordUser),
            Password::Hash(hash) => Ok(PasswordCheck {
                hash: hash.clone(),
                revision: self.state.revision(),
            }),
        }
    }

    /// `password_check` and `verify` in one call, for callers that may block on bcrypt.
    pub fn check_password(&self, name: &str, password: &str) -> Result<u64, AuthError> {
        self.password_check(name)?.verify(password)
    }

    /// Drops tokens unused for the TTL; call about once a second.
    pub fn expire_tokens(&self, now: Instant) {
        self.tokens().expire(now);
    }

    pub fn token_count(&self) -> usize {
        self.tokens().len()
    }

    /// Applies one committed auth entry, proposed by `who` (the user and auth revision from
    /// the entry's header), as etcd's `authApplierV3` then `authStore` do: the admin check
    /// first, then the request's own rules. A failed request changes nothing.
    pub fn apply(
        &mut self,
        req: &AuthRequest,
        who: &AuthInfo,
        ctx: &ApplyContext,
    ) -> Result<AuthResponse, AuthError> {
        if req.needs_admin() {
            self.view.check_admin(who)?;
        }
        let resp = match req {
            AuthRequest::UserGet { name } => return self.user_get(name, who),
            AuthRequest::RoleGet { role } => return self.role_get(role, who),
            AuthRequest::UserList => return Ok(self.user_list()),
            AuthRequest::RoleList => return Ok(self.role_list()),
            AuthRequest::Authenticate { name, token_prefix } => {
                return self.authenticate(name, token_prefix, ctx);
            }
            AuthRequest::AuthEnable => self.auth_enable()?,
            AuthRequest::AuthDisable => self.auth_disable(),
            other => self.apply_change(other)?,
        };
        self.view = Arc::new(AuthView::build(&self.state));
        Ok(resp)
    }

    fn auth_enable(&mut self) -> Result<AuthResponse, AuthError> {
        self.state.auth_enable()?;
        Ok(AuthResponse::AuthEnable(pb::AuthEnableResponse::default()))
    }

    fn auth_disable(&mut self) -> AuthResponse {
        if self.state.auth_disable() {
            self.tokens_mut().clear();
        }
        AuthResponse::AuthDisable(pb::AuthDisableResponse::default())
    }

    /// The user and role changes: each validated and applied by `AuthState`.
    fn apply_change(&mut self, req: &AuthRequest) -> Result<AuthResponse, AuthError> {
        let s = &mut self.state;
        Ok(match req {
            AuthRequest::UserAdd { name, password } => {
                s.user_add(name, password)?;
                AuthResponse::UserAdd(Default::default())
            }
            AuthRequest::UserDelete { name } => {
                s.user_delete(name)?;
                unpoisoned(&mut self.tokens).invalidate_user(name);
                AuthResponse::UserDelete(Default::default())
            }
            AuthRequest::UserChangePassword {
                name,
                password_hash,
            } => {
                s.user_change_password(name, password_hash)?;
                unpoisoned(&mut self.tokens).invalidate_user(name);
                AuthResponse::UserChangePassword(Default::default())
            }
            AuthRequest::UserGrantRole { user, role } => {
                s.user_grant_role(user, role)?;
                AuthResponse::UserGrantRole(Default::default())
            }
            AuthRequest::UserRevokeRole { name, role } => {
                s.user_revoke_role(name, role)?;
                AuthResponse::UserRevokeRole(Default::default())
            }
            AuthRequest::RoleAdd { name } => {
                s.role_add(name)?;
                AuthResponse::RoleAdd(Default::default())
            }
            AuthRequest::RoleDelete { role } => {
                s.role_delete(role)?;
                AuthResponse::RoleDelete(Default::default())
            }
            AuthRequest::RoleGrantPermission { name, perm } => {
                s.role_grant_permission(name, perm)?;
                AuthResponse::RoleGrantPermission(Default::default())
            }
            AuthRequest::RoleRevokePermission {
                role,
                key,
                range_end,
            } => {
                s.role_revoke_permission(role, key, range_end)?;
                AuthResponse::RoleRevokePermission(Default::default())
            }
            AuthRequest::AuthEnable
            | AuthRequest::AuthDisable
            | AuthRequest::Authenticate { .. }
            | AuthRequest::UserGet { .. }
            | AuthRequest::UserList
            | AuthRequest::RoleGet { .. }
            | AuthRequest::RoleList => unreachable!("apply dispatches {req:?} itself"),
        })
    }

    /// Second half of Authenticate, in raft order on every member: the token is
    /// `<prefix>.<raft index>`, so every member assigns the same one.
    fn authenticate(
        &mut self,
        name: &str,
        prefix: &str,
        ctx: &ApplyContext,
    ) -> Result<AuthResponse, AuthError> {
        if !self.state.enabled() {
            return Err(AuthError::AuthNotEnabled);
        }
        let user = self.state.users().get(name).ok_or(AuthError::AuthFailed)?;
        if user.password == Password::None {
            return Err(AuthError::AuthFailed);
        }
        let token = format!("{prefix}.{}", ctx.index);
        let deadline = ctx.now + self.config.token_ttl;
        self.tokens_mut().assign(token.clone(), name, deadline);
        Ok(AuthResponse::Authenticate(pb::AuthenticateResponse {
            header: None,
            token,
        }))
    }

    /// Admins may read any user; anyone may read themselves.
    fn user_get(&self, name: &str, who: &AuthInfo) -> Result<AuthResponse, AuthError> {
        if let Err(e) = self.view.check_admin(who)
            && name != who.user
        {
            return Err(e);
        }
        let user = self
            .state
            .users()
            .get(name)
            .ok_or(AuthError::UserNotFound)?;
        Ok(AuthResponse::UserGet(pb::AuthUserGetResponse {
            header: None,
            roles: user.roles.clone(),
        }))
    }

    /// Admins may read any role; anyone may read a role they hold.
    fn role_get(&self, role: &str, who: &AuthInfo) -> Result<AuthResponse, AuthError> {
        if let Err(e) = self.view.check_admin(who)
            && !self.state.has_role(&who.user, role)
        {
            return Err(e);
        }
        let role = self
            .state
            .roles()
            .get(role)
            .ok_or(AuthError::RoleNotFound)?;
        Ok(AuthResponse::RoleGet(pb::AuthRoleGetResponse {
            header: None,
            perm: role.perms.iter().map(Permission::to_proto).collect(),
        }))
    }

    fn user_list(&self) -> AuthResponse {
        AuthResponse::UserList(pb::AuthUserListResponse {
            header: None,
            users: self.state.users().keys().cloned().collect(),
        })
    }

    fn role_list(&self) -> AuthResponse {
        AuthResponse::RoleList(pb::AuthRoleListResponse {
            header: None,
            roles: self.state.roles().keys().cloned().collect(),
        })
    }
}
