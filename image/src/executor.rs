//! Runs a [`Plan`]: each step in order, its symbolic paths resolved, saying what it does and how long it
//! took. Nothing is mounted on the build host except /proc and /sys inside the root while package scripts
//! run (the build host has no vfat, device-mapper or loop support); the disk is laid out with sfdisk and the
//! parts are copied to their offsets.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};

use crate::Runner;
use crate::plan::{Action, Plan};

/// What the plan's symbolic paths stand for.
#[derive(Debug, Clone)]
pub struct Paths {
    /// `$BUILD`: the build directory (emptied by the plan's first steps).
    pub build: PathBuf,
    /// `$PROJECT`: the workspace root (commands without a directory of their own run there).
    pub project: PathBuf,
    /// `$CARGO`: the cargo program.
    pub cargo: String,
}

impl Paths {
    /// `$ROOT`: the image's root file system, `$BUILD/root`.
    pub fn rootfs(&self) -> PathBuf {
        self.build.join("root")
    }

    /// `text` with `$ROOT`, `$BUILD`, `$PROJECT` and `$CARGO` replaced.
    pub fn resolve(&self, text: &str) -> String {
        text.replace("$ROOT", &self.rootfs().display().to_string())
            .replace("$BUILD", &self.build.display().to_string())
            .replace("$PROJECT", &self.project.display().to_string())
            .replace("$CARGO", &self.cargo)
    }

    /// The command `argv` (symbolic) stands for, to run in the workspace root.
    pub fn command(&self, argv: &[String]) -> anyhow::Result<Command> {
        let words: Vec<String> = argv.iter().map(|w| self.resolve(w)).collect();
        let (program, rest) = words.split_first().context("an empty command")?;
        let mut cmd = Command::new(program);
        cmd.args(rest).current_dir(&self.project);
        Ok(cmd)
    }
}

/// Runs every step of `plan`, in order, saying what it does and how long it took.
pub fn execute(plan: &Plan, paths: &Paths, run: &mut Runner<'_>) -> anyhow::Result<()> {
    let total = plan.steps.len();
    for (index, step) in plan.steps.iter().enumerate() {
        let started = Instant::now();
        eprintln!("image: [{}/{total}] {}", index + 1, step.title);
        run_action(&step.action, paths, run)
            .with_context(|| format!("image step {} ({})", index + 1, step.title))?;
        eprintln!("image:        done in {:.1?}", started.elapsed());
    }
    Ok(())
}

fn run_action(action: &Action, paths: &Paths, run: &mut Runner<'_>) -> anyhow::Result<()> {
    let build = paths.build.as_path();
    let rootfs = paths.rootfs();
    match action {
        Action::Clean => {
            unmount_under(build, run)?;
            if build.exists() {
                fs::remove_dir_all(build)
                    .with_context(|| format!("removing {}", build.display()))?;
            }
            fs::create_dir_all(build)?;
            Ok(())
        }
        Action::Run(argv) => run(&mut paths.command(argv)?),
        Action::InRoot(argv) => in_root(argv, &rootfs, run),
        Action::Write {
            path,
            mode,
            content,
        } => {
            let path = PathBuf::from(paths.resolve(path));
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent)?;
            }
            fs::write(&path, content).with_context(|| format!("writing {}", path.display()))?;
            fs::set_permissions(&path, fs::Permissions::from_mode(*mode))?;
            Ok(())
        }
        Action::CopyTree { from, to } => run(Command::new("cp").args([
            "-a",
            "--no-preserve=ownership",
            &format!("{}/.", paths.resolve(from)),
            &paths.resolve(to),
        ])),
        Action::Remove(globs) => {
            let script = globs
                .iter()
                .map(|g| format!("rm -rf {}/{g}", rootfs.display()))
                .collect::<Vec<_>>()
                .join("\n");
            run(Command::new("sh").args(["-c", &script]))
        }
        Action::KeepModules(prefixes) => keep_modules(prefixes, &rootfs, run),
        Action::Cmdline(base) => {
            let hash = fs::read_to_string(build.join("roothash"))
                .context("reading the root hash veritysetup wrote")?;
            let hash = hash.trim();
            if hash.len() != 64 || !hash.chars().all(|c| c.is_ascii_hexdigit()) {
                bail!("unexpected root hash {hash:?}");
            }
            fs::write(
                build.join("cmdline"),
                format!("{base} sallyport.roothash={hash}"),
            )?;
            Ok(())
        }
        Action::Assemble { labels, free_mib } => assemble(build, labels, *free_mib),
    }
}

/// Runs a command chrooted into the root, with /proc and /sys mounted for the duration only. /dev is never
/// bind-mounted (debootstrap made the device nodes the root needs), so no cleanup can reach the host's.
fn in_root(argv: &[String], rootfs: &Path, run: &mut Runner<'_>) -> anyhow::Result<()> {
    let proc_dir = rootfs.join("proc");
    let sys_dir = rootfs.join("sys");
    run(Command::new("mount")
        .args(["-t", "proc", "proc"])
        .arg(&proc_dir))?;
    let sys = run(Command::new("mount")
        .args(["-t", "sysfs", "sysfs"])
        .arg(&sys_dir));
    let result = sys.and_then(|()| {
        run(Command::new("chroot")
            .arg(rootfs)
            .args(argv)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .env("LC_ALL", "C.UTF-8")
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"))
    });
    let _ = Command::new("umount").arg(&sys_dir).status();
    let _ = Command::new("umount").arg(&proc_dir).status();
    result
}

/// Unmounts whatever a failed build left mounted below `dir` (deepest first).
fn unmount_under(dir: &Path, run: &mut Runner<'_>) -> anyhow::Result<()> {
    let prefix = dir.display().to_string();
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mut points: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|p| p.starts_with(&prefix))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for point in points {
        run(Command::new("umount").args(["-l", point]))?;
    }
    Ok(())
}

/// Deletes every kernel module outside `prefixes` (paths under `kernel/`) and runs depmod.
fn keep_modules(prefixes: &[String], rootfs: &Path, run: &mut Runner<'_>) -> anyhow::Result<()> {
    let modules = rootfs.join("usr/lib/modules");
    let mut versions = Vec::new();
    for entry in fs::read_dir(&modules).with_context(|| format!("reading {}", modules.display()))? {
        let entry = entry?;
        versions.push(entry.file_name().to_string_lossy().into_owned());
        let kernel_dir = entry.path().join("kernel");
        prune(&kernel_dir, &kernel_dir, prefixes)?;
    }
    for version in versions {
        in_root(&["depmod".to_owned(), version], rootfs, run)?;
    }
    Ok(())
}

fn prune(dir: &Path, kernel_dir: &Path, prefixes: &[String]) -> anyhow::Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let relative = path
            .strip_prefix(kernel_dir)
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let kept = prefixes.iter().any(|prefix| {
            relative.starts_with(prefix.as_str()) || prefix.starts_with(&format!("{relative}/"))
        });
        if !kept {
            if path.is_dir() {
                fs::remove_dir_all(&path)?;
            } else {
                fs::remove_file(&path)?;
            }
        } else if path.is_dir() {
            prune(&path, kernel_dir, prefixes)?;
        }
    }
    Ok(())
}

const MIB: u64 = 1 << 20;

fn mib_ceil(bytes: u64) -> u64 {
    bytes.div_ceil(MIB)
}

/// Lays out the GPT with sfdisk and copies each part to its offset; nothing is mounted or looped.
fn assemble(build: &Path, labels: &[String; 2], free_mib: u64) -> anyhow::Result<()> {
    let esp = build.join("esp.img");
    let root_fs = build.join("root.erofs");
    let verity = build.join("root.verity");
    let sizes =
        [&esp, &root_fs, &verity].map(|p| fs::metadata(p).map(|m| mib_ceil(m.len())).unwrap_or(0));
    if sizes.contains(&0) {
        bail!("a part of the disk is missing or empty: {sizes:?} MiB");
    }
    // 1 MiB for the primary GPT in front, 1 MiB for the backup at the end.
    let total_mib = 1 + sizes.iter().sum::<u64>() + free_mib + 1;
    let disk = build.join("sallyport.raw");
    let file = File::create(&disk)?;
    file.set_len(total_mib * MIB)?;
    drop(file);
    let script = format!(
        "label: gpt\nfirst-lba: 2048\n\
         size={}MiB, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=\"esp\"\n\
         size={}MiB, type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709, name=\"{}\"\n\
         size={}MiB, type=2C7357ED-EBD2-46D9-AEC1-23D437EC2BF5, name=\"{}\"\n",
        sizes[0], sizes[1], labels[0], sizes[2], labels[1]
    );
    let mut sfdisk = Command::new("sfdisk")
        .args(["--quiet", "--no-reread", "--no-tell-kernel"])
        .arg(&disk)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .context("starting sfdisk")?;
    sfdisk
        .stdin
        .take()
        .context("sfdisk stdin")?
        .write_all(script.as_bytes())?;
    if !sfdisk.wait()?.success() {
        bail!("sfdisk could not write the partition table:\n{script}");
    }
    let mut offset = MIB;
    let mut out = OpenOptions::new().write(true).open(&disk)?;
    for (part, size) in [&esp, &root_fs, &verity].iter().zip(sizes) {
        let mut input = File::open(part)?;
        out.seek(SeekFrom::Start(offset))?;
        let mut buffer = vec![0u8; MIB as usize];
        loop {
            let n = input.read(&mut buffer)?;
            if n == 0 {
                break;
            }
            out.write_all(&buffer[..n])?;
        }
        offset += size * MIB;
    }
    out.sync_all()?;
    Ok(())
}

#[cfg(test)]
#[path = "executor_tests.rs"]
mod tests;
