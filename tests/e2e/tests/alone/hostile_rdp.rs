//! The gateway's RDP client against hostile RDP servers of ours (`sallyport_e2e::hostile_rdp`), one per
//! known class of client-side bugs, while a real xrdp session stays open beside them: every hostile
//! session ends with an error (never a panic, never a hang), resident memory stays bounded, the process
//! goes back to idle, and the xrdp session still takes input afterwards.
//!
//! The RDP client runs in this test's process, as it runs inside the gateway's: the process's RSS and CPU
//! time are the client's.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use sallyport_core::display::{DesktopSize, InputEvent};
use sallyport_e2e::hostile::rss_bytes;
use sallyport_e2e::hostile_rdp::{HostileRdp, RdpAttack};
use sallyport_e2e::rdp::Xrdp;
use sallyport_e2e::{TargetNet, require_root, wait_until_async};
use sallyport_rdp::{ConnectRequest, SessionEnd, SessionEvent, connect};

/// Growth of this process's resident memory allowed over all cases (each case's framebuffer is 800×600).
const RSS_GROWTH_LIMIT: u64 = 256 * 1024 * 1024;

fn request(addr: SocketAddr, user: &str, password: &str) -> ConnectRequest {
    ConnectRequest {
        addr,
        username: user.to_owned(),
        password: password.to_owned(),
        domain: None,
        pinned_key: None,
        size: DesktopSize::clamped(800, 600),
        timeout: Duration::from_secs(15),
        observer: None,
        keyframe_interval: Duration::from_secs(10),
        clipboard: sallyport_core::display::ClipboardPolicy::default(),
    }
}

/// CPU time (user + system) of this process, in clock ticks.
fn cpu_ticks() -> Result<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    let after = stat.rsplit(')').next().context("stat")?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    Ok(fields[11].parse::<u64>()? + fields[12].parse::<u64>()?)
}

/// How one hostile session ended.
async fn outcome(addr: SocketAddr) -> Result<String, String> {
    let connected = match connect(request(addr, "sp-e2e", "sp-e2e-pass")).await {
        Ok(connected) => connected,
        Err(error) => return Err(format!("refused at connect: {error}")),
    };
    let mut session = connected.session;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match tokio::time::timeout_at(deadline, session.next_event()).await {
            Ok(SessionEvent::Damaged) => {
                let _ = session.take_update(false);
            }
            Ok(SessionEvent::Clipboard(_) | SessionEvent::ClipboardRefused(_)) => {}
            Ok(SessionEvent::Ended(SessionEnd::Failed(error))) => {
                return Err(format!("ended with an error: {error}"));
            }
            Ok(SessionEvent::Ended(SessionEnd::Closed(reason))) => {
                return Ok(format!("closed without an error: {reason}"));
            }
            Err(_) => return Ok("still running after 20 s".into()),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_rdp_servers_end_only_their_own_session() -> Result<()> {
    let _alone = crate::ALONE.lock().await;
    require_root()?;
    let net = TargetNet::create("hrdp")?;
    let xrdp = Xrdp::start(&net)?;
    let good = connect(request(
        SocketAddr::from((xrdp.addr(), xrdp.port())),
        &xrdp.user().name,
        &xrdp.user().password,
    ))
    .await
    .with_context(|| xrdp.log())?;
    let good_session = good.session;

    let rss_before = rss_bytes(std::process::id())?;
    let mut failures = Vec::new();
    for (i, attack) in RdpAttack::ALL.into_iter().enumerate() {
        let server = HostileRdp::start(&net, 4000 + u16::try_from(i)?, attack)?;
        match outcome(server.addr()).await {
            Err(error) => {
                // The error must say what went wrong in words, not be empty.
                assert!(error.len() > 20, "{attack:?}: {error}");
                eprintln!("{attack:?}: {error}");
            }
            Ok(other) => failures.push(format!("{attack:?}: {other}")),
        }
        drop(server);
    }
    let rss_after = rss_bytes(std::process::id())?;
    assert!(
        rss_after.saturating_sub(rss_before) < RSS_GROWTH_LIMIT,
        "resident memory grew from {rss_before} to {rss_after} bytes"
    );
    if !failures.is_empty() {
        bail!(
            "hostile sessions that did not end with an error:\n{}",
            failures.join("\n")
        );
    }

    // Idle again: less than a tenth of a core over two seconds.
    let before = cpu_ticks()?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let used = cpu_ticks()? - before;
    assert!(
        used < 20,
        "{used} ticks of CPU in 2 s after the hostile sessions"
    );

    // The real session beside them still works: typing reaches its shell.
    good_session
        .input(vec![InputEvent::MouseMove { x: 70, y: 70 }])
        .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let keys = |code: u16| {
        [
            InputEvent::Key {
                scancode: code,
                down: true,
            },
            InputEvent::Key {
                scancode: code,
                down: false,
            },
        ]
    };
    // "touch ok" and Enter, in US scancodes.
    let mut typed = Vec::new();
    for code in [0x14, 0x18, 0x16, 0x2e, 0x23, 0x39, 0x18, 0x25, 0x1c] {
        typed.extend(keys(code));
    }
    good_session.input(typed).await?;
    let made = xrdp.out_dir().join("ok");
    let alive = wait_until_async(Duration::from_secs(15), || {
        let made = made.clone();
        async move { made.exists() }
    })
    .await;
    assert!(
        alive,
        "the xrdp session beside the hostile ones stopped taking input"
    );
    good_session.close().await;
    Ok(())
}
