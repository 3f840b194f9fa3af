//! The built image booted under QEMU on a LAN: a namespace holding a bridge (`br0`) and QEMU's tap device
//! (`tap0`), onto which callers move the host ends of their own veths (the e2e harness its client and
//! target networks, `cargo xtask demo --appliance` the demo's targets and a veth back to the host), so the
//! guest and those networks share one layer-2 segment that reaches nothing else.
//!
//! The guest is configured through a config drive ([`crate::config_drive`]) holding `gateway.toml` and a
//! static `.network` file, exactly as an operator would; [`Appliance`] reads its serial console (the
//! one-time password, the fingerprint) and shuts it down cleanly over QMP. Unlike the build functions, this
//! module runs its commands itself (`ip`, `cp`, QEMU): it is the run-time side, shared by the harness and
//! xtask; each short command is bounded in time by `sallyport_demo::proc` (the one std-only runner), and
//! QEMU ends with [`Appliance::shutdown`] or [`Appliance::kill`].

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::Ipv4Addr;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use sallyport_demo::proc::{run, run_ok};

use crate::config_drive::{self, DriveFile};
use crate::qemu::{Accel, Console, DiskFormat, Network, Qemu};

fn ip(args: &[&str]) -> Result<()> {
    run_ok(Command::new("ip").args(args)).map(drop)
}

/// A layer-2 segment in its own namespace: bridge `br0` and QEMU's `tap0`; removed (with every interface
/// moved into it, and so their veth peers) on drop.
#[derive(Debug)]
pub struct Lan {
    name: String,
}

impl Lan {
    /// Creates namespace `name` with the bridge and the tap device; a namespace of that name left behind by
    /// a killed earlier run is removed first.
    pub fn create(name: &str) -> Result<Lan> {
        let _ = Command::new("ip")
            .args(["netns", "del", name])
            .stderr(Stdio::null())
            .status();
        ip(&["netns", "add", name])?;
        // From here on, drop removes what was made.
        let lan = Lan {
            name: name.to_owned(),
        };
        for args in [
            &["link", "set", "lo", "up"][..],
            &["link", "add", "br0", "type", "bridge"],
            &["link", "set", "br0", "up"],
            &["tuntap", "add", "dev", "tap0", "mode", "tap"],
            &["link", "set", "tap0", "master", "br0", "up"],
        ] {
            lan.ns(args)?;
        }
        Ok(lan)
    }

    fn ns(&self, args: &[&str]) -> Result<()> {
        run_ok(Command::new("ip").args(["-n", &self.name]).args(args)).map(drop)
    }

    /// Moves `ifname` (an interface of the root namespace, e.g. a veth's host end) onto the bridge; it
    /// loses its addresses on the way.
    pub fn attach(&self, ifname: &str) -> Result<()> {
        ip(&["link", "set", ifname, "netns", &self.name])?;
        self.ns(&["link", "set", ifname, "master", "br0", "up"])
    }

    /// A veth pair from the root namespace (`host_if`, addressed `host_cidr`, e.g. `10.0.0.1/24`) to the
    /// bridge, so programs on the host reach the guest directly; it goes with the namespace.
    pub fn connect_host(&self, host_if: &str, host_cidr: &str) -> Result<()> {
        let peer = format!("{host_if}l");
        let _ = Command::new("ip")
            .args(["link", "del", host_if])
            .stderr(Stdio::null())
            .status();
        ip(&[
            "link", "add", host_if, "type", "veth", "peer", "name", &peer, "netns", &self.name,
        ])?;
        self.ns(&["link", "set", &peer, "master", "br0", "up"])?;
        ip(&["addr", "add", host_cidr, "dev", host_if])?;
        ip(&["link", "set", host_if, "up"])
    }

    /// The namespace name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// The `.network` file that gives the guest's eth0 the static address `guest/24` (no DHCP, no IPv6 RA).
pub fn static_network(guest: Ipv4Addr) -> String {
    format!(
        "[Match]\nName=eth0\n\n[Network]\nAddress={guest}/24\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n"
    )
}

/// The appliance's `gateway.toml` as an operator writes it for a LAN: the portal on 443 with a certificate for
/// `hostnames`, the journal, the edge required on eth0 (the one interface, public), then
/// `networks_and_targets` (`[[networks]]` and `[[targets]]` sections).
pub fn gateway_toml(hostnames: &[&str], networks_and_targets: &str) -> String {
    let hostnames: Vec<String> = hostnames.iter().map(|h| format!("{h:?}")).collect();
    format!(
        r#"state_dir = "/var/lib/sallyport"

[portal]
listen = "[::]:443"
hostnames = [{hostnames}]

[log]
journald = true

[edge]
required = true

[[edge.interfaces]]
name = "eth0"
role = "public"

{networks_and_targets}"#,
        hostnames = hostnames.join(", ")
    )
}

/// What booting needs on this host, with the Debian package that has it.
const HOST_TOOLS: &[(&str, &str)] = &[
    ("/usr/bin/qemu-system-x86_64", "qemu-system-x86"),
    (crate::qemu::OVMF_CODE, "ovmf"),
    ("/usr/sbin/mkfs.vfat", "dosfstools"),
    ("/usr/bin/mcopy", "mtools"),
];

/// Fails, naming what to install or build, unless this host can boot the appliance: QEMU, the UEFI
/// firmware, the config drive's tools, and the built image.
pub fn check_host() -> Result<()> {
    for (tool, package) in HOST_TOOLS {
        if !Path::new(tool).exists() {
            bail!(
                "{tool} is missing: `apt-get install {package}` (`cargo xtask setup` installs it)"
            );
        }
    }
    let image = crate::raw_image();
    if !image.exists() {
        bail!(
            "no appliance image at {}: `cargo xtask build-image` builds it (cargo xtask ci does)",
            image.display()
        );
    }
    Ok(())
}

/// A booted appliance.
pub struct Appliance {
    dir: PathBuf,
    disk: PathBuf,
    lan_ns: String,
    child: Option<Child>,
    /// The serial port's input (QEMU's stdin); its output goes to `serial.log` through a copying thread.
    serial_in: Option<ChildStdin>,
    accel: Accel,
    started: Instant,
}

impl Appliance {
    /// Copies the built image ([`crate::raw_image`]) to `dir/disk.raw` (grown to 2 GiB for the data
    /// partition) and writes a config drive with `gateway_toml` and the static address `guest` for eth0.
    pub fn prepare(dir: &Path, guest: Ipv4Addr, gateway_toml: &str) -> Result<PathBuf> {
        check_host()?;
        let image = crate::raw_image();
        fs::create_dir_all(dir)?;
        let disk = dir.join("disk.raw");
        // The image is a few hundred MiB, mostly holes: a slow disk still copies it well within this.
        run(
            Command::new("cp")
                .args(["--sparse=always"])
                .arg(&image)
                .arg(&disk),
            None,
            Duration::from_secs(300),
        )?;
        run_ok(Command::new("truncate").args(["-s", "2G"]).arg(&disk))?;
        let files = dir.join("config");
        fs::create_dir_all(&files)?;
        fs::write(files.join("gateway.toml"), gateway_toml)?;
        fs::write(files.join("10-lan.network"), static_network(guest))?;
        let drive_files =
            ["gateway.toml", "10-lan.network"].map(|n| DriveFile::new(n, files.join(n)));
        config_drive::write(&dir.join("config.img"), &drive_files, &mut |c| {
            run_ok(c).map(drop)
        })?;
        Ok(disk)
    }

    /// Boots `dir/disk.raw` (see [`Appliance::prepare`]) on the tap device of the LAN namespace `lan_ns`,
    /// under the accelerator [`Accel::chosen`] picks (software emulation unless `SALLYPORT_KVM=1`).
    pub fn boot(dir: &Path, lan_ns: &str) -> Result<Appliance> {
        Appliance::start(dir, lan_ns, false)
    }

    /// [`Appliance::boot`] with QEMU in a process group of its own, so a Ctrl-C at the terminal reaches only
    /// the caller, which then shuts the guest down cleanly (QEMU would otherwise stop at once on SIGINT). A
    /// caller killed hard leaves QEMU running: tests use [`Appliance::boot`].
    pub fn boot_own_group(dir: &Path, lan_ns: &str) -> Result<Appliance> {
        Appliance::start(dir, lan_ns, true)
    }

    fn start(dir: &Path, lan_ns: &str, own_group: bool) -> Result<Appliance> {
        let accel = Accel::chosen(false)?;
        let disk = dir.join("disk.raw");
        let vars = dir.join("OVMF_VARS.fd");
        Qemu::fresh_vars(&vars)?;
        let serial = dir.join("serial.log");
        let _ = fs::remove_file(&serial);
        let qmp = dir.join("qmp.sock");
        let _ = fs::remove_file(&qmp);
        let qemu = Qemu {
            vars,
            disk: disk.clone(),
            disk_format: DiskFormat::Raw,
            config_drive: Some(dir.join("config.img")),
            network: Network::Tap {
                ifname: "tap0".into(),
            },
            console: Console::SerialOnStdio,
            qmp: Some(qmp),
            accel,
        };
        let mut command = qemu.command_in_netns(lan_ns);
        if own_group {
            command.process_group(0);
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(fs::File::create(dir.join("qemu.stderr"))?)
            .spawn()
            .context("starting qemu")?;
        // The serial port is QEMU's stdio: its output is copied into serial.log as it comes (the copy ends
        // when QEMU exits), its input is kept for `type_serial`.
        let mut output = child.stdout.take().context("qemu's stdout")?;
        let mut log = fs::File::create(&serial)?;
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(n) = output.read(&mut buffer) {
                if n == 0 || log.write_all(&buffer[..n]).is_err() {
                    break;
                }
            }
        });
        let serial_in = child.stdin.take();
        Ok(Appliance {
            dir: dir.to_path_buf(),
            disk,
            lan_ns: lan_ns.to_owned(),
            child: Some(child),
            serial_in,
            accel,
            started: Instant::now(),
        })
    }

    /// The accelerator in use.
    pub fn accel(&self) -> Accel {
        self.accel
    }

    /// Time since QEMU started.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// What the guest printed on its serial console so far.
    pub fn serial(&self) -> String {
        fs::read(self.dir.join("serial.log"))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Waits until the serial log satisfies `done`; fails early if QEMU exits.
    pub fn wait_serial(
        &mut self,
        timeout: Duration,
        done: impl Fn(&str) -> bool,
    ) -> Result<String> {
        self.wait_serial_or(timeout, done, || false)
    }

    /// [`Appliance::wait_serial`], also giving up (with an error) once `cancel` returns true (Ctrl-C).
    pub fn wait_serial_or(
        &mut self,
        timeout: Duration,
        done: impl Fn(&str) -> bool,
        cancel: impl Fn() -> bool,
    ) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.serial();
            if done(&log) {
                return Ok(log);
            }
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                self.child = None;
                bail!("qemu exited ({status}); serial console:\n{}", tail(&log));
            }
            if cancel() {
                bail!("interrupted while waiting for the guest");
            }
            if Instant::now() > deadline {
                bail!(
                    "the guest did not get there within {timeout:?}; serial console:\n{}",
                    tail(&log)
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Types `text` on the serial console (`\r` ends a line there, as the Enter key does).
    pub fn type_serial(&mut self, text: &str) -> Result<()> {
        let input = self
            .serial_in
            .as_mut()
            .context("the serial console's input is closed")?;
        input.write_all(text.replace('\n', "\r").as_bytes())?;
        input.flush()?;
        Ok(())
    }

    /// The value after `key: ` on the last serial line that has it (the gateway prints `password: …`).
    pub fn printed(&self, key: &str) -> Option<String> {
        let needle = format!("{key}: ");
        self.serial()
            .lines()
            .filter_map(|line| line.split_once(&needle).map(|(_, v)| v.trim().to_owned()))
            .next_back()
    }

    /// Shuts the guest down cleanly (Ctrl-Alt-Del; `-no-reboot` makes QEMU exit) within 180 s (emulation is
    /// slow), else kills it: killing QEMU at once would lose the journal's last writes.
    pub fn shutdown(&mut self) -> Result<()> {
        let sent = self.press_ctrl_alt_delete();
        let deadline = Instant::now() + Duration::from_secs(180);
        while let Some(child) = self.child.as_mut() {
            if child.try_wait()?.is_some() {
                self.child = None;
                return sent;
            }
            if Instant::now() > deadline {
                self.kill();
                bail!(
                    "the guest did not power off within 180 s ({sent:?}); serial console:\n{}",
                    tail(&self.serial())
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        sent
    }

    fn press_ctrl_alt_delete(&self) -> Result<()> {
        let mut stream = UnixStream::connect(self.dir.join("qmp.sock"))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut reader = BufReader::new(stream.try_clone()?);
        let mut line = String::new();
        reader.read_line(&mut line)?;
        stream.write_all(b"{\"execute\":\"qmp_capabilities\"}\n")?;
        line.clear();
        reader.read_line(&mut line)?;
        stream.write_all(b"{\"execute\":\"send-key\",\"arguments\":{\"keys\":[{\"type\":\"qcode\",\"data\":\"ctrl\"},{\"type\":\"qcode\",\"data\":\"alt\"},{\"type\":\"qcode\",\"data\":\"delete\"}]}}\n")?;
        line.clear();
        reader.read_line(&mut line)?;
        if !line.contains("return") {
            bail!("qemu refused the key press: {line}");
        }
        Ok(())
    }

    /// Stops QEMU at once.
    pub fn kill(&mut self) {
        self.serial_in = None;
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// True while QEMU runs.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The disk file.
    pub fn disk(&self) -> &Path {
        &self.disk
    }

    /// The LAN namespace QEMU runs in.
    pub fn lan_ns(&self) -> &str {
        &self.lan_ns
    }
}

impl Drop for Appliance {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The last 6000 bytes of the console, for an error message.
fn tail(text: &str) -> String {
    let start = text.len().saturating_sub(6000);
    let start = (start..text.len())
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(0);
    text[start..].to_owned()
}
