//! The QEMU command line that boots the appliance: UEFI firmware (OVMF, its variables in a per-boot copy),
//! the disk and the config drive on virtio, one virtio NIC, the serial console, and the accelerator the
//! crate's policy picks ([`Accel::chosen`]). [`Qemu::args`] is plain data, so the command line is tested
//! without booting anything.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// The UEFI firmware's code (read-only).
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
/// The pristine UEFI variable store each boot starts from a copy of.
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";
/// The QEMU binary.
pub const QEMU: &str = "qemu-system-x86_64";
/// The environment variable that opts in to KVM (`1`).
pub const KVM_OPT_IN: &str = "SALLYPORT_KVM";

/// The accelerator a guest runs under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    /// Hardware virtualisation (`-accel kvm -cpu host`).
    Kvm,
    /// Software emulation (`-accel tcg -cpu max`).
    Tcg,
}

impl Accel {
    /// The crate's one policy: KVM when asked for (`asked`, e.g. `run-vm --kvm`, or `SALLYPORT_KVM=1` in the
    /// environment), software emulation otherwise. Asking for KVM without `/dev/kvm` is an error rather
    /// than a silent fallback, so a figure measured "under KVM" was.
    pub fn chosen(asked: bool) -> anyhow::Result<Accel> {
        let from_env = std::env::var(KVM_OPT_IN).ok();
        Accel::decide(asked, from_env.as_deref(), Path::new("/dev/kvm").exists())
    }

    /// [`Accel::chosen`] over its inputs: the flag, the variable's value, whether `/dev/kvm` exists.
    pub fn decide(asked: bool, env: Option<&str>, dev_kvm: bool) -> anyhow::Result<Accel> {
        let from_env = match env {
            None | Some("" | "0") => false,
            Some("1") => true,
            Some(other) => bail!("{KVM_OPT_IN}={other:?}: only 1 (use KVM) or 0 is understood"),
        };
        if !(asked || from_env) {
            return Ok(Accel::Tcg);
        }
        if !dev_kvm {
            bail!("KVM was asked for, but there is no /dev/kvm");
        }
        Ok(Accel::Kvm)
    }

    /// How people are told.
    pub fn describe(self) -> &'static str {
        match self {
            Accel::Kvm => "KVM",
            Accel::Tcg => "software emulation",
        }
    }

    fn args(self) -> [&'static str; 4] {
        match self {
            Accel::Kvm => ["-accel", "kvm", "-cpu", "host"],
            Accel::Tcg => ["-accel", "tcg", "-cpu", "max"],
        }
    }
}

/// The disk image's format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskFormat {
    /// A raw image (the built disk, or a copy of it).
    Raw,
    /// A qcow2 file (a copy-on-write overlay over the built disk).
    Qcow2,
}

/// The guest's one network card.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Network {
    /// QEMU's user-mode network, the appliance's 443 (TCP and UDP) forwarded to `127.0.0.1:port`.
    Forward443 {
        /// The host port.
        port: u16,
    },
    /// An existing tap device (on a bridge the caller set up).
    Tap {
        /// Its name.
        ifname: String,
    },
}

/// Where the serial console goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Console {
    /// This terminal, QEMU's monitor multiplexed on it (`-nographic`; Ctrl-A X quits): for a person.
    Terminal,
    /// QEMU's stdin and stdout carry the serial port and nothing else (no default devices): for a program.
    SerialOnStdio,
}

/// One boot of the appliance, as a QEMU command line.
#[derive(Clone, Debug)]
pub struct Qemu {
    /// The UEFI variable store of this boot (see [`Qemu::fresh_vars`]).
    pub vars: PathBuf,
    /// The disk.
    pub disk: PathBuf,
    /// Its format.
    pub disk_format: DiskFormat,
    /// The config drive (see [`crate::config_drive`]), attached read-only.
    pub config_drive: Option<PathBuf>,
    /// The network card's back end.
    pub network: Network,
    /// The serial console.
    pub console: Console,
    /// A QMP socket to listen on (for a clean power-off by key press).
    pub qmp: Option<PathBuf>,
    /// The accelerator.
    pub accel: Accel,
}

impl Qemu {
    /// Copies the pristine UEFI variables to `vars` (each boot writes its own).
    pub fn fresh_vars(vars: &Path) -> anyhow::Result<()> {
        std::fs::copy(OVMF_VARS, vars)
            .with_context(|| format!("copying the UEFI variables to {}", vars.display()))?;
        Ok(())
    }

    /// The arguments after the program name.
    pub fn args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = Vec::new();
        let mut push = |words: &[&str]| args.extend(words.iter().map(OsString::from));
        push(&["-machine", "q35", "-m", "1024", "-smp", "2", "-no-reboot"]);
        match self.console {
            Console::Terminal => push(&["-nographic"]),
            Console::SerialOnStdio => push(&[
                "-display",
                "none",
                "-no-user-config",
                "-nodefaults",
                "-serial",
                "stdio",
            ]),
        }
        let format = match self.disk_format {
            DiskFormat::Raw => "raw",
            DiskFormat::Qcow2 => "qcow2",
        };
        let mut drives = vec![
            format!("if=pflash,format=raw,readonly=on,file={OVMF_CODE}"),
            format!("if=pflash,format=raw,file={}", self.vars.display()),
            format!("if=virtio,format={format},file={}", self.disk.display()),
        ];
        if let Some(drive) = &self.config_drive {
            drives.push(format!(
                "if=virtio,format=raw,readonly=on,file={}",
                drive.display()
            ));
        }
        for drive in drives {
            args.push("-drive".into());
            args.push(drive.into());
        }
        let netdev = match &self.network {
            Network::Forward443 { port } => format!(
                "user,id=net0,hostfwd=tcp:127.0.0.1:{port}-:443,hostfwd=udp:127.0.0.1:{port}-:443"
            ),
            Network::Tap { ifname } => {
                format!("tap,id=net0,ifname={ifname},script=no,downscript=no")
            }
        };
        args.extend(["-netdev".into(), netdev.into()]);
        args.extend(["-device".into(), "virtio-net-pci,netdev=net0".into()]);
        if let Some(qmp) = &self.qmp {
            args.push("-qmp".into());
            args.push(format!("unix:{},server=on,wait=off", qmp.display()).into());
        }
        args.extend(self.accel.args().map(OsString::from));
        args
    }

    /// `qemu-system-x86_64` with [`Qemu::args`].
    pub fn command(&self) -> Command {
        let mut command = Command::new(QEMU);
        command.args(self.args());
        command
    }

    /// The same, run inside the network namespace `netns` (where its tap device is).
    pub fn command_in_netns(&self, netns: &str) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", netns, QEMU])
            .args(self.args());
        command
    }
}

#[cfg(test)]
#[path = "qemu_tests.rs"]
mod tests;
