//! Compiles every `.proto` under the workspace's `proto/` with protox (pure Rust), so a
//! fresh machine needs no system `protoc`.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read when the script runs, not when it was compiled: a build directory shared by
    // several checkouts may reuse a script compiled in another one.
    let manifest_dir =
        std::env::var_os("CARGO_MANIFEST_DIR").ok_or("CARGO_MANIFEST_DIR is not set")?;
    let root = PathBuf::from(manifest_dir).join("../../proto");
    let files = [
        root.join("kubearmor.proto"),
        root.join("armorlake/meta.proto"),
        root.join("etcd/kv.proto"),
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    let descriptors = protox::compile(&files, [&root])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(descriptors)?;
    Ok(())
}
