//! `sallyport-bench ssh|edge|rdp|boot|quic` (run by `cargo xtask bench ssh|edge|rdp|boot|quic`).
//! `rdp` is `sallyport_e2e::bench_rdp`.
//!
//! `boot` measures the appliance image's boot to "443 answering" (see `sallyport_e2e::bench_boot`).
//! `quic` compares the native client's QUIC path with the WebSocket path (see `sallyport_e2e::bench_quic`).
//! `edge` measures the eBPF edge's XDP drop rate against an nftables ingress rule and bulk TCP with the edge
//! attached against detached (see `sallyport_e2e::bench_edge`). `ssh` measures the SSH relay against direct
//! SSH on the same machine, in one run, with real sshd in a network namespace:
//!
//! - Bulk output: the same PTY command through the gateway (TLS + WebSocket) and through OpenSSH's own
//!   client; the ratio of medians.
//! - Echo latency: one keystroke echoed by the target's terminal, through the gateway and over a direct
//!   SSH connection (russh, as the gateway itself uses); the gateway-added p50 and p99.
//! - Recording overhead: in the same bulk runs, the gateway's CPU against its CPU without the recorder thread
//!   (which compresses, chains, writes the ledger and SQLite), and the ledger's own cost per second of recording
//!   from `/admin/metrics`.
//! - Memory: the gateway's resident memory growth per idle session with 200 sessions open.
//!
//! Every loop is bounded in count and time; traffic goes only to the namespace this run creates.

use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use sallyport_e2e::common::{cpu_seconds, thread_cpu_seconds};
use sallyport_e2e::portal::{Terminal, login_admin, target_id};
use sallyport_e2e::{
    Gateway, GatewayOptions, KeyPair, Sshd, SshdOptions, TargetNet, ensure_test_user, require_root,
};

const BULK_BYTES: u64 = 64 * 1024 * 1024;
const BULK_RUNS: usize = 5;
const ECHO_SAMPLES: usize = 400;
const IDLE_SESSIONS: usize = 200;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let which = std::env::args().nth(1).unwrap_or_else(|| "ssh".into());
    let result = match which.as_str() {
        "ssh" => ssh().await,
        "rdp" => sallyport_e2e::bench_rdp::run().await,
        "quic" => sallyport_e2e::bench_quic::run().await,
        "edge" => tokio::task::spawn_blocking(sallyport_e2e::bench_edge::run)
            .await
            .unwrap_or_else(|error| Err(anyhow::anyhow!("the edge benchmark panicked: {error}"))),
        "boot" => sallyport_e2e::bench_boot::run().await,
        _ => {
            eprintln!("usage: sallyport-bench <ssh | edge | rdp | boot | quic>");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("sallyport-bench: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

async fn ssh() -> Result<()> {
    require_root()?;
    let net = TargetNet::create("bench")?;
    let user = ensure_test_user()?;
    let key = KeyPair::generate_ed25519()?;
    let sshd = Sshd::start(&net, SshdOptions::default())?;
    sshd.authorize_key(key.public_line())?;
    // The benchmark opens 200 idle sessions as one user.
    let mut options =
        GatewayOptions::for_net(&net).extra_toml("[sessions]\nmax_sessions_per_user = 1000");
    // Per-session log lines are not what is measured.
    options.env.push(("RUST_LOG".into(), "warn".into()));
    let gateway = Gateway::start(options).await?;
    let client = login_admin(&gateway).await?;
    let alpha = target_id(&client, "alpha").await?;
    println!(
        "sallyport-bench ssh: gateway {} (pid {:?}), target sshd at {}",
        gateway.url(),
        gateway.pid(),
        net.ns_addr()
    );

    // Bulk output.
    let command =
        format!("head -c {BULK_BYTES} /dev/zero | tr '\\0' a; echo; echo bulk-$((1+1))-done");
    let ssh_args = |remote: &str| {
        let mut cmd = Command::new("ssh");
        cmd.args([
            "-tt",
            "-q",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "-i",
        ])
        .arg(key.private_key_path())
        .arg(format!("{}@{}", user.name, net.ns_addr()))
        .arg(remote)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        cmd
    };
    let mut terminal = Terminal::open(&client, alpha, &user.name, &user.password).await?;
    terminal.expect_connected().await?;
    terminal.type_text("stty -echo; PS1='ready> '\r").await?;
    terminal
        .read_bulk_until("ready> ", Duration::from_secs(10))
        .await?;
    let mut relayed = Vec::new();
    let mut direct = Vec::new();
    let mut handshake = Vec::new();
    let pid = gateway.pid().context("gateway not running")?;
    let mut recording_shares = Vec::new();
    let (mut ledger_seconds, mut ledger_entries, mut recorded_seconds) = (0.0, 0.0, 0.0);
    for _ in 0..BULK_RUNS {
        let cpu_before = cpu_seconds(pid)?;
        let recorder_before = thread_cpu_seconds(pid, "sallyport-recorder")?;
        let ledger_before = ledger_metrics(&client).await?;
        let started = Instant::now();
        terminal.type_text(&format!("{command}\r")).await?;
        let bytes = terminal
            .read_bulk_until("bulk-2-done", Duration::from_secs(120))
            .await?;
        let seconds = started.elapsed().as_secs_f64();
        let gateway_cpu = cpu_seconds(pid)? - cpu_before;
        let recorder_cpu = thread_cpu_seconds(pid, "sallyport-recorder")? - recorder_before;
        let ledger_after = ledger_metrics(&client).await?;
        recording_shares.push(gateway_cpu / (gateway_cpu - recorder_cpu).max(1e-6));
        ledger_seconds += ledger_after.0 - ledger_before.0;
        ledger_entries += ledger_after.1 - ledger_before.1;
        recorded_seconds += seconds;
        if bytes < BULK_BYTES {
            bail!("only {bytes} of {BULK_BYTES} bytes arrived through the gateway");
        }
        relayed.push(BULK_BYTES as f64 / seconds / 1e6);

        let started = Instant::now();
        let status = ssh_args("true").status().context("running ssh")?;
        handshake.push(started.elapsed().as_secs_f64());
        if !status.success() {
            bail!("direct ssh failed: {status}");
        }
        let started = Instant::now();
        let status = ssh_args(&command).status().context("running ssh")?;
        let seconds = started.elapsed().as_secs_f64();
        if !status.success() {
            bail!("direct ssh failed: {status}");
        }
        direct.push(seconds);
    }
    let handshake_s = median(&mut handshake);
    let mut direct_rate: Vec<f64> = direct
        .iter()
        .map(|s| BULK_BYTES as f64 / (s - handshake_s).max(1e-3) / 1e6)
        .collect();
    let relayed_mbps = median(&mut relayed);
    let direct_mbps = median(&mut direct_rate);
    println!(
        "bulk output, {} MiB through a PTY, median of {BULK_RUNS}: relayed {relayed_mbps:.1} MB/s, direct OpenSSH {direct_mbps:.1} MB/s (connection setup {:.0} ms subtracted); ratio {:.2} (target >= 0.8)",
        BULK_BYTES >> 20,
        handshake_s * 1e3,
        relayed_mbps / direct_mbps
    );
    let spread = recording_shares
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
    println!(
        "recording overhead in the same bulk runs: gateway CPU ÷ gateway CPU without the recorder thread (compression, chain, ledger, SQLite), median {:.3} (runs {:.3}–{:.3}; goal <= 1.05)",
        median(&mut recording_shares),
        spread.0,
        spread.1
    );
    println!(
        "ledger: {:.3} ms of recorder time per second of recording ({:.0} entries/s, {:.1} µs each), from /admin/metrics",
        ledger_seconds * 1e3 / recorded_seconds,
        ledger_entries / recorded_seconds,
        ledger_seconds * 1e6 / ledger_entries.max(1.0)
    );

    // Echo latency: the terminal's own echo (cat with the tty echoing), one keystroke at a time.
    terminal.type_text("stty echo; cat > /dev/null\r").await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut relayed_lat = echo_samples_gateway(&mut terminal).await?;
    let mut direct_lat = echo_samples_direct(&net, &user.name, &user.password).await?;
    relayed_lat.sort_by(|a, b| a.total_cmp(b));
    direct_lat.sort_by(|a, b| a.total_cmp(b));
    let (r50, r99) = (
        percentile(&relayed_lat, 0.5),
        percentile(&relayed_lat, 0.99),
    );
    let (d50, d99) = (percentile(&direct_lat, 0.5), percentile(&direct_lat, 0.99));
    println!(
        "echo latency, {ECHO_SAMPLES} keystrokes: direct SSH p50 {d50:.3} ms p99 {d99:.3} ms; through the gateway p50 {r50:.3} ms p99 {r99:.3} ms; gateway-added p50 {:.3} ms, p99 {:.3} ms (targets <= 0.5 / 2)",
        r50 - d50,
        r99 - d99
    );
    terminal.close().await;

    // Memory per idle session.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let pid = gateway.pid().context("gateway not running")?;
    let before = rss_kib(pid)?;
    let mut open = Vec::with_capacity(IDLE_SESSIONS);
    let started = Instant::now();
    for batch in 0..IDLE_SESSIONS / 20 {
        let opening = (0..20).map(|_| async {
            let mut terminal = Terminal::open(&client, alpha, &user.name, &user.password).await?;
            terminal.expect_connected().await?;
            anyhow::Ok(terminal)
        });
        for result in futures_util::future::join_all(opening).await {
            open.push(result.with_context(|| format!("opening idle sessions, batch {batch}"))?);
        }
    }
    let opened_in = started.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = rss_kib(pid)?;
    let per_session = (after.saturating_sub(before)) as f64 / IDLE_SESSIONS as f64;
    println!(
        "memory per idle session, {IDLE_SESSIONS} open (opened in {:.1} s): {per_session:.0} KiB (gateway RSS {} MiB -> {} MiB; target <= 128 KiB)",
        opened_in.as_secs_f64(),
        before / 1024,
        after / 1024
    );
    for terminal in open {
        terminal.close().await;
    }
    drop(sshd);
    Ok(())
}

/// The ledger's cost so far, from the gateway's metrics: (seconds, entries).
async fn ledger_metrics(client: &sallyport_e2e::Client) -> Result<(f64, f64)> {
    let text = client.get("/admin/metrics").await?.text();
    let value = |name: &str| -> Result<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
            .with_context(|| format!("no {name} in /admin/metrics"))
    };
    Ok((
        value("sallyport_ledger_seconds_total ")?,
        value("sallyport_ledger_entries_total ")?,
    ))
}

fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS in /proc status")
}

/// Keystroke round trips through the gateway, in milliseconds.
async fn echo_samples_gateway(terminal: &mut Terminal) -> Result<Vec<f64>> {
    let mut samples = Vec::with_capacity(ECHO_SAMPLES);
    for index in 0..ECHO_SAMPLES {
        let key = if index % 60 == 59 { "\r" } else { "x" };
        let started = Instant::now();
        terminal.type_text(key).await?;
        let mut seen = Vec::new();
        while !seen.contains(&(if key == "\r" { b'\n' } else { b'x' })) {
            seen.extend(terminal.next_output(Duration::from_secs(5)).await?);
        }
        samples.push(started.elapsed().as_secs_f64() * 1e3);
    }
    Ok(samples)
}

/// The same round trips over a direct SSH connection to the target.
async fn echo_samples_direct(net: &TargetNet, username: &str, password: &str) -> Result<Vec<f64>> {
    let connected = sallyport_ssh::connect(sallyport_ssh::ConnectRequest {
        addr: std::net::SocketAddr::new(net.ns_addr().into(), 22),
        username: username.to_owned(),
        credential: sallyport_ssh::Credential::Password(password.to_owned()),
        pinned_host_key: None,
        term: "xterm-256color".into(),
        cols: 100,
        rows: 30,
        connect_timeout: Duration::from_secs(10),
    })
    .await?;
    let mut session = connected.session;
    session.write(b"cat > /dev/null\r").await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Drain the prompt and the echoed command.
    while tokio::time::timeout(Duration::from_millis(100), session.next_event())
        .await
        .is_ok()
    {}
    let mut samples = Vec::with_capacity(ECHO_SAMPLES);
    for index in 0..ECHO_SAMPLES {
        let key: &[u8] = if index % 60 == 59 { b"\r" } else { b"x" };
        let started = Instant::now();
        session.write(key).await?;
        let wanted = if key == b"\r" { b'\n' } else { b'x' };
        loop {
            match tokio::time::timeout(Duration::from_secs(5), session.next_event()).await {
                Ok(Some(sallyport_ssh::TerminalEvent::Output(data))) if data.contains(&wanted) => {
                    break;
                }
                Ok(Some(sallyport_ssh::TerminalEvent::Output(_))) => continue,
                other => bail!("direct session ended during the echo test: {other:?}"),
            }
        }
        samples.push(started.elapsed().as_secs_f64() * 1e3);
    }
    session.close().await;
    Ok(samples)
}
