//! Generates etcd's v3 messages and gRPC services (server and client, without tonic's tokio
//! transport: ketch serves them over hyper on glommio) with the vendored protoc.

fn main() -> std::io::Result<()> {
    let protos = [
        "proto/kv.proto",
        "proto/auth.proto",
        "proto/rpc.proto",
        "proto/ketch_internal.proto",
    ];
    for p in &protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let mut prost_config = prost_build::Config::new();
    let protoc = protoc_bin_vendored::protoc_bin_path().map_err(std::io::Error::other)?;
    prost_config.protoc_executable(protoc);
    // Keys and values as `bytes::Bytes`: decoding slices the request buffer, and a range
    // response clones stored values by reference count instead of copying them.
    prost_config.bytes(["."]);
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .build_transport(false)
        .generate_default_stubs(true)
        .compile_with_config(prost_config, &protos, &["proto"])
}
