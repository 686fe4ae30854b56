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
    // The descriptor set lets the JSON gateway transcode any message by reflection.
    let out_dir =
        std::path::PathBuf::from(std::env::var("OUT_DIR").map_err(std::io::Error::other)?);
    prost_config.file_descriptor_set_path(out_dir.join("etcd_descriptor_set.bin"));
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .build_transport(false)
        .generate_default_stubs(true)
        .compile_with_config(prost_config, &protos, &["proto"])
}
