//! The one place where ketch's internal errors become etcd's gRPC statuses: the same code and
//! `etcdserver: ...` message etcd 3.4 sends, so etcdctl and clients print what they print
//! against etcd.

use ketch_mvcc::{GrpcCode, MvccError};
use ketch_raft::ProposeError;

use crate::lease::LeaseError;
use tonic::{Code, Status};

/// etcd's messages for conditions raised outside the MVCC store.
pub const NO_LEADER: &str = "etcdserver: no leader";
pub const TIMEOUT: &str = "etcdserver: request timed out";
pub const REQUEST_TOO_LARGE: &str = "etcdserver: request is too large";
pub const LEADER_CHANGED: &str = "etcdserver: leader changed";
pub const STOPPING: &str = "etcdserver: server stopped";

fn code_of(code: GrpcCode) -> Code {
    Code::from_i32(code as i32)
}

pub fn mvcc_status(err: &MvccError) -> Status {
    Status::new(code_of(err.grpc_code()), err.to_string())
}

pub fn propose_status(err: &ProposeError) -> Status {
    match err {
        ProposeError::Rejected(apply) => match apply.downcast_ref::<MvccError>() {
            Some(e) => mvcc_status(e),
            None => Status::internal(apply.to_string()),
        },
        ProposeError::NoLeader | ProposeError::QuorumNotReachable => Status::unavailable(NO_LEADER),
        ProposeError::Timeout => Status::unavailable(TIMEOUT),
        ProposeError::LeaderChanged => Status::unavailable(LEADER_CHANGED),
        ProposeError::Stopped => Status::unavailable(STOPPING),
        // Followers forward writes once clusters exist; until then a follower has no leader
        // it can reach.
        ProposeError::ForwardToLeader { .. } => Status::unavailable(NO_LEADER),
        // A storage failure stops the member; clients see what they see when a member dies.
        ProposeError::Fatal(_) | ProposeError::Internal(_) => Status::unavailable(err.to_string()),
    }
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
