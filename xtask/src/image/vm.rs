//! `cargo xtask run-vm [--port N] [--kvm] [--config FILE]`: boots the built image under QEMU for a person to
//! try it: UEFI (OVMF), the serial console on this terminal, the appliance's 443 (TCP and UDP) forwarded to
//! `127.0.0.1:N` (8443 unless told). The disk is a copy-on-write overlay, so the built image stays pristine;
//! `--config FILE` attaches a config drive holding that gateway.toml.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};

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
    let raw = super::raw_image();
    if !raw.exists() {
        bail!(
            "no image at {}; run `cargo xtask build-image` first",
            raw.display()
        );
    }
    let work = super::build_dir().join("run-vm");
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
    std::fs::copy("/usr/share/OVMF/OVMF_VARS_4M.fd", &vars)
        .context("copying the UEFI variables")?;
    let mut qemu = Command::new("qemu-system-x86_64");
    qemu.args([
        "-machine",
        "q35",
        "-m",
        "1024",
        "-smp",
        "2",
        "-nographic",
        "-no-reboot",
    ])
    .args([
        "-drive",
        "if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd",
    ])
    .arg("-drive")
    .arg(format!("if=pflash,format=raw,file={}", vars.display()))
    .arg("-drive")
    .arg(format!("if=virtio,format=qcow2,file={}", overlay.display()))
    .arg("-netdev")
    .arg(format!(
        "user,id=net0,hostfwd=tcp:127.0.0.1:{port}-:443,hostfwd=udp:127.0.0.1:{port}-:443"
    ))
    .args(["-device", "virtio-net-pci,netdev=net0"]);
    if let Some(config) = config {
        let drive = work.join("config.img");
        config_drive(Path::new(&config), &drive)?;
        qemu.arg("-drive")
            .arg(format!("if=virtio,format=raw,file={}", drive.display()));
    }
    if kvm {
        qemu.args(["-accel", "kvm", "-cpu", "host"]);
    } else {
        qemu.args(["-accel", "tcg", "-cpu", "max"]);
    }
    eprintln!(
        "xtask: booting {} under {} (about 40 s under emulation); the portal will answer on https://127.0.0.1:{port}/ ; Ctrl-A X quits",
        raw.display(),
        if kvm { "KVM" } else { "software emulation" }
    );
    run_cmd(&mut qemu)
}

/// A FAT config drive labelled SALLYPORT holding `gateway.toml`, written without mounting.
pub fn config_drive(config: &Path, drive: &Path) -> anyhow::Result<()> {
    let _ = std::fs::remove_file(drive);
    run_cmd(
        Command::new("mkfs.vfat")
            .args(["-n", "SALLYPORT", "-C"])
            .arg(drive)
            .arg("8192"),
    )?;
    run_cmd(
        Command::new("mcopy")
            .arg("-i")
            .arg(drive)
            .arg(config)
            .arg("::/gateway.toml"),
    )
}
