//! The config drive an operator configures the appliance with: a small FAT image labelled `SALLYPORT`
//! holding `gateway.toml` (and any systemd `.network` files), which `sallyport-config.service` copies in at
//! boot. It is written with mkfs.vfat and mcopy, without mounting (the build host cannot mount vfat).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Runner;

/// The file system label the appliance looks for.
pub const LABEL: &str = "SALLYPORT";
/// The drive's size in KiB.
pub const SIZE_KIB: u32 = 8192;

/// One file on the drive: its name there and where its content is now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DriveFile {
    /// The name in the drive's root directory (`gateway.toml`, `10-lan.network`).
    pub name: String,
    /// The file to copy.
    pub source: PathBuf,
}

impl DriveFile {
    /// `source` copied as `name`.
    pub fn new(name: &str, source: impl Into<PathBuf>) -> DriveFile {
        DriveFile {
            name: name.to_owned(),
            source: source.into(),
        }
    }
}

/// The commands that write `files` into a fresh drive at `drive`: mkfs.vfat, then one mcopy per file.
pub fn commands(drive: &Path, files: &[DriveFile]) -> Vec<Command> {
    let mut format = Command::new("mkfs.vfat");
    format
        .args(["-n", LABEL, "-C"])
        .arg(drive)
        .arg(SIZE_KIB.to_string());
    let mut commands = vec![format];
    for file in files {
        let mut copy = Command::new("mcopy");
        copy.arg("-i")
            .arg(drive)
            .arg(&file.source)
            .arg(format!("::/{}", file.name));
        commands.push(copy);
    }
    commands
}

/// Writes the drive (replacing any file at `drive`).
pub fn write(drive: &Path, files: &[DriveFile], run: &mut Runner<'_>) -> anyhow::Result<()> {
    // mkfs.vfat -C refuses to overwrite a file.
    let _ = std::fs::remove_file(drive);
    for mut command in commands(drive, files) {
        run(&mut command)?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "config_drive_tests.rs"]
mod tests;
