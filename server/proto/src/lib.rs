//! etcd v3 protobuf and gRPC definitions (generated with tonic-prost-build)
