//! Compiles `proto/eventbus/v1/*.proto` with protox (no protoc needed), writes the descriptor
//! set for gRPC reflection and generates the prost messages and tonic stubs.

use std::{env, fs, io, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let proto_root = manifest_dir.join("../proto");
    let package_dir = proto_root.join("eventbus/v1");
    println!("cargo:rerun-if-changed={}", proto_root.display());
    println!("cargo:rerun-if-changed={}", package_dir.display());

    let mut files = Vec::new();
    for entry in fs::read_dir(&package_dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|ext| ext == "proto") {
            println!("cargo:rerun-if-changed={}", path.display());
            files.push(path);
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(io::Error::other(format!("no .proto files in {}", package_dir.display())).into());
    }

    let mut compiler = protox::Compiler::new([&proto_root])?;
    compiler.include_source_info(true).include_imports(true);
    compiler.open_files(&files)?;

    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out_dir.join("eventbus_descriptor.bin"), compiler.encode_file_descriptor_set())?;

    // The set includes the imported well-known types (reflection and prost-build's message graph
    // need them); prost-build maps `google.protobuf.*` to prost-types rather than generating it.
    // Server stubs are always generated but only compiled with the `server` feature, so the
    // generated file is the same whichever features are on.
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .server_mod_attribute(".", r#"#[cfg(feature = "server")]"#)
        .emit_rerun_if_changed(false)
        .compile_fds(compiler.file_descriptor_set())?;
    Ok(())
}
