//! The demo's network and targets, and the target configuration the e2e harness writes too.
//!
//! [`Demo::start`] is what `cargo xtask demo` runs and what the e2e scenario `demo` runs: a namespace
//! ([`net`]) with two OpenSSH targets (`alpha`, `beta`) and an xrdp desktop (`desk`), all logged in to as
//! [`DEMO_USER`] with a fresh password, and [`Demo::targets_toml`] gives the gateway's `[[networks]]` and
//! `[[targets]]` for them. The harness's own `Sshd` and `Xrdp` write their configurations with [`sshd`]
//! and [`xrdp`], so there is one way to run each server. Only std and anyhow: xtask links this crate and
//! must stay quick to build.

pub mod net;
pub mod proc;
pub mod sshd;
pub mod user;
pub mod xrdp;

use std::fmt::Write as _;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use anyhow::{Context, Result, bail};

pub use net::{DemoNet, Layout};

/// The account the demo's targets log in.
pub const DEMO_USER: &str = "sallyport-demo";
/// The demo desktop's background, as RGB (`#1d4e89`).
pub const DESKTOP_BACKGROUND: [u8; 3] = [0x1d, 0x4e, 0x89];
/// What the demo desktop says.
pub const DESKTOP_TEXT: &str = "This is the Sallyport demo desktop: an xrdp session reached through the gateway, and recorded.";

/// The demo user's `~/startwm.sh`: a coloured background, a line of text saying what this is, an xterm.
/// The session writes its display to `$SALLYPORT_DEMO_DIR/display` so the demo can clean up after it.
fn startwm() -> String {
    format!(
        r##"#!/bin/sh
# Written by sallyport-demo (xtask/demo): the Sallyport demo desktop.
echo "$DISPLAY" > "${{SALLYPORT_DEMO_DIR:-/tmp}}/display"
xsetroot -solid '#1d4e89'
xmessage -geometry +40+420 -buttons '' -fg white -bg '#1d4e89' "{DESKTOP_TEXT}" &
xterm -geometry 80x20+40+40 &
exec sleep infinity
"##
    )
}

/// The tools the demo's targets need (Debian packages of `cargo xtask demo`'s setup).
const TOOLS: &[&str] = &[
    sshd::SSHD,
    sshd::SSH_KEYGEN,
    "/usr/bin/xterm",
    "/usr/bin/xsetroot",
    "/usr/bin/xmessage",
    "/usr/sbin/useradd",
];

/// A target of the demo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Its name in the portal.
    pub name: &'static str,
    /// `ssh` or `rdp`.
    pub protocol: &'static str,
    /// Where it listens.
    pub addr: SocketAddr,
}

/// The running demo targets; stopped (by PID), and the network removed, on drop.
#[derive(Debug)]
pub struct Demo {
    targets: Vec<Target>,
    password: String,
    dir: PathBuf,
    children: Vec<Child>,
    net: DemoNet,
}

impl Demo {
    /// Creates the demo network on `layout`, gives [`DEMO_USER`] a fresh password, and starts the targets
    /// with their files under `dir/targets`; returns once each serves (sshd its banner, xrdp a TCP accept).
    pub fn start(dir: &Path, layout: Layout) -> Result<Demo> {
        for tool in TOOLS.iter().chain(xrdp::TOOLS) {
            if !Path::new(tool).exists() {
                bail!("{tool} is missing; `cargo xtask demo` (or `cargo xtask setup`) installs it");
            }
        }
        let targets = vec![
            target("alpha", "ssh", layout.addr(2), 22),
            target("beta", "ssh", layout.addr(3), 22),
            target("desk", "rdp", layout.addr(4), 3389),
        ];
        let hosts: Vec<u8> = targets
            .iter()
            .filter_map(|t| match t.addr.ip() {
                std::net::IpAddr::V4(v4) => Some(v4.octets()[3]),
                std::net::IpAddr::V6(_) => None,
            })
            .collect();
        let net = DemoNet::create(layout, &hosts)?;
        let password = user::random_password()?;
        let home = user::ensure(DEMO_USER, &password)?;
        let mut demo = Demo {
            targets,
            password,
            dir: dir.join("targets"),
            children: Vec::new(),
            net,
        };
        for target in demo.targets.clone() {
            let dir = demo.dir.join(target.name);
            // A previous run's files (its host key would be kept, but nothing else is worth keeping).
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir)?;
            match target.protocol {
                "ssh" => demo.start_sshd(&dir, target.addr)?,
                _ => demo.start_xrdp(&dir, target.addr, &home)?,
            }
        }
        Ok(demo)
    }

    fn start_sshd(&mut self, dir: &Path, addr: SocketAddr) -> Result<()> {
        let host_key = dir.join("ssh_host_ed25519_key");
        sshd::generate_host_key(&host_key, "sallyport-demo")?;
        let config = dir.join("sshd_config");
        let listen = addr.ip().to_string();
        let text = sshd::SshdConfig {
            listen: &listen,
            port: addr.port(),
            host_key: &host_key,
            authorized_keys: None,
            extra: &[],
        }
        .text();
        fs::write(&config, text)?;
        let log = dir.join("sshd.log");
        let mut child = sshd::spawn(&self.net.layout().namespace, &config, &log)?;
        let ready = sshd::wait_banner(&mut child, addr, Duration::from_secs(10));
        self.children.push(child);
        ready.with_context(|| {
            format!(
                "sshd's log:\n{}",
                fs::read_to_string(&log).unwrap_or_default()
            )
        })
    }

    fn start_xrdp(&mut self, dir: &Path, addr: SocketAddr, home: &Path) -> Result<()> {
        xrdp::install_startwm(home, &startwm())?;
        // The session runs as the demo user and writes its display here.
        let out = dir.join("session");
        fs::create_dir_all(&out)?;
        fs::set_permissions(&out, fs::Permissions::from_mode(0o777))?;
        xrdp::XrdpConfig {
            dir,
            port: addr.port(),
            session_vars: &[("SALLYPORT_DEMO_DIR", out.display().to_string())],
            kill_disconnected: false,
            chansrv_debug: false,
        }
        .write()?;
        let [sesman, server] = xrdp::spawn(&self.net.layout().namespace, dir)?;
        self.children.extend([sesman, server]);
        let count = self.children.len();
        xrdp::wait_listening(
            &mut self.children[count - 2..],
            addr,
            Duration::from_secs(15),
            dir,
        )
    }

    /// The targets.
    pub fn targets(&self) -> &[Target] {
        &self.targets
    }

    /// The password of [`DEMO_USER`] on every target.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The network's names and addresses.
    pub fn layout(&self) -> &Layout {
        self.net.layout()
    }

    /// The address the gateway has on the demo network.
    pub fn gateway_addr(&self) -> Ipv4Addr {
        self.layout().addr(1)
    }

    /// The gateway configuration's `[[networks]]` and `[[targets]]` for the demo.
    pub fn targets_toml(&self) -> String {
        let mut toml = format!(
            "[[networks]]\nname = \"demo\"\ncidr = \"{}\"\n",
            self.layout().cidr()
        );
        for t in &self.targets {
            let _ = write!(
                toml,
                "\n[[targets]]\nname = \"{}\"\naddress = \"{}\"\nport = {}\nprotocol = \"{}\"\n",
                t.name,
                t.addr.ip(),
                t.addr.port(),
                t.protocol
            );
        }
        toml
    }

    /// The logs of the targets (for a failing test or a target that would not start).
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for t in &self.targets {
            let dir = self.dir.join(t.name);
            let text = match t.protocol {
                "ssh" => fs::read_to_string(dir.join("sshd.log")).unwrap_or_default(),
                _ => xrdp::log(&dir),
            };
            let _ = writeln!(out, "--- {} ---\n{text}", t.name);
        }
        out
    }
}

fn target(name: &'static str, protocol: &'static str, addr: Ipv4Addr, port: u16) -> Target {
    Target {
        name,
        protocol,
        addr: SocketAddr::from((addr, port)),
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        for child in self.children.iter_mut().rev() {
            proc::stop(child, Duration::from_secs(3));
        }
        // The sessions' Xorg die with the namespace (the net's drop, after this); their sockets stay.
        for t in self.targets.iter().filter(|t| t.protocol == "rdp") {
            let display = self.dir.join(t.name).join("session/display");
            if let Some(n) = fs::read_to_string(display)
                .ok()
                .and_then(|d| xrdp::display_number(&d))
            {
                xrdp::forget_display(n);
            }
        }
    }
}
