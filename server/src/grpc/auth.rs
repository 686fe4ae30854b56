//! etcd's auth on the client port: who is asking (a token from the `token` or `authorization`
//! metadata, else the verified client certificate's common name under --client-cert-auth,
//! else nobody), and the Auth service. Every auth request goes through raft with the
//! asker's identity in the entry header, so the admin checks run at apply on every member, as
//! in etcd 3.4. bcrypt (hashing new passwords, checking a login's password) runs on a small
//! pool of worker threads, never on a shard executor: at cost 10 it takes tens of
//! milliseconds of CPU, which would stall every request of the shard.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use ketch_auth::{AuthError, AuthInfo, AuthRequest, PasswordCheck};
use ketch_proto::auth_server::Auth;
use ketch_proto::ketchpb::{
    AuthenticateInternal, RaftRequest, UserAddInternal, UserChangePasswordInternal, raft_request,
    raft_response,
};
use ketch_proto::*;
use tonic::{Request, Response, Status};

use crate::errors::auth_status;
use crate::lease::auth_apply::header_of;
use crate::node::Node;
use crate::tls::ClientCertCn;

/// etcd's `rpctypes.TokenFieldNameGRPC`: the metadata key clients put their token under.
const TOKEN_KEY: &str = "token";
/// etcd's `rpctypes.TokenFieldNameSwagger`: where the JSON gateway puts the HTTP
/// `Authorization` header.
const AUTHORIZATION_KEY: &str = "authorization";
/// How long a request waits for this member to apply the entry that created its token
/// (a follower may be behind the leader that answered the login).
const TOKEN_APPLY_WAIT: Duration = Duration::from_secs(5);
const TOKEN_APPLY_POLL: Duration = Duration::from_millis(1);
/// Authenticate retries when the auth store changed between the password check and the
/// token's creation (etcd retries without bound; the password may have changed meanwhile).
const AUTHENTICATE_ATTEMPTS: usize = 5;
/// Worker threads for bcrypt, and jobs queued towards them before callers wait.
const BCRYPT_THREADS: usize = 2;
const BCRYPT_QUEUE_CAPACITY: usize = 64;

/// The credentials a request carries, taken from it before its body is consumed.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    token: Option<String>,
    common_name: Option<String>,
}

impl Credentials {
    pub fn of<T>(req: &Request<T>) -> Credentials {
        let md = req.metadata();
        let token = md
            .get(TOKEN_KEY)
            .or_else(|| md.get(AUTHORIZATION_KEY))
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let common_name = req
            .extensions()
            .get::<ClientCertCn>()
            .map(|cn| cn.0.clone());
        Credentials { token, common_name }
    }

    /// etcd's `AuthInfoFromCtx`: a token wins; without one, the certificate's common name
    /// (present only under --client-cert-auth); else no credential. A token this member does
    /// not know — also while auth is off — is `invalid auth token`.
    pub async fn resolve(&self, node: &Arc<Node>) -> Result<AuthInfo, AuthError> {
        if let Some(token) = &self.token {
            return resolve_token(node, token).await;
        }
        if let Some(cn) = &self.common_name {
            return Ok(node.raft.store().read().auth().auth_info_from_cert(cn));
        }
        Ok(AuthInfo::anonymous())
    }
}

/// The identity of a request, as a gRPC status on failure.
pub async fn who<T>(node: &Arc<Node>, req: &Request<T>) -> Result<AuthInfo, Status> {
    Credentials::of(req)
        .resolve(node)
        .await
        .map_err(|e| auth_status(&e))
}

async fn resolve_token(node: &Arc<Node>, token: &str) -> Result<AuthInfo, AuthError> {
    let index = ketch_auth::token_index(token).ok_or(AuthError::InvalidAuthToken)?;
    if !wait_applied(node, index).await {
        return Err(AuthError::InvalidAuthToken);
    }
    // A shared lock: the token table has its own (a lookup restarts the token's TTL).
    let store = node.raft.store();
    let store = store.read();
    store.auth().resolve_token(token, Instant::now())
}

/// Waits (bounded) until this member applied `index`. The polling runs in a task of the
/// shard (glommio timers are not `Send`; the handler's future must be).
async fn wait_applied(node: &Arc<Node>, index: u64) -> bool {
    if applied_index(node) >= index {
        return true;
    }
    let (tx, rx) = flume::bounded(1);
    let node = node.clone();
    glommio::spawn_local(async move {
        let deadline = Instant::now() + TOKEN_APPLY_WAIT;
        let mut applied = false;
        while !applied && Instant::now() < deadline {
            glommio::timer::sleep(TOKEN_APPLY_POLL).await;
            applied = applied_index(&node) >= index;
        }
        let _ = tx.send(applied);
    })
    .detach();
    rx.recv_async().await.unwrap_or(false)
}

/// The store knows exactly which entry it applied last, except right after a snapshot was
/// installed; raft's status covers that case.
fn applied_index(node: &Node) -> u64 {
    let stored = node.raft.store().read().applied_index();
    stored.max(node.raft.status().applied_index)
}

/// etcd's `isWatchPermitted` for one watch create (key already rewritten: empty → `\0`):
/// the refusal's `cancel_reason`, as etcd words it, or Ok. One deliberate difference: etcd
/// checks a from-key watch (range end `\0`) as a read of its start key alone, so read
/// access to `k` would let a user watch every key after it; ketch checks the whole range.
pub async fn watch_refusal(
    node: &Arc<Node>,
    creds: &Credentials,
    key: &[u8],
    range_end: &[u8],
) -> Result<(), String> {
    let checked = match creds.resolve(node).await {
        Ok(who) => {
            let store = node.raft.store();
            let store = store.read();
            store
                .auth()
                .check(&who, key, range_end, ketch_auth::Perm::Read)
        }
        Err(e) => Err(e),
    };
    let err = match checked {
        Ok(()) => return Ok(()),
        Err(
            e @ (AuthError::InvalidAuthToken | AuthError::AuthOldRevision | AuthError::UserEmpty),
        ) => e,
        Err(_) => AuthError::PermissionDenied,
    };
    Err(format!(
        "rpc error: code = {} desc = {err}",
        go_code_name(err.grpc_code())
    ))
}

/// grpc-go's name of a status code, as in its error text.
fn go_code_name(code: ketch_auth::GrpcCode) -> &'static str {
    use ketch_auth::GrpcCode as C;
    match code {
        C::InvalidArgument => "InvalidArgument",
        C::PermissionDenied => "PermissionDenied",
        C::Unauthenticated => "Unauthenticated",
        C::FailedPrecondition => "FailedPrecondition",
        _ => "Unknown",
    }
}

/// A raft entry proposed by `who`.
pub fn entry(who: &AuthInfo, request: raft_request::Request) -> RaftRequest {
    RaftRequest {
        request: Some(request),
        header: header_of(who),
        ..RaftRequest::default()
    }
}

/// Runs `f` on a bcrypt worker thread and waits for its result without blocking the shard.
async fn off_core<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    type Job = Box<dyn FnOnce() + Send>;
    static POOL: OnceLock<flume::Sender<Job>> = OnceLock::new();
    let pool = POOL.get_or_init(|| {
        let (tx, rx) = flume::bounded::<Job>(BCRYPT_QUEUE_CAPACITY);
        for i in 0..BCRYPT_THREADS {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("ketch-bcrypt-{i}"))
                .spawn(move || {
                    while let Ok(job) = rx.recv() {
                        job();
                    }
                })
                .expect("starting a bcrypt worker thread");
        }
        tx
    });
    let (tx, rx) = flume::bounded(1);
    let job: Job = Box::new(move || {
        let _ = tx.send(f());
    });
    pool.send_async(job)
        .await
        .expect("bcrypt workers live as long as the process");
    rx.recv_async()
        .await
        .expect("a bcrypt job always sends its result")
}

pub struct AuthService {
    pub node: Arc<Node>,
}

/// Unwraps the response variant an auth entry must produce and gives it the member's header.
macro_rules! answer {
    ($self:ident, $resp:expr, $variant:ident) => {
        match $resp {
            raft_response::Response::$variant(mut r) => {
                let revision = r.header.as_ref().map_or(0, |h| h.revision);
                r.header = Some($self.node.header(revision));
                Ok(Response::new(r))
            }
            other => panic!(
                "state machine answered {} with {:?}",
                stringify!($variant),
                other
            ),
        }
    };
}

impl AuthService {
    /// Proposes an auth request as the asker and returns what applying it answered.
    async fn replicate(
        &self,
        creds: Credentials,
        request: raft_request::Request,
    ) -> Result<raft_response::Response, Status> {
        let who = creds
            .resolve(&self.node)
            .await
            .map_err(|e| auth_status(&e))?;
        let resp = self.node.propose(entry(&who, request)).await?;
        resp.response
            .ok_or_else(|| Status::internal("state machine gave an auth request no answer"))
    }

    /// A grant without a permission never reaches the log: etcd 3.4.23 refuses it as it
    /// refuses any grant (admin check, then `role name not found`) and crashes applying it
    /// when the role exists; there ketch answers etcd 3.5's `permission not given`.
    async fn grant_without_permission(&self, creds: &Credentials, role: &str) -> AuthError {
        let who = match creds.resolve(&self.node).await {
            Ok(who) => who,
            Err(e) => return e,
        };
        let store = self.node.raft.store();
        let store = store.read();
        if let Err(e) = store.auth().check_admin(&who) {
            return e;
        }
        if store.auth().state().roles().contains_key(role) {
            AuthError::PermissionNotGiven
        } else {
            AuthError::RoleNotFound
        }
    }

    fn bcrypt_cost(&self) -> u32 {
        self.node.limits.bcrypt_cost
    }

    /// etcd's split login: the password is checked here (bcrypt, off the shard), then an
    /// entry without it creates the token on every member; if the auth store changed in
    /// between, check again.
    async fn login(&self, name: String, password: String) -> Result<AuthenticateResponse, Status> {
        self.node.read_barrier().await?;
        let mut last = None;
        for _ in 0..AUTHENTICATE_ATTEMPTS {
            let check: PasswordCheck = {
                let store = self.node.raft.store();
                let store = store.read();
                store.auth().password_check(&name)
            }
            .map_err(|e| auth_status(&e))?;
            let pw = password.clone();
            let checked = off_core(move || check.verify(&pw))
                .await
                .map_err(|e| auth_status(&e))?;
            let internal = AuthenticateInternal {
                name: name.clone(),
                simple_token: ketch_auth::gen_token_prefix(),
            };
            let request = raft_request::Request::Authenticate(internal);
            let resp = self
                .node
                .propose(entry(&AuthInfo::anonymous(), request))
                .await?;
            let Some(raft_response::Response::Authenticate(resp)) = resp.response else {
                return Err(Status::internal(
                    "state machine answered Authenticate wrongly",
                ));
            };
            last = Some(resp);
            if checked == self.node.raft.store().read().auth().revision() {
                break;
            }
        }
        Ok(last.expect("at least one attempt"))
    }
}

/// A handler whose request goes into the log as it came (all but Authenticate and the two
/// that hash a password): propose it as the asker, answer what applying it gave. Written
/// in the shape `async_trait` gives the other handlers, since it does not see inside macros.
macro_rules! replicated {
    ($fn:ident, $req:ty, $resp:ty, $variant:ident) => {
        fn $fn<'life0, 'async_trait>(
            &'life0 self,
            req: Request<$req>,
        ) -> std::pin::Pin<
            Box<dyn Future<Output = Result<Response<$resp>, Status>> + Send + 'async_trait>,
        >
        where
            'life0: 'async_trait,
            Self: 'async_trait,
        {
            Box::pin(async move {
                let _inflight = self.node.enter();
                let creds = Credentials::of(&req);
                let r = raft_request::Request::$variant(req.into_inner());
                answer!(self, self.replicate(creds, r).await?, $variant)
            })
        }
    };
}

#[tonic::async_trait]
impl Auth for AuthService {
    replicated!(
        auth_enable,
        AuthEnableRequest,
        AuthEnableResponse,
        AuthEnable
    );
    replicated!(
        auth_disable,
        AuthDisableRequest,
        AuthDisableResponse,
        AuthDisable
    );
    replicated!(
        user_get,
        AuthUserGetRequest,
        AuthUserGetResponse,
        AuthUserGet
    );
    replicated!(
        user_list,
        AuthUserListRequest,
        AuthUserListResponse,
        AuthUserList
    );
    replicated!(
        user_delete,
        AuthUserDeleteRequest,
        AuthUserDeleteResponse,
        AuthUserDelete
    );
    replicated!(
        user_grant_role,
        AuthUserGrantRoleRequest,
        AuthUserGrantRoleResponse,
        AuthUserGrantRole
    );
    replicated!(
        user_revoke_role,
        AuthUserRevokeRoleRequest,
        AuthUserRevokeRoleResponse,
        AuthUserRevokeRole
    );
    replicated!(
        role_add,
        AuthRoleAddRequest,
        AuthRoleAddResponse,
        AuthRoleAdd
    );
    replicated!(
        role_get,
        AuthRoleGetRequest,
        AuthRoleGetResponse,
        AuthRoleGet
    );
    replicated!(
        role_list,
        AuthRoleListRequest,
        AuthRoleListResponse,
        AuthRoleList
    );
    replicated!(
        role_delete,
        AuthRoleDeleteRequest,
        AuthRoleDeleteResponse,
        AuthRoleDelete
    );
    replicated!(
        role_revoke_permission,
        AuthRoleRevokePermissionRequest,
        AuthRoleRevokePermissionResponse,
        AuthRoleRevokePermission
    );

    async fn authenticate(
        &self,
        req: Request<AuthenticateRequest>,
    ) -> Result<Response<AuthenticateResponse>, Status> {
        let _inflight = self.node.enter();
        let req = req.into_inner();
        let mut resp = self.login(req.name, req.password).await?;
        let revision = self.node.raft.store().read().revision();
        resp.header = Some(self.node.header(revision));
        Ok(Response::new(resp))
    }

    async fn user_add(
        &self,
        req: Request<AuthUserAddRequest>,
    ) -> Result<Response<AuthUserAddResponse>, Status> {
        let _inflight = self.node.enter();
        let creds = Credentials::of(&req);
        let req = req.into_inner();
        let cost = self.bcrypt_cost();
        let hashed = off_core(move || AuthRequest::user_add(&req, cost))
            .await
            .map_err(|e| auth_status(&e))?;
        let AuthRequest::UserAdd { name, password } = hashed else {
            unreachable!("AuthRequest::user_add builds a UserAdd");
        };
        let (hashed_password, no_password) = match password {
            ketch_auth::Password::Hash(h) => (h, false),
            ketch_auth::Password::None => (String::new(), true),
        };
        let internal = UserAddInternal {
            name,
            hashed_password,
            no_password,
        };
        let r = raft_request::Request::AuthUserAdd(internal);
        answer!(self, self.replicate(creds, r).await?, AuthUserAdd)
    }

    async fn user_change_password(
        &self,
        req: Request<AuthUserChangePasswordRequest>,
    ) -> Result<Response<AuthUserChangePasswordResponse>, Status> {
        let _inflight = self.node.enter();
        let creds = Credentials::of(&req);
        let req = req.into_inner();
        let cost = self.bcrypt_cost();
        let hashed = off_core(move || AuthRequest::user_change_password(&req, cost))
            .await
            .map_err(|e| auth_status(&e))?;
        let AuthRequest::UserChangePassword {
            name,
            password_hash,
        } = hashed
        else {
            unreachable!("AuthRequest::user_change_password builds a UserChangePassword");
        };
        let internal = UserChangePasswordInternal {
            name,
            hashed_password: password_hash,
        };
        let r = raft_request::Request::AuthUserChangePassword(internal);
        answer!(
            self,
            self.replicate(creds, r).await?,
            AuthUserChangePassword
        )
    }

    async fn role_grant_permission(
        &self,
        req: Request<AuthRoleGrantPermissionRequest>,
    ) -> Result<Response<AuthRoleGrantPermissionResponse>, Status> {
        let _inflight = self.node.enter();
        let creds = Credentials::of(&req);
        let req = req.into_inner();
        if req.perm.is_none() {
            return Err(auth_status(
                &self.grant_without_permission(&creds, &req.name).await,
            ));
        }
        let r = raft_request::Request::AuthRoleGrantPermission(req);
        answer!(
            self,
            self.replicate(creds, r).await?,
            AuthRoleGrantPermission
        )
    }
}
