//! The store's one error type: every etcd 3.4 KV error with its exact message and gRPC code.

/// gRPC status codes by number, as `google.golang.org/grpc/codes` numbers them (so a server can
/// convert with `code as i32` without this crate depending on tonic).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum GrpcCode {
    Ok = 0,
    Cancelled = 1,
    Unknown = 2,
    InvalidArgument = 3,
    DeadlineExceeded = 4,
    NotFound = 5,
    AlreadyExists = 6,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    FailedPrecondition = 9,
    Aborted = 10,
    OutOfRange = 11,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
    DataLoss = 15,
    Unauthenticated = 16,
}

/// An error of the MVCC store or of etcd's API-layer request checks. `Display` is the message
/// etcd 3.4 sends in its gRPC status (checked against etcd 3.4.23 by `tests/etcd_errors.rs`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MvccError {
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    #[error("etcdserver: key not found")]
    KeyNotFound,
    #[error("etcdserver: value is provided")]
    ValueProvided,
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted,
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRev,
    /// Raised by the server's quota check (`--quota-backend-bytes` against
    /// `Store::size_bytes`), not by the store; here so every KV error maps in one place.
    #[error("etcdserver: mvcc: database space exceeded")]
    NoSpace,
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    #[error("etcdserver: lease already exists")]
    LeaseExist,
    /// A replicated command the store does not apply (alarms, lease checkpoints): the caller
    /// must answer it. Not an etcd error; seeing it is a routing bug in the caller.
    #[error("ketch: request is not applied by the mvcc store")]
    NotStoreRequest,
    /// A snapshot could not be read: I/O failure, bad magic, bad checksum, truncated body.
    #[error("ketch: mvcc snapshot: {0}")]
    Snapshot(String),
}

impl MvccError {
    /// The gRPC code etcd 3.4's `rpctypes` attach to this error.
    pub fn grpc_code(&self) -> GrpcCode {
        match self {
            MvccError::EmptyKey
            | MvccError::KeyNotFound
            | MvccError::ValueProvided
            | MvccError::LeaseProvided
            | MvccError::TooManyOps
            | MvccError::DuplicateKey => GrpcCode::InvalidArgument,
            MvccError::Compacted | MvccError::FutureRev => GrpcCode::OutOfRange,
            MvccError::LeaseNotFound => GrpcCode::NotFound,
            MvccError::NoSpace => GrpcCode::ResourceExhausted,
            MvccError::LeaseExist => GrpcCode::FailedPrecondition,
            MvccError::NotStoreRequest => GrpcCode::Unimplemented,
            MvccError::Snapshot(_) => GrpcCode::DataLoss,
        }
    }
}
