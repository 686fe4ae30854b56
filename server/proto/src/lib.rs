//! etcd v3 protobuf messages and gRPC services, generated from `proto/` (etcd 3.4's wire
//! contract, field for field) with tonic-prost-build. Server traits come with default
//! methods answering `Unimplemented`, so a service can be served before all of it exists.

#![allow(clippy::all, missing_docs)]

pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}

pub mod authpb {
    tonic::include_proto!("authpb");
}

pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}

pub mod ketchpb {
    tonic::include_proto!("ketchpb");
}

pub use etcdserverpb::*;

/// The encoded `FileDescriptorSet` of every message above (for reflection: the JSON gateway).
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/etcd_descriptor_set.bin"));
