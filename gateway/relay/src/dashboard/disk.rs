//! Disk use for the dashboard: the bytes the recordings database and the state directory take, and
//! the free space of the filesystem holding them (`statvfs`).

use std::path::Path;

use nix::sys::statvfs::statvfs;

/// The gateway's footprint on its disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskUse {
    /// The recordings database with its WAL and shared-memory files.
    pub recordings_bytes: u64,
    /// Everything in the state directory (the recordings included, when they live there).
    pub state_dir_bytes: u64,
    /// The filesystem's size.
    pub filesystem_bytes: u64,
    /// What unprivileged writers may still use of it (what SQLite gets).
    pub available_bytes: u64,
}

impl DiskUse {
    /// Percent of the filesystem in use, as `df` counts it (what nobody may use counts as used).
    pub fn used_percent(&self) -> u8 {
        if self.filesystem_bytes == 0 {
            return 0;
        }
        let used = self.filesystem_bytes.saturating_sub(self.available_bytes);
        (u128::from(used) * 100 / u128::from(self.filesystem_bytes)).min(100) as u8
    }
}

/// Bytes a file takes on disk (allocated blocks, so sparse files count what they hold); 0 if absent.
fn file_bytes(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::symlink_metadata(path)
        .map(|m| m.blocks().saturating_mul(512))
        .unwrap_or(0)
}

/// Bytes under `dir`, files of subdirectories included down to `depth` levels (the state directory is
/// flat; the bound keeps a stray deep tree from making the dashboard slow). Symbolic links are not
/// followed.
fn dir_bytes(dir: &Path, depth: u32) -> std::io::Result<u64> {
    let mut total = 0u64;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            if depth > 0 {
                total = total.saturating_add(dir_bytes(&entry.path(), depth - 1).unwrap_or(0));
            }
        } else {
            total = total.saturating_add(file_bytes(&entry.path()));
        }
    }
    Ok(total)
}

/// Measures the state directory and the recordings database beside it; an error in words.
// `statvfs`'s field types are u64 on 64-bit Linux but narrower elsewhere, hence the conversions.
#[allow(clippy::useless_conversion)]
pub fn measure(state_dir: &Path, recordings_db: &Path) -> Result<DiskUse, String> {
    let fs = statvfs(state_dir)
        .map_err(|e| format!("reading the free space of {}: {e}", state_dir.display()))?;
    let block = u64::from(fs.fragment_size());
    let state_dir_bytes =
        dir_bytes(state_dir, 2).map_err(|e| format!("reading {}: {e}", state_dir.display()))?;
    let mut recordings_bytes = file_bytes(recordings_db);
    for suffix in ["-wal", "-shm"] {
        let mut name = recordings_db.as_os_str().to_owned();
        name.push(suffix);
        recordings_bytes = recordings_bytes.saturating_add(file_bytes(Path::new(&name)));
    }
    Ok(DiskUse {
        recordings_bytes,
        state_dir_bytes,
        filesystem_bytes: u64::from(fs.blocks()).saturating_mul(block),
        available_bytes: u64::from(fs.blocks_available()).saturating_mul(block),
    })
}

/// `12.3 GiB`, `512 KiB`, `17 B`: sizes as the dashboard's warnings say them.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn measures_the_files_and_the_filesystem() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("recordings.db");
        std::fs::write(&db, vec![1u8; 64 * 1024]).unwrap();
        std::fs::write(dir.path().join("recordings.db-wal"), vec![1u8; 8192]).unwrap();
        std::fs::write(dir.path().join("state.db"), vec![1u8; 4096]).unwrap();
        let disk = measure(dir.path(), &db).unwrap();
        assert!(disk.recordings_bytes >= 72 * 1024, "{disk:?}");
        assert!(
            disk.state_dir_bytes >= disk.recordings_bytes + 4096,
            "{disk:?}"
        );
        assert!(disk.filesystem_bytes > 0 && disk.available_bytes <= disk.filesystem_bytes);
        assert!(disk.used_percent() <= 100);
        let missing = measure(&dir.path().join("gone"), &db).unwrap_err();
        assert!(missing.contains("gone"), "{missing}");
    }

    #[test]
    fn percent_and_words() {
        let disk = DiskUse {
            recordings_bytes: 0,
            state_dir_bytes: 0,
            filesystem_bytes: 1000,
            available_bytes: 95,
        };
        assert_eq!(disk.used_percent(), 90);
        let empty = DiskUse {
            filesystem_bytes: 0,
            ..disk
        };
        assert_eq!(empty.used_percent(), 0);
        assert_eq!(human_bytes(17), "17 B");
        assert_eq!(human_bytes(512 * 1024), "512.0 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024 * 1024 / 2), "1.5 GiB");
    }
}
