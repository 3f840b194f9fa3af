//! sallyport-rdp against a real xrdp in a network namespace, without the portal: the gateway's RDP client
//! connects over TLS, decodes the session's known background and xterm into its framebuffer, types into
//! the xterm's shell (checked by the file the shell writes on the target), resizes through the display
//! control channel (checked by the session's own screen size), and refuses the target once its pinned key
//! no longer matches, inside the TLS handshake.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use sallyport_core::display::{DesktopSize, InputEvent};
use sallyport_e2e::rdp::{BACKGROUND, Shadow, ShadowSecurity, XTERM_AT, Xrdp};
use sallyport_e2e::{TargetNet, require_root, wait_until_async};
use sallyport_rdp::{ConnectRequest, RdpError, RdpSession, SessionEvent, connect};

fn request(xrdp: &Xrdp, pinned_key: Option<String>, size: DesktopSize) -> ConnectRequest {
    ConnectRequest {
        addr: SocketAddr::from((xrdp.addr(), xrdp.port())),
        username: xrdp.user().name.clone(),
        password: xrdp.user().password.clone(),
        domain: None,
        pinned_key,
        size,
        timeout: Duration::from_secs(30),
        observer: None,
        keyframe_interval: Duration::from_secs(10),
        clipboard: sallyport_core::display::ClipboardPolicy::default(),
    }
}

fn pixel(session: &RdpSession, x: u16, y: u16) -> Option<[u8; 3]> {
    let (w, h, data) = session.snapshot();
    if x >= w || y >= h {
        return None;
    }
    let i = (usize::from(y) * usize::from(w) + usize::from(x)) * 4;
    Some([data[i], data[i + 1], data[i + 2]])
}

/// Drains display events until `check` holds for the framebuffer (bounded by `timeout`).
async fn until_frame(
    session: &mut RdpSession,
    timeout: Duration,
    what: &str,
    mut check: impl FnMut(&RdpSession) -> bool,
) -> Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check(session) {
            return Ok(());
        }
        match tokio::time::timeout_at(deadline, session.next_event()).await {
            Ok(SessionEvent::Damaged) => {
                // Keep the damage bounded as a viewer would.
                let _ = session.take_update(false)?;
            }
            Ok(SessionEvent::Clipboard(_) | SessionEvent::ClipboardRefused(_)) => {}
            Ok(SessionEvent::Ended(end)) => {
                bail!("the session ended while waiting for {what}: {end:?}")
            }
            Err(_) => bail!("timed out waiting for {what}"),
        }
    }
}

fn type_text(text: &str) -> Vec<InputEvent> {
    // US layout scancodes for what the test types.
    let code = |c: char| -> Option<(u16, bool)> {
        let row1 = "1234567890-=";
        let row_q = "qwertyuiop[]";
        let row_a = "asdfghjkl;'";
        let row_z = "zxcvbnm,./";
        if let Some(i) = row1.find(c) {
            return Some((0x02 + i as u16, false));
        }
        if let Some(i) = row_q.find(c) {
            return Some((0x10 + i as u16, false));
        }
        if let Some(i) = row_a.find(c) {
            return Some((0x1E + i as u16, false));
        }
        if let Some(i) = row_z.find(c) {
            return Some((0x2C + i as u16, false));
        }
        match c {
            ' ' => Some((0x39, false)),
            '\n' => Some((0x1C, false)),
            '>' => Some((0x34, true)),
            '$' => Some((0x05, true)),
            '_' => Some((0x0C, true)),
            c if c.is_ascii_uppercase() => {
                code_lower(c.to_ascii_lowercase()).map(|(s, _)| (s, true))
            }
            _ => None,
        }
    };
    fn code_lower(c: char) -> Option<(u16, bool)> {
        let rows = [
            ("qwertyuiop", 0x10u16),
            ("asdfghjkl", 0x1E),
            ("zxcvbnm", 0x2C),
        ];
        rows.iter()
            .find_map(|(row, base)| row.find(c).map(|i| (base + i as u16, false)))
    }
    let mut events = Vec::new();
    for c in text.chars() {
        let Some((scancode, shift)) = code(c) else {
            continue;
        };
        if shift {
            events.push(InputEvent::Key {
                scancode: 0x2A,
                down: true,
            });
        }
        events.push(InputEvent::Key {
            scancode,
            down: true,
        });
        events.push(InputEvent::Key {
            scancode,
            down: false,
        });
        if shift {
            events.push(InputEvent::Key {
                scancode: 0x2A,
                down: false,
            });
        }
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xrdp_desktop_is_decoded_typed_into_resized_and_pinned() -> Result<()> {
    require_root()?;
    let net = TargetNet::create("rdpc")?;
    let xrdp = Xrdp::start(&net)?;
    let size = DesktopSize::clamped(1024, 768);
    let connected = connect(request(&xrdp, None, size))
        .await
        .with_context(|| format!("connect to xrdp\n{}", xrdp.log()))?;
    let pin = connected.key.to_pin();
    let mut session = connected.session;
    assert_eq!(session.size(), (1024, 768));

    // The known background and the xterm's white appear in the framebuffer.
    let (xterm_x, xterm_y) = (XTERM_AT.0 + 30, XTERM_AT.1 + 30);
    until_frame(
        &mut session,
        Duration::from_secs(30),
        "background and xterm",
        |s| pixel(s, 900, 700) == Some(BACKGROUND) && pixel(s, xterm_x, xterm_y) == Some([0xff; 3]),
    )
    .await
    .with_context(|| xrdp.log())?;

    // Typing into the xterm's shell (focus follows the pointer: there is no window manager).
    session
        .input(vec![InputEvent::MouseMove {
            x: xterm_x,
            y: xterm_y,
        }])
        .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    session
        .input(type_text("echo rdpMARKER42 > $SPE2E_DIR/typed\n"))
        .await?;
    let typed = xrdp.out_dir().join("typed");
    let arrived = wait_until_async(Duration::from_secs(15), || {
        let typed = typed.clone();
        async move { std::fs::read_to_string(&typed).is_ok_and(|s| s.trim() == "rdpMARKER42") }
    })
    .await;
    assert!(
        arrived,
        "the typed command did not write its file on the target"
    );

    // A resize through the display control channel changes the session's screen.
    let xrdp_ref = &xrdp;
    let resized = wait_until_async(Duration::from_secs(30), || {
        let session = &session;
        let xrdp = xrdp_ref;
        async move {
            let _ = session.resize(DesktopSize::clamped(800, 600)).await;
            tokio::time::sleep(Duration::from_millis(500)).await;
            xrdp.screen_size().as_deref() == Some("800x600")
        }
    })
    .await;
    assert!(
        resized,
        "the target's screen is {:?}, not 800x600",
        xrdp.screen_size()
    );
    until_frame(&mut session, Duration::from_secs(20), "the new size", |s| {
        s.size() == (800, 600)
    })
    .await
    .with_context(|| xrdp.log())?;
    session.close().await;

    // The same target with another key pinned is refused during TLS, before any credential.
    let other = "rdp-spki 3059301306072a8648ce3d020106082a8648ce3d030107034200".to_owned()
        + &"04".repeat(65);
    match connect(request(&xrdp, Some(other), size)).await {
        Err(RdpError::KeyChanged(detail)) => assert!(detail.contains("SHA256:"), "{detail}"),
        Err(other) => bail!("expected a key change refusal, got {other}"),
        Ok(_) => bail!("a target with a different key was accepted"),
    }
    // And with its own key pinned it connects.
    let again = connect(request(&xrdp, Some(pin), size)).await?;
    again.session.close().await;
    Ok(())
}

fn shadow_request(shadow: &Shadow, password: &str) -> ConnectRequest {
    ConnectRequest {
        addr: SocketAddr::from((shadow.addr(), shadow.port())),
        username: shadow.username().to_owned(),
        password: password.to_owned(),
        domain: None,
        pinned_key: None,
        size: DesktopSize::clamped(1024, 768),
        timeout: Duration::from_secs(30),
        observer: None,
        keyframe_interval: Duration::from_secs(10),
        clipboard: sallyport_core::display::ClipboardPolicy::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_server_with_nla_is_decoded_and_a_wrong_password_is_refused() -> Result<()> {
    require_root()?;
    let net = TargetNet::create("rdpn")?;
    let shadow = Shadow::start(&net, ShadowSecurity::Nla)?;
    match connect(shadow_request(&shadow, "not-the-password")).await {
        Err(RdpError::AuthFailed(_)) => {}
        Err(other) => bail!("a wrong NLA password gave {other}"),
        Ok(_) => bail!("a wrong NLA password was accepted"),
    }
    let connected = connect(shadow_request(&shadow, shadow.password()))
        .await
        .with_context(|| shadow.log())?;
    let mut session = connected.session;
    let (xterm_x, xterm_y) = (XTERM_AT.0 + 30, XTERM_AT.1 + 30);
    until_frame(
        &mut session,
        Duration::from_secs(30),
        "background and xterm",
        |s| pixel(s, 900, 700) == Some(BACKGROUND) && pixel(s, xterm_x, xterm_y) == Some([0xff; 3]),
    )
    .await
    .with_context(|| shadow.log())?;
    // A click on the background reaches the mirrored display.
    session
        .input(vec![
            InputEvent::MouseMove {
                x: xterm_x,
                y: xterm_y,
            },
            InputEvent::MouseButton {
                button: 0,
                down: true,
                x: xterm_x,
                y: xterm_y,
            },
            InputEvent::MouseButton {
                button: 0,
                down: false,
                x: xterm_x,
                y: xterm_y,
            },
            InputEvent::MouseMove { x: 700, y: 500 },
            InputEvent::MouseButton {
                button: 0,
                down: true,
                x: 700,
                y: 500,
            },
            InputEvent::MouseButton {
                button: 0,
                down: false,
                x: 700,
                y: 500,
            },
        ])
        .await?;
    let clicked = wait_until_async(Duration::from_secs(10), || async {
        shadow.button_presses().contains(&(1, 700, 500))
    })
    .await;
    assert!(
        clicked,
        "presses seen: {:?}\n{}",
        shadow.button_presses(),
        shadow.log()
    );
    session.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standard_rdp_security_is_refused_with_a_reason() -> Result<()> {
    require_root()?;
    let net = TargetNet::create("rdps")?;
    let shadow = Shadow::start(&net, ShadowSecurity::StandardOnly)?;
    match connect(shadow_request(&shadow, shadow.password())).await {
        Err(RdpError::StandardSecurity) => {}
        Err(other) => bail!(
            "expected the standard security refusal, got {other}\n{}",
            shadow.log()
        ),
        Ok(_) => bail!("a target with only standard RDP security was accepted"),
    }
    assert!(
        RdpError::StandardSecurity
            .to_string()
            .contains("standard RDP security")
    );
    Ok(())
}
