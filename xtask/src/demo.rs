//! `cargo xtask demo`: the gateway with embedded defaults and a demo network of two real OpenSSH targets
//! in a network namespace. Prints the portal URL, the certificate fingerprint and the one-time admin
//! password; Ctrl-C stops everything and removes the namespace.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::{cargo, is_root, root, run_cmd};

const NAMESPACE: &str = "sallyport-demo";
const HOST_IF: &str = "spdemo0";
const NS_IF: &str = "spdemo1";
const SUBNET: &str = "10.213.77";
const DEMO_USER: &str = "sallyport-demo";

/// Runs the demo until Ctrl-C.
pub fn run(args: &[String]) -> anyhow::Result<()> {
    let mut listen = "127.0.0.1:8443".to_owned();
    let mut keep_state = false;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--listen" => {
                listen = iter
                    .next()
                    .context("--listen needs an address such as 0.0.0.0:8443")?
                    .clone()
            }
            "--keep-state" => keep_state = true,
            other => bail!("unknown demo option {other:?} (known: --listen ADDR, --keep-state)"),
        }
    }
    if !is_root() {
        bail!(
            "the demo needs root: it creates a network namespace with two OpenSSH targets; run `sudo cargo xtask demo`"
        );
    }
    crate::setup::run()?;
    run_cmd(cargo().args(["build", "-p", "sallyport-gateway"]))?;

    let demo_dir = root().join(".demo");
    let state_dir = demo_dir.join("state");
    if !keep_state && state_dir.exists() {
        std::fs::remove_dir_all(&state_dir).context("clearing the previous demo state")?;
    }
    std::fs::create_dir_all(&state_dir)?;

    let stop = Arc::new(AtomicBool::new(false));
    let stop_flag = stop.clone();
    ctrlc::set_handler(move || stop_flag.store(true, Ordering::SeqCst))
        .context("installing the Ctrl-C handler")?;

    let network = DemoNetwork::create()?;
    let password = demo_user_password()?;
    let mut children = Vec::new();
    for (index, name) in ["alpha", "beta"].iter().enumerate() {
        children.push(start_sshd(
            &demo_dir,
            name,
            &format!("{SUBNET}.{}", index + 2),
        )?);
    }
    let config = demo_dir.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            r#"# Written by `cargo xtask demo`.
state_dir = "{state}"
[portal]
listen = "{listen}"
[log]
journald = false
[[networks]]
name = "demo"
cidr = "{SUBNET}.0/24"
[[targets]]
name = "alpha"
address = "{SUBNET}.2"
[[targets]]
name = "beta"
address = "{SUBNET}.3"
"#,
            state = state_dir.display()
        ),
    )?;
    let gateway_bin = root().join("target/debug/sallyport-gateway");
    let mut gateway = Command::new(&gateway_bin)
        .args(["--config".as_ref(), config.as_os_str()])
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", gateway_bin.display()))?;
    let (lines_tx, lines_rx) = mpsc::channel();
    if let Some(stdout) = gateway.stdout.take() {
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = lines_tx.send(line);
            }
        });
    }
    let mut banner_done = false;
    while !stop.load(Ordering::SeqCst) {
        match lines_rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                println!("{line}");
                if line.starts_with("fingerprint:") && !banner_done {
                    banner_done = true;
                    println!();
                    println!(
                        "Demo targets (network {SUBNET}.0/24 in namespace {NAMESPACE}): alpha {SUBNET}.2, beta {SUBNET}.3"
                    );
                    println!("Target login for both: user {DEMO_USER}, password {password}");
                    println!("Recordings: {}", state_dir.join("recordings.db").display());
                    println!(
                        "Open the URL, accept the self-signed certificate (compare the fingerprint), log in as admin."
                    );
                    println!("Press Ctrl-C to stop the demo and remove its namespace.");
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if let Ok(Some(status)) = gateway.try_wait() {
            eprintln!("xtask: the gateway exited ({status})");
            break;
        }
    }
    eprintln!("xtask: stopping the demo");
    stop_child(&mut gateway);
    for child in &mut children {
        stop_child(child);
    }
    drop(network);
    Ok(())
}

/// Sends SIGTERM, waits up to five seconds, then kills.
fn stop_child(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    for _ in 0..50 {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The demo namespace and its veth pair; removed on drop.
struct DemoNetwork;

impl DemoNetwork {
    fn create() -> anyhow::Result<DemoNetwork> {
        // Leftovers of a demo that was killed hard.
        let _ = Command::new("ip")
            .args(["netns", "del", NAMESPACE])
            .stderr(Stdio::null())
            .status();
        let _ = Command::new("ip")
            .args(["link", "del", HOST_IF])
            .stderr(Stdio::null())
            .status();
        let addrs = Command::new("ip").args(["-o", "addr"]).output()?;
        if String::from_utf8_lossy(&addrs.stdout).contains(&format!(" {SUBNET}.")) {
            bail!(
                "{SUBNET}.0/24 is already used on this machine; the demo network would collide with it"
            );
        }
        let network = DemoNetwork;
        let ip = |args: &[&str]| run_cmd(Command::new("ip").args(args));
        ip(&["netns", "add", NAMESPACE])?;
        ip(&[
            "link", "add", HOST_IF, "type", "veth", "peer", "name", NS_IF,
        ])?;
        ip(&["link", "set", NS_IF, "netns", NAMESPACE])?;
        ip(&["addr", "add", &format!("{SUBNET}.1/24"), "dev", HOST_IF])?;
        ip(&["link", "set", HOST_IF, "up"])?;
        for args in [
            vec!["addr", "add", &format!("{SUBNET}.2/24"), "dev", NS_IF],
            vec!["addr", "add", &format!("{SUBNET}.3/24"), "dev", NS_IF],
            vec!["link", "set", NS_IF, "up"],
            vec!["link", "set", "lo", "up"],
        ]
        .iter()
        .map(|a| a.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        {
            run_cmd(
                Command::new("ip")
                    .args(["netns", "exec", NAMESPACE, "ip"])
                    .args(&args),
            )?;
        }
        Ok(network)
    }
}

impl Drop for DemoNetwork {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", HOST_IF]).status();
        let _ = Command::new("ip")
            .args(["netns", "del", NAMESPACE])
            .status();
    }
}

/// Makes sure the demo's target account exists and gives it a fresh random password.
fn demo_user_password() -> anyhow::Result<String> {
    let exists = Command::new("id")
        .arg(DEMO_USER)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?
        .success();
    if !exists {
        run_cmd(Command::new("useradd").args([
            "--create-home",
            "--shell",
            "/bin/bash",
            DEMO_USER,
        ]))?;
    }
    let mut seed = [0u8; 9];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut seed))?;
    let password: String = seed.iter().map(|b| format!("{b:02x}")).collect();
    let mut chpasswd = Command::new("chpasswd").stdin(Stdio::piped()).spawn()?;
    if let Some(mut stdin) = chpasswd.stdin.take() {
        std::io::Write::write_all(&mut stdin, format!("{DEMO_USER}:{password}\n").as_bytes())?;
    }
    if !chpasswd.wait()?.success() {
        bail!("chpasswd failed for {DEMO_USER}");
    }
    Ok(password)
}

/// Starts one sshd inside the namespace on `addr`, with its own host key.
fn start_sshd(demo_dir: &Path, name: &str, addr: &str) -> anyhow::Result<Child> {
    let dir: PathBuf = demo_dir.join("targets").join(name);
    std::fs::create_dir_all(&dir)?;
    let host_key = dir.join("host_ed25519");
    if !host_key.exists() {
        run_cmd(
            Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(&host_key),
        )?;
    }
    let config = dir.join("sshd_config");
    std::fs::write(
        &config,
        format!(
            "ListenAddress {addr}:22\nHostKey {key}\nPidFile none\nUsePAM no\nPasswordAuthentication yes\nKbdInteractiveAuthentication no\nStrictModes no\nPermitRootLogin no\nPrintMotd no\nBanner none\nSubsystem sftp internal-sftp\n",
            key = host_key.display()
        ),
    )?;
    std::fs::create_dir_all("/run/sshd")?;
    Command::new("ip")
        .args([
            "netns",
            "exec",
            NAMESPACE,
            "/usr/sbin/sshd",
            "-D",
            "-e",
            "-f",
        ])
        .arg(&config)
        .stderr(std::fs::File::create(dir.join("sshd.log"))?)
        .spawn()
        .with_context(|| format!("starting sshd for {name}"))
}
