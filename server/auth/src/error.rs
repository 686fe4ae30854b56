//! The auth store's one error type: every etcd 3.4 auth error with the message and gRPC code
//! etcd's `rpctypes` send for it (checked against etcd 3.4.23 and etcdctl; see docs/auth.md).

pub use ketch_mvcc::GrpcCode;

/// An auth error. `Display` is the exact message etcd 3.4 puts in its gRPC status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("etcdserver: root user does not exist")]
    RootUserNotExist,
    #[error("etcdserver: root user does not have root role")]
    RootRoleNotExist,
    #[error("etcdserver: user name already exists")]
    UserAlreadyExist,
    /// An empty user name in UserAdd, and also what a request without any credential gets
    /// once auth is enabled (etcd reuses the error there).
    #[error("etcdserver: user name is empty")]
    UserEmpty,
    #[error("etcdserver: user name not found")]
    UserNotFound,
    #[error("etcdserver: role name already exists")]
    RoleAlreadyExist,
    #[error("etcdserver: role name not found")]
    RoleNotFound,
    #[error("etcdserver: role name is empty")]
    RoleEmpty,
    #[error("etcdserver: authentication failed, invalid user ID or password")]
    AuthFailed,
    /// etcd 3.4 has no rpctypes entry for this one, so it reaches clients as code Unknown with
    /// the store's own `auth:` message (observed with etcdctl against 3.4.23).
    #[error("auth: authentication failed, password was given for no password user")]
    NoPasswordUser,
    #[error("etcdserver: permission denied")]
    PermissionDenied,
    #[error("etcdserver: role is not granted to the user")]
    RoleNotGranted,
    #[error("etcdserver: permission is not granted to the role")]
    PermissionNotGranted,
    #[error("etcdserver: authentication is not enabled")]
    AuthNotEnabled,
    #[error("etcdserver: invalid auth token")]
    InvalidAuthToken,
    /// Deleting the root user or role, or revoking root from root, while auth is enabled.
    #[error("etcdserver: invalid auth management")]
    InvalidAuthMgmt,
    /// A write proposed under an auth revision older than the store's at apply time.
    #[error("etcdserver: revision of auth store is old")]
    AuthOldRevision,
    /// RoleGrantPermission without a permission. etcd 3.4.23 dereferences nil in its applier
    /// and crashes (observed); ketch refuses it before proposing with etcd 3.5's error.
    #[error("etcdserver: permission not given")]
    PermissionNotGiven,
    /// bcrypt refused to hash (cost out of range). Not an etcd message.
    #[error("ketch: auth: password hashing failed: {0}")]
    PasswordHash(String),
    /// An auth snapshot could not be read: bad magic, version, checksum, or body.
    #[error("ketch: auth snapshot: {0}")]
    Snapshot(String),
}

impl AuthError {
    /// The gRPC code etcd 3.4's `rpctypes` attach to this error.
    pub fn grpc_code(&self) -> GrpcCode {
        match self {
            AuthError::RootUserNotExist
            | AuthError::RootRoleNotExist
            | AuthError::UserAlreadyExist
            | AuthError::UserNotFound
            | AuthError::RoleAlreadyExist
            | AuthError::RoleNotFound
            | AuthError::RoleNotGranted
            | AuthError::PermissionNotGranted
            | AuthError::AuthNotEnabled => GrpcCode::FailedPrecondition,
            AuthError::UserEmpty
            | AuthError::RoleEmpty
            | AuthError::AuthFailed
            | AuthError::InvalidAuthMgmt
            | AuthError::AuthOldRevision
            | AuthError::PermissionNotGiven => GrpcCode::InvalidArgument,
            AuthError::NoPasswordUser => GrpcCode::Unknown,
            AuthError::PermissionDenied => GrpcCode::PermissionDenied,
            AuthError::InvalidAuthToken => GrpcCode::Unauthenticated,
            AuthError::PasswordHash(_) => GrpcCode::Internal,
            AuthError::Snapshot(_) => GrpcCode::DataLoss,
        }
    }

    /// The text of etcd's `auth` package error, without rpctypes' translation. etcd's
    /// maintenance service (Hash, HashKV, Defragment, Snapshot, MoveLeader) returns its admin
    /// check's errors untranslated, so clients get gRPC code Unknown with this text (observed
    /// on 3.4.23: `auth: user name is empty`, `auth: permission denied`, `auth: invalid auth
    /// token`). ketch's own errors keep their `Display` text.
    pub fn unmapped_message(&self) -> String {
        let text = match self {
            AuthError::RootUserNotExist => "auth: root user does not exist",
            AuthError::RootRoleNotExist => "auth: root user does not have root role",
            AuthError::UserAlreadyExist => "auth: user already exists",
            AuthError::UserEmpty => "auth: user name is empty",
            AuthError::UserNotFound => "auth: user not found",
            AuthError::RoleAlreadyExist => "auth: role already exists",
            AuthError::RoleNotFound => "auth: role not found",
            AuthError::RoleEmpty => "auth: role name is empty",
            AuthError::AuthFailed => "auth: authentication failed, invalid user ID or password",
            AuthError::PermissionDenied => "auth: permission denied",
            AuthError::RoleNotGranted => "auth: role is not granted to the user",
            AuthError::PermissionNotGranted => "auth: permission is not granted to the role",
            AuthError::AuthNotEnabled => "auth: authentication is not enabled",
            AuthError::InvalidAuthToken => "auth: invalid auth token",
            AuthError::InvalidAuthMgmt => "auth: invalid auth management",
            AuthError::AuthOldRevision => "auth: revision in header is old",
            AuthError::PermissionNotGiven => "auth: permission not given",
            AuthError::NoPasswordUser | AuthError::PasswordHash(_) | AuthError::Snapshot(_) => {
                return self.to_string();
            }
        };
        text.to_string()
    }
}
