//! Builds the eBPF program (`ebpf/program`) for the BPF target with the nightly toolchain, so that a plain
//! `cargo build` of the workspace produces it; the object is embedded into sallyport-edge.
//!
//! The program is its own Cargo workspace (it needs `-Z build-std=core`), built into `target/bpf`, shared by
//! every profile of the host build so that it compiles once.
#![deny(clippy::undocumented_unsafe_blocks)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    if let Err(message) = build() {
        // A build script reports failure by exiting non-zero; the message is what a developer needs.
        eprintln!("error: {message}");
        std::process::exit(1);
    }
}

fn build() -> Result<(), String> {
    let manifest_dir = PathBuf::from(env("CARGO_MANIFEST_DIR")?);
    let out_dir = PathBuf::from(env("OUT_DIR")?);
    let program_dir = manifest_dir.join("../program");
    let common_dir = manifest_dir.join("../common");
    for watched in [
        program_dir.join("src"),
        program_dir.join("Cargo.toml"),
        program_dir.join("Cargo.lock"),
        common_dir.join("src"),
        common_dir.join("Cargo.toml"),
    ] {
        println!("cargo:rerun-if-changed={}", watched.display());
    }
    if Command::new("bpf-linker")
        .arg("--version")
        .output()
        .is_err()
    {
        return Err(
            "bpf-linker is not installed; the eBPF edge needs it and the nightly toolchain with \
                    rust-src: run `cargo xtask setup` (it installs both)"
                .into(),
        );
    }
    let target_dir = shared_target_dir(&out_dir).join("bpf");
    let mut cargo = Command::new("rustup");
    cargo
        .args(["run", "nightly", "cargo", "build", "--release", "--locked"])
        .args(["-Z", "build-std=core", "--target", "bpfel-unknown-none"])
        .arg("--target-dir")
        .arg(&target_dir)
        .current_dir(&program_dir)
        // The host build's compiler settings must not leak into the BPF build.
        .env_remove("RUSTC")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO")
        .env_remove("RUSTUP_TOOLCHAIN")
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            "-Cdebuginfo=2\x1f-Clink-arg=--btf",
        );
    let output = cargo
        .output()
        .map_err(|error| format!("starting the nightly cargo through rustup: {error}"))?;
    if !output.status.success() {
        return Err(format!(
            "building the eBPF program failed ({}); `cargo xtask setup` installs the nightly toolchain, \
             rust-src and bpf-linker:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let object = target_dir.join("bpfel-unknown-none/release/sallyport-edge");
    std::fs::copy(&object, out_dir.join("sallyport-edge.bpf.o"))
        .map_err(|error| format!("copying {}: {error}", object.display()))?;
    Ok(())
}

fn env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("{name} is not set"))
}

/// `target/` of the host build: OUT_DIR is `target/<profile>/build/<package>-<hash>/out`.
fn shared_target_dir(out_dir: &Path) -> PathBuf {
    out_dir
        .ancestors()
        .nth(4)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| out_dir.to_path_buf())
}
