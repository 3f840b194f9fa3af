//! Clipboard directions per access policy: an admin grants a user a real xrdp desktop with the clipboard
//! "from the target only". Text copied on the target reaches the user; text the user sends is refused in
//! words naming the access policy, never reaches the target's X clipboard, and the recording holds the
//! refusal and the allowed transfer by size. The policy page shows the setting.

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use sallyport_e2e::common::run_with_timeout;
use sallyport_e2e::portal::Desktop;
use sallyport_e2e::portal::{create_user, first_login, login_admin, target_id};
use sallyport_e2e::rdp::{BACKGROUND, Xrdp};
use sallyport_e2e::{Gateway, GatewayOptions, TargetNet, require_root};
use sallyport_recordings::{DesktopEvent, Event, Store};
use serde_json::json;

const CAROL_PASSWORD: &str = "carol-clipboard-pw-1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_lets_the_clipboard_cross_one_way_only() -> Result<()> {
    require_root()?;
    let net = TargetNet::create("clpo")?;
    let xrdp = Xrdp::start(&net)?;
    let gateway = Gateway::start(
        GatewayOptions::default()
            .network("e2e", &net.cidr())
            .rdp_target("desk", &xrdp.addr().to_string(), xrdp.port()),
    )
    .await?;
    let admin = login_admin(&gateway).await?;
    let one_time = create_user(&admin, "carol", "user", "").await?;
    let origin = admin.origin();
    let added = admin
        .post_form(
            "/admin/policies",
            &[
                ("name", "carol-desk"),
                ("subjects", "user:carol"),
                ("targets", "name:desk"),
                ("protocols", "rdp"),
                ("clipboard", "to-client"),
            ],
            Some(&origin),
        )
        .await?;
    if added.status != 303 {
        bail!(
            "adding the policy failed: {} {}",
            added.status,
            added.text()
        );
    }
    let page = admin.get("/admin/policies").await?.text();
    assert!(
        page.contains(r#"<tr data-policy="carol-desk">"#) && page.contains("from the target only"),
        "the policy page does not show the clipboard setting: {page}"
    );
    let bad = admin
        .post_form(
            "/admin/policies",
            &[
                ("name", "sideways"),
                ("subjects", "user:carol"),
                ("targets", "name:desk"),
                ("protocols", "rdp"),
                ("clipboard", "sideways"),
            ],
            Some(&origin),
        )
        .await?;
    assert_eq!(bad.status, 400, "a bad clipboard setting was accepted");
    assert!(
        bad.text().contains("not a clipboard setting"),
        "{}",
        bad.text()
    );

    let carol = first_login(&gateway, "carol", &one_time, CAROL_PASSWORD).await?;
    let desk = target_id(&carol, "desk").await?;
    let mut desktop = Desktop::open(
        &carol,
        desk,
        &xrdp.user().name,
        &xrdp.user().password,
        (1024, 768),
    )
    .await?;
    desktop
        .read_until(Duration::from_secs(60), "the target's background", |d| {
            d.pixel(900, 700) == Some(BACKGROUND)
        })
        .await
        .with_context(|| format!("{}\n{}", gateway.stderr(), xrdp.log()))?;

    // Copied on the target: allowed this way, it reaches the user.
    let from_target = format!("copied on the target {}", std::process::id());
    // xrdp's clipboard bridge (chansrv) may not be up yet when the desktop first paints: the text is put
    // on the X clipboard again every 5 s, for at most 30 s.
    for attempt in 1..=6 {
        let mut holder = xrdp
            .xclip()
            .context("the xrdp session did not write its display")?
            .arg("-i")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("xclip -i")?;
        if let Some(mut stdin) = holder.stdin.take() {
            stdin.write_all(from_target.as_bytes())?;
        }
        let copied = desktop
            .read_until(Duration::from_secs(5), "the target's clipboard text", |d| {
                d.controls
                    .iter()
                    .any(|c| c["type"] == "clipboard" && c["text"] == from_target.as_str())
            })
            .await;
        let _ = holder.kill();
        let _ = holder.wait();
        match copied {
            Ok(()) => break,
            Err(error) if attempt == 6 => return Err(error),
            Err(_) => {}
        }
    }

    // Sent by the user: refused in words, and the target's clipboard keeps its own text.
    let pasted = format!("pasted by carol {}", std::process::id());
    desktop
        .send_control(&json!({"type": "clipboard", "text": pasted}))
        .await?;
    desktop
        .read_until(Duration::from_secs(15), "the refusal", |d| {
            d.controls.iter().any(|c| c["type"] == "clipboard_refused")
        })
        .await?;
    let refusal = desktop
        .controls
        .iter()
        .find(|c| c["type"] == "clipboard_refused")
        .and_then(|c| c["message"].as_str())
        .unwrap_or_default()
        .to_owned();
    assert!(
        refusal.contains("your access policy"),
        "the refusal does not say why: {refusal:?}"
    );
    // The session goes on after a refusal: a second of updates, no error.
    desktop.watch_for(Duration::from_secs(1)).await?;
    let mut paste = xrdp.xclip().context("no display")?;
    paste.arg("-o");
    let seen = run_with_timeout(&mut paste, Duration::from_secs(10))?;
    let seen = String::from_utf8_lossy(&seen.stdout).into_owned();
    assert!(
        !seen.contains(&pasted),
        "refused text reached the target's clipboard: {seen:?}"
    );
    desktop.close().await;

    // The recording: the copy out by size, the refusal in words, nothing pasted in.
    let store = Store::open_read_only(&gateway.recordings_db())?;
    let mut events = Vec::new();
    for _ in 0..100 {
        let sessions = store.sessions()?;
        if let Some(session) = sessions.iter().find(|s| s.protocol == "rdp" && s.sealed) {
            events = store.events(&session.id)?;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!events.is_empty(), "no sealed desktop recording");
    let out = events.iter().any(|e| {
        matches!(&e.event, Event::Desktop(DesktopEvent::Clipboard { to_target: false, bytes })
            if *bytes as usize == from_target.len())
    });
    let into = events.iter().any(|e| {
        matches!(
            &e.event,
            Event::Desktop(DesktopEvent::Clipboard {
                to_target: true,
                ..
            })
        )
    });
    let refused = events.iter().any(|e| {
        matches!(&e.event, Event::Marker(m)
            if m.starts_with("clipboard to the target refused") && m.contains("access policy"))
    });
    assert!(out, "the copy from the target is not recorded by size");
    assert!(!into, "a refused paste is recorded as a transfer");
    assert!(refused, "the refusal is not recorded");
    Ok(())
}
