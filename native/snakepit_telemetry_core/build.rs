//! Generates the gRPC/protobuf code from `priv/proto/snakepit_bridge.proto`
//! (client and server: the NIF is a client, the load generator a server) and
//! reruns when it or the catalog (embedded with include_str!) changes.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=../../priv/catalog/telemetry_catalog.json");
    println!("cargo:rerun-if-changed=../../priv/proto/snakepit_bridge.proto");
    // protoc comes from the protoc-bin-vendored crate: nothing to install.
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let include = protoc_bin_vendored::include_path()?;
    // SAFETY: build scripts are single-threaded.
    unsafe { std::env::set_var("PROTOC", protoc) };
    tonic_prost_build::configure().compile_protos(
        &["../../priv/proto/snakepit_bridge.proto"],
        &[
            "../../priv/proto",
            include.to_str().ok_or("non-UTF-8 include path")?,
        ],
    )?;
    Ok(())
}
