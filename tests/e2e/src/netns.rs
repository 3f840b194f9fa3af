//! Network namespaces with a veth link to the root namespace: the "target networks" of the tests.
//!
//! Each [`TargetNet`] owns one namespace `spe2e-<tag>-<pid>-<n>` and one veth pair. The root side
//! (`spe<X>r`, address 10.231.X.1/24) is where the gateway lives; the namespace side (`spe<X>n`,
//! 10.231.X.2/24) is where target servers listen. The third octet X is unique per instance: it is
//! derived from the PID and a counter, skipped when `ip -o addr` already shows it, and reserved
//! atomically by the creation of the veth whose name contains it.

use std::ffi::OsStr;
use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{Result, bail};

use crate::common::{pid_alive, require_root, require_tool, run_ok, run_with_timeout, signal_pid};

/// Prefix of every namespace the harness creates.
pub const NETNS_PREFIX: &str = "spe2e-";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A namespace plus veth pair; deleted (with anything still running inside) on drop.
#[derive(Debug)]
pub struct TargetNet {
    name: String,
    octet: u8,
    host_if: String,
    ns_if: String,
    veth_created: bool,
}

fn ip(args: &[&str]) -> Result<String> {
    run_ok(Command::new("ip").args(args))
}

impl TargetNet {
    /// Creates the namespace and the veth pair, addresses them and brings the links up.
    pub fn create(tag: &str) -> Result<TargetNet> {
        require_root()?;
        require_tool("/usr/sbin/ip")?;
        if tag.is_empty() || !tag.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            bail!("netns tag {tag:?} must be non-empty ASCII letters, digits and '-'");
        }
        remove_stale_namespaces();

        let pid = std::process::id();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let mut net = TargetNet {
            name: format!("{NETNS_PREFIX}{tag}-{pid}-{n}"),
            octet: 0,
            host_if: String::new(),
            ns_if: String::new(),
            veth_created: false,
        };
        ip(&["netns", "add", &net.name])?;
        ip(&["-n", &net.name, "link", "set", "lo", "up"])?;

        // Candidates start at a PID- and counter-dependent place so that parallel test threads and
        // processes rarely race; a race is resolved by `ip link add` failing on the existing name.
        let start = (pid.wrapping_mul(37).wrapping_add(n.wrapping_mul(11))) % 254;
        for i in 0..254u32 {
            let octet = ((start + i) % 254 + 1) as u8;
            if octet_in_use(octet)? {
                continue;
            }
            let host_if = format!("spe{octet}r");
            let ns_if = format!("spe{octet}n");
            let out = run_with_timeout(
                Command::new("ip").args([
                    "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if, "netns",
                    &net.name,
                ]),
                Duration::from_secs(30),
            )?;
            if !out.status.success() {
                let err = String::from_utf8_lossy(&out.stderr);
                if err.contains("exists") {
                    continue;
                }
                bail!("ip link add {host_if}: {}", err.trim());
            }
            net.octet = octet;
            net.host_if = host_if;
            net.ns_if = ns_if;
            net.veth_created = true;
            break;
        }
        if !net.veth_created {
            bail!("no free /24 left in 10.231.0.0/16 for a test network");
        }
        let host = format!("{}/24", net.host_addr());
        let inner = format!("{}/24", net.ns_addr());
        ip(&["addr", "add", &host, "dev", &net.host_if])?;
        ip(&["link", "set", &net.host_if, "up"])?;
        ip(&["-n", &net.name, "addr", "add", &inner, "dev", &net.ns_if])?;
        ip(&["-n", &net.name, "link", "set", &net.ns_if, "up"])?;
        Ok(net)
    }

    /// The namespace name (`spe2e-<tag>-<pid>-<n>`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The network of the link, "10.231.X.0/24".
    pub fn cidr(&self) -> String {
        format!("10.231.{}.0/24", self.octet)
    }

    /// The root-namespace end of the link (10.231.X.1): the gateway's own address on this network.
    pub fn host_addr(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 231, self.octet, 1)
    }

    /// The namespace end of the link (10.231.X.2), where target servers listen.
    pub fn ns_addr(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 231, self.octet, 2)
    }

    /// Name of the veth end in the root namespace.
    pub fn host_if(&self) -> &str {
        &self.host_if
    }

    /// Name of the veth end inside the namespace.
    pub fn ns_if(&self) -> &str {
        &self.ns_if
    }

    /// A command that runs `program` inside the namespace (`ip netns exec NAME program`).
    pub fn exec(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// Puts one more address on the namespace side. An address outside [`Self::cidr`] is added as
    /// a /32 and routed from the root namespace via [`Self::ns_addr`]; both go away with the veth.
    pub fn add_addr(&self, addr: IpAddr) -> Result<()> {
        let IpAddr::V4(v4) = addr else {
            bail!("add_addr: only IPv4 addresses are supported, got {addr}");
        };
        let o = v4.octets();
        if o[0] == 10 && o[1] == 231 && o[2] == self.octet {
            let a = format!("{v4}/24");
            ip(&["-n", &self.name, "addr", "add", &a, "dev", &self.ns_if])?;
        } else {
            let a = format!("{v4}/32");
            let via = self.ns_addr().to_string();
            ip(&["-n", &self.name, "addr", "add", &a, "dev", &self.ns_if])?;
            ip(&["route", "add", &a, "via", &via, "dev", &self.host_if])?;
        }
        Ok(())
    }

    /// PIDs of the processes currently running inside the namespace.
    pub fn pids(&self) -> Vec<u32> {
        ip(&["netns", "pids", &self.name])
            .map(|s| {
                s.split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// A namespace with only `lo` (up) and no link to anything: where the browser runs.
#[derive(Debug)]
pub struct LoopbackNs {
    name: String,
}

impl LoopbackNs {
    /// Creates the namespace `spe2e-<tag>-<pid>-<n>` and brings `lo` up.
    pub fn create(tag: &str) -> Result<LoopbackNs> {
        require_root()?;
        require_tool("/usr/sbin/ip")?;
        remove_stale_namespaces();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let ns = LoopbackNs {
            name: format!("{NETNS_PREFIX}{tag}-{}-{n}", std::process::id()),
        };
        ip(&["netns", "add", &ns.name])?;
        ip(&["-n", &ns.name, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A command that runs `program` inside the namespace.
    pub fn exec(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }
}

impl Drop for LoopbackNs {
    fn drop(&mut self) {
        delete_namespace(&self.name, None);
    }
}

fn octet_in_use(octet: u8) -> Result<bool> {
    let addrs = ip(&["-o", "addr"])?;
    let needle = format!(" 10.231.{octet}.");
    Ok(addrs.contains(&needle))
}

fn delete_namespace(name: &str, host_if: Option<&str>) {
    // Whatever still runs inside was started there by the harness (sshd sessions and the like).
    if let Ok(pids) = ip(&["netns", "pids", name]) {
        for pid in pids
            .split_whitespace()
            .filter_map(|p| p.parse::<u32>().ok())
        {
            let _ = signal_pid(pid, "KILL");
        }
    }
    if let Some(host_if) = host_if {
        let _ = ip(&["link", "del", host_if]);
    }
    let _ = ip(&["netns", "del", name]);
}

/// Deletes namespaces left behind by harness processes that no longer exist (killed test runs).
fn remove_stale_namespaces() {
    let Ok(list) = ip(&["netns", "list"]) else {
        return;
    };
    for line in list.lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        if !name.starts_with(NETNS_PREFIX) {
            continue;
        }
        let mut parts = name.rsplit('-');
        let _n = parts.next();
        let Some(pid) = parts.next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !pid_alive(pid) {
            delete_namespace(name, None);
        }
    }
}

impl Drop for TargetNet {
    fn drop(&mut self) {
        let host_if = self.veth_created.then_some(self.host_if.as_str());
        delete_namespace(&self.name, host_if);
    }
}
