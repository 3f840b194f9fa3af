//! The built appliance image under QEMU, on a test LAN: a namespace holding a bridge, QEMU's tap device, and
//! the moved host ends of two [`TargetNet`] veths (a client namespace and a target namespace), so the guest,
//! the client and the target share one layer-2 segment that reaches nothing else.
//!
//! The guest is configured through a config drive (FAT, label SALLYPORT) holding `gateway.toml` and a
//! static `.network` file, exactly as an operator would. The QEMU command line, the config drive and the
//! accelerator policy are `sallyport-image`'s: software emulation unless `SALLYPORT_KVM=1` asks for KVM;
//! [`Appliance::accel`] says which.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
pub use sallyport_image::Accel;
use sallyport_image::config_drive::{self, DriveFile};
use sallyport_image::qemu::{Console, DiskFormat, Network, Qemu};

use crate::TargetNet;
use crate::common::{require_tool, run_ok};

/// The image `cargo xtask build-image` writes.
pub fn image_path() -> PathBuf {
    sallyport_image::raw_image()
}

/// A layer-2 segment in its own namespace: bridge `br0`, QEMU's `tap0`, and the veths of the client and
/// target networks, addressed in the target network's /24.
pub struct Lan {
    name: String,
    /// The guest's address.
    pub guest: Ipv4Addr,
    /// The client namespace's address on the LAN.
    pub client: Ipv4Addr,
}

impl Lan {
    /// Builds the LAN from a client and a target network (their host ends move into it).
    pub fn create(client: &TargetNet, target: &TargetNet) -> Result<Lan> {
        let name = format!("spe2e-lan-{}", std::process::id());
        // A namespace a killed earlier run left behind (usually there is none).
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(Stdio::null())
            .status();
        run_ok(Command::new("ip").args(["netns", "add", &name]))?;
        let ns =
            |args: &[&str]| run_ok(Command::new("ip").args(["-n", &name]).args(args)).map(|_| ());
        ns(&["link", "set", "lo", "up"])?;
        ns(&["link", "add", "br0", "type", "bridge"])?;
        ns(&["link", "set", "br0", "up"])?;
        ns(&["tuntap", "add", "dev", "tap0", "mode", "tap"])?;
        ns(&["link", "set", "tap0", "master", "br0", "up"])?;
        for net in [client, target] {
            run_ok(Command::new("ip").args(["link", "set", net.host_if(), "netns", &name]))?;
            ns(&["link", "set", net.host_if(), "master", "br0", "up"])?;
        }
        let octets = target.ns_addr().octets();
        let guest = Ipv4Addr::new(octets[0], octets[1], octets[2], 10);
        let client_addr = Ipv4Addr::new(octets[0], octets[1], octets[2], 20);
        run_ok(Command::new("ip").args([
            "-n",
            client.name(),
            "addr",
            "add",
            &format!("{client_addr}/24"),
            "dev",
            client.ns_if(),
        ]))?;
        Ok(Lan {
            name,
            guest,
            client: client_addr,
        })
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

/// The appliance's `gateway.toml` as an operator would write it for the test LAN: the portal on 443, the edge
/// required on eth0, the LAN as the one network, and `target` (an `address:port` of an sshd) as target `alpha`.
pub fn gateway_toml(lan_cidr: &str, target: Option<&str>) -> String {
    let mut toml = format!(
        r#"state_dir = "/var/lib/sallyport"

[portal]
listen = "[::]:443"
hostnames = ["127.0.0.1", "localhost"]

[log]
journald = true

[edge]
required = true

[[edge.interfaces]]
name = "eth0"
role = "public"

[[networks]]
name = "lan"
cidr = "{lan_cidr}"
"#
    );
    if let Some(target) = target {
        let (address, port) = target.rsplit_once(':').unwrap_or((target, "22"));
        toml.push_str(&format!(
            "\n[[targets]]\nname = \"alpha\"\naddress = \"{address}\"\nport = {port}\n"
        ));
    }
    toml
}

/// Waits until the portal answers HTTPS through `url` (an application answer, not just a TCP accept);
/// returns how long that took. Probes every 200 ms.
pub async fn wait_portal(url: &str, timeout: Duration) -> Result<Duration> {
    let started = Instant::now();
    let probe = crate::Client::new(url, None)?.with_timeout(Duration::from_secs(5));
    loop {
        if let Ok(response) = probe.get("/login").await
            && response.status == 200
        {
            return Ok(started.elapsed());
        }
        if started.elapsed() > timeout {
            bail!("the portal did not answer on {url} within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
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
    /// Copies the image to `dir/disk.raw` (grown to 2 GiB for the data partition) and writes a config
    /// drive with `gateway_toml` and a static address for eth0.
    pub fn prepare(dir: &Path, lan: &Lan, gateway_toml: &str) -> Result<PathBuf> {
        for tool in [
            "/usr/bin/qemu-system-x86_64",
            "/usr/sbin/mkfs.vfat",
            "/usr/bin/mcopy",
            "/usr/sbin/debugfs",
        ] {
            require_tool(tool)?;
        }
        let image = image_path();
        if !image.exists() {
            bail!(
                "no appliance image at {}; `cargo xtask build-image` builds it (cargo xtask ci does)",
                image.display()
            );
        }
        fs::create_dir_all(dir)?;
        let disk = dir.join("disk.raw");
        run_ok(
            Command::new("cp")
                .args(["--sparse=always"])
                .arg(&image)
                .arg(&disk),
        )?;
        run_ok(Command::new("truncate").args(["-s", "2G"]).arg(&disk))?;
        let files = dir.join("config");
        fs::create_dir_all(&files)?;
        fs::write(files.join("gateway.toml"), gateway_toml)?;
        fs::write(
            files.join("10-lan.network"),
            format!(
                "[Match]\nName=eth0\n\n[Network]\nAddress={}/24\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n",
                lan.guest
            ),
        )?;
        let drive_files =
            ["gateway.toml", "10-lan.network"].map(|n| DriveFile::new(n, files.join(n)));
        config_drive::write(&dir.join("config.img"), &drive_files, &mut |c| {
            run_ok(c).map(drop)
        })?;
        Ok(disk)
    }

    /// Boots `dir/disk.raw` (see [`Appliance::prepare`]) on the LAN, under the accelerator
    /// [`Accel::chosen`] picks (software emulation unless `SALLYPORT_KVM=1`).
    pub fn boot(dir: &Path, lan: &Lan) -> Result<Appliance> {
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
        let mut child = qemu
            .command_in_netns(&lan.name)
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
            while let Ok(n) = std::io::Read::read(&mut output, &mut buffer) {
                if n == 0 || log.write_all(&buffer[..n]).is_err() {
                    break;
                }
            }
        });
        let serial_in = child.stdin.take();
        Ok(Appliance {
            dir: dir.to_path_buf(),
            disk,
            lan_ns: lan.name.clone(),
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
    /// slow), else kills it.
    pub fn shutdown(&mut self) -> Result<()> {
        let qmp = self.dir.join("qmp.sock");
        let sent = (|| -> Result<()> {
            let mut stream = UnixStream::connect(&qmp)?;
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
        })();
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

fn tail(text: &str) -> String {
    let start = text.len().saturating_sub(6000);
    let start = (start..text.len())
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(0);
    text[start..].to_owned()
}

/// Partition `number` (1-based) of a GPT disk image: (offset, size) in bytes, from `sfdisk -J`.
pub fn partition(disk: &Path, number: usize) -> Result<(u64, u64)> {
    let json = run_ok(Command::new("sfdisk").arg("-J").arg(disk))?;
    let value: serde_json::Value = serde_json::from_str(&json)?;
    let table = &value["partitiontable"];
    let sector = table["sectorsize"].as_u64().unwrap_or(512);
    let part = table["partitions"]
        .get(number - 1)
        .with_context(|| format!("no partition {number} in {}: {json}", disk.display()))?;
    let start = part["start"].as_u64().context("partition start")?;
    let size = part["size"].as_u64().context("partition size")?;
    Ok((start * sector, size * sector))
}

/// Copies the ext4 data partition (partition 4) of a stopped appliance's disk into its own file.
fn extract_data_partition(disk: &Path, part: &Path) -> Result<()> {
    let (offset, size) = partition(disk, 4)?;
    run_ok(
        Command::new("dd")
            .arg(format!("if={}", disk.display()))
            .arg(format!("of={}", part.display()))
            .args([
                "bs=1M",
                "conv=sparse",
                "status=none",
                "iflag=skip_bytes,count_bytes",
            ])
            .arg(format!("skip={offset}"))
            .arg(format!("count={size}")),
    )?;
    Ok(())
}

/// Copies a file (`dump`) or a directory tree (`rdump`, into `out`) from the data partition, offline.
fn debugfs_copy(disk: &Path, request: &str, out: &Path) -> Result<()> {
    let part = out.with_extension("part");
    extract_data_partition(disk, &part)?;
    let result = run_ok(Command::new("debugfs").arg("-R").arg(request).arg(&part));
    let _ = fs::remove_file(&part);
    result.map(|_| ())
}

/// Copies a file out of the data partition (`path_in_var` is relative to /var) of a stopped appliance.
pub fn read_data_file(disk: &Path, path_in_var: &str, out: &Path) -> Result<()> {
    debugfs_copy(disk, &format!("dump {path_in_var} {}", out.display()), out)?;
    if !out.exists() {
        bail!("{path_in_var} is not on the data partition");
    }
    Ok(())
}

/// Copies a directory of the data partition into `out_dir` (which receives a directory of the same name).
pub fn read_data_dir(disk: &Path, path_in_var: &str, out_dir: &Path) -> Result<()> {
    fs::create_dir_all(out_dir)?;
    debugfs_copy(
        disk,
        &format!("rdump {path_in_var} {}", out_dir.display()),
        out_dir,
    )
}

/// The size of the ext4 file system on the data partition of a stopped appliance (block count × block size,
/// from its superblock).
pub fn data_fs_bytes(disk: &Path, scratch: &Path) -> Result<u64> {
    extract_data_partition(disk, scratch)?;
    let header = run_ok(Command::new("dumpe2fs").arg("-h").arg(scratch));
    let _ = fs::remove_file(scratch);
    let header = header?;
    let field = |name: &str| -> Result<u64> {
        header
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .with_context(|| format!("no {name:?} in dumpe2fs's output"))
    };
    Ok(field("Block count:")? * field("Block size:")?)
}
