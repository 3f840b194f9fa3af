//! The built appliance image under QEMU, on a test LAN: `sallyport-image`'s [`vm::Lan`] (a namespace with
//! a bridge and QEMU's tap device) holding the moved host ends of two [`TargetNet`] veths (a client namespace
//! and a target namespace), so the guest, the client and the target share one layer-2 segment that reaches
//! nothing else.
//!
//! Booting, the config drive (`gateway.toml` and a static `.network`, as an operator writes them), the serial
//! console and the clean shutdown are `sallyport-image`'s ([`Appliance`], shared with `cargo xtask demo
//! --appliance`); this module adds what only tests need: the test LAN's addresses, the tests' `gateway.toml`,
//! waiting for the portal over pinned HTTPS, and reading the data partition of a stopped guest offline.

use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
pub use sallyport_image::Accel;
use sallyport_image::vm;
pub use sallyport_image::vm::Appliance;

use crate::TargetNet;
use crate::common::{require_tool, run_ok};

/// The image `cargo xtask build-image` writes.
pub fn image_path() -> PathBuf {
    sallyport_image::raw_image()
}

/// The test LAN: the client and target networks' veths on the bridge, addressed in the target network's /24.
pub struct Lan {
    lan: vm::Lan,
    /// The guest's address.
    pub guest: Ipv4Addr,
    /// The client namespace's address on the LAN.
    pub client: Ipv4Addr,
}

impl Lan {
    /// Builds the LAN from a client and a target network (their host ends move into it).
    pub fn create(client: &TargetNet, target: &TargetNet) -> Result<Lan> {
        let lan = vm::Lan::create(&format!("spe2e-lan-{}", std::process::id()))?;
        for net in [client, target] {
            lan.attach(net.host_if())?;
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
            lan,
            guest,
            client: client_addr,
        })
    }

    /// The namespace name (where QEMU runs).
    pub fn name(&self) -> &str {
        self.lan.name()
    }
}

/// The appliance's `gateway.toml` for the test LAN ([`vm::gateway_toml`]): the LAN as the one network, and
/// `target` (an `address:port` of an sshd) as target `alpha`.
pub fn gateway_toml(lan_cidr: &str, target: Option<&str>) -> String {
    let mut sections = format!("[[networks]]\nname = \"lan\"\ncidr = \"{lan_cidr}\"\n");
    if let Some(target) = target {
        let (address, port) = target.rsplit_once(':').unwrap_or((target, "22"));
        sections.push_str(&format!(
            "\n[[targets]]\nname = \"alpha\"\naddress = \"{address}\"\nport = {port}\n"
        ));
    }
    vm::gateway_toml(&["127.0.0.1", "localhost"], &sections)
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

/// Fails unless `debugfs` (reading a stopped guest's data partition) is installed.
fn require_debugfs() -> Result<()> {
    require_tool("/usr/sbin/debugfs")
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
    require_debugfs()?;
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
