//! An admin in headless Chromium creates a user, a target and a policy; that user logs in and connects;
//! the admin watches the session live, terminates it, and finds every step in the audit log.

use std::time::Duration;

use anyhow::Result;
use fantoccini::Client as Driver;
use sallyport_e2e::browser::steps::{click, fill, first_admin_login, save_target, wait_text};
use sallyport_e2e::portal::{ADMIN_PASSWORD, Terminal, first_login, target_id};
use sallyport_e2e::{
    Browser, Gateway, GatewayOptions, Sshd, SshdOptions, TargetNet, ensure_test_user, require_root,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_creates_user_target_policy_then_watches_and_terminates() -> Result<()> {
    require_root()?;
    let net = TargetNet::create("adm")?;
    let account = ensure_test_user()?;
    let _sshd = Sshd::start(&net, SshdOptions::default())?;
    let gateway = Gateway::start(GatewayOptions::for_net(&net)).await?;
    let browser = Browser::start().await?;
    let driver = browser.client();
    let result = scenario(driver, &gateway, &net, &account.name, &account.password).await;
    browser
        .finish(
            result,
            std::path::Path::new(env!("CARGO_TARGET_TMPDIR")),
            "admin_browser",
            || format!("gateway stderr:\n{}", gateway.stderr()),
        )
        .await
}

async fn scenario(
    driver: &Driver,
    gateway: &Gateway,
    net: &TargetNet,
    account: &str,
    account_password: &str,
) -> Result<()> {
    let base = gateway.url();
    let base = base.trim_end_matches('/');
    first_admin_login(driver, base, &gateway.password(), ADMIN_PASSWORD).await?;

    // A user.
    driver.goto(&format!("{base}/admin/users")).await?;
    fill(driver, "#new-username", "dave").await?;
    click(driver, "#create-user").await?;
    let one_time = wait_text(driver, "#one-time-password", Duration::from_secs(10), |t| {
        t.len() >= 12
    })
    .await?;

    // A target with a tag, and a policy granting the tag to the user.
    save_target(driver, base, "web", &net.ns_addr().to_string(), "prod").await?;
    driver.goto(&format!("{base}/admin/policies")).await?;
    fill(driver, "#policy-name", "dave-prod").await?;
    // The pickers: the user and the tag are ticked, not typed.
    click(driver, "#subject-user-dave").await?;
    click(driver, "#target-tag-prod").await?;
    click(driver, "#save-policy").await?;
    wait_text(driver, "#policies", Duration::from_secs(10), |t| {
        t.contains("dave-prod")
    })
    .await?;

    // The user logs in and connects (from another client).
    let dave = first_login(gateway, "dave", &one_time, "dave-password-1").await?;
    let web = target_id(&dave, "web").await?;
    let mut terminal = Terminal::open(&dave, web, account, account_password).await?;
    terminal.expect_connected().await?;

    // The admin sees the session live and watches it.
    driver.goto(&format!("{base}/admin/sessions")).await?;
    wait_text(driver, "#sessions", Duration::from_secs(10), |t| {
        t.contains("dave")
    })
    .await?;
    click(driver, r#"tr[data-user="dave"] a.watch"#).await?;
    wait_text(driver, "#status", Duration::from_secs(10), |t| {
        t.contains("Watching")
    })
    .await?;
    terminal.type_text("echo watched-$((6*7))\r").await?;
    wait_text(driver, ".xterm-rows", Duration::from_secs(10), |t| {
        t.contains("watched-42")
    })
    .await?;

    // And terminates it: the user is told why.
    driver.goto(&format!("{base}/admin/sessions")).await?;
    click(driver, r#"tr[data-user="dave"] button.terminate"#).await?;
    let (kind, message) = terminal.expect_error().await?;
    assert_eq!(kind, "terminated", "{message}");
    assert!(
        message.contains("terminated by administrator admin"),
        "{message}"
    );

    // Every step is in the audit log.
    driver.goto(&format!("{base}/admin/audit")).await?;
    let log = wait_text(driver, "#audit", Duration::from_secs(10), |t| {
        t.contains("terminate")
    })
    .await?;
    for kind in [
        "user_created",
        "target_saved",
        "policy_added",
        "login",
        "password_changed",
        "connect",
        "watch",
        "terminate",
        "disconnect",
    ] {
        assert!(log.contains(kind), "the audit log lacks {kind}:\n{log}");
    }
    assert!(
        log.contains("dave"),
        "the audit log does not name the user:\n{log}"
    );
    on_a_phone(driver, base).await
}

/// The widest admin page on a phone's screen: the page itself never scrolls sideways (the users table
/// scrolls inside its wrapper), the add-user form takes the width, its button is big enough to tap,
/// and the keyboard's first stop is the skip link, drawn with a visible focus ring.
async fn on_a_phone(driver: &Driver, base: &str) -> Result<()> {
    driver.set_window_size(390, 844).await?;
    driver.goto(&format!("{base}/admin/users")).await?;
    wait_text(driver, "#users", Duration::from_secs(10), |t| {
        t.contains("dave")
    })
    .await?;
    driver
        .find(fantoccini::Locator::Css("body"))
        .await?
        .send_keys(&fantoccini::key::Key::Tab.to_string())
        .await?;
    let layout = driver
        .execute(
            "const page = document.documentElement;
             const wrapper = document.getElementById('users').parentElement;
             const form = document.getElementById('add-user');
             const input = document.getElementById('new-username');
             const button = document.getElementById('create-user');
             const focused = document.activeElement;
             return {
               viewport: page.clientWidth,
               page_overflow: page.scrollWidth - page.clientWidth,
               table_scrolls: wrapper.className === 'table-scroll' && wrapper.scrollWidth > wrapper.clientWidth,
               input_share: input.getBoundingClientRect().width / form.getBoundingClientRect().width,
               button_height: button.getBoundingClientRect().height,
               first_stop: focused.className,
               focus_ring: getComputedStyle(focused).outlineStyle,
             };",
            vec![],
        )
        .await?;
    let number = |key: &str| layout[key].as_f64().unwrap_or(f64::NAN);
    anyhow::ensure!(
        number("viewport") <= 400.0,
        "the window did not narrow: {layout}"
    );
    anyhow::ensure!(
        number("page_overflow") <= 0.0,
        "the page scrolls sideways: {layout}"
    );
    anyhow::ensure!(
        layout["table_scrolls"] == true,
        "the table does not scroll in its wrapper: {layout}"
    );
    anyhow::ensure!(
        number("input_share") >= 0.9,
        "the form's input is narrow: {layout}"
    );
    anyhow::ensure!(
        number("button_height") >= 40.0,
        "the button is small to tap: {layout}"
    );
    anyhow::ensure!(
        layout["first_stop"] == "skip" && layout["focus_ring"] == "solid",
        "the keyboard's first stop is not the skip link with a focus ring: {layout}"
    );
    Ok(())
}
