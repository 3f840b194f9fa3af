//! The first end-to-end slice, as a person does it: headless Chromium logs in to the portal, opens a
//! terminal to a real sshd in a network namespace, runs a command, resizes the window and exits; then
//! the recording is read back, checked for the command's output and the resize, and verified.

use std::time::Duration;

use anyhow::{Result, bail};
use fantoccini::{Client as Driver, Locator};
use sallyport_e2e::browser::steps::{click, fill, first_admin_login, wait_text};
use sallyport_e2e::portal::{ADMIN_PASSWORD, sealed_session, verifying_key};
use sallyport_e2e::{
    Browser, Gateway, GatewayOptions, Sshd, SshdOptions, TargetNet, ensure_test_user, require_root,
};
use sallyport_recordings::{Event, Outcome, Store, Verification};

/// Waits until the text of `css` satisfies `check`, returning the text.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_logs_in_runs_a_command_resizes_and_the_recording_verifies() -> Result<()> {
    require_root()?;
    let net = TargetNet::create("brw")?;
    let user = ensure_test_user()?;
    let _sshd = Sshd::start(&net, SshdOptions::default())?;
    let gateway = Gateway::start(GatewayOptions::for_net(&net)).await?;
    let browser = Browser::start().await?;
    let driver = browser.client();
    let result = drive(driver, &gateway, &user.name, &user.password).await;
    let marker = browser
        .finish(
            result,
            std::path::Path::new(env!("CARGO_TARGET_TMPDIR")),
            "browser_ssh",
            || format!("gateway stderr:\n{}", gateway.stderr()),
        )
        .await?;

    // The recording: the marker in the output, the resize, a verified chain and seal.
    let store = Store::open_read_only(&gateway.recordings_db())?;
    let session = sealed_session(&store, Duration::from_secs(10), |s| {
        s.user == "admin" && s.target == "alpha"
    })
    .await?;
    assert_eq!(session.outcome, Some(Outcome::Ended));
    let events = store.events(&session.id)?;
    let output: Vec<u8> = events
        .iter()
        .filter_map(|e| match &e.event {
            Event::Output(b) => Some(b.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    assert!(
        String::from_utf8_lossy(&output).contains(&marker),
        "marker {marker} missing from the recorded output"
    );
    let sizes: Vec<(u16, u16)> = events
        .iter()
        .filter_map(|e| match e.event {
            Event::Resize { cols, rows } => Some((cols, rows)),
            _ => None,
        })
        .collect();
    assert!(
        sizes.len() >= 2,
        "expected the initial size and a resize, got {sizes:?}"
    );
    assert_ne!(
        sizes.first(),
        sizes.last(),
        "the window resize did not reach the recording: {sizes:?}"
    );
    let input: Vec<u8> = events
        .iter()
        .filter_map(|e| match &e.event {
            Event::Input(b) => Some(b.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    assert!(
        String::from_utf8_lossy(&input).contains("echo sp-"),
        "typed input missing from the recording"
    );
    match store.verify(&session.id, &verifying_key(&gateway)?)? {
        Verification::Intact { chunks } => assert!(chunks >= 1),
        other => bail!("recording does not verify: {other:?}"),
    }
    Ok(())
}

/// The browser part; returns the marker the command printed.
async fn drive(
    driver: &Driver,
    gateway: &Gateway,
    target_user: &str,
    target_password: &str,
) -> Result<String> {
    first_admin_login(driver, &gateway.url(), &gateway.password(), ADMIN_PASSWORD).await?;
    click(driver, r#"tr[data-target="alpha"] a.connect"#).await?;
    fill(driver, "#target-username", target_user).await?;
    fill(driver, "#target-password", target_password).await?;
    click(driver, "#connect").await?;
    wait_text(driver, "#status", Duration::from_secs(20), |s| {
        s.starts_with("Connected")
    })
    .await?;

    // The typed command differs from its output, so finding the output proves the shell ran it.
    let nonce = std::process::id() ^ 0x5a5a;
    let marker = format!("sp-42-{nonce}");
    let terminal_input = driver.find(Locator::Css(".xterm-helper-textarea")).await?;
    terminal_input
        .send_keys(&format!("echo sp-$((40+2))-{nonce}\n"))
        .await?;
    wait_text(driver, ".xterm-rows", Duration::from_secs(10), |s| {
        s.contains(&marker)
    })
    .await?;

    // Resize the window: the page refits the terminal and tells the gateway; `stty size` inside the
    // shell then reports the new size.
    let before = driver
        .execute(
            "return [window.sallyportTerminal.cols, window.sallyportTerminal.rows]",
            vec![],
        )
        .await?;
    driver.set_window_size(900, 620).await?;
    let after = eventually_js(driver, &before).await?;
    let (cols, rows) = (
        after[0].as_u64().unwrap_or(0),
        after[1].as_u64().unwrap_or(0),
    );
    terminal_input.send_keys("stty size\n").await?;
    let expected = format!("{rows} {cols}");
    wait_text(driver, ".xterm-rows", Duration::from_secs(10), |s| {
        s.contains(&expected)
    })
    .await?;

    terminal_input.send_keys("exit\n").await?;
    wait_text(driver, "#status", Duration::from_secs(10), |s| {
        s.contains("exited with status 0")
    })
    .await?;
    Ok(marker)
}

/// Waits until the terminal's size differs from `before`.
async fn eventually_js(driver: &Driver, before: &serde_json::Value) -> Result<serde_json::Value> {
    for _ in 0..50 {
        let now = driver
            .execute(
                "return [window.sallyportTerminal.cols, window.sallyportTerminal.rows]",
                vec![],
            )
            .await?;
        if &now != before {
            return Ok(now);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the terminal did not change size after the window was resized (still {before})")
}
