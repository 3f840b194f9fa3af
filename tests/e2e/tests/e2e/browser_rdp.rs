//! RDP in the browser, as a person does it: headless Chromium logs in to the portal, opens the desktop of a
//! real xrdp (TLS) or FreeRDP shadow server (NLA) in a network namespace, sees the session's known background and xterm on the canvas (by
//! pixels), types a command into the xterm (the file it makes is checked on the target), clicks on the
//! background (the target's `xev` logs the press where it landed), resizes the browser window (the
//! target's screen follows); then the recording is read back, verified, replayed to the canvas's final
//! picture, and sought to its middle through a keyframe.

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use fantoccini::actions::{InputSource, MOUSE_BUTTON_LEFT, MouseActions, PointerAction};
use fantoccini::{Client as Driver, Locator};
use sallyport_desktop_replay::DesktopReplay;
use sallyport_e2e::browser::steps::{click, fill, first_admin_login, wait_text};
use sallyport_e2e::common::run_with_timeout;
use sallyport_e2e::portal::{ADMIN_PASSWORD, sealed_session, verifying_key};
use sallyport_e2e::rdp::{BACKGROUND, Shadow, ShadowSecurity, XTERM_AT, Xrdp};
use sallyport_e2e::{Browser, Gateway, GatewayOptions, TargetNet, require_root, wait_until_async};
use sallyport_recordings::{DesktopEvent, Event, Outcome, Store, Verification};

/// What the scenario needs of an RDP server in a namespace.
trait Desk {
    fn credentials(&self) -> (String, String);
    fn out_dir(&self) -> std::path::PathBuf;
    fn button_presses(&self) -> Vec<(u32, u32, u32)>;
    fn screen_size(&self) -> Option<String>;
    fn log(&self) -> String;
    /// Whether the server follows the client's size (display control); a shadow server mirrors a fixed
    /// screen.
    fn resizes(&self) -> bool;
    /// `xclip` in the target's X session as its user, when the server bridges the RDP clipboard to X
    /// (xrdp's chansrv does).
    fn xclip(&self) -> Option<Command> {
        None
    }
}

impl Desk for Xrdp {
    fn credentials(&self) -> (String, String) {
        (self.user().name.clone(), self.user().password.clone())
    }
    fn out_dir(&self) -> std::path::PathBuf {
        Xrdp::out_dir(self)
    }
    fn button_presses(&self) -> Vec<(u32, u32, u32)> {
        Xrdp::button_presses(self)
    }
    fn screen_size(&self) -> Option<String> {
        Xrdp::screen_size(self)
    }
    fn log(&self) -> String {
        Xrdp::log(self)
    }
    fn resizes(&self) -> bool {
        true
    }
    fn xclip(&self) -> Option<Command> {
        Xrdp::xclip(self)
    }
}

impl Desk for Shadow {
    fn credentials(&self) -> (String, String) {
        (self.username().to_owned(), self.password().to_owned())
    }
    fn out_dir(&self) -> std::path::PathBuf {
        Shadow::out_dir(self)
    }
    fn button_presses(&self) -> Vec<(u32, u32, u32)> {
        Shadow::button_presses(self)
    }
    fn screen_size(&self) -> Option<String> {
        Shadow::screen_size(self)
    }
    fn log(&self) -> String {
        Shadow::log(self)
    }
    fn resizes(&self) -> bool {
        false
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_opens_an_xrdp_desktop_types_clicks_resizes_and_it_is_recorded() -> Result<()> {
    require_root()?;
    let net = TargetNet::create("brdp")?;
    let xrdp = Xrdp::start(&net)?;
    scenario(&net, &xrdp, xrdp.addr(), xrdp.port()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_opens_a_freerdp_shadow_desktop_over_nla_and_it_is_recorded() -> Result<()> {
    require_root()?;
    let net = TargetNet::create("bnla")?;
    let shadow = Shadow::start(&net, ShadowSecurity::Nla)?;
    scenario(&net, &shadow, shadow.addr(), shadow.port()).await
}

async fn scenario(net: &TargetNet, desk: &dyn Desk, addr: Ipv4Addr, port: u16) -> Result<()> {
    let gateway = Gateway::start(
        GatewayOptions::default()
            .network("e2e", &net.cidr())
            .rdp_target("desk", &addr.to_string(), port)
            // Keyframes every second, so that this short session has some to seek to.
            .extra_toml("[recording]")
            .extra_toml("desktop_keyframe_interval_ms = 1000"),
    )
    .await?;
    let browser = Browser::start().await?;
    let result = drive(browser.client(), &gateway, desk).await;
    let live = browser
        .finish(
            result,
            std::path::Path::new(env!("CARGO_TARGET_TMPDIR")),
            "browser_rdp",
            || format!("gateway stderr:\n{}\n{}", gateway.stderr(), desk.log()),
        )
        .await?;

    // The recording: sealed, verified, and carrying the server's PDUs, the input and the resize.
    let store = Store::open_read_only(&gateway.recordings_db())?;
    let session = sealed_session(&store, Duration::from_secs(15), |s| s.target == "desk").await?;
    assert_eq!(session.protocol, "rdp");
    let events = store.events(&session.id)?;
    let markers: Vec<&str> = events
        .iter()
        .filter_map(|e| match &e.event {
            Event::Marker(m) => Some(m.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(session.outcome, Some(Outcome::Ended), "{markers:?}");
    let count = |f: &dyn Fn(&DesktopEvent) -> bool| {
        events
            .iter()
            .filter(|e| matches!(&e.event, Event::Desktop(d) if f(d)))
            .count()
    };
    let activations = if desk.resizes() { 2 } else { 1 };
    assert!(
        count(&|d| matches!(d, DesktopEvent::Activation { .. })) >= activations,
        "the start (and the resize's reactivation)"
    );
    assert!(count(&|d| matches!(d, DesktopEvent::ServerPdu { .. })) > 10);
    assert!(count(&|d| matches!(d, DesktopEvent::Input(_))) > 10);
    assert!(
        count(&|d| matches!(d, DesktopEvent::Resize { .. })) >= 2,
        "the initial size and the window's resize"
    );
    if desk.xclip().is_some() {
        // Both directions, by size only: the text itself is not in the recording.
        assert!(
            count(
                &|d| matches!(d, DesktopEvent::Clipboard { to_target: true, bytes } if *bytes > 0)
            ) >= 1
        );
        assert!(
            count(
                &|d| matches!(d, DesktopEvent::Clipboard { to_target: false, bytes } if *bytes > 0)
            ) >= 1
        );
    }
    match store.verify(&session.id, &verifying_key(&gateway)?)? {
        Verification::Intact { chunks } => assert!(chunks >= 1),
        other => bail!("recording does not verify: {other:?}"),
    }

    // Replayed through sallyport-desktop-replay, the recording ends on the picture the browser showed.
    let replay = DesktopReplay::new(&events);
    let last = replay.final_frame()?;
    assert_eq!((last.width, last.height), (live.0, live.1));
    let differing = differing_pixels(&last.rgba, &live.2);
    assert!(
        differing * 100 < usize::from(last.width) * usize::from(last.height),
        "{differing} of {}x{} pixels differ between the replay and the browser's canvas",
        last.width,
        last.height
    );
    // Seeking to the middle starts from a keyframe and gives what decoding everything up to there gives.
    let keyframes = replay.keyframes();
    assert!(!keyframes.is_empty(), "no keyframe was recorded");
    // A resize starts a new desktop whose first keyframe follows a moment later; a middle that falls in
    // that moment moves on to it.
    let middle = replay.duration_ms() / 2;
    let last_activation = events
        .iter()
        .filter(|e| {
            e.at_ms <= middle && matches!(&e.event, Event::Desktop(DesktopEvent::Activation { .. }))
        })
        .map(|e| e.at_ms)
        .max()
        .unwrap_or(0);
    let at = keyframes
        .iter()
        .copied()
        .find(|k| *k >= last_activation)
        .map_or(middle, |k| middle.max(k));
    let sought = replay.frame_at(at)?;
    assert!(
        sought.from_keyframe_ms.is_some(),
        "seeking did not use a keyframe"
    );
    let without_keyframes: Vec<_> = events
        .iter()
        .filter(|e| !matches!(e.event, Event::Desktop(DesktopEvent::Keyframe { .. })))
        .cloned()
        .collect();
    let decoded = DesktopReplay::new(&without_keyframes).frame_at(at)?;
    assert!(decoded.from_keyframe_ms.is_none());
    assert!(decoded.pdus_decoded >= sought.pdus_decoded);
    assert_eq!(
        (sought.width, sought.height),
        (decoded.width, decoded.height)
    );
    assert_eq!(differing_pixels(&sought.rgba, &decoded.rgba), 0);
    Ok(())
}

/// How many RGBA pixels differ by more than a small tolerance in any channel.
fn differing_pixels(a: &[u8], b: &[u8]) -> usize {
    if a.len() != b.len() {
        return a.len().max(b.len()) / 4;
    }
    a.chunks_exact(4)
        .zip(b.chunks_exact(4))
        .filter(|(p, q)| {
            p.iter()
                .zip(q.iter())
                .take(3)
                .any(|(x, y)| x.abs_diff(*y) > 8)
        })
        .count()
}

/// Waits (at most 30 s) until the canvas shows `background` near its bottom-right corner, whatever size the
/// desktop got, and white (an xterm) at `white_at`; fails with the pixels last seen.
pub(crate) async fn wait_painted(
    driver: &Driver,
    background: [u8; 3],
    white_at: (u16, u16),
) -> Result<()> {
    let [r, g, b] = background.map(u64::from);
    let mut last = (Vec::new(), Vec::new());
    for _ in 0..300 {
        let size = pixel(driver, 0, 0).await?;
        let (w, h) = (
            size.first().copied().unwrap_or(0),
            size.get(1).copied().unwrap_or(0),
        );
        let corner = |v: u64| u16::try_from(v.saturating_sub(20)).unwrap_or(0);
        let seen = pixel(driver, corner(w), corner(h)).await?;
        let white = pixel(driver, white_at.0, white_at.1).await?;
        if seen.get(2..) == Some(&[r, g, b][..]) && white.get(2..) == Some(&[255, 255, 255][..]) {
            return Ok(());
        }
        last = (seen, white);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!(
        "the desktop did not show: canvas pixels [width, height, r, g, b] (background corner, xterm) {last:?}, wanted background {background:?}"
    )
}

/// `[canvas width, canvas height, r, g, b]` of one desktop pixel.
async fn pixel(driver: &Driver, x: u16, y: u16) -> Result<Vec<u64>> {
    let value = driver
        .execute(
            "const c = document.getElementById('desktop');
             const [x, y] = [arguments[0], arguments[1]];
             if (x >= c.width || y >= c.height) return [c.width, c.height, -1, -1, -1];
             const d = c.getContext('2d').getImageData(x, y, 1, 1).data;
             return [c.width, c.height, d[0], d[1], d[2]];",
            vec![x.into(), y.into()],
        )
        .await?;
    Ok(value
        .as_array()
        .map(|a| a.iter().map(|v| v.as_u64().unwrap_or(u64::MAX)).collect())
        .unwrap_or_default())
}

/// Where a desktop pixel is in the browser's viewport (the canvas is scaled to fit the page).
async fn viewport_point(driver: &Driver, x: u16, y: u16) -> Result<(f64, f64)> {
    let value = driver
        .execute(
            "return window.sallyportDesktop.toViewport(arguments[0], arguments[1]);",
            vec![x.into(), y.into()],
        )
        .await?;
    let a = value.as_array().context("viewport point")?;
    Ok((
        a[0].as_f64().unwrap_or_default(),
        a[1].as_f64().unwrap_or_default(),
    ))
}

async fn pointer(driver: &Driver, x: u16, y: u16, press: bool) -> Result<()> {
    let (vx, vy) = viewport_point(driver, x, y).await?;
    let mut mouse = MouseActions::new("mouse".into()).then(PointerAction::MoveTo {
        duration: None,
        x: vx.floor(),
        y: vy.floor(),
    });
    if press {
        mouse = mouse
            .then(PointerAction::Down {
                button: MOUSE_BUTTON_LEFT,
            })
            .then(PointerAction::Up {
                button: MOUSE_BUTTON_LEFT,
            });
    }
    driver.perform_actions(mouse).await?;
    Ok(())
}

/// The browser part; returns the canvas at the end (width, height, RGBA).
async fn drive(driver: &Driver, gateway: &Gateway, desk: &dyn Desk) -> Result<(u16, u16, Vec<u8>)> {
    driver.set_window_size(1200, 900).await?;
    first_admin_login(driver, &gateway.url(), &gateway.password(), ADMIN_PASSWORD).await?;
    click(driver, r#"tr[data-target="desk"] a.connect"#).await?;
    let (username, password) = desk.credentials();
    fill(driver, "#target-username", &username).await?;
    fill(driver, "#target-password", &password).await?;
    click(driver, "#connect").await?;
    wait_text(driver, "#status", Duration::from_secs(30), |s| {
        s.starts_with("Connected")
    })
    .await?;

    // The canvas shows the target's background and its xterm.
    let (xterm_x, xterm_y) = (XTERM_AT.0 + 30, XTERM_AT.1 + 30);
    wait_painted(driver, BACKGROUND, (xterm_x, xterm_y)).await?;

    // Typing: the pointer over the xterm gives it focus (no window manager), the canvas has the keyboard.
    pointer(driver, xterm_x, xterm_y, true).await?;
    let canvas = driver.find(Locator::Id("desktop")).await?;
    let marker = format!("rdpmark{}", std::process::id());
    canvas.send_keys(&format!("touch {marker}\n")).await?;
    let made = desk.out_dir().join(&marker);
    let typed = wait_until_async(Duration::from_secs(15), || {
        let made = made.clone();
        async move { made.exists() }
    })
    .await;
    assert!(
        typed,
        "typing `touch {marker}` in the browser made no file on the target"
    );

    // A click on the background lands where it was aimed (xev on the target logs it).
    let (width, height) = {
        let p = pixel(driver, 0, 0).await?;
        (p[0], p[1])
    };
    let (cx, cy) = (
        u16::try_from(width * 3 / 4)?,
        u16::try_from(height * 3 / 4)?,
    );
    pointer(driver, cx, cy, true).await?;
    let landed = wait_until_async(Duration::from_secs(10), || async {
        desk.button_presses().iter().any(|&(button, x, y)| {
            button == 1 && x.abs_diff(u32::from(cx)) <= 2 && y.abs_diff(u32::from(cy)) <= 2
        })
    })
    .await;
    if !landed {
        bail!(
            "no press near ({cx},{cy}) on the target: {:?}\n{}",
            desk.button_presses(),
            desk.log()
        );
    }

    // Clipboard text both ways, where the target bridges it to X: copied on the target, it shows in the
    // page's clipboard panel; sent from the panel, the target's X clipboard holds it.
    if let Some(mut copy) = desk.xclip() {
        let from_target = format!("copied on the target {}", std::process::id());
        let mut holder = copy
            .arg("-i")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("xclip -i")?;
        if let Some(mut stdin) = holder.stdin.take() {
            stdin.write_all(from_target.as_bytes())?;
        }
        let received = wait_until_async(Duration::from_secs(15), || async {
            driver
                .execute(
                    "return document.getElementById('clipboard-text').value",
                    vec![],
                )
                .await
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                == Some(from_target.clone())
        })
        .await;
        let _ = holder.kill();
        let _ = holder.wait();
        assert!(
            received,
            "text copied on the target never reached the page's clipboard panel"
        );

        let from_browser = format!("pasted from the browser {}", std::process::id());
        click(driver, "#clipboard-toggle").await?;
        fill(driver, "#clipboard-text", &from_browser).await?;
        click(driver, "#clipboard-send").await?;
        // At most 15 s.
        let mut seen = String::new();
        let mut pasted = false;
        for _ in 0..30 {
            let Some(mut paste) = desk.xclip() else {
                break;
            };
            paste.arg("-o");
            if let Ok(out) = run_with_timeout(&mut paste, Duration::from_secs(5)) {
                seen = String::from_utf8_lossy(&out.stdout).into_owned();
            }
            pasted = seen.contains(&from_browser);
            if pasted {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        assert!(
            pasted,
            "the target's X clipboard holds {seen:?}, not the browser's text"
        );
        click(driver, "#clipboard-toggle").await?;
    }

    // Resizing the browser window changes the remote desktop's size (checked on the target); a shadow
    // server keeps its screen and the canvas keeps showing it.
    let before = desk.screen_size();
    driver.set_window_size(900, 700).await?;
    if desk.resizes() {
        let resized = wait_until_async(Duration::from_secs(30), || async {
            let now = desk.screen_size();
            let canvas = pixel(driver, 0, 0).await.unwrap_or_default();
            // The window went from 1200 to 900 pixels wide, so the desktop must be narrower than 900 (the
            // size file may lag behind earlier changes, so "different from before" alone is not enough).
            let narrower = now
                .as_deref()
                .and_then(|n| n.split('x').next()?.parse::<u32>().ok())
                .is_some_and(|w| w < 900);
            narrower
                && now != before
                && canvas.len() == 5
                && now == Some(format!("{}x{}", canvas[0], canvas[1]))
        })
        .await;
        assert!(
            resized,
            "the target's screen stayed {before:?} (now {:?}) after the window was resized",
            desk.screen_size()
        );
    } else {
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(desk.screen_size(), before);
        let canvas = pixel(driver, 0, 0).await?;
        assert_eq!(before, Some(format!("{}x{}", canvas[0], canvas[1])));
    }

    // The picture once it stopped changing: no new frame for a second (at most 20 s).
    let mut frames = String::new();
    for _ in 0..20 {
        let now = driver
            .execute("return String(window.sallyportDesktop.frames())", vec![])
            .await?
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if now == frames {
            break;
        }
        frames = now;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let canvas = driver
        .execute(
            "const c = document.getElementById('desktop');
             const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
             const hex = new Array(d.length);
             for (let i = 0; i < d.length; i++) hex[i] = (d[i] < 16 ? '0' : '') + d[i].toString(16);
             return [c.width, c.height, hex.join('')];",
            vec![],
        )
        .await?;
    let parts = canvas.as_array().context("canvas snapshot")?;
    let width = u16::try_from(parts[0].as_u64().unwrap_or(0))?;
    let height = u16::try_from(parts[1].as_u64().unwrap_or(0))?;
    let rgba = hex::decode(parts[2].as_str().unwrap_or_default())?;
    Ok((width, height, rgba))
}
