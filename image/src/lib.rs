//! The appliance image: its definition (`image/appliance.toml`), the build plan made from it ([`plan`]), the
//! executor that runs the plan ([`executor`]), the QEMU command line that boots the result ([`qemu`]), the
//! config drive an operator configures it with ([`config_drive`]), and the booted guest on a LAN ([`vm`]).
//! Used by `cargo xtask build-image`, `run-vm` and `demo --appliance`, and by the end-to-end harness that
//! boots the image on a test LAN.
//!
//! The data files stay beside this crate's sources: `appliance.toml`, `files/` (copied into the root),
//! `initramfs/` (the dm-verity hook) and `plan.txt` (the printed plan's snapshot).
//!
//! The build side runs no command by itself: every function that does takes a runner (`&mut dyn FnMut(&mut
//! Command) -> anyhow::Result<()>`), so xtask can echo what it runs and the e2e harness can bound it in time.
//! [`vm`] is the exception: booting a guest is one long-lived QEMU and a few quick `ip` calls, run the same
//! way by the harness and the demo (the quick ones through `sallyport_demo::proc`, bounded in time).
//! It depends on no gateway crate and not on tokio; tidy checks that.
//!
//! **Accelerator policy** ([`qemu::Accel::chosen`]): software emulation (TCG, `-cpu max`) unless KVM is asked
//! for, by `SALLYPORT_KVM=1` or `run-vm --kvm`. On this project's build machine `/dev/kvm` exists but a
//! guest under `-accel kvm` stops inside the firmware ("KVM internal error ... emulation failure"), while TCG
//! boots reliably; probing KVM by booting cost every boot its timeout before falling back, so nothing probes.

pub mod config_drive;
pub mod executor;
pub mod plan;
pub mod qemu;
pub mod vm;

use std::path::{Path, PathBuf};

use anyhow::Context;

pub use plan::{Definition, Plan};
pub use qemu::{Accel, Qemu};

/// Runs one command and fails when it fails; the caller decides how (echoed, captured, bounded in time).
pub type Runner<'a> = dyn FnMut(&mut std::process::Command) -> anyhow::Result<()> + 'a;

/// This crate's directory, `image/`, where the definition and the files copied into the image live.
pub fn image_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The workspace root (the parent of `image/`).
pub fn project_dir() -> PathBuf {
    image_dir()
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Where the image is built: `target/image` under the workspace root.
pub fn build_dir() -> PathBuf {
    project_dir().join("target/image")
}

/// The built raw disk image, `target/image/sallyport.raw`.
pub fn raw_image() -> PathBuf {
    build_dir().join("sallyport.raw")
}

/// The image's definition, `image/appliance.toml`, at `path`.
pub fn read_definition(path: &Path) -> anyhow::Result<Definition> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("in {}", path.display()))
}

/// Reads `image/appliance.toml`.
pub fn definition() -> anyhow::Result<Definition> {
    read_definition(&image_dir().join("appliance.toml"))
}
