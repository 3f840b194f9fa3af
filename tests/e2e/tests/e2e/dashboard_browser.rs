//! The people's pages in headless Chromium against the real gateway and a real sshd: the admin's
//! dashboard warns that the gateway runs without the edge and shows the admin's sign-in; the target
//! list searches (typed and by clicking a tag); after the admin connects to a target in the browser the
//! dashboard lists that live session while it is open (from a second tab), the target list shows when
//! it was last used, and its connect page fills in the target username used and focuses the password;
//! on a phone's screen the dashboard does not scroll sideways (its tables scroll in their wrappers).
//! Screenshots of the dashboard and the target list are kept as artefacts in
//! `$CARGO_TARGET_TMPDIR/screenshots/` (`dashboard.png`, `targets.png`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use fantoccini::{Client as Driver, Locator};
use sallyport_e2e::browser::steps::{
    click, fill, first_admin_login, save_target, text, value, wait_text,
};
use sallyport_e2e::portal::ADMIN_PASSWORD;
use sallyport_e2e::{
    Browser, Gateway, GatewayOptions, Sshd, SshdOptions, TargetNet, ensure_test_user, require_root,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_and_target_list_show_what_happens() -> Result<()> {
    require_root()?;
    let net = TargetNet::create("dsh")?;
    let account = ensure_test_user()?;
    let _sshd = Sshd::start(&net, SshdOptions::default())?;
    // Two config targets on the same sshd, so a search has something to leave out.
    let address = net.ns_addr().to_string();
    let options = GatewayOptions::for_net(&net).target("beta", &address, 22);
    let gateway = Gateway::start(options).await?;
    let browser = Browser::start().await?;
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&shots)?;
    let result = scenario(
        &browser,
        &gateway,
        &net,
        &account.name,
        &account.password,
        &shots,
    )
    .await;
    browser
        .finish(
            result,
            Path::new(env!("CARGO_TARGET_TMPDIR")),
            "dashboard_browser",
            || format!("gateway stderr:\n{}", gateway.stderr()),
        )
        .await
}

async fn scenario(
    browser: &Browser,
    gateway: &Gateway,
    net: &TargetNet,
    account: &str,
    account_password: &str,
    shots: &Path,
) -> Result<()> {
    let driver = browser.client();
    let base = gateway.url();
    let base = base.trim_end_matches('/');
    first_admin_login(driver, base, &gateway.password(), ADMIN_PASSWORD).await?;

    // The dashboard: the missing edge first, in words; the sign-in just made.
    driver.goto(&format!("{base}/admin")).await?;
    let warnings = text(driver, "#warnings").await?;
    ensure!(
        warnings.contains("The network edge is not attached (")
            && warnings.contains("own firewall"),
        "no edge warning: {warnings}"
    );
    let edge = text(driver, "#edge").await?;
    ensure!(edge.starts_with("Not attached: "), "the edge part: {edge}");
    let sign_ins = text(driver, "#sign-ins").await?;
    ensure!(
        sign_ins.contains("admin") && sign_ins.contains("signed in (login)"),
        "the sign-in is not listed: {sign_ins}"
    );
    ensure!(
        text(driver, "#live-sessions")
            .await?
            .contains("No session is live."),
        "a session is live before any connect"
    );

    // A tagged target, made by the admin.
    save_target(driver, base, "web", &net.ns_addr().to_string(), "prod").await?;

    // The target list: never used yet; a typed search narrows it and keeps the query; a tag searches.
    driver.goto(&format!("{base}/targets")).await?;
    let last = text(driver, r#"tr[data-target="alpha"] td.last-used"#).await?;
    ensure!(
        last == "never",
        "alpha's last use before any connect: {last:?}"
    );
    ensure!(
        !present(driver, "#recent").await,
        "a recent list before any use"
    );
    fill(driver, "#target-search", "alph").await?;
    click(driver, "#search").await?;
    wait_text(driver, "#targets", Duration::from_secs(10), |t| {
        !t.contains("beta")
    })
    .await?;
    ensure!(
        present(driver, r#"tr[data-target="alpha"]"#).await,
        "the search lost alpha"
    );
    let kept = value(driver, "#target-search").await?;
    ensure!(kept == "alph", "the query was not kept: {kept:?}");
    fill(driver, "#target-search", "no-such-thing").await?;
    click(driver, "#search").await?;
    wait_text(driver, "#targets", Duration::from_secs(10), |t| {
        t.contains("No target matches “no-such-thing”.")
    })
    .await?;
    driver.goto(&format!("{base}/targets")).await?;
    click(driver, r#"tr[data-target="web"] a.tag"#).await?;
    let tagged = wait_text(driver, "#targets", Duration::from_secs(10), |t| {
        !t.contains("alpha")
    })
    .await?;
    ensure!(
        tagged.contains("web") && !tagged.contains("beta"),
        "the tag search: {tagged}"
    );

    // Connect to alpha in this tab and leave the session open.
    driver.goto(&format!("{base}/targets")).await?;
    click(driver, r#"tr[data-target="alpha"] a.connect"#).await?;
    let connect_url = driver.current_url().await?;
    fill(driver, "#target-username", account).await?;
    fill(driver, "#target-password", account_password).await?;
    click(driver, "#connect").await?;
    wait_text(driver, "#status", Duration::from_secs(20), |s| {
        s.starts_with("Connected")
    })
    .await?;
    let terminal_tab = driver.window().await?;

    // In a second tab: the dashboard lists the live session.
    let second = driver.new_window(true).await?;
    driver.switch_to_window(second.handle).await?;
    driver.set_window_size(1200, 800).await?;
    driver.goto(&format!("{base}/admin")).await?;
    let live = wait_text(driver, "#live-sessions", Duration::from_secs(10), |t| {
        t.contains("alpha")
    })
    .await?;
    ensure!(
        live.contains("admin") && live.contains("ssh"),
        "the live session row: {live}"
    );
    ensure!(
        present(
            driver,
            r#"#live-sessions tr[data-user="admin"][data-target="alpha"] a.watch"#
        )
        .await,
        "no watch link for the live session"
    );
    screenshot(browser, &shots.join("dashboard.png")).await?;
    on_a_phone(driver, &format!("{base}/admin")).await?;
    driver.set_window_size(1200, 800).await?;

    // The target list: alpha was used just now (a time, not "never"), and is the recent one.
    driver.goto(&format!("{base}/targets")).await?;
    let last = text(driver, r#"tr[data-target="alpha"] td.last-used"#).await?;
    ensure!(
        last != "never" && !last.is_empty(),
        "alpha's last use after connecting: {last:?}"
    );
    let when = driver
        .find(Locator::Css(r#"tr[data-target="alpha"] td.last-used time"#))
        .await?
        .attr("title")
        .await?;
    ensure!(
        when.as_deref().is_some_and(|w| w.ends_with('Z')),
        "the exact time is not on hover: {when:?}"
    );
    let recent = text(driver, "#recent").await?;
    ensure!(recent.contains("alpha"), "the recent list: {recent}");
    screenshot(browser, &shots.join("targets.png")).await?;

    // The connect page fills in the username used and puts the cursor in the password field.
    driver.goto(connect_url.as_str()).await?;
    let username = value(driver, "#target-username").await?;
    ensure!(username == account, "the remembered username: {username:?}");
    let focused = driver
        .execute("return document.activeElement.id", vec![])
        .await?;
    ensure!(focused == "target-password", "the focus is on {focused}");

    // Back to the terminal: it is still open; leave cleanly.
    driver.close_window().await?;
    driver.switch_to_window(terminal_tab).await?;
    driver
        .find(Locator::Css(".xterm-helper-textarea"))
        .await?
        .send_keys("exit\n")
        .await?;
    wait_text(driver, "#status", Duration::from_secs(10), |s| {
        s.contains("exited with status 0")
    })
    .await?;
    Ok(())
}

/// The dashboard on a phone's screen: the page never scrolls sideways; the live sessions table, wider
/// than the screen, scrolls inside its wrapper.
async fn on_a_phone(driver: &Driver, url: &str) -> Result<()> {
    driver.set_window_size(390, 844).await?;
    driver.goto(url).await?;
    wait_text(driver, "#live-sessions", Duration::from_secs(10), |t| {
        t.contains("alpha")
    })
    .await?;
    let layout = driver
        .execute(
            "const page = document.documentElement;
             const wrapper = document.getElementById('live-sessions').parentElement;
             return {
               viewport: page.clientWidth,
               page_overflow: page.scrollWidth - page.clientWidth,
               table_scrolls: wrapper.className === 'table-scroll' && wrapper.scrollWidth > wrapper.clientWidth,
             };",
            vec![],
        )
        .await?;
    ensure!(
        layout["viewport"].as_f64().is_some_and(|w| w <= 400.0),
        "the window did not narrow: {layout}"
    );
    ensure!(
        layout["page_overflow"].as_f64().is_some_and(|o| o <= 0.0),
        "the dashboard scrolls sideways on a phone: {layout}"
    );
    ensure!(
        layout["table_scrolls"] == true,
        "the live sessions table does not scroll in its wrapper: {layout}"
    );
    Ok(())
}

/// Whether `css` is on the page now.
async fn present(driver: &Driver, css: &str) -> bool {
    driver.find(Locator::Css(css)).await.is_ok()
}

/// Saves a screenshot of the page as `path`, prints where, and checks it is a PNG of the window's
/// viewport in device pixels.
async fn screenshot(browser: &Browser, path: &PathBuf) -> Result<()> {
    browser.screenshot(path).await?;
    println!("screenshot: {}", path.display());
    let png = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
    if png.len() < 24 || !png.starts_with(b"\x89PNG\r\n\x1a\n") || &png[12..16] != b"IHDR" {
        bail!("{} is not a PNG ({} bytes)", path.display(), png.len());
    }
    let word = |at: usize| u32::from_be_bytes([png[at], png[at + 1], png[at + 2], png[at + 3]]);
    let (width, height) = (word(16), word(20));
    let viewport = browser
        .client()
        .execute(
            "return [Math.round(innerWidth * devicePixelRatio), Math.round(innerHeight * devicePixelRatio)]",
            vec![],
        )
        .await?;
    let expected = (
        viewport[0].as_u64().unwrap_or(0),
        viewport[1].as_u64().unwrap_or(0),
    );
    ensure!(
        (u64::from(width), u64::from(height)) == expected && width > 0,
        "{} is {width}×{height}, the viewport {expected:?}",
        path.display()
    );
    Ok(())
}
