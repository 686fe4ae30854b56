//! The three real ways of driving a server: gRPC (etcd-client), the etcdctl binary, and the
//! JSON gateway over HTTP/1.1.

pub mod etcdctl;
pub mod gateway;
pub mod grpc;
