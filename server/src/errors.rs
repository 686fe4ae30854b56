//! The one place where ketch's internal errors become etcd's gRPC statuses: the same code and
//! `etcdserver: ...` message etcd 3.4 sends, so etcdctl and clients print what they print
//! against etcd.

use ketch_auth::AuthError;
use ketch_mvcc::{GrpcCode, MvccError};
use ketch_raft::{MemberChangeError, ProposeError};

use crate::lease::LeaseError;
use crate::lease::state::StoreError;
use tonic::{Code, Status};

/// etcd's messages for conditions raised outside the MVCC store.
pub const NO_LEADER: &str = "etcdserver: no leader";
pub const TIMEOUT: &str = "etcdserver: request timed out";
pub const REQUEST_TOO_LARGE: &str = "etcdserver: request is too large";
pub const LEADER_CHANGED: &str = "etcdserver: leader changed";
pub const STOPPING: &str = "etcdserver: server stopped";
pub const NOT_LEADER: &str = "etcdserver: not leader";
pub const BAD_TRANSFEREE: &str = "etcdserver: bad leader transferee";
pub const TRANSFER_TIMEOUT: &str = "etcdserver: request timed out, leader transfer took too long";
pub const NOT_SUPPORTED_FOR_LEARNER: &str = "etcdserver: rpc not supported for learner";

fn code_of(code: GrpcCode) -> Code {
    Code::from_i32(code as i32)
}

pub fn mvcc_status(err: &MvccError) -> Status {
    Status::new(code_of(err.grpc_code()), err.to_string())
}

/// An auth error as etcd's gRPC API sends it (`etcdserver: ...`, rpctypes' code).
pub fn auth_status(err: &AuthError) -> Status {
    Status::new(code_of(err.grpc_code()), err.to_string())
}

/// An auth error as etcd's Maintenance service sends it: its admin check skips the
/// translation, so code Unknown with the auth package's own text (`auth: permission denied`).
pub fn maintenance_auth_status(err: &AuthError) -> Status {
    Status::unknown(err.unmapped_message())
}

pub fn store_status(err: &StoreError) -> Status {
    match err {
        StoreError::Mvcc(e) => mvcc_status(e),
        StoreError::Auth(e) => auth_status(e),
    }
}

pub fn propose_status(err: &ProposeError) -> Status {
    match err {
        ProposeError::Rejected(apply) => {
            if let Some(e) = apply.downcast_ref::<StoreError>() {
                store_status(e)
            } else if let Some(e) = apply.downcast_ref::<MvccError>() {
                mvcc_status(e)
            } else {
                remote_apply_status(&apply.to_string())
            }
        }
        ProposeError::NoLeader | ProposeError::QuorumNotReachable => Status::unavailable(NO_LEADER),
        ProposeError::Timeout => Status::unavailable(TIMEOUT),
        ProposeError::LeaderChanged => Status::unavailable(LEADER_CHANGED),
        ProposeError::Stopped => Status::unavailable(STOPPING),
        // Followers forward to the leader; this surfaces only when the leader refused.
        ProposeError::ForwardToLeader { .. } => Status::unavailable(NO_LEADER),
        // A storage failure stops the member; clients see what they see when a member dies.
        ProposeError::Fatal(_) | ProposeError::Internal(_) => Status::unavailable(err.to_string()),
    }
}

/// The store errors a leader can answer to a forwarded write. Only their text crosses the
/// peer port; each is recognised by it here to get etcd's code back.
const REMOTE_APPLY_ERRORS: [MvccError; 11] = [
    MvccError::EmptyKey,
    MvccError::KeyNotFound,
    MvccError::ValueProvided,
    MvccError::LeaseProvided,
    MvccError::TooManyOps,
    MvccError::DuplicateKey,
    MvccError::Compacted,
    MvccError::FutureRev,
    MvccError::NoSpace,
    MvccError::LeaseNotFound,
    MvccError::LeaseExist,
];

/// The auth errors a leader can answer to a forwarded write or auth request, known by their
/// text as the store errors above.
const REMOTE_AUTH_ERRORS: [AuthError; 18] = [
    AuthError::RootUserNotExist,
    AuthError::RootRoleNotExist,
    AuthError::UserAlreadyExist,
    AuthError::UserEmpty,
    AuthError::UserNotFound,
    AuthError::RoleAlreadyExist,
    AuthError::RoleNotFound,
    AuthError::RoleEmpty,
    AuthError::AuthFailed,
    AuthError::NoPasswordUser,
    AuthError::PermissionDenied,
    AuthError::RoleNotGranted,
    AuthError::PermissionNotGranted,
    AuthError::AuthNotEnabled,
    AuthError::InvalidAuthToken,
    AuthError::InvalidAuthMgmt,
    AuthError::AuthOldRevision,
    AuthError::PermissionNotGiven,
];

/// The status of an apply error that happened on the leader, known by its text.
fn remote_apply_status(text: &str) -> Status {
    if let Some(e) = REMOTE_APPLY_ERRORS.iter().find(|e| e.to_string() == text) {
        return mvcc_status(e);
    }
    match REMOTE_AUTH_ERRORS.iter().find(|e| e.to_string() == text) {
        Some(e) => auth_status(e),
        None => Status::internal(text.to_owned()),
    }
}

/// A refused membership change, with etcd's codes (`rpctypes`).
pub fn member_status(err: &MemberChangeError) -> Status {
    match err {
        MemberChangeError::NotFound => Status::not_found(err.to_string()),
        MemberChangeError::BadUrls => Status::invalid_argument(err.to_string()),
        MemberChangeError::Unhealthy => Status::unavailable(err.to_string()),
        MemberChangeError::Raft(refusal) => propose_status(&refusal.clone().into_error()),
        _ => Status::failed_precondition(err.to_string()),
    }
}

/// What a learner answers to writes and linearizable reads.
pub fn learner_refusal() -> Status {
    Status::unavailable(NOT_SUPPORTED_FOR_LEARNER)
}

pub fn request_too_large() -> Status {
    Status::invalid_argument(REQUEST_TOO_LARGE)
}

/// Lease errors raised by the lessor, outside the store.
pub fn lease_status(err: &LeaseError) -> Status {
    match err {
        LeaseError::TtlTooLarge => Status::out_of_range(err.to_string()),
        LeaseError::NotLeader => Status::unavailable(NO_LEADER),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every listed store and auth error maps back to itself from its text (what a follower gets
    /// from the leader), and unknown text stays an internal error.
    #[test]
    fn remote_apply_errors_keep_their_code_and_message() {
        let mvcc = REMOTE_APPLY_ERRORS
            .iter()
            .map(|e| (e.to_string(), mvcc_status(e)));
        let auth = REMOTE_AUTH_ERRORS
            .iter()
            .map(|e| (e.to_string(), auth_status(e)));
        for (text, local) in mvcc.chain(auth) {
            let remote = remote_apply_status(&text);
            assert_eq!(
                (remote.code(), remote.message()),
                (local.code(), local.message())
            );
        }
        assert_eq!(remote_apply_status("boom").code(), Code::Internal);
    }
}
