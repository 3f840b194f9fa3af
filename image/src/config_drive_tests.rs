//! The config drive's commands, and a real drive written and read back with mtools (no mount, no root).

#![allow(clippy::unwrap_used)]

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;

use super::*;

fn argv(command: &Command) -> Vec<&OsStr> {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .collect()
}

#[test]
fn the_drive_is_formatted_with_its_label_then_each_file_copied_to_its_root() {
    let files = [
        DriveFile::new("gateway.toml", "/c/gateway.toml"),
        DriveFile::new("10-lan.network", "/c/lan"),
    ];
    let commands = commands(Path::new("/d/config.img"), &files);
    let lines: Vec<Vec<&OsStr>> = commands.iter().map(argv).collect();
    assert_eq!(
        lines,
        [
            vec![
                "mkfs.vfat",
                "-n",
                "SALLYPORT",
                "-C",
                "/d/config.img",
                "8192"
            ],
            vec![
                "mcopy",
                "-i",
                "/d/config.img",
                "/c/gateway.toml",
                "::/gateway.toml"
            ],
            vec![
                "mcopy",
                "-i",
                "/d/config.img",
                "/c/lan",
                "::/10-lan.network"
            ],
        ]
        .map(|line| line.into_iter().map(OsStr::new).collect::<Vec<_>>())
    );
}

/// Runs a command quietly, failing with its stderr.
fn quiet(command: &mut Command) -> anyhow::Result<()> {
    let out = command.output()?;
    anyhow::ensure!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[test]
fn a_written_drive_holds_the_files_under_its_label() {
    let tools = ["/usr/sbin/mkfs.vfat", "/usr/bin/mcopy", "/usr/bin/mtype"];
    let missing: Vec<_> = tools.iter().filter(|t| !Path::new(t).exists()).collect();
    assert!(
        missing.is_empty(),
        "{missing:?} missing: `cargo xtask build-image` installs dosfstools and mtools"
    );
    let dir = std::env::temp_dir().join(format!("sallyport-image-drive-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let toml = dir.join("gateway.toml");
    std::fs::write(&toml, "state_dir = \"/var/lib/sallyport\"\n").unwrap();
    let drive = dir.join("config.img");
    // A stale file where the drive goes is replaced, not an error.
    std::fs::write(&drive, b"stale").unwrap();
    write(&drive, &[DriveFile::new("gateway.toml", &toml)], &mut quiet).unwrap();
    let read = Command::new("mtype")
        .arg("-i")
        .arg(&drive)
        .arg("::/gateway.toml")
        .output()
        .unwrap();
    let label = Command::new("mlabel")
        .args(["-s", "-i"])
        .arg(&drive)
        .arg("::")
        .output();
    let size = std::fs::metadata(&drive).unwrap().len();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(read.status.success(), "{read:?}");
    assert_eq!(read.stdout, b"state_dir = \"/var/lib/sallyport\"\n");
    assert_eq!(size, 8192 * 1024);
    if let Ok(label) = label {
        assert!(
            String::from_utf8_lossy(&label.stdout).contains("SALLYPORT"),
            "{label:?}"
        );
    }
}
