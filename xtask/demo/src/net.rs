//! The demo network: one namespace and a veth pair to the root namespace, `.1` on the host side (where the
//! gateway lives), the targets' addresses on the namespace side, `lo` up (xrdp's sesman listens on
//! `[::1]:3350`). Removed, with everything still running inside, on drop.

use std::ffi::OsStr;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use anyhow::{Result, bail};

use crate::proc::run_ok;

/// Names and addresses of a demo network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The namespace.
    pub namespace: String,
    /// The veth end in the root namespace.
    pub host_if: String,
    /// The veth end in the namespace.
    pub ns_if: String,
    /// The first three octets of the /24.
    pub subnet: [u8; 3],
}

impl Layout {
    /// What `cargo xtask demo` uses: namespace `sallyport-demo`, 10.213.77.0/24.
    pub fn demo() -> Layout {
        Layout {
            namespace: "sallyport-demo".into(),
            host_if: "spdemo0".into(),
            ns_if: "spdemo1".into(),
            subnet: [10, 213, 77],
        }
    }

    /// The address `.host` of the /24.
    pub fn addr(&self, host: u8) -> Ipv4Addr {
        let [a, b, c] = self.subnet;
        Ipv4Addr::new(a, b, c, host)
    }

    /// The /24 as `A.B.C.0/24`.
    pub fn cidr(&self) -> String {
        format!("{}/24", self.addr(0))
    }
}

/// A created demo network.
#[derive(Debug)]
pub struct DemoNet {
    layout: Layout,
}

fn ip(args: &[&str]) -> Result<()> {
    run_ok(Command::new("ip").args(args)).map(drop)
}

impl DemoNet {
    /// Creates the namespace and the veth pair, with `.1` on the host side and `hosts` (the last octets) on
    /// the namespace side. Leftovers of the same names (a demo killed hard) are removed first; a /24 that
    /// this machine already uses elsewhere is refused.
    pub fn create(layout: Layout, hosts: &[u8]) -> Result<DemoNet> {
        let quiet = |args: &[&str]| {
            let _ = Command::new("ip")
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        };
        quiet(&["netns", "del", &layout.namespace]);
        quiet(&["link", "del", &layout.host_if]);
        let addrs = run_ok(Command::new("ip").args(["-o", "addr"]))?;
        let prefix = format!(" {}.", layout.addr(0).to_string().trim_end_matches(".0"));
        if addrs.contains(&prefix) {
            bail!(
                "{} is already used on this machine; the demo network would collide with it",
                layout.cidr()
            );
        }
        // From here on, drop removes whatever was made.
        let net = DemoNet { layout };
        let l = &net.layout;
        ip(&["netns", "add", &l.namespace])?;
        ip(&["-n", &l.namespace, "link", "set", "lo", "up"])?;
        ip(&[
            "link",
            "add",
            &l.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &l.ns_if,
            "netns",
            &l.namespace,
        ])?;
        ip(&[
            "addr",
            "add",
            &format!("{}/24", l.addr(1)),
            "dev",
            &l.host_if,
        ])?;
        ip(&["link", "set", &l.host_if, "up"])?;
        for host in hosts {
            let addr = format!("{}/24", l.addr(*host));
            ip(&["-n", &l.namespace, "addr", "add", &addr, "dev", &l.ns_if])?;
        }
        ip(&["-n", &l.namespace, "link", "set", &l.ns_if, "up"])?;
        Ok(net)
    }

    /// Its names and addresses.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// A command that runs `program` inside the namespace.
    pub fn exec(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.layout.namespace])
            .arg(program);
        cmd
    }
}

impl Drop for DemoNet {
    fn drop(&mut self) {
        // What still runs inside was started there by the demo (a session's Xorg, sshd's children).
        if let Ok(pids) = run_ok(Command::new("ip").args(["netns", "pids", &self.layout.namespace]))
        {
            for pid in pids.split_whitespace() {
                let _ = Command::new("kill").args(["-KILL", pid]).status();
            }
        }
        let _ = ip(&["link", "del", &self.layout.host_if]);
        let _ = ip(&["netns", "del", &self.layout.namespace]);
    }
}
