//! The appliance build as a plan: `image/appliance.toml` turned into a list of steps that can be printed
//! (and snapshot-tested in `image/plan.txt`) before anything runs. Paths are symbolic (`$BUILD`, `$ROOT`,
//! `$PROJECT`, `$CARGO`), resolved only when the plan is executed.

use std::fmt;

use serde::Deserialize;

/// `image/appliance.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Definition {
    /// The Debian base.
    pub base: Base,
    /// Kernel, modules, command line.
    pub kernel: Kernel,
    /// Disk layout.
    pub layout: Layout,
}

/// `[base]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Base {
    /// Debian suite.
    pub suite: String,
    /// Main mirror.
    pub mirror: String,
    /// Security mirror.
    pub security_mirror: String,
    /// Packages installed on top of minbase.
    pub packages: Vec<String>,
    /// Globs (relative to the root) deleted at the end.
    pub remove: Vec<String>,
}

/// `[kernel]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kernel {
    /// Kernel command line without `root=` and `roothash=`.
    pub cmdline: String,
    /// Module path prefixes (under `kernel/`) kept in the root.
    pub modules: Vec<String>,
    /// Modules listed for the initramfs.
    pub initramfs_modules: Vec<String>,
}

/// `[layout]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layout {
    /// Size of the EFI system partition.
    pub esp_mib: u64,
    /// Free space left after the partitions for the data partition made at first boot.
    pub data_mib: u64,
    /// Partition name of the root.
    pub root_label: String,
    /// Partition name of the verity hash tree.
    pub verity_label: String,
}

/// One step of the build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// What the step is for, in words.
    pub title: String,
    /// What it does.
    pub action: Action,
}

/// What a step does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `$BUILD` emptied (after unmounting anything a failed earlier build left mounted in it).
    Clean,
    /// A command on the build host.
    Run(Vec<String>),
    /// A command inside the root (chroot with /proc, /sys and /dev available, services kept from starting).
    InRoot(Vec<String>),
    /// A file written with this mode.
    Write {
        /// Where (symbolic).
        path: String,
        /// Permission bits.
        mode: u32,
        /// Content.
        content: String,
    },
    /// A tree of the project copied into the root (files keep their modes).
    CopyTree {
        /// From (symbolic).
        from: String,
        /// Into (symbolic).
        to: String,
    },
    /// Paths (globs under `$ROOT`) deleted.
    Remove(Vec<String>),
    /// Kernel modules outside these prefixes deleted, then `depmod`.
    KeepModules(Vec<String>),
    /// The kernel command line written to `$BUILD/cmdline`, with `roothash=` from `$BUILD/roothash`.
    Cmdline(String),
    /// The GPT disk assembled from the ESP, root and verity images, with free space for the data partition.
    Assemble {
        /// Partition names, in order: root, verity.
        labels: [String; 2],
        /// Free MiB after the last partition.
        free_mib: u64,
    },
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Clean => write!(f, "empty $BUILD"),
            Action::Run(argv) => write!(f, "run: {}", argv.join(" ")),
            Action::InRoot(argv) => write!(f, "in root: {}", argv.join(" ")),
            Action::Write {
                path,
                mode,
                content,
            } => write!(
                f,
                "write {path} (mode {mode:o}, {} lines)",
                content.lines().count()
            ),
            Action::CopyTree { from, to } => write!(f, "copy tree {from} -> {to}"),
            Action::Remove(globs) => write!(f, "remove from $ROOT: {}", globs.join(" ")),
            Action::KeepModules(prefixes) => {
                write!(
                    f,
                    "keep kernel modules under: {}; depmod",
                    prefixes.join(" ")
                )
            }
            Action::Cmdline(base) => write!(
                f,
                "kernel command line: {base} sallyport.roothash=$ROOTHASH"
            ),
            Action::Assemble { labels, free_mib } => write!(
                f,
                "assemble GPT $BUILD/sallyport.raw: esp ($BUILD/esp.img), {} ($BUILD/root.erofs), {} ($BUILD/root.verity), {free_mib} MiB free for the data partition",
                labels[0], labels[1]
            ),
        }
    }
}

/// The whole build, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The steps.
    pub steps: Vec<Step>,
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, step) in self.steps.iter().enumerate() {
            writeln!(f, "{:2}. {}", index + 1, step.title)?;
            writeln!(f, "    {}", step.action)?;
        }
        Ok(())
    }
}

fn argv(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| (*w).to_owned()).collect()
}

fn step(title: &str, action: Action) -> Step {
    Step {
        title: title.to_owned(),
        action,
    }
}

/// The plan for `definition`.
pub fn plan(definition: &Definition) -> Plan {
    let base = &definition.base;
    let kernel = &definition.kernel;
    let layout = &definition.layout;
    let mut steps = vec![
        step(
            "build the gateway and the review tool (release)",
            Action::Run(argv(&[
                "$CARGO",
                "build",
                "--release",
                "--locked",
                "-p",
                "sallyport-gateway",
                "-p",
                "sallyport-review",
            ])),
        ),
        step("start from an empty build directory", Action::Clean),
        step(
            "bootstrap a minimal Debian",
            Action::Run(vec![
                "debootstrap".into(),
                "--variant=minbase".into(),
                "--include=systemd-sysv,udev".into(),
                "--cache-dir=$PROJECT/target/image-cache".into(),
                base.suite.clone(),
                "$ROOT".into(),
                base.mirror.clone(),
            ]),
        ),
        step(
            "use the updates and security suites too (plain debootstrap gives an older kernel)",
            Action::Write {
                path: "$ROOT/etc/apt/sources.list".into(),
                mode: 0o644,
                content: format!(
                    "deb {m} {s} main\ndeb {m} {s}-updates main\ndeb {sec} {s}-security main\n",
                    m = base.mirror,
                    s = base.suite,
                    sec = base.security_mirror
                ),
            },
        ),
        step(
            "keep package scripts from starting services in the build",
            Action::Write {
                path: "$ROOT/usr/sbin/policy-rc.d".into(),
                mode: 0o755,
                content: "#!/bin/sh\nexit 101\n".into(),
            },
        ),
        step(
            "refresh the package lists",
            Action::InRoot(argv(&["apt-get", "update", "-qq"])),
        ),
        step(
            "upgrade to the current point release",
            Action::InRoot(argv(&["apt-get", "-y", "-qq", "upgrade"])),
        ),
        step(
            "configure the initramfs before the kernel arrives (small, zstd, listed modules)",
            Action::Write {
                path: "$ROOT/etc/initramfs-tools/conf.d/sallyport.conf".into(),
                mode: 0o644,
                content: "MODULES=list\nCOMPRESS=zstd\nBUSYBOX=y\n".into(),
            },
        ),
        step(
            "list the initramfs modules",
            Action::Write {
                path: "$ROOT/etc/initramfs-tools/modules".into(),
                mode: 0o644,
                content: kernel.initramfs_modules.join("\n") + "\n",
            },
        ),
        step(
            "add the dm-verity hook and boot script to the initramfs",
            Action::CopyTree {
                from: "$PROJECT/image/initramfs".into(),
                to: "$ROOT/etc/initramfs-tools".into(),
            },
        ),
    ];
    let mut install = argv(&["apt-get", "-y", "-qq", "install", "--no-install-recommends"]);
    install.extend(base.packages.iter().cloned());
    steps.push(step(
        "install the kernel and the appliance's packages",
        Action::InRoot(install),
    ));
    steps.extend([
        step(
            "add the appliance's units, scripts and default configuration",
            Action::CopyTree {
                from: "$PROJECT/image/files".into(),
                to: "$ROOT".into(),
            },
        ),
        step(
            "add the gateway (stripped: the line tables are for development builds)",
            Action::Run(argv(&[
                "install",
                "--strip",
                "-m",
                "0755",
                "$PROJECT/target/release/sallyport-gateway",
                "$ROOT/usr/bin/sallyport-gateway",
            ])),
        ),
        step(
            "add the review tool (the consoles run it for auditors)",
            Action::Run(argv(&[
                "install",
                "--strip",
                "-m",
                "0755",
                "$PROJECT/target/release/sallyport-review",
                "$ROOT/usr/bin/sallyport-review",
            ])),
        ),
        step(
            "enable the appliance's services (networkd, resolved, timesyncd, the auditors' consoles)",
            Action::InRoot(argv(&[
                "systemctl",
                "enable",
                "sallyport-gateway.service",
                "sallyport-config.service",
                "sallyport-data-grow.service",
                "systemd-networkd.service",
                "systemd-resolved.service",
                "systemd-timesyncd.service",
                "sallyport-console@tty1.service",
                "sallyport-console@ttyS0.service",
            ])),
        ),
        step(
            "no getty anywhere: the consoles belong to sallyport-console, and there is no account to log in to",
            Action::InRoot(argv(&[
                "systemctl",
                "mask",
                "getty@.service",
                "serial-getty@.service",
                "console-getty.service",
            ])),
        ),
        step(
            "no e2fsprogs housekeeping at boot (e2scrub needs LVM snapshots; the data partition has none)",
            Action::InRoot(argv(&[
                "systemctl",
                "mask",
                "e2scrub_reap.service",
                "e2scrub_all.timer",
            ])),
        ),
        step(
            "name resolution through resolved (the root is read-only)",
            Action::Run(argv(&[
                "ln",
                "-sf",
                "/run/systemd/resolve/stub-resolv.conf",
                "$ROOT/etc/resolv.conf",
            ])),
        ),
        step(
            "a hostname",
            Action::Write {
                path: "$ROOT/etc/hostname".into(),
                mode: 0o644,
                content: "sallyport\n".into(),
            },
        ),
        step(
            "an empty machine id (systemd makes one at boot on a read-only root)",
            Action::Write {
                path: "$ROOT/etc/machine-id".into(),
                mode: 0o444,
                content: String::new(),
            },
        ),
        step(
            "record what the image holds",
            Action::Run(argv(&[
                "sh",
                "-c",
                "mkdir -p $ROOT/usr/share/sallyport && chroot $ROOT dpkg-query -W > $ROOT/usr/share/sallyport/packages.txt",
            ])),
        ),
        step(
            "prune kernel modules to what the appliance uses",
            Action::KeepModules(kernel.modules.clone()),
        ),
        step(
            "rebuild the initramfs for the pruned modules",
            Action::InRoot(argv(&["update-initramfs", "-u", "-k", "all"])),
        ),
        step(
            "take the kernel and initramfs out of the root",
            Action::Run(argv(&[
                "sh",
                "-c",
                "cp -L $ROOT/vmlinuz $BUILD/vmlinuz && cp -L $ROOT/initrd.img $BUILD/initrd.img && cp $ROOT/etc/os-release $BUILD/os-release",
            ])),
        ),
        step(
            "remove the package manager, the build-only tools and what only they need",
            Action::Remove(
                base.remove
                    .iter()
                    .cloned()
                    .chain(["vmlinuz*".into(), "initrd.img*".into(), "usr/sbin/policy-rc.d".into()])
                    .collect(),
            ),
        ),
        step(
            "the read-only root: erofs, lz4hc",
            Action::Run(argv(&[
                "mkfs.erofs",
                "--quiet",
                "-zlz4hc",
                "-T0",
                "--all-root",
                "$BUILD/root.erofs",
                "$ROOT",
            ])),
        ),
        step(
            "its dm-verity hash tree",
            Action::Run(argv(&[
                "veritysetup",
                "format",
                "$BUILD/root.erofs",
                "$BUILD/root.verity",
                "--root-hash-file=$BUILD/roothash",
            ])),
        ),
        step(
            "the kernel command line, root hash included",
            Action::Cmdline(format!("root=/dev/mapper/root {}", kernel.cmdline)),
        ),
        step(
            "the unified kernel image (systemd-stub with kernel, initramfs and command line)",
            Action::Run(argv(&[
                "objcopy",
                "--add-section",
                ".osrel=$BUILD/os-release",
                "--change-section-vma",
                ".osrel=0x20000",
                "--add-section",
                ".cmdline=$BUILD/cmdline",
                "--change-section-vma",
                ".cmdline=0x30000",
                "--add-section",
                ".linux=$BUILD/vmlinuz",
                "--change-section-vma",
                ".linux=0x2000000",
                "--add-section",
                ".initrd=$BUILD/initrd.img",
                "--change-section-vma",
                ".initrd=0x3000000",
                "/usr/lib/systemd/boot/efi/linuxx64.efi.stub",
                "$BUILD/sallyport.efi",
            ])),
        ),
        step(
            "the EFI system partition, written without mounting",
            Action::Run(vec![
                "sh".into(),
                "-c".into(),
                format!(
                    "mkfs.vfat -C $BUILD/esp.img {} >/dev/null && mmd -i $BUILD/esp.img ::/EFI ::/EFI/BOOT && mcopy -i $BUILD/esp.img $BUILD/sallyport.efi ::/EFI/BOOT/BOOTX64.EFI",
                    layout.esp_mib * 1024
                ),
            ]),
        ),
        step(
            "the disk",
            Action::Assemble {
                labels: [layout.root_label.clone(), layout.verity_label.clone()],
                free_mib: layout.data_mib,
            },
        ),
        step(
            "compress it for distribution",
            Action::Run(argv(&[
                "zstd",
                "-q",
                "-3",
                "-T0",
                "-f",
                "$BUILD/sallyport.raw",
                "-o",
                "$BUILD/sallyport.raw.zst",
            ])),
        ),
    ]);
    Plan { steps }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    /// The printed plan is `image/plan.txt`; run with `UPDATE_SNAPSHOTS=1` to accept a change.
    #[test]
    fn plan_matches_its_snapshot() {
        let definition = crate::definition().unwrap();
        let printed = plan(&definition).to_string();
        let snapshot = crate::image_dir().join("plan.txt");
        if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
            std::fs::write(&snapshot, &printed).unwrap();
        }
        let expected = std::fs::read_to_string(&snapshot).unwrap_or_default();
        assert!(
            printed == expected,
            "the image plan changed; review it and run with UPDATE_SNAPSHOTS=1 to accept:\n{printed}"
        );
    }

    #[test]
    fn the_plan_installs_no_ssh_server_or_compiler() {
        let definition = crate::definition().unwrap();
        for forbidden in [
            "openssh-server",
            "gcc",
            "apt",
            "dropbear",
            "build-essential",
        ] {
            assert!(
                !definition.base.packages.iter().any(|p| p == forbidden),
                "{forbidden} must not be in the appliance"
            );
        }
        let printed = plan(&definition).to_string();
        assert!(
            printed.contains("usr/bin/apt*"),
            "the package manager must be removed"
        );
    }
}
