//! `cargo xtask setup`: installs the project's system dependencies on Debian, skipping what is there.

use std::process::Command;

use anyhow::bail;

use crate::{is_root, run_cmd};

/// Debian packages the demo and the tests use, with the command that proves each is present.
const PACKAGES: &[(&str, &str)] = &[
    ("openssh-server", "/usr/sbin/sshd"),
    ("openssh-client", "/usr/bin/ssh"),
    ("iproute2", "/usr/sbin/ip"),
    ("procps", "/usr/bin/ps"),
    ("openssl", "/usr/bin/openssl"),
    ("passwd", "/usr/sbin/useradd"),
    ("chromium", "/usr/bin/chromium"),
    ("chromium-driver", "/usr/bin/chromedriver"),
    ("nodejs", "/usr/bin/node"),
    ("npm", "/usr/bin/npm"),
];

/// Installs what is missing.
pub fn run() -> anyhow::Result<()> {
    let missing: Vec<&str> = PACKAGES
        .iter()
        .filter(|(_, path)| !std::path::Path::new(path).exists())
        .map(|(package, _)| *package)
        .filter(|package| {
            !(*package == "nodejs" || *package == "npm")
                || !on_path(if *package == "npm" { "npm" } else { "node" })
        })
        .collect();
    if !missing.is_empty() {
        if !is_root() {
            bail!(
                "these Debian packages are missing and installing them needs root: {}",
                missing.join(" ")
            );
        }
        eprintln!("xtask: installing {}", missing.join(" "));
        run_cmd(Command::new("apt-get").args(["update", "-qq"]))?;
        // Keep package scripts from starting services (a system sshd on port 22) on this machine.
        let guard = std::path::Path::new("/usr/sbin/policy-rc.d");
        let placed_guard =
            !guard.exists() && std::fs::write(guard, "#!/bin/sh\nexit 101\n").is_ok();
        if placed_guard {
            let _ = Command::new("chmod")
                .args(["+x", "/usr/sbin/policy-rc.d"])
                .status();
        }
        let result = run_cmd(
            Command::new("apt-get")
                .env("DEBIAN_FRONTEND", "noninteractive")
                .args(["install", "-y", "-qq", "--no-install-recommends"])
                .args(&missing),
        );
        if placed_guard {
            let _ = std::fs::remove_file(guard);
        }
        result?;
    }
    for component in ["rustfmt", "clippy"] {
        let probe = if component == "rustfmt" {
            ["fmt", "--version"]
        } else {
            ["clippy", "--version"]
        };
        let present = crate::cargo()
            .args(probe)
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !present {
            run_cmd(Command::new("rustup").args(["component", "add", component]))?;
        }
    }
    Ok(())
}

fn on_path(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}
