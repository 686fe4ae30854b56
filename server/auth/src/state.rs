//! The replicated auth state — users, roles, the enabled flag and the auth revision — and the
//! rules of each change, as etcd 3.4.23's `auth/store.go` applies them. Everything here is in
//! raft snapshots; tokens are not (see `simple_token`).

use std::collections::BTreeMap;

use crate::AuthError;
use crate::go_sort::go_sort;
use crate::request::{Password, Permission};

pub const ROOT_USER: &str = "root";
pub const ROOT_ROLE: &str = "root";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub password: Password,
    /// Sorted and unique (etcd keeps them sorted to binary-search the root role).
    pub roles: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    pub name: String,
    /// In etcd's order: sorted by key with Go 1.19's `sort.Sort`, which keeps same-key
    /// permissions in grant order up to 12 entries and reorders them above.
    pub perms: Vec<Permission>,
}

/// Users and roles are keyed by name in byte order, which is the order etcd's bolt buckets
/// list them in (UserList, RoleList).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthState {
    pub(crate) enabled: bool,
    pub(crate) revision: u64,
    pub(crate) users: BTreeMap<String, User>,
    pub(crate) roles: BTreeMap<String, Role>,
}

impl Default for AuthState {
    /// A fresh store is at auth revision 1: etcd's `NewAuthStore` commits one revision when it
    /// finds none.
    fn default() -> Self {
        AuthState {
            enabled: false,
            revision: 1,
            users: BTreeMap::new(),
            roles: BTreeMap::new(),
        }
    }
}

impl AuthState {
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// etcd's auth revision: bumped by every change of users, roles or permissions and by
    /// AuthDisable — not by AuthEnable, not by a no-op grant, not by reads or Authenticate.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    pub fn users(&self) -> &BTreeMap<String, User> {
        &self.users
    }

    pub fn roles(&self) -> &BTreeMap<String, Role> {
        &self.roles
    }

    fn commit_revision(&mut self) {
        self.revision += 1;
    }

    fn user_mut(&mut self, name: &str) -> Result<&mut User, AuthError> {
        self.users.get_mut(name).ok_or(AuthError::UserNotFound)
    }

    fn role_mut(&mut self, name: &str) -> Result<&mut Role, AuthError> {
        self.roles.get_mut(name).ok_or(AuthError::RoleNotFound)
    }

    /// Whether the user holds the root role (the role itself need not exist: etcd lets
    /// `root` be granted without a `root` role and checks only the user's role list).
    pub fn has_root_role(&self, user: &str) -> bool {
        self.users.get(user).is_some_and(|u| {
            u.roles
                .binary_search_by(|r| r.as_str().cmp(ROOT_ROLE))
                .is_ok()
        })
    }

    pub fn has_role(&self, user: &str, role: &str) -> bool {
        self.users
            .get(user)
            .is_some_and(|u| u.roles.iter().any(|r| r == role))
    }

    /// Returns whether auth was off and is now on.
    pub fn auth_enable(&mut self) -> Result<bool, AuthError> {
        if self.enabled {
            return Ok(false);
        }
        if !self.users.contains_key(ROOT_USER) {
            return Err(AuthError::RootUserNotExist);
        }
        if !self.has_root_role(ROOT_USER) {
            return Err(AuthError::RootRoleNotExist);
        }
        self.enabled = true;
        Ok(true)
    }

    /// Returns whether auth was on and is now off.
    pub fn auth_disable(&mut self) -> bool {
        if !self.enabled {
            return false;
        }
        self.enabled = false;
        self.commit_revision();
        true
    }

    pub fn user_add(&mut self, name: &str, password: &Password) -> Result<(), AuthError> {
        if name.is_empty() {
            return Err(AuthError::UserEmpty);
        }
        if self.users.contains_key(name) {
            return Err(AuthError::UserAlreadyExist);
        }
        let user = User {
            name: name.to_string(),
            password: password.clone(),
            roles: Vec::new(),
        };
        self.users.insert(name.to_string(), user);
        self.commit_revision();
        Ok(())
    }

    pub fn user_delete(&mut self, name: &str) -> Result<(), AuthError> {
        if self.enabled && name == ROOT_USER {
            return Err(AuthError::InvalidAuthMgmt);
        }
        self.users.remove(name).ok_or(AuthError::UserNotFound)?;
        self.commit_revision();
        Ok(())
    }

    /// The new hash replaces the old one; the no-password option stays as it was (etcd keeps
    /// the user's options, so a no-password user still cannot log in with it).
    pub fn user_change_password(&mut self, name: &str, hash: &str) -> Result<(), AuthError> {
        let user = self.user_mut(name)?;
        if user.password != Password::None {
            user.password = Password::Hash(hash.to_string());
        }
        self.commit_revision();
        Ok(())
    }

    pub fn user_grant_role(&mut self, name: &str, role: &str) -> Result<(), AuthError> {
        if !self.users.contains_key(name) {
            return Err(AuthError::UserNotFound);
        }
        if role != ROOT_ROLE && !self.roles.contains_key(role) {
            return Err(AuthError::RoleNotFound);
        }
        let user = self.user_mut(name)?;
        let Err(at) = user.roles.binary_search_by(|r| r.as_str().cmp(role)) else {
            return Ok(()); // already granted: etcd answers OK and changes nothing
        };
        user.roles.insert(at, role.to_string());
        self.commit_revision();
        Ok(())
    }

    pub fn user_revoke_role(&mut self, name: &str, role: &str) -> Result<(), AuthError> {
        if self.enabled && name == ROOT_USER && role == ROOT_ROLE {
            return Err(AuthError::InvalidAuthMgmt);
        }
        let user = self.user_mut(name)?;
        let before = user.roles.len();
        user.roles.retain(|r| r != role);
        if user.roles.len() == before {
            return Err(AuthError::RoleNotGranted);
        }
        self.commit_revision();
        Ok(())
    }

    pub fn role_add(&mut self, name: &str) -> Result<(), AuthError> {
        if name.is_empty() {
            return Err(AuthError::RoleEmpty);
        }
        if self.roles.contains_key(name) {
            return Err(AuthError::RoleAlreadyExist);
        }
        let role = Role {
            name: name.to_string(),
            perms: Vec::new(),
        };
        self.roles.insert(name.to_string(), role);
        self.commit_revision();
        Ok(())
    }

    /// Deletes the role and takes it away from every user that holds it.
    pub fn role_delete(&mut self, name: &str) -> Result<(), AuthError> {
        if self.enabled && name == ROOT_ROLE {
            return Err(AuthError::InvalidAuthMgmt);
        }
        self.roles.remove(name).ok_or(AuthError::RoleNotFound)?;
        for user in self.users.values_mut() {
            user.roles.retain(|r| r != name);
        }
        self.commit_revision();
        Ok(())
    }

    /// etcd's update-or-append: only the first permission whose key is >= the new key is
    /// compared; if it has the same key and range end its type is replaced, otherwise the
    /// permission is appended and the list re-sorted by key as Go does. So granting READ then
    /// WRITE on [a, c) while [a, z) exists leaves two [a, c) entries (observed on etcd 3.4.23).
    pub fn role_grant_permission(
        &mut self,
        name: &str,
        perm: &Permission,
    ) -> Result<(), AuthError> {
        let role = self.role_mut(name)?;
        let at = role.perms.partition_point(|p| p.key < perm.key);
        match role.perms.get_mut(at) {
            Some(p) if p.key == perm.key && p.range_end == perm.range_end => {
                p.perm_type = perm.perm_type;
            }
            _ => {
                role.perms.push(perm.clone());
                go_sort(&mut role.perms, |a, b| a.key < b.key);
            }
        }
        self.commit_revision();
        Ok(())
    }

    /// Removes every permission of the role with exactly this key and range end.
    pub fn role_revoke_permission(
        &mut self,
        name: &str,
        key: &[u8],
        range_end: &[u8],
    ) -> Result<(), AuthError> {
        let role = self.role_mut(name)?;
        let before = role.perms.len();
        role.perms
            .retain(|p| p.key != key || p.range_end != range_end);
        if role.perms.len() == before {
            return Err(AuthError::PermissionNotGranted);
        }
        self.commit_revision();
        Ok(())
    }
}
