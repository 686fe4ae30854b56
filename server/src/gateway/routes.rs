//! The gateway's route table: etcd 3.4's `google.api.http` bindings (rpc.proto), each HTTP
//! path mapped to its gRPC method, message types and streaming shape.

/// How a method's messages flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// One request, one response.
    Unary,
    /// One request, a stream of responses (Snapshot).
    ServerStream,
    /// Streams both ways (Watch, LeaseKeepAlive): the HTTP body carries concatenated JSON
    /// requests and the answer is newline-delimited `{"result":...}` objects.
    Bidi,
}

/// One gateway binding.
#[derive(Clone, Copy, Debug)]
pub struct Route {
    /// The gRPC service (in package `etcdserverpb`) and method served by tonic's routes.
    pub service: &'static str,
    pub method: &'static str,
    /// Request and response message names in package `etcdserverpb`.
    pub request: &'static str,
    pub response: &'static str,
    pub shape: Shape,
}

impl Route {
    pub fn grpc_path(&self) -> String {
        format!("/etcdserverpb.{}/{}", self.service, self.method)
    }
}

/// The versioned prefixes etcd 3.4 serves the gateway under (`/v3alpha` is gone in 3.4).
const PREFIXES: [&str; 2] = ["/v3/", "/v3beta/"];

use Shape::{Bidi, ServerStream, Unary};

/// (path after the prefix, service, method, request, response, shape), from rpc.proto.
#[rustfmt::skip]
const TABLE: &[(&str, &str, &str, &str, &str, Shape)] = &[
    ("kv/range", "KV", "Range", "RangeRequest", "RangeResponse", Unary),
    ("kv/put", "KV", "Put", "PutRequest", "PutResponse", Unary),
    ("kv/deleterange", "KV", "DeleteRange", "DeleteRangeRequest", "DeleteRangeResponse", Unary),
    ("kv/txn", "KV", "Txn", "TxnRequest", "TxnResponse", Unary),
    ("kv/compaction", "KV", "Compact", "CompactionRequest", "CompactionResponse", Unary),
    ("watch", "Watch", "Watch", "WatchRequest", "WatchResponse", Bidi),
    ("lease/grant", "Lease", "LeaseGrant", "LeaseGrantRequest", "LeaseGrantResponse", Unary),
    ("lease/revoke", "Lease", "LeaseRevoke", "LeaseRevokeRequest", "LeaseRevokeResponse", Unary),
    ("kv/lease/revoke", "Lease", "LeaseRevoke", "LeaseRevokeRequest", "LeaseRevokeResponse", Unary),
    ("lease/keepalive", "Lease", "LeaseKeepAlive", "LeaseKeepAliveRequest", "LeaseKeepAliveResponse", Bidi),
    ("lease/timetolive", "Lease", "LeaseTimeToLive", "LeaseTimeToLiveRequest", "LeaseTimeToLiveResponse", Unary),
    ("kv/lease/timetolive", "Lease", "LeaseTimeToLive", "LeaseTimeToLiveRequest", "LeaseTimeToLiveResponse", Unary),
    ("lease/leases", "Lease", "LeaseLeases", "LeaseLeasesRequest", "LeaseLeasesResponse", Unary),
    ("kv/lease/leases", "Lease", "LeaseLeases", "LeaseLeasesRequest", "LeaseLeasesResponse", Unary),
    ("cluster/member/add", "Cluster", "MemberAdd", "MemberAddRequest", "MemberAddResponse", Unary),
    ("cluster/member/remove", "Cluster", "MemberRemove", "MemberRemoveRequest", "MemberRemoveResponse", Unary),
    ("cluster/member/update", "Cluster", "MemberUpdate", "MemberUpdateRequest", "MemberUpdateResponse", Unary),
    ("cluster/member/list", "Cluster", "MemberList", "MemberListRequest", "MemberListResponse", Unary),
    ("cluster/member/promote", "Cluster", "MemberPromote", "MemberPromoteRequest", "MemberPromoteResponse", Unary),
    ("maintenance/alarm", "Maintenance", "Alarm", "AlarmRequest", "AlarmResponse", Unary),
    ("maintenance/status", "Maintenance", "Status", "StatusRequest", "StatusResponse", Unary),
    ("maintenance/defragment", "Maintenance", "Defragment", "DefragmentRequest", "DefragmentResponse", Unary),
    // Hash and HashKV share this path in rpc.proto; etcd 3.4's mux serves Hash (measured).
    ("maintenance/hash", "Maintenance", "Hash", "HashRequest", "HashResponse", Unary),
    ("maintenance/snapshot", "Maintenance", "Snapshot", "SnapshotRequest", "SnapshotResponse", ServerStream),
    ("maintenance/transfer-leadership", "Maintenance", "MoveLeader", "MoveLeaderRequest", "MoveLeaderResponse", Unary),
    ("auth/enable", "Auth", "AuthEnable", "AuthEnableRequest", "AuthEnableResponse", Unary),
    ("auth/disable", "Auth", "AuthDisable", "AuthDisableRequest", "AuthDisableResponse", Unary),
    ("auth/authenticate", "Auth", "Authenticate", "AuthenticateRequest", "AuthenticateResponse", Unary),
    ("auth/user/add", "Auth", "UserAdd", "AuthUserAddRequest", "AuthUserAddResponse", Unary),
    ("auth/user/get", "Auth", "UserGet", "AuthUserGetRequest", "AuthUserGetResponse", Unary),
    ("auth/user/list", "Auth", "UserList", "AuthUserListRequest", "AuthUserListResponse", Unary),
    ("auth/user/delete", "Auth", "UserDelete", "AuthUserDeleteRequest", "AuthUserDeleteResponse", Unary),
    ("auth/user/changepw", "Auth", "UserChangePassword", "AuthUserChangePasswordRequest", "AuthUserChangePasswordResponse", Unary),
    ("auth/user/grant", "Auth", "UserGrantRole", "AuthUserGrantRoleRequest", "AuthUserGrantRoleResponse", Unary),
    ("auth/user/revoke", "Auth", "UserRevokeRole", "AuthUserRevokeRoleRequest", "AuthUserRevokeRoleResponse", Unary),
    ("auth/role/add", "Auth", "RoleAdd", "AuthRoleAddRequest", "AuthRoleAddResponse", Unary),
    ("auth/role/get", "Auth", "RoleGet", "AuthRoleGetRequest", "AuthRoleGetResponse", Unary),
    ("auth/role/list", "Auth", "RoleList", "AuthRoleListRequest", "AuthRoleListResponse", Unary),
    ("auth/role/delete", "Auth", "RoleDelete", "AuthRoleDeleteRequest", "AuthRoleDeleteResponse", Unary),
    ("auth/role/grant", "Auth", "RoleGrantPermission", "AuthRoleGrantPermissionRequest", "AuthRoleGrantPermissionResponse", Unary),
    ("auth/role/revoke", "Auth", "RoleRevokePermission", "AuthRoleRevokePermissionRequest", "AuthRoleRevokePermissionResponse", Unary),
];

/// Finds the binding of an HTTP path, or `None` where grpc-gateway answers 404.
pub fn lookup(path: &str) -> Option<Route> {
    let rest = PREFIXES.iter().find_map(|p| path.strip_prefix(p))?;
    TABLE
        .iter()
        .find(|row| row.0 == rest)
        .map(|&(_, service, method, request, response, shape)| Route {
            service,
            method,
            request,
            response,
            shape,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_and_aliases_resolve_as_etcd_3_4() {
        assert_eq!(
            lookup("/v3/kv/put").unwrap().grpc_path(),
            "/etcdserverpb.KV/Put"
        );
        assert_eq!(lookup("/v3beta/kv/range").unwrap().request, "RangeRequest");
        assert!(lookup("/v3alpha/kv/range").is_none());
        assert!(lookup("/v3/kv/lease/grant").is_none());
        assert!(lookup("/v3/maintenance/hashkv").is_none());
        assert_eq!(
            lookup("/v3/kv/lease/revoke").unwrap().grpc_path(),
            "/etcdserverpb.Lease/LeaseRevoke"
        );
        assert_eq!(lookup("/v3/watch").unwrap().shape, Shape::Bidi);
        assert_eq!(
            lookup("/v3/maintenance/snapshot").unwrap().shape,
            Shape::ServerStream
        );
    }

    #[test]
    fn every_message_name_exists_in_the_descriptors() {
        let pool = prost_reflect::DescriptorPool::decode(ketch_proto::FILE_DESCRIPTOR_SET).unwrap();
        for row in TABLE {
            for name in [row.3, row.4] {
                let full = format!("etcdserverpb.{name}");
                assert!(pool.get_message_by_name(&full).is_some(), "{full}");
            }
            let svc = pool
                .get_service_by_name(&format!("etcdserverpb.{}", row.1))
                .unwrap();
            assert!(svc.methods().any(|m| m.name() == row.2), "{}", row.2);
        }
    }
}
