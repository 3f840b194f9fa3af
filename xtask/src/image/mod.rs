//! `cargo xtask build-image [--print-plan]`: builds the appliance image from `image/appliance.toml` by
//! executing its plan (both in the `sallyport-image` crate), and `cargo xtask run-vm`: boots it under QEMU
//! for a person to try. Output: `target/image/sallyport.raw` and `sallyport.raw.zst`.

pub mod vm;

use std::fs;
use std::path::Path;
use std::time::Instant;

use anyhow::bail;
use sallyport_image::executor::{self, Paths};

use crate::{is_root, root, run_cmd};

/// Debian packages the image build uses, with a file that proves each is present.
const BUILD_PACKAGES: &[(&str, &str)] = &[
    ("debootstrap", "/usr/sbin/debootstrap"),
    ("erofs-utils", "/usr/bin/mkfs.erofs"),
    ("cryptsetup-bin", "/usr/sbin/veritysetup"),
    (
        "systemd-boot-efi",
        "/usr/lib/systemd/boot/efi/linuxx64.efi.stub",
    ),
    ("dosfstools", "/usr/sbin/mkfs.vfat"),
    ("mtools", "/usr/bin/mcopy"),
    ("fdisk", "/usr/sbin/sfdisk"),
    ("binutils", "/usr/bin/objcopy"),
    ("zstd", "/usr/bin/zstd"),
    ("qemu-system-x86", "/usr/bin/qemu-system-x86_64"),
    ("ovmf", "/usr/share/OVMF/OVMF_CODE_4M.fd"),
    ("e2fsprogs", "/usr/sbin/debugfs"),
];

/// Installs the image build's host packages that are missing. CI calls it before the unit tests too:
/// `sallyport-image`'s config-drive test writes a real FAT drive with dosfstools and mtools.
pub fn install_build_packages() -> anyhow::Result<()> {
    crate::setup::apt_install(&crate::setup::missing(BUILD_PACKAGES))
}

/// `cargo xtask build-image`.
pub fn build(args: &[String]) -> anyhow::Result<()> {
    let plan = sallyport_image::plan::plan(&sallyport_image::definition()?);
    if args.iter().any(|a| a == "--print-plan") {
        print!("{plan}");
        return Ok(());
    }
    if !is_root() {
        bail!(
            "building the image needs root (debootstrap and chroot); run `cargo xtask build-image` as root"
        );
    }
    crate::setup::run()?;
    install_build_packages()?;
    let started = Instant::now();
    fs::create_dir_all(root().join("target/image-cache"))?;
    let paths = Paths {
        build: sallyport_image::build_dir(),
        project: root(),
        cargo: crate::cargo().get_program().to_string_lossy().into_owned(),
    };
    executor::execute(&plan, &paths, &mut run_cmd)?;
    let raw = sallyport_image::raw_image();
    let compressed = sallyport_image::build_dir().join("sallyport.raw.zst");
    let size = |p: &Path| fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "xtask: image built in {:.0?}: {} ({} MiB raw), {} ({:.1} MiB compressed)",
        started.elapsed(),
        raw.display(),
        size(&raw) >> 20,
        compressed.display(),
        size(&compressed) as f64 / (1u64 << 20) as f64
    );
    Ok(())
}
