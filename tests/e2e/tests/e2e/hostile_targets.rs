//! Hostile targets: one gateway, one honest OpenSSH target and sixteen hostile ones in the same namespace. Every
//! hostile session must end on its own with a clear error (or, for floods, keep working until the user closes
//! it), the honest session must keep answering throughout, and the gateway's memory must stay bounded.
//!
//! The RSS bound: the gateway keeps per session at most about 0.5 MiB in russh's channel queue (16 messages of
//! 32 KiB), 1 MiB of output queued by a blocked write, one WebSocket message and the recorder's bounded queue;
//! even with all sixteen hostile sessions at their worst at once that is well under 64 MiB of growth, so
//! growth beyond 64 MiB means something buffers without bound.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use sallyport_e2e::hostile::{HostileMode, HostileShell, HostileSshd, ShellMode, rss_bytes};
use sallyport_e2e::portal::{Terminal, login_admin, target_id};
use sallyport_e2e::{
    Client, Gateway, GatewayOptions, Sshd, SshdOptions, TargetNet, ensure_test_user, require_root,
};

/// Growth of the gateway's resident memory allowed over the whole test (see the module documentation).
const RSS_GROWTH_LIMIT: u64 = 64 * 1024 * 1024;
/// Longest a hostile session may take to end with its error: the gateway's 20 s connect deadline plus margin.
const HOSTILE_DEADLINE: Duration = Duration::from_secs(30);
/// Longest the honest session may take to answer a command while the hostile sessions run.
const HONEST_ANSWER_LIMIT: Duration = Duration::from_secs(5);
/// How long the session with a target that stops reading input may take to end: the gateway gives up on a
/// write after 30 s without progress; plus margin.
const INPUT_STALL_DEADLINE: Duration = Duration::from_secs(50);
/// Output to read from each flooding target while it floods, to show the session keeps working.
const FLOOD_BYTES: u64 = 32 * 1024 * 1024;

/// What the user sees for each pre-handshake mode.
fn expected_kind(mode: HostileMode) -> &'static str {
    match mode {
        // Silence, slow drips and an endless stream of (legal) SSH_MSG_IGNORE never complete the handshake:
        // the connect deadline ends them.
        HostileMode::NoBanner
        | HostileMode::EndlessBannerSlow
        | HostileMode::SlowDripPacket
        | HostileMode::IgnoreFlood => "target_timeout",
        _ => "target_protocol",
    }
}

/// Words the error message must contain for each pre-handshake mode: the user learns what the target did.
fn expected_detail(mode: HostileMode) -> &'static str {
    match mode {
        HostileMode::EndlessBannerFast | HostileMode::HugeBannerLine => {
            "target sent no valid SSH identification line"
        }
        HostileMode::EndlessBannerSlow
        | HostileMode::NoBanner
        | HostileMode::SlowDripPacket
        | HostileMode::IgnoreFlood => "target did not finish the SSH handshake within 20 s",
        HostileMode::AbsurdPacketLength => "target sent a packet of 4294967280 bytes",
        HostileMode::KexGarbage => "more than the 256 KiB allowed",
        HostileMode::KexInitBomb => "target offers no Kex algorithm we accept",
        HostileMode::KexInitLyingLength => "target sent a malformed message during the handshake",
        HostileMode::TruncatedPacket | HostileMode::CloseMidHandshake => {
            "target closed the connection during the handshake"
        }
        HostileMode::ResetMidHandshake => "target reset the connection during the handshake",
    }
}

/// How one hostile session ended.
#[derive(Debug)]
struct Ended {
    name: &'static str,
    kind: String,
    message: String,
    after: Duration,
    close_frame: bool,
}

async fn hostile_session(
    client: Client,
    id: i64,
    name: &'static str,
    user: (String, String),
) -> Result<Ended> {
    let started = Instant::now();
    let mut terminal = Terminal::open(&client, id, &user.0, &user.1).await?;
    terminal
        .read_until(HOSTILE_DEADLINE, |r| {
            r.control("error").is_some() || r.control("connected").is_some()
        })
        .await?;
    let after = started.elapsed();
    if terminal.received.control("connected").is_some() {
        bail!("{name}: the hostile target's session connected");
    }
    let error = terminal
        .received
        .control("error")
        .with_context(|| {
            format!(
                "{name}: no error within {HOSTILE_DEADLINE:?}: {:?}",
                terminal.received.controls
            )
        })?
        .clone();
    terminal
        .read_until(Duration::from_secs(5), |r| r.close_frame)
        .await?;
    Ok(Ended {
        name,
        kind: error["kind"].as_str().unwrap_or("").to_owned(),
        message: error["message"].as_str().unwrap_or("").to_owned(),
        after,
        close_frame: terminal.received.close_frame,
    })
}

/// A flooding target: the session connects, output keeps coming (`FLOOD_BYTES` of it, starting with
/// `first_bytes` unchanged), survives the user not reading for 3 s, a resize still goes through, and the user's
/// close ends the session on the target too.
async fn flood_session(
    client: Client,
    id: i64,
    shell: Arc<HostileShell>,
    net: Arc<TargetNet>,
    user: (String, String),
    first_bytes: &'static [u8],
) -> Result<(u64, Duration)> {
    let name = shell.mode().name();
    let mut terminal = Terminal::open(&client, id, &user.0, &user.1).await?;
    terminal.expect_connected().await?;
    let first = terminal.next_output(Duration::from_secs(10)).await?;
    let mut seen = first.clone();
    while seen.len() < 4096 {
        seen.extend(terminal.next_output(Duration::from_secs(10)).await?);
    }
    if !seen.windows(first_bytes.len()).any(|w| w == first_bytes) {
        bail!(
            "{name}: the target's output did not arrive unchanged: {:?}",
            String::from_utf8_lossy(&seen[..seen.len().min(200)])
        );
    }
    let started = Instant::now();
    let mut total = seen.len() as u64;
    while total < FLOOD_BYTES {
        let chunk = terminal.next_output(Duration::from_secs(10)).await?;
        total += chunk.len() as u64;
        if started.elapsed() > Duration::from_secs(60) {
            bail!("{name}: only {total} bytes in 60 s");
        }
    }
    let flood_time = started.elapsed();
    // A user who stops reading (a slow browser): backpressure must hold the target, not the gateway's memory
    // (the RSS sampler runs meanwhile); then the session goes on.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for _ in 0..64 {
        total += terminal.next_output(Duration::from_secs(10)).await?.len() as u64;
    }
    // The user's messages still reach the target while it floods.
    terminal.resize(120, 40).await?;
    let more = terminal.next_output(Duration::from_secs(10)).await?;
    if more.is_empty() {
        bail!("{name}: empty output message");
    }
    if terminal.received.control("error").is_some() {
        bail!(
            "{name}: the flood ended with an error: {:?}",
            terminal.received.controls
        );
    }
    // The user closes: the gateway must end the SSH session, so the flooding command goes away.
    terminal.close().await;
    let gone = tokio::time::timeout(Duration::from_secs(15), async {
        while !shell.command_pids(&net).is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    if gone.is_err() {
        bail!(
            "{name}: the flooding command still runs 15 s after the user closed the session: {:?}",
            shell.command_pids(&net)
        );
    }
    Ok((total, flood_time))
}

/// A target whose command never reads input: the paste fills the PTY and the SSH window, then the session must
/// end with a timeout error instead of hanging forever.
async fn stalled_input_session(
    client: Client,
    id: i64,
    shell: Arc<HostileShell>,
    net: Arc<TargetNet>,
    user: (String, String),
) -> Result<Ended> {
    let mut terminal = Terminal::open(&client, id, &user.0, &user.1).await?;
    terminal.expect_connected().await?;
    let chunk = "x".repeat(64 * 1024 - 1) + "\r";
    let started = Instant::now();
    let mut sent = 0usize;
    // 8 MiB is far more than the PTY and OpenSSH's 2 MiB window take; stop pasting once the gateway stops
    // taking it (its relay is then blocked on the target).
    for _ in 0..128 {
        match tokio::time::timeout(Duration::from_secs(3), terminal.type_text(&chunk)).await {
            Ok(result) => result?,
            Err(_) => break,
        }
        sent += chunk.len();
    }
    if sent < 3 * 1024 * 1024 && started.elapsed() < Duration::from_secs(3) {
        bail!("the paste stopped early after {sent} bytes");
    }
    terminal
        .read_until(INPUT_STALL_DEADLINE, |r| r.control("error").is_some())
        .await?;
    let after = started.elapsed();
    let error = terminal
        .received
        .control("error")
        .with_context(|| {
            format!(
                "input-stall: no error {INPUT_STALL_DEADLINE:?} after pasting {sent} bytes into a target that \
                 does not read: {:?}",
                terminal.received.controls
            )
        })?
        .clone();
    terminal
        .read_until(Duration::from_secs(5), |r| r.close_frame)
        .await?;
    let gone = tokio::time::timeout(Duration::from_secs(15), async {
        while !shell.command_pids(&net).is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    if gone.is_err() {
        bail!("input-stall: the target's command outlived the session");
    }
    eprintln!("input-stall: pasted {sent} bytes before the gateway stopped taking input");
    Ok(Ended {
        name: "input-stall",
        kind: error["kind"].as_str().unwrap_or("").to_owned(),
        message: error["message"].as_str().unwrap_or("").to_owned(),
        after,
        close_frame: terminal.received.close_frame,
    })
}

/// Types a command into the honest session and waits for its answer; returns how long that took.
async fn probe(terminal: &mut Terminal, n: u64) -> Result<Duration> {
    let started = Instant::now();
    let want = format!("honest-{}-ok", n * 7 + 3);
    terminal
        .type_text(&format!("echo honest-$(({n}*7+3))-ok\r"))
        .await?;
    let answered = terminal
        .read_until(HONEST_ANSWER_LIMIT, |r| r.output.contains(&want))
        .await?;
    if !answered {
        bail!(
            "the honest session did not answer probe {n} within {HONEST_ANSWER_LIMIT:?}; controls {:?}",
            terminal.received.controls
        );
    }
    // Keep only the tail, so the next probe's answer is not found in old output.
    terminal.received.output.clear();
    Ok(started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_targets_end_only_their_own_sessions_with_bounded_memory() -> Result<()> {
    require_root()?;
    let net = Arc::new(TargetNet::create("hostile")?);
    let user = ensure_test_user()?;
    let credentials = (user.name.clone(), user.password.clone());
    let _honest_sshd = Sshd::start(&net, SshdOptions::default())?;
    let mut servers = Vec::new();
    for (index, mode) in HostileMode::ALL.iter().enumerate() {
        servers.push(HostileSshd::start(&net, 2200 + index as u16, *mode)?);
    }
    let mut shells = Vec::new();
    for (index, mode) in ShellMode::ALL.iter().enumerate() {
        shells.push(Arc::new(HostileShell::start(
            &net,
            2300 + index as u16,
            *mode,
        )?));
    }
    assert!(servers.len() + shells.len() >= 10);

    let address = net.ns_addr().to_string();
    let mut options = GatewayOptions::for_net(&net).target("honest", &address, 22);
    for server in &servers {
        options = options.target(server.mode().name(), &address, server.addr().port());
    }
    for shell in &shells {
        options = options.target(shell.mode().name(), &address, shell.sshd().port());
    }
    let mut gateway = Gateway::start(options).await?;
    let pid = gateway.pid().context("the gateway is not running")?;
    let client = login_admin(&gateway).await?;

    // The honest session, first alone: its answers and the gateway's memory are the baseline.
    let honest_id = target_id(&client, "honest").await?;
    let mut honest = Terminal::open(&client, honest_id, &user.name, &user.password).await?;
    honest.expect_connected().await?;
    for n in 0..3 {
        probe(&mut honest, n).await?;
    }
    let baseline = rss_bytes(pid)?;

    let stop = Arc::new(AtomicBool::new(false));
    // The honest session answers a command every 300 ms for as long as the hostile sessions run (bounded).
    let honest_task = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            for n in 3..1000u64 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                latencies.push(probe(&mut honest, n).await?);
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Ok::<_, anyhow::Error>((honest, latencies))
        })
    };
    // The gateway's resident memory, sampled every 100 ms (bounded).
    let sampler = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut peak = 0u64;
            for _ in 0..3000 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(rss) = rss_bytes(pid) {
                    peak = peak.max(rss);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            peak
        })
    };

    // Every hostile session at once.
    let mut handshakes = Vec::new();
    for server in &servers {
        let name = server.mode().name();
        let id = target_id(&client, name).await?;
        handshakes.push(tokio::spawn(hostile_session(
            client.clone(),
            id,
            name,
            credentials.clone(),
        )));
    }
    let mut floods = Vec::new();
    let mut stall = None;
    for shell in &shells {
        let id = target_id(&client, shell.mode().name()).await?;
        match shell.mode() {
            ShellMode::OutputFlood => floods.push(tokio::spawn(flood_session(
                client.clone(),
                id,
                shell.clone(),
                net.clone(),
                credentials.clone(),
                b"sallyport-hostile-flood\r\n",
            ))),
            ShellMode::EscapeBomb => floods.push(tokio::spawn(flood_session(
                client.clone(),
                id,
                shell.clone(),
                net.clone(),
                credentials.clone(),
                b"\x1b[99999999;99999999H",
            ))),
            ShellMode::InputStall => {
                stall = Some(tokio::spawn(stalled_input_session(
                    client.clone(),
                    id,
                    shell.clone(),
                    net.clone(),
                    credentials.clone(),
                )))
            }
        }
    }

    let mut failures = Vec::new();
    let mut ended = Vec::new();
    for (server, handle) in servers.iter().zip(handshakes) {
        match handle.await? {
            Ok(end) => ended.push((Some(server.mode()), end)),
            Err(error) => failures.push(format!("{error:#}")),
        }
    }
    for (shell, handle) in shells
        .iter()
        .filter(|s| s.mode() != ShellMode::InputStall)
        .zip(floods)
    {
        match handle.await? {
            Ok((bytes, took)) => eprintln!(
                "{}: {} MiB of output in {took:.1?} while flooding, closed by the user",
                shell.mode().name(),
                bytes / (1024 * 1024)
            ),
            Err(error) => failures.push(format!("{error:#}")),
        }
    }
    if let Some(handle) = stall {
        match handle.await? {
            Ok(end) => ended.push((None, end)),
            Err(error) => failures.push(format!("{error:#}")),
        }
    }
    stop.store(true, Ordering::SeqCst);
    let peak = sampler.await?;
    let honest_result = honest_task.await?;

    for (mode, end) in &ended {
        let expected = mode.map_or("target_timeout", expected_kind);
        let detail = mode.map_or("target accepted no input for 30 s", expected_detail);
        if !end.message.contains(detail) {
            failures.push(format!(
                "{}: the message does not say {detail:?}: {}",
                end.name, end.message
            ));
        }
        eprintln!(
            "{}: {} after {:.1?}: {}",
            end.name, end.kind, end.after, end.message
        );
        if end.kind != expected {
            failures.push(format!(
                "{}: error kind {:?}, expected {expected:?} ({})",
                end.name, end.kind, end.message
            ));
        }
        if !end.close_frame {
            failures.push(format!("{}: no WebSocket close frame", end.name));
        }
    }
    // The hostile servers saw the gateway identify itself and hang up; nothing lingers.
    for server in &servers {
        let name = server.mode().name();
        let reports =
            tokio::task::block_in_place(|| server.wait_finished(1, Duration::from_secs(10)));
        let reports = match reports {
            Ok(reports) => reports,
            Err(error) => {
                failures.push(format!("{error:#}"));
                continue;
            }
        };
        for report in reports {
            let banner_checked = server.mode() != HostileMode::ResetMidHandshake;
            if banner_checked
                && !report
                    .client_banner
                    .as_deref()
                    .is_some_and(|b| b.starts_with("SSH-2.0-Sallyport_"))
            {
                failures.push(format!("{name}: gateway banner {:?}", report.client_banner));
            }
            if !server.mode().server_closes() {
                match report.peer_closed_after {
                    Some(after) if after <= HOSTILE_DEADLINE => {}
                    other => failures.push(format!(
                        "{name}: the gateway did not hang up in time ({other:?}, served {:?})",
                        report.served_for
                    )),
                }
            }
        }
    }

    let (honest, latencies) = match honest_result {
        Ok(result) => result,
        Err(error) => bail!(
            "the honest session failed while hostile sessions ran: {error:#}; other failures: {failures:#?}"
        ),
    };
    let slowest = latencies.iter().max().copied().unwrap_or_default();
    eprintln!(
        "honest session: {} answers, slowest {slowest:.1?}",
        latencies.len()
    );
    if latencies.len() < 10 {
        failures.push(format!(
            "the honest session answered only {} probes",
            latencies.len()
        ));
    }
    honest.close().await;

    let after = rss_bytes(pid)?;
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    eprintln!(
        "gateway RSS: baseline {:.1} MiB, peak {:.1} MiB, end {:.1} MiB (growth limit {:.0} MiB)",
        mib(baseline),
        mib(peak),
        mib(after),
        mib(RSS_GROWTH_LIMIT)
    );
    if peak.max(after).saturating_sub(baseline) >= RSS_GROWTH_LIMIT {
        failures.push(format!(
            "the gateway grew from {:.1} MiB to {:.1} MiB",
            mib(baseline),
            mib(peak.max(after))
        ));
    }
    if !gateway.is_running() {
        failures.push("the gateway exited".into());
    }
    let page = client.get("/targets").await?;
    if page.status != 200 {
        failures.push(format!("the portal answers {} after the test", page.status));
    }
    if !failures.is_empty() {
        bail!("hostile targets:\n{}", failures.join("\n"));
    }
    Ok(())
}
