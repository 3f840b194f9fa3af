//! `cargo xtask run-vm [--port N] [--kvm] [--config FILE]`: boots the built image under QEMU for a person to
//! try it: UEFI (OVMF), the serial console on this terminal, the appliance's 443 (TCP and UDP) forwarded to
//! `127.0.0.1:N` (8443 unless told). The disk is a copy-on-write overlay, so the built image stays pristine;
//! `--config FILE` attaches a config drive holding that gateway.toml. Software emulation unless `--kvm` (or
//! `SALLYPORT_KVM=1`): the policy of `sallyport_image::Accel::chosen`.

use std::process::Command;

use anyhow::{Context, bail};
use sallyport_image::config_drive::{self, DriveFile};
use sallyport_image::qemu::{Accel, Console, DiskFormat, Network, Qemu};

use crate::run_cmd;

/// Boots the image; returns when QEMU exits (Ctrl-A X, or power-off in the guest).
pub fn run(args: &[String]) -> anyhow::Result<()> {
    let mut port = 8443u16;
    let mut kvm = false;
    let mut config = None;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--port" => {
                port = rest
                    .next()
                    .context("--port needs a number")?
                    .parse()
                    .context("--port needs a number")?;
            }
            "--kvm" => kvm = true,
            "--config" => config = Some(rest.next().context("--config needs a file")?.clone()),
            other => bail!(
                "unknown option {other}; usage: cargo xtask run-vm [--port N] [--kvm] [--config FILE]"
            ),
        }
    }
    let accel = Accel::chosen(kvm)?;
    let raw = sallyport_image::raw_image();
    if !raw.exists() {
        bail!(
            "no image at {}; run `cargo xtask build-image` first",
            raw.display()
        );
    }
    let work = sallyport_image::build_dir().join("run-vm");
    std::fs::create_dir_all(&work)?;
    let overlay = work.join("disk.qcow2");
    let _ = std::fs::remove_file(&overlay);
    run_cmd(
        Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
            .arg(&raw)
            .arg(&overlay)
            .arg("4G"),
    )?;
    let vars = work.join("OVMF_VARS.fd");
    Qemu::fresh_vars(&vars)?;
    let config_drive = match config {
        Some(config) => {
            let drive = work.join("config.img");
            config_drive::write(
                &drive,
                &[DriveFile::new("gateway.toml", config)],
                &mut run_cmd,
            )?;
            Some(drive)
        }
        None => None,
    };
    let qemu = Qemu {
        vars,
        disk: overlay,
        disk_format: DiskFormat::Qcow2,
        config_drive,
        network: Network::Forward443 { port },
        console: Console::Terminal,
        qmp: None,
        accel,
    };
    eprintln!(
        "xtask: booting {} under {} (about 40 s under emulation); the portal will answer on https://127.0.0.1:{port}/ ; Ctrl-A X quits",
        raw.display(),
        accel.describe()
    );
    run_cmd(&mut qemu.command())
}
