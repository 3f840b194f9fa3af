//! glibc malloc's mmap threshold, fixed at 1 MiB before anything is allocated, so that argon2id's
//! 19 MiB blocks (one per password verification) go back to the system when freed.
//!
//! Why: glibc raises its mmap threshold past the size of the first large block freed, after which
//! every later 19 MiB block comes from a malloc arena and stays there. Measured with the sign-in
//! burst e2e test (100 sign-ins, 20 at a time, 2 at once): the gateway grew from 22 MiB idle to
//! 290 MiB and kept it; with the threshold fixed it peaked at 62 MiB and fell back to 24 MiB.
//! `MALLOC_ARENA_MAX=2` made it worse (498 MiB). Setting the threshold needs `mallopt` (unsafe code,
//! which the workspace forbids) or the `GLIBC_TUNABLES` environment variable read at process start,
//! so the gateway re-executes itself once with the tunable added; the process id stays the same.

/// The tunable that fixes the threshold (setting it turns off glibc's dynamic adjustment).
const MMAP_THRESHOLD: &str = "glibc.malloc.mmap_threshold=1048576";

/// Re-executes the gateway with [`MMAP_THRESHOLD`] in `GLIBC_TUNABLES` unless it is there already.
/// Returns (and the gateway runs with glibc's defaults) if the re-execution fails.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn fix_mmap_threshold() {
    use std::os::unix::process::CommandExt;
    let current = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
    if current.contains("glibc.malloc.mmap_threshold") {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let tunables = if current.is_empty() {
        MMAP_THRESHOLD.to_owned()
    } else {
        format!("{current}:{MMAP_THRESHOLD}")
    };
    let error = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env("GLIBC_TUNABLES", tunables)
        .exec();
    eprintln!("sallyport-gateway: could not re-execute with {MMAP_THRESHOLD}: {error}");
}

/// Other C libraries: nothing to do.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn fix_mmap_threshold() {}
