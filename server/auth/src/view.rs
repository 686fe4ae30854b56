//! The read side of the auth store: whether auth is on, its revision, and each user's key
//! ranges per access type (etcd's `rangePermCache`, rebuilt from scratch after every change as
//! `refreshRangePermCache` does). Immutable once built, so the server can hand an `Arc` of it
//! to every shard and check reads and writes where they arrive.

use std::collections::HashMap;

use crate::AuthError;
use crate::interval_tree::IntervalTree;
use crate::range_perm::{Bound, RangeSet, interval_of, range_edges};
use crate::request::{PERM_READ, PERM_READWRITE, PERM_WRITE};
use crate::state::{AuthState, ROOT_ROLE};

/// The access a request needs on a key range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Perm {
    Read,
    Write,
}

/// Who sends a request, as etcd's `AuthInfo`: the user named by a token or a client
/// certificate, and the auth revision at which that was established. Revision 0 means no
/// credential at all.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct AuthInfo {
    pub user: String,
    pub revision: u64,
}

impl AuthInfo {
    /// A request that carried no token and no client certificate.
    pub fn anonymous() -> AuthInfo {
        AuthInfo::default()
    }
}

/// One access type's ranges, as etcd keeps them: its interval tree (built in etcd's insertion
/// order, so it has etcd's shape) decides ranges — its `visit` pruning misjudges ranges when
/// inverted intervals are around, and ketch misjudges them the same way. Single keys go to
/// the merged segments, which answer exactly as etcd's `Intersects` (no pruning there) with
/// one binary search.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Ranges {
    merged: RangeSet,
    tree: IntervalTree,
}

impl Ranges {
    fn build(intervals: Vec<(Bound, Bound)>) -> Ranges {
        let mut tree = IntervalTree::default();
        for (begin, end) in &intervals {
            tree.insert(begin.clone(), end.clone());
        }
        Ranges {
            merged: RangeSet::from_intervals(intervals),
            tree,
        }
    }

    fn covers(&self, key: &[u8], range_end: &[u8]) -> bool {
        if range_end.is_empty() {
            return self.merged.covers(key, range_end);
        }
        let (begin, end) = range_edges(key, range_end);
        self.tree.contains(begin, end)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct UserPerms {
    root: bool,
    read: Ranges,
    write: Ranges,
}

/// A consistent picture of the permissions at one auth revision.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthView {
    enabled: bool,
    revision: u64,
    users: HashMap<String, UserPerms>,
}

impl AuthView {
    pub fn build(state: &AuthState) -> AuthView {
        let users = state
            .users()
            .values()
            .map(|u| (u.name.clone(), user_perms(state, &u.roles)))
            .collect();
        AuthView {
            enabled: state.enabled(),
            revision: state.revision(),
            users,
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// etcd's `isOpPermitted`: may `who` read or write `[key, range_end)` (etcd's range
    /// conventions: empty `range_end` is the single key, `"\0"` is every key from `key` on)?
    /// Auth off: yes. No credential: "user name is empty". A credential from an older auth
    /// revision: "revision of auth store is old". An unknown user or an uncovered range:
    /// "permission denied". A user with the root role may do anything.
    pub fn check(
        &self,
        who: &AuthInfo,
        key: &[u8],
        range_end: &[u8],
        perm: Perm,
    ) -> Result<(), AuthError> {
        if !self.enabled {
            return Ok(());
        }
        if who.revision == 0 {
            return Err(AuthError::UserEmpty);
        }
        if who.revision < self.revision {
            return Err(AuthError::AuthOldRevision);
        }
        let user = self
            .users
            .get(&who.user)
            .ok_or(AuthError::PermissionDenied)?;
        let ranges = match perm {
            Perm::Read => &user.read,
            Perm::Write => &user.write,
        };
        if user.root || ranges.covers(key, range_end) {
            Ok(())
        } else {
            Err(AuthError::PermissionDenied)
        }
    }

    /// etcd's `IsAdminPermitted`: requests that need the root role (auth management,
    /// member/maintenance calls). No revision check, as in etcd.
    pub fn check_admin(&self, who: &AuthInfo) -> Result<(), AuthError> {
        if !self.enabled {
            return Ok(());
        }
        if who.user.is_empty() {
            return Err(AuthError::UserEmpty);
        }
        match self.users.get(&who.user) {
            None => Err(AuthError::UserNotFound),
            Some(u) if u.root => Ok(()),
            Some(_) => Err(AuthError::PermissionDenied),
        }
    }
}

/// etcd's `getMergedPerms`: every permission of every role of the user (roles in sorted order,
/// permissions in stored order — the order fixes the tree's shape), READWRITE into both.
fn user_perms(state: &AuthState, roles: &[String]) -> UserPerms {
    let mut read = Vec::new();
    let mut write = Vec::new();
    let perms = roles
        .iter()
        .filter_map(|r| state.roles().get(r))
        .flat_map(|r| &r.perms);
    for p in perms {
        let interval = interval_of(&p.key, &p.range_end);
        match p.perm_type {
            PERM_READ => read.push(interval),
            PERM_WRITE => write.push(interval),
            PERM_READWRITE => {
                read.push(interval.clone());
                write.push(interval);
            }
            _ => {}
        }
    }
    UserPerms {
        root: roles.iter().any(|r| r == ROOT_ROLE),
        read: Ranges::build(read),
        write: Ranges::build(write),
    }
}
