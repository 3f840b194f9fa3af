//! `cargo xtask`: Sallyport's task runner.
//!
//! - `setup`: installs what the project needs on a Debian machine and skips what is there.
//! - `demo`: the gateway with a demo network of real SSH and RDP targets (needs root); `--appliance` boots the
//!   built appliance image under QEMU with the same targets behind it.
//! - `ci`: formatting, lints (Rust and the portal's JavaScript), tidy checks, and every test including the end-to-end ones (needs root).
//! - `bench ssh`: the SSH relay benchmarks (throughput ratio, echo latency, memory per session).
//! - `bench edge`: the eBPF edge benchmarks (XDP drop rate against an nftables rule, bulk TCP attached against
//!   detached).
//! - `bench boot`: the appliance image's power-on to "443 answering" (cold and warm, guest timeline) and its size.
//! - `bench quic`: the native client's QUIC path against the WebSocket path (bulk ratio, CPU per GB, set-up
//!   time cold and resumed).
//! - `bench review`: the review UI's figures (search over 1,000 sessions, listing 10,000, seeking in an hour).
//! - `fuzz TARGET [SECONDS]`: one cargo-fuzz target of `tests/fuzz`, bounded in time.
//! - `build-image [--print-plan]`: the appliance image from `image/appliance.toml` (needs root).
//! - `run-vm [--port N] [--kvm] [--config FILE]`: boots the built image under QEMU.

mod ci;
mod demo;
mod demo_appliance;
mod image;
mod setup;
mod tidy;
mod tidy_html;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("setup") => setup::run(),
        Some("ci") => ci::run(),
        Some("demo") => demo::run(&args[1..]),
        Some("bench") => ci::bench(&args[1..]),
        Some("tidy") => tidy::run(),
        Some("fuzz") => ci::fuzz(&args[1..]),
        Some("build-image") => image::build(&args[1..]),
        Some("run-vm") => image::vm::run(&args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask <setup | demo [--listen ADDR] [--keep-state] [--appliance] | ci | bench <ssh | edge | rdp | boot | quic | review> | fuzz TARGET [SECONDS] | tidy | build-image [--print-plan] | run-vm [--port N] [--kvm] [--config FILE]>"
            );
            return std::process::ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Runs a command (in the workspace root unless it has a directory), failing with its name when it fails.
pub fn run_cmd(cmd: &mut Command) -> anyhow::Result<()> {
    let shown = format!("{cmd:?}");
    eprintln!("xtask: $ {shown}");
    if cmd.get_current_dir().is_none() {
        cmd.current_dir(root());
    }
    let status = cmd.status().with_context(|| format!("starting {shown}"))?;
    if !status.success() {
        bail!("{shown} failed with {status}");
    }
    Ok(())
}

/// `cargo` with the workspace's toolchain.
pub fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// True when running as root.
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.trim_ascii() == b"0")
        .unwrap_or(false)
}
