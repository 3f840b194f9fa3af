//! `cargo xtask demo`: the gateway with a demo network of real targets in a network namespace (two OpenSSH
//! servers and an xrdp desktop, from `sallyport-demo`, the same code the e2e scenario `demo` runs). Prints
//! the portal URL, the certificate fingerprint, the one-time admin password, the targets and their login,
//! and the commands for the recordings and the CLI; Ctrl-C stops everything and removes the namespace.
//! `--appliance` boots the built appliance image instead, with the same targets behind it
//! ([`crate::demo_appliance`]).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sallyport_demo::{DEMO_USER, Demo, Layout, proc};

use crate::setup::Scope;
use crate::{cargo, is_root, root, run_cmd};

/// The command-line options.
struct Options {
    listen: String,
    keep_state: bool,
    appliance: bool,
}

fn parse(args: &[String]) -> anyhow::Result<Options> {
    let mut options = Options {
        listen: "127.0.0.1:8443".to_owned(),
        keep_state: false,
        appliance: false,
    };
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--listen" => {
                options.listen = iter
                    .next()
                    .context("--listen needs an address such as 0.0.0.0:8443")?
                    .clone()
            }
            "--keep-state" => options.keep_state = true,
            "--appliance" => options.appliance = true,
            other => bail!(
                "unknown demo option {other:?} (known: --listen ADDR, --keep-state, --appliance)"
            ),
        }
    }
    // The appliance listens on its own address and starts from a fresh copy of the image each time.
    if options.appliance && (options.keep_state || options.listen != "127.0.0.1:8443") {
        bail!("--appliance takes neither --listen nor --keep-state");
    }
    Ok(options)
}

/// The target directory cargo builds into (`CARGO_TARGET_DIR` when set, as cargo itself reads it).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|dir| {
            if dir.is_relative() {
                root().join(dir)
            } else {
                dir
            }
        })
        .unwrap_or_else(|| root().join("target"))
}

/// Runs the demo until Ctrl-C.
pub fn run(args: &[String]) -> anyhow::Result<()> {
    let options = parse(args)?;
    if !is_root() {
        bail!(
            "the demo needs root: it creates a network namespace with its targets and a local account for them; run `sudo cargo xtask demo`"
        );
    }
    let started = Instant::now();
    crate::setup::install(Scope::Demo)?;
    let demo_dir = root().join(".demo");
    std::fs::create_dir_all(&demo_dir)?;
    let stop = Arc::new(AtomicBool::new(false));
    let stop_flag = stop.clone();
    ctrlc::set_handler(move || stop_flag.store(true, Ordering::SeqCst))
        .context("installing the Ctrl-C handler")?;
    if options.appliance {
        // The gateway is inside the image: nothing to build before the boot.
        return crate::demo_appliance::run(&demo_dir, started, &stop);
    }
    run_cmd(cargo().args(["build", "-p", "sallyport-gateway"]))?;

    let state_dir = demo_dir.join("state");
    if !options.keep_state && state_dir.exists() {
        std::fs::remove_dir_all(&state_dir).context("clearing the previous demo state")?;
    }
    std::fs::create_dir_all(&state_dir)?;
    let demo = Demo::start(&demo_dir, Layout::demo())?;
    let config = demo_dir.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "# Written by `cargo xtask demo`.\nstate_dir = \"{state}\"\n[portal]\nlisten = \"{listen}\"\n{public_url}[log]\njournald = false\n\n{targets}",
            state = state_dir.display(),
            listen = options.listen,
            public_url = demo_public_url(&options.listen),
            targets = demo.targets_toml(),
        ),
    )?;
    let gateway_bin = target_dir().join("debug/sallyport-gateway");
    let mut gateway = Command::new(&gateway_bin)
        .args(["--config".as_ref(), config.as_os_str()])
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", gateway_bin.display()))?;
    let lines = read_lines(&mut gateway);
    let mut tools: Option<Tools> = None;
    let mut url = String::new();
    while !stop.load(Ordering::SeqCst) {
        match lines.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                println!("{line}");
                if let Some(rest) = line.strip_prefix("url: ") {
                    url = rest.trim().to_owned();
                }
                if let Some(fingerprint) = line.strip_prefix("fingerprint: ")
                    && tools.is_none()
                {
                    eprintln!(
                        "xtask: the portal answers {:.0} s after `cargo xtask demo` started",
                        started.elapsed().as_secs_f64()
                    );
                    let db = state_dir.join("recordings.db");
                    let db = db.display().to_string();
                    print_next_steps(&demo, &url, fingerprint.trim(), ("as root, here", &db));
                    println!("Press Ctrl-C to stop the demo and remove its namespace.");
                    // The reviewer and the CLI are not needed for the URL: they build while the demo runs.
                    tools = Some(Tools::start(&demo_dir)?);
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if let Some(tools) = tools.as_mut() {
            tools.poll();
        }
        if let Ok(Some(status)) = gateway.try_wait() {
            eprintln!("xtask: the gateway exited ({status})");
            break;
        }
    }
    eprintln!("xtask: stopping the demo");
    proc::stop(&mut gateway, Duration::from_secs(5));
    if let Some(tools) = tools {
        tools.stop();
    }
    drop(demo);
    Ok(())
}

/// The gateway's stdout, line by line, through a channel (read on a thread).
pub fn read_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let (lines_tx, lines_rx) = mpsc::channel();
    if let Some(stdout) = child.stdout.take() {
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = lines_tx.send(line);
            }
        });
    }
    lines_rx
}

/// The reviewer and the CLI building in the background (output in `tools-build.log`): they are not needed
/// for the URL, so both demos print it first and say when the printed commands work.
pub struct Tools {
    child: Child,
    started: Instant,
    log: PathBuf,
    told: bool,
}

impl Tools {
    /// Starts `cargo build` of sallyport-review and sallyport.
    pub fn start(demo_dir: &Path) -> anyhow::Result<Tools> {
        let log = demo_dir.join("tools-build.log");
        let file = std::fs::File::create(&log)?;
        eprintln!(
            "xtask: building sallyport-review and sallyport in the background (log: {})",
            log.display()
        );
        let child = cargo()
            .args(["build", "-q", "-p", "sallyport-review", "-p", "sallyport"])
            .current_dir(root())
            .stdin(Stdio::null())
            .stdout(Stdio::from(file.try_clone()?))
            .stderr(Stdio::from(file))
            .spawn()
            .context("starting cargo build for sallyport-review and sallyport")?;
        Ok(Tools {
            child,
            started: Instant::now(),
            log,
            told: false,
        })
    }

    /// Says once, when the build has ended, whether the printed commands work now.
    pub fn poll(&mut self) {
        if self.told {
            return;
        }
        let Ok(Some(status)) = self.child.try_wait() else {
            return;
        };
        self.told = true;
        if status.success() {
            eprintln!(
                "xtask: sallyport-review and sallyport are built ({:.0} s): the commands above work now",
                self.started.elapsed().as_secs_f64()
            );
        } else {
            eprintln!(
                "xtask: building sallyport-review and sallyport failed ({status}); see {}",
                self.log.display()
            );
        }
    }

    /// Stops the build if it still runs.
    pub fn stop(mut self) {
        proc::stop(&mut self.child, Duration::from_secs(5));
    }
}

/// What a newcomer needs after the URL: the targets and their login, then the reviewer (`review`: how it
/// reaches the recordings, and its arguments) and the CLI.
/// The demo portal's `public_url` line: `https://localhost:PORT/` for a loopback listener, so that
/// passkeys (which need a name, not an address) work in the demo; none for one other machines reach,
/// whose name the demo cannot know (passkeys are off there, and the security page says so).
fn demo_public_url(listen: &str) -> String {
    match listen.parse::<std::net::SocketAddr>() {
        Ok(addr) if addr.ip().is_loopback() => {
            format!("public_url = \"https://localhost:{}/\"\n", addr.port())
        }
        _ => String::new(),
    }
}

pub fn print_next_steps(demo: &Demo, url: &str, fingerprint: &str, review: (&str, &str)) {
    let bin = target_dir().join("debug");
    print_targets(demo);
    println!();
    println!(
        "Open the URL, accept the self-signed certificate (compare the fingerprint), log in as admin and choose a new password."
    );
    println!("Review the recordings ({}):", review.0);
    println!("  {} {}", bin.join("sallyport-review").display(), review.1);
    println!("The CLI (after you set admin's new password in the browser):");
    println!(
        "  {} login {url} --username admin --fingerprint {fingerprint}",
        bin.join("sallyport").display()
    );
    println!(
        "  {} ssh {DEMO_USER}@alpha",
        bin.join("sallyport").display()
    );
}

/// The demo's targets, where they listen, and their login (the same behind the host's gateway and the
/// appliance).
fn print_targets(demo: &Demo) {
    let layout = demo.layout();
    println!();
    println!(
        "Targets (network {} in namespace {}):",
        layout.cidr(),
        layout.namespace
    );
    for target in demo.targets() {
        let what = if target.protocol == "rdp" {
            "RDP desktop"
        } else {
            "SSH"
        };
        println!("  {:<6} {what:<12} {}", target.name, target.addr);
    }
    println!(
        "Target login for all three: user {DEMO_USER}, password {}",
        demo.password()
    );
}
