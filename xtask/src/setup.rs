//! `cargo xtask setup`: installs the project's system dependencies on Debian, skipping what is there: what
//! the demo runs ([`DEMO_PACKAGES`], [`Scope::Demo`]) and, for the tests, what only they use.

use std::process::Command;

use anyhow::bail;

use crate::{is_root, run_cmd};

/// Debian packages the demo runs (its targets and what it does to set them up), with the file that proves
/// each is present. `cargo xtask demo` installs only these (and the eBPF toolchain, which the gateway's
/// build needs).
pub const DEMO_PACKAGES: &[(&str, &str)] = &[
    ("openssh-server", "/usr/sbin/sshd"),
    ("iproute2", "/usr/sbin/ip"),
    ("openssl", "/usr/bin/openssl"),
    ("passwd", "/usr/sbin/useradd"),
    // The RDP target: xrdp with its Xorg backend, and what its desktop shows (a background, an xterm, a
    // line of text from xmessage).
    ("xrdp", "/usr/sbin/xrdp"),
    ("xorgxrdp", "/usr/lib/xorg/modules/drivers/xrdpdev_drv.so"),
    ("xserver-xorg-core", "/usr/lib/xorg/Xorg"),
    ("xterm", "/usr/bin/xterm"),
    ("x11-xserver-utils", "/usr/bin/xsetroot"),
    ("x11-utils", "/usr/bin/xmessage"),
    // The portal's build installs xterm.js from the npm registry (gateway/portal/build.rs).
    ("nodejs", "/usr/bin/node"),
    ("npm", "/usr/bin/npm"),
];

/// Debian packages only the tests use, on top of [`DEMO_PACKAGES`].
const TEST_PACKAGES: &[(&str, &str)] = &[
    ("openssh-client", "/usr/bin/ssh"),
    ("procps", "/usr/bin/ps"),
    // The secrets test types a password at sudo's prompt on an SSH target.
    ("sudo", "/usr/bin/sudo"),
    ("chromium", "/usr/bin/chromium"),
    ("chromium-driver", "/usr/bin/chromedriver"),
    ("nmap", "/usr/bin/nmap"),
    ("iputils-ping", "/usr/bin/ping"),
    ("nftables", "/usr/sbin/nft"),
    ("tmux", "/usr/bin/tmux"),
    // The desktop tests' extra tools, and FreeRDP's shadow server on Xvfb (the NLA target).
    ("xdotool", "/usr/bin/xdotool"),
    ("xclip", "/usr/bin/xclip"),
    ("freerdp2-shadow-x11", "/usr/bin/freerdp-shadow-cli"),
    ("xvfb", "/usr/bin/Xvfb"),
    ("winpr-utils", "/usr/bin/winpr-hash"),
    // Fleet mode's state database: a private cluster per test (`tests/e2e/src/postgres.rs`).
    ("postgresql", "/usr/lib/postgresql/15/bin/initdb"),
    ("postgresql-client", "/usr/bin/psql"),
];

/// What bpf-linker is built against: LLVM of the same major version as the nightly rustc's own LLVM.
const LLVM_PACKAGES: &[(&str, &str)] = &[
    ("llvm-22-dev", "/usr/lib/llvm-22/bin/llvm-config"),
    ("libpolly-22-dev", "/usr/lib/llvm-22/lib/libPolly.a"),
];
const LLVM_BIN: &str = "/usr/lib/llvm-22/bin";
const BPF_LINKER_VERSION: &str = "0.13.0";

/// What a setup installs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// What `cargo xtask demo` runs: its targets' packages and the gateway's build toolchain.
    Demo,
    /// Everything: the demo's packages, the tests' peers and tools, rustfmt and clippy.
    Tests,
}

/// `cargo xtask setup`: installs what is missing for the tests (which includes the demo).
pub fn run() -> anyhow::Result<()> {
    install(Scope::Tests)
}

/// Installs what `scope` needs and is missing.
pub fn install(scope: Scope) -> anyhow::Result<()> {
    let mut wanted = missing(DEMO_PACKAGES);
    if scope == Scope::Tests {
        wanted.extend(missing(TEST_PACKAGES));
    }
    // A Node.js from elsewhere on PATH (nvm, a tarball) serves as well as Debian's.
    wanted.retain(|package| {
        !(*package == "nodejs" || *package == "npm")
            || !on_path(if *package == "npm" { "npm" } else { "node" })
    });
    apt_install(&wanted)?;
    if scope == Scope::Tests {
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
    }
    if scope == Scope::Tests {
        test_identity_provider()?;
    }
    // The gateway embeds the eBPF edge, which its build compiles (ebpf/edge/build.rs): the demo needs this too.
    ebpf_toolchain()
}

/// The tests' OpenID provider (panva's oidc-provider, `tests/e2e/idp`) from the npm registry, as its lock
/// file pins it; skipped when the installed tree is newer than the lock file.
fn test_identity_provider() -> anyhow::Result<()> {
    let dir = crate::root().join("tests/e2e/idp");
    let modified = |path: &std::path::Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let installed = modified(&dir.join("node_modules/.package-lock.json"));
    let locked = modified(&dir.join("package-lock.json"));
    if installed.is_some() && installed >= locked {
        return Ok(());
    }
    run_cmd(
        Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--ignore-scripts"])
            .current_dir(&dir),
    )
}

/// The eBPF program's toolchain: nightly with rust-src (for `-Z build-std=core`) and bpf-linker, built
/// against Debian's LLVM 22 (about five minutes on two cores, once).
fn ebpf_toolchain() -> anyhow::Result<()> {
    let nightly_src = Command::new("rustup")
        .args(["+nightly", "component", "list", "--installed"])
        .output()
        .map(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains("rust-src"))
        .unwrap_or(false);
    if !nightly_src {
        let has_nightly = Command::new("rustup")
            .args(["run", "nightly", "rustc", "--version"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        // An existing nightly is kept as it is: updating it could move rustc to an LLVM that the
        // bpf-linker below was not built for.
        if has_nightly {
            run_cmd(Command::new("rustup").args([
                "component",
                "add",
                "rust-src",
                "--toolchain",
                "nightly",
            ]))?;
        } else {
            run_cmd(Command::new("rustup").args([
                "toolchain",
                "install",
                "nightly",
                "--profile",
                "minimal",
                "--component",
                "rust-src",
            ]))?;
        }
    }
    let has_linker = Command::new("bpf-linker")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if has_linker {
        return Ok(());
    }
    apt_install(&missing(LLVM_PACKAGES))?;
    let path = format!("{LLVM_BIN}:{}", std::env::var("PATH").unwrap_or_default());
    run_cmd(
        Command::new("cargo")
            .env("PATH", path)
            .args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION])
            .args(["--no-default-features", "--features", "llvm-22"]),
    )
}

/// The packages of `list` (package, a file that proves it is installed) whose file is absent.
pub fn missing(list: &[(&'static str, &str)]) -> Vec<&'static str> {
    list.iter()
        .filter(|(_, path)| !std::path::Path::new(path).exists())
        .map(|(package, _)| *package)
        .collect()
}

/// Installs Debian packages (none: nothing to do), keeping package scripts from starting services.
pub fn apt_install(missing: &[&str]) -> anyhow::Result<()> {
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
                .args(missing),
        );
        if placed_guard {
            let _ = std::fs::remove_file(guard);
        }
        result?;
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
