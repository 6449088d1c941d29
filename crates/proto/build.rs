//! Compiles `proto/lp_rpc.proto` with a pure-Rust protobuf compiler, so no system `protoc`
//! is needed, and generates prost messages plus the tonic client and server.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/lp_rpc.proto");
    let fds = protox::compile(["lp_rpc.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
