//! What one committed auth raft entry asks for, and what applying it answers.
//!
//! The requests mirror etcd 3.4's `InternalRaftRequest` auth fields, with one change that
//! etcd 3.5 also made: passwords are bcrypt-hashed by the member that proposes, so a raft
//! entry never carries a plaintext password and bcrypt never runs on the apply path. Likewise
//! Authenticate carries only the user name and the token prefix, after the proposer checked
//! the password (etcd's `InternalAuthenticateRequest`).

use ketch_proto::authpb;
use ketch_proto::etcdserverpb as pb;

use crate::AuthError;

/// A user's password as it goes through raft and into the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Password {
    /// `--no-password` (etcd's `UserAddOptions.no_password`): the user can never
    /// authenticate with a password, only through a client certificate's common name.
    None,
    /// A bcrypt hash (`$2b$...`).
    Hash(String),
}

/// One key-range permission of a role, as etcd stores it (`authpb.Permission`). `perm_type`
/// stays the raw enum number, as etcd keeps it: 0 READ, 1 WRITE, 2 READWRITE; any other number
/// is stored and listed but grants nothing.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Permission {
    pub perm_type: i32,
    pub key: Vec<u8>,
    pub range_end: Vec<u8>,
}

pub const PERM_READ: i32 = authpb::permission::Type::Read as i32;
pub const PERM_WRITE: i32 = authpb::permission::Type::Write as i32;
pub const PERM_READWRITE: i32 = authpb::permission::Type::Readwrite as i32;

impl Permission {
    pub fn to_proto(&self) -> authpb::Permission {
        authpb::Permission {
            perm_type: self.perm_type,
            key: self.key.clone().into(),
            range_end: self.range_end.clone().into(),
        }
    }

    pub fn from_proto(p: &authpb::Permission) -> Permission {
        Permission {
            perm_type: p.perm_type,
            key: p.key.to_vec(),
            range_end: p.range_end.to_vec(),
        }
    }
}

/// One auth command, applied by `AuthStore::apply` in raft order on every member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthRequest {
    AuthEnable,
    AuthDisable,
    /// The password was checked by the proposer (`AuthStore::password_check`); applying
    /// assigns the token `<token_prefix>.<raft index>`.
    Authenticate {
        name: String,
        token_prefix: String,
    },
    UserAdd {
        name: String,
        password: Password,
    },
    UserDelete {
        name: String,
    },
    UserChangePassword {
        name: String,
        password_hash: String,
    },
    UserGrantRole {
        user: String,
        role: String,
    },
    UserRevokeRole {
        name: String,
        role: String,
    },
    UserGet {
        name: String,
    },
    UserList,
    RoleAdd {
        name: String,
    },
    RoleDelete {
        role: String,
    },
    RoleGet {
        role: String,
    },
    RoleList,
    RoleGrantPermission {
        name: String,
        perm: Permission,
    },
    RoleRevokePermission {
        role: String,
        key: Vec<u8>,
        range_end: Vec<u8>,
    },
}

impl AuthRequest {
    /// etcd's `needAdminPermission`: requests only a root-role user may make once auth is
    /// enabled. UserGet and RoleGet have their own rule (self / own role) and Authenticate
    /// needs no credential.
    pub fn needs_admin(&self) -> bool {
        !matches!(
            self,
            AuthRequest::Authenticate { .. }
                | AuthRequest::UserGet { .. }
                | AuthRequest::RoleGet { .. }
        )
    }

    /// Whether applying it may change the store (everything but the four reads, which etcd 3.4
    /// also sends through raft).
    pub fn is_read(&self) -> bool {
        matches!(
            self,
            AuthRequest::UserGet { .. }
                | AuthRequest::UserList
                | AuthRequest::RoleGet { .. }
                | AuthRequest::RoleList
        )
    }

    /// UserAdd from the gRPC request, hashing the password here on the proposing member
    /// (CPU-heavy: run it off the core that applies).
    pub fn user_add(req: &pb::AuthUserAddRequest, bcrypt_cost: u32) -> Result<Self, AuthError> {
        let no_password = req.options.as_ref().is_some_and(|o| o.no_password);
        let password = if no_password {
            Password::None
        } else {
            Password::Hash(hash_password(&req.password, bcrypt_cost)?)
        };
        Ok(AuthRequest::UserAdd {
            name: req.name.clone(),
            password,
        })
    }

    /// UserChangePassword from the gRPC request, hashing the password (CPU-heavy).
    pub fn user_change_password(
        req: &pb::AuthUserChangePasswordRequest,
        bcrypt_cost: u32,
    ) -> Result<Self, AuthError> {
        Ok(AuthRequest::UserChangePassword {
            name: req.name.clone(),
            password_hash: hash_password(&req.password, bcrypt_cost)?,
        })
    }

    /// RoleGrantPermission from the gRPC request. A request without a permission crashes
    /// etcd 3.4.23's applier; it is refused here, before it can reach the log.
    pub fn role_grant_permission(
        req: &pb::AuthRoleGrantPermissionRequest,
    ) -> Result<Self, AuthError> {
        let perm = req.perm.as_ref().ok_or(AuthError::PermissionNotGiven)?;
        Ok(AuthRequest::RoleGrantPermission {
            name: req.name.clone(),
            perm: Permission::from_proto(perm),
        })
    }
}

impl From<&pb::AuthUserDeleteRequest> for AuthRequest {
    fn from(r: &pb::AuthUserDeleteRequest) -> Self {
        AuthRequest::UserDelete {
            name: r.name.clone(),
        }
    }
}

impl From<&pb::AuthUserGrantRoleRequest> for AuthRequest {
    fn from(r: &pb::AuthUserGrantRoleRequest) -> Self {
        AuthRequest::UserGrantRole {
            user: r.user.clone(),
            role: r.role.clone(),
        }
    }
}

impl From<&pb::AuthUserRevokeRoleRequest> for AuthRequest {
    fn from(r: &pb::AuthUserRevokeRoleRequest) -> Self {
        AuthRequest::UserRevokeRole {
            name: r.name.clone(),
            role: r.role.clone(),
        }
    }
}

impl From<&pb::AuthUserGetRequest> for AuthRequest {
    fn from(r: &pb::AuthUserGetRequest) -> Self {
        AuthRequest::UserGet {
            name: r.name.clone(),
        }
    }
}

impl From<&pb::AuthRoleAddRequest> for AuthRequest {
    fn from(r: &pb::AuthRoleAddRequest) -> Self {
        AuthRequest::RoleAdd {
            name: r.name.clone(),
        }
    }
}

impl From<&pb::AuthRoleDeleteRequest> for AuthRequest {
    fn from(r: &pb::AuthRoleDeleteRequest) -> Self {
        AuthRequest::RoleDelete {
            role: r.role.clone(),
        }
    }
}

impl From<&pb::AuthRoleGetRequest> for AuthRequest {
    fn from(r: &pb::AuthRoleGetRequest) -> Self {
        AuthRequest::RoleGet {
            role: r.role.clone(),
        }
    }
}

impl From<&pb::AuthRoleRevokePermissionRequest> for AuthRequest {
    fn from(r: &pb::AuthRoleRevokePermissionRequest) -> Self {
        AuthRequest::RoleRevokePermission {
            role: r.role.clone(),
            key: r.key.to_vec(),
            range_end: r.range_end.to_vec(),
        }
    }
}

/// etcd's `--bcrypt-cost` default (Go's `bcrypt.DefaultCost`; the Rust crate's default is 12).
pub const BCRYPT_COST_DEFAULT: u32 = 10;

/// bcrypt-hashes a password at `cost` (4..=31). CPU-heavy: about 50-100 ms at cost 10.
pub fn hash_password(password: &str, cost: u32) -> Result<String, AuthError> {
    bcrypt::hash(password, cost).map_err(|e| AuthError::PasswordHash(e.to_string()))
}

/// The answer to one applied auth request: etcd's response message, header left empty for the
/// server to fill (cluster, member, revision, term).
#[derive(Debug, Clone, PartialEq)]
pub enum AuthResponse {
    AuthEnable(pb::AuthEnableResponse),
    AuthDisable(pb::AuthDisableResponse),
    Authenticate(pb::AuthenticateResponse),
    UserAdd(pb::AuthUserAddResponse),
    UserDelete(pb::AuthUserDeleteResponse),
    UserChangePassword(pb::AuthUserChangePasswordResponse),
    UserGrantRole(pb::AuthUserGrantRoleResponse),
    UserRevokeRole(pb::AuthUserRevokeRoleResponse),
    UserGet(pb::AuthUserGetResponse),
    UserList(pb::AuthUserListResponse),
    RoleAdd(pb::AuthRoleAddResponse),
    RoleDelete(pb::AuthRoleDeleteResponse),
    RoleGet(pb::AuthRoleGetResponse),
    RoleList(pb::AuthRoleListResponse),
    RoleGrantPermission(pb::AuthRoleGrantPermissionResponse),
    RoleRevokePermission(pb::AuthRoleRevokePermissionResponse),
}
