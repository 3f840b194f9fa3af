//! `cargo xtask ci` and `cargo xtask bench`: the whole test suite, built once and run in stages; the
//! benchmarks (`ssh`, `edge`) in a release build.

use std::process::Command;

use anyhow::bail;

use crate::{is_root, run_cmd};

/// Disk the suite needs free before it starts: a fresh target directory (debug and release builds,
/// the eBPF program, the image and its package cache) measured 6.5 GiB here; the rest is headroom.
const DISK_NEEDED_GIB: u64 = 10;

/// Cargo for the suite: one clean build, so no incremental caches (they doubled the target directory).
fn cargo() -> Command {
    let mut cargo = crate::cargo();
    cargo.env("CARGO_INCREMENTAL", "0");
    cargo
}

/// The end-to-end test that boots the appliance image (the only test of the `appliance_image` executable).
const APPLIANCE_TEST: &str = "the_appliance_boots_serves_records_and_refuses_a_modified_root";

/// Setup, fmt, clippy, tidy, the JavaScript lint, one build, then all tests (unit and end-to-end, the appliance's last).
pub fn run() -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    check_free_disk()?;
    crate::setup::run()?;
    if !is_root() {
        bail!(
            "the end-to-end tests need root (network namespaces, a test user for sshd); run `cargo xtask ci` as root"
        );
    }
    // The suite builds the image at its end, and a unit test of the image crate already writes a
    // config drive with the image build's tools: install them before any test runs.
    crate::image::install_build_packages()?;
    run_cmd(cargo().args(["fmt", "--all", "--check"]))?;
    run_cmd(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--locked",
        "--",
        "-D",
        "warnings",
    ]))?;
    crate::tidy::run()?;
    lint_js()?;
    // The eBPF program is its own workspace (BPF target, nightly): formatted and linted on its own.
    let program = crate::root().join("ebpf/program");
    run_cmd(cargo().args(["fmt", "--check"]).current_dir(&program))?;
    run_cmd(
        Command::new("rustup")
            .args(["run", "nightly", "cargo", "clippy", "--release", "--locked"])
            .args(["-Z", "build-std=core", "--target", "bpfel-unknown-none"])
            .args(["--target-dir", "../../target/bpf", "--", "-D", "warnings"])
            .env_remove("RUSTUP_TOOLCHAIN")
            .env_remove("CARGO")
            .current_dir(&program),
    )?;
    // One build of everything (binaries and test executables); the test stages below reuse it.
    run_cmd(cargo().args(["build", "--workspace", "--all-targets", "--locked"]))?;
    run_cmd(cargo().args([
        "test",
        "--workspace",
        "--locked",
        "--exclude",
        "sallyport-e2e",
    ]))?;
    // End-to-end tests start real sshd, the gateway and Chromium; two at a time fits two cores. The
    // scenarios are modules of one executable (`tests/e2e/tests/e2e`), so any two of them share the
    // machine; those that must not (`tests/e2e/tests/alone`) are an executable of their own (cargo runs
    // executables one after another) and take turns by a lock whatever the thread count. The appliance test boots a VM, which needs
    // both cores: it runs alone, after the image is built.
    run_cmd(cargo().args([
        "test",
        "-p",
        "sallyport-e2e",
        "--locked",
        "--",
        "--test-threads=2",
        "--skip",
        APPLIANCE_TEST,
    ]))?;
    crate::image::build(&[])?;
    run_cmd(cargo().args([
        "test",
        "-p",
        "sallyport-e2e",
        "--locked",
        "--test",
        "appliance_image",
        "--",
        "--test-threads=1",
    ]))?;
    eprintln!("xtask: ci passed in {:.0?}", started.elapsed());
    Ok(())
}

/// ESLint over the portal's own scripts (`gateway/portal/web/eslint.config.js`): the dev dependencies
/// installed from the lock file (the portal's build installs only what it embeds), then any lint error
/// or warning fails the suite.
fn lint_js() -> anyhow::Result<()> {
    let web = crate::root().join("gateway/portal/web");
    run_cmd(
        Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--ignore-scripts"])
            .current_dir(&web),
    )?;
    run_cmd(
        Command::new(web.join("node_modules/.bin/eslint"))
            .args(["--max-warnings", "0", "src"])
            .current_dir(&web),
    )
}

/// Fails early, with the figures, when the target directory's disk cannot hold a full build: running
/// out mid-link shows up as a linker crash (SIGBUS), which names neither the cause nor the cure.
fn check_free_disk() -> anyhow::Result<()> {
    let target = crate::root().join("target");
    std::fs::create_dir_all(&target)?;
    let output = Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(&target)
        .output()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let Some(available) = text
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse::<u64>().ok())
    else {
        bail!("could not read the free disk space from `df` (it printed {text:?})");
    };
    let available_gib = available >> 30;
    if available_gib < DISK_NEEDED_GIB {
        bail!(
            "only {available_gib} GiB free under {}; the suite needs about {DISK_NEEDED_GIB} GiB \
             (debug and release builds, the eBPF program, the appliance image): free some space first",
            target.display()
        );
    }
    eprintln!("xtask: {available_gib} GiB free under {}", target.display());
    Ok(())
}

/// `cargo xtask bench ssh|edge|rdp|boot|quic|review`: release build, then the benchmark binary of the e2e harness (the
/// review benchmarks are the reviewer's own, in its `bench` feature: they need its internals).
pub fn bench(args: &[String]) -> anyhow::Result<()> {
    let which = args.first().map(String::as_str).unwrap_or("ssh");
    if which == "review" {
        run_cmd(cargo().args([
            "build",
            "--release",
            "--locked",
            "-p",
            "sallyport-review",
            "--features",
            "bench",
        ]))?;
        return run_cmd(
            Command::new(crate::root().join("target/release/sallyport-review")).arg("bench"),
        );
    }
    // What each benchmark needs built besides the benchmark binary itself.
    let packages: &[&str] = match which {
        "ssh" => &["sallyport-gateway", "sallyport-e2e"],
        "edge" | "rdp" | "boot" => &["sallyport-e2e"],
        "quic" => &["sallyport-gateway", "sallyport", "sallyport-e2e"],
        _ => bail!("unknown benchmark {which:?}; available: ssh, edge, rdp, boot, quic, review"),
    };
    crate::setup::run()?;
    if !is_root() {
        bail!(
            "the benchmarks use network namespaces (and, for edge, eBPF and nftables) and need root"
        );
    }
    let mut build = cargo();
    build.args(["build", "--release", "--locked"]);
    for package in packages {
        build.args(["-p", package]);
    }
    run_cmd(build.arg("--bins"))?;
    if which == "boot" {
        // The image under test is the one the build makes now (cached packages make that quick).
        crate::image::build(&[])?;
    }
    run_cmd(Command::new(crate::root().join("target/release/sallyport-bench")).arg(which))
}

/// `cargo xtask fuzz TARGET [SECONDS]`: runs one cargo-fuzz target (nightly) for a bounded time.
pub fn fuzz(args: &[String]) -> anyhow::Result<()> {
    let Some(target) = args.first() else {
        bail!(
            "usage: cargo xtask fuzz TARGET [SECONDS]; targets are listed in tests/fuzz/README.md"
        );
    };
    let seconds = args.get(1).map(String::as_str).unwrap_or("60");
    let has_fuzz = Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    // The working corpus lives in target/; committed seeds (tests/fuzz/seeds/TARGET) are read, never written.
    let work = crate::root().join("target/fuzz-corpus").join(target);
    std::fs::create_dir_all(&work)?;
    let mut corpus = vec![work];
    let seeds = crate::root().join("tests/fuzz/seeds").join(target);
    if seeds.is_dir() {
        corpus.push(seeds);
    }
    if !has_fuzz {
        run_cmd(Command::new("cargo").args(["install", "--locked", "cargo-fuzz"]))?;
    }
    run_cmd(
        // cargo-fuzz looks for `fuzz/` under the current package unless told where the fuzz crate is.
        Command::new("cargo")
            .args([
                "+nightly",
                "fuzz",
                "run",
                "--fuzz-dir",
                "tests/fuzz",
                target,
            ])
            .args(&corpus)
            .args(["--"])
            .arg(format!("-max_total_time={seconds}"))
            .current_dir(crate::root()),
    )
}
