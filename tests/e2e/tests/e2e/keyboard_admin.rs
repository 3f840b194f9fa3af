//! An admin in headless Chromium with only a keyboard: from the login page through the one-time
//! password change, a new user, a target with a tag, and a policy picked for that user and tag,
//! previewed and saved, to the audit log that records it. Every action is a key (Tab, Shift+Tab,
//! Space, Enter, typed text) sent as WebDriver key actions to whatever has the focus; nothing is
//! clicked and no script sets a value (scripts only read, for assertions: that the focused element
//! shows an outline). The policy editor with its preview and the audit log are kept as screenshots in
//! `$CARGO_TARGET_TMPDIR/screenshots/`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use fantoccini::Client as Driver;
use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::key::Key;
use sallyport_e2e::browser::steps::wait_text;
use sallyport_e2e::portal::ADMIN_PASSWORD;
use sallyport_e2e::{Browser, Gateway, GatewayOptions, TargetNet, require_root};

/// How many Tabs a page may take to reach what is looked for (the policy editor is the longest).
const MAX_TABS: usize = 120;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_saves_a_policy_with_the_keyboard_alone() -> Result<()> {
    require_root()?;
    let net = TargetNet::create("kbd")?;
    let gateway = Gateway::start(GatewayOptions::for_net(&net)).await?;
    let browser = Browser::start().await?;
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&shots).with_context(|| format!("create {}", shots.display()))?;
    let result = scenario(&browser, &gateway, &net, &shots).await;
    browser
        .finish(
            result,
            Path::new(env!("CARGO_TARGET_TMPDIR")),
            "keyboard_admin",
            || format!("gateway stderr:\n{}", gateway.stderr()),
        )
        .await
}

/// Presses `keys` together (held in order, released in reverse), as a keyboard would.
async fn press(driver: &Driver, keys: &[char]) -> Result<()> {
    let mut actions = KeyActions::new("keyboard".to_owned());
    for &key in keys {
        actions = actions.then(KeyAction::Down { value: key });
    }
    for &key in keys.iter().rev() {
        actions = actions.then(KeyAction::Up { value: key });
    }
    driver.perform_actions(actions).await.context("key press")?;
    Ok(())
}

/// Types `text` into whatever has the focus.
async fn type_text(driver: &Driver, text: &str) -> Result<()> {
    let mut actions = KeyActions::new("keyboard".to_owned());
    for c in text.chars() {
        actions = actions
            .then(KeyAction::Down { value: c })
            .then(KeyAction::Up { value: c });
    }
    driver.perform_actions(actions).await.context("typing")?;
    Ok(())
}

/// What the focus is looked for by.
#[derive(Clone, Copy, Debug)]
enum Want<'a> {
    Id(&'a str),
    Href(&'a str),
}

/// Whether the focused element is `want` (read through WebDriver's attribute command).
async fn focused_is(driver: &Driver, want: Want<'_>) -> Result<bool> {
    let active = driver.active_element().await?;
    Ok(match want {
        Want::Id(id) => active.attr("id").await?.as_deref() == Some(id),
        Want::Href(href) => active.attr("href").await?.as_deref() == Some(href),
    })
}

/// Tabs forward until `want` has the focus, then checks that the focus is visible.
async fn tab_to(driver: &Driver, want: Want<'_>) -> Result<()> {
    for _ in 0..MAX_TABS {
        press(driver, &[Key::Tab.into()]).await?;
        if focused_is(driver, want).await? {
            return focus_is_visible(driver).await;
        }
    }
    bail!("{MAX_TABS} Tabs never reached {want:?}")
}

/// The focused element draws an outline (the portal's focus ring), read from its computed style.
async fn focus_is_visible(driver: &Driver) -> Result<()> {
    let style = driver
        .execute(
            "const s = getComputedStyle(document.activeElement); \
             return [s.outlineStyle, s.outlineWidth, document.activeElement.outerHTML.slice(0, 120)];",
            vec![],
        )
        .await?;
    let part = |i: usize| style[i].as_str().unwrap_or_default().to_owned();
    let (outline, width, element) = (part(0), part(1), part(2));
    if outline == "none" || width == "0px" {
        bail!("the focused element shows no outline ({outline} {width}): {element}");
    }
    Ok(())
}

/// Follows the link to `href` from the page shown, by Tab and Enter, and waits for its heading.
async fn follow(driver: &Driver, href: &str, heading: &str) -> Result<()> {
    tab_to(driver, Want::Href(href)).await?;
    press(driver, &[Key::Enter.into()]).await?;
    wait_heading(driver, heading).await
}

async fn wait_heading(driver: &Driver, heading: &str) -> Result<()> {
    wait_text(driver, "h1", Duration::from_secs(20), |t| t == heading).await?;
    Ok(())
}

/// Tabs to the field `id` and types `text` into it.
async fn fill_by_keys(driver: &Driver, id: &str, text: &str) -> Result<()> {
    tab_to(driver, Want::Id(id)).await?;
    type_text(driver, text).await
}

/// Saves a screenshot to `dir/name`, prints where, and checks it is a PNG with something in it. The
/// window is made tall for it (a WebDriver screenshot is the viewport), so the whole page is in it.
async fn keep_screenshot(browser: &Browser, dir: &Path, name: &str) -> Result<PathBuf> {
    let path = dir.join(name);
    let driver = browser.client();
    let (width, height) = driver.get_window_size().await?;
    driver.set_window_size(1280, 2600).await?;
    let shot = browser.screenshot(&path).await;
    driver
        .set_window_size(u32::try_from(width)?, u32::try_from(height)?)
        .await?;
    shot?;
    let bytes = std::fs::read(&path)?;
    assert!(
        bytes.len() > 1000 && bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is not a PNG with a page in it ({} bytes)",
        path.display(),
        bytes.len()
    );
    println!("screenshot: {}", path.display());
    Ok(path)
}

async fn scenario(
    browser: &Browser,
    gateway: &Gateway,
    net: &TargetNet,
    shots: &Path,
) -> Result<()> {
    let driver = browser.client();
    let enter: char = Key::Enter.into();
    let space = ' ';
    // The one navigation by address: the login page, where the walk starts.
    driver.goto(gateway.url().trim_end_matches('/')).await?;
    wait_heading(driver, "Log in").await?;
    fill_by_keys(driver, "username", "admin").await?;
    fill_by_keys(driver, "password", &gateway.password()).await?;
    press(driver, &[enter]).await?;

    // The one-time password must be changed first.
    wait_heading(driver, "Choose a new password").await?;
    fill_by_keys(driver, "new_password", ADMIN_PASSWORD).await?;
    fill_by_keys(driver, "repeat", ADMIN_PASSWORD).await?;
    press(driver, &[enter]).await?;
    wait_heading(driver, "Targets").await?;

    // A user.
    // The admin landing page's heading is the dashboard's business; its admin navigation is what counts.
    tab_to(driver, Want::Href("/admin")).await?;
    press(driver, &[enter]).await?;
    wait_text(driver, "nav.admin-nav", Duration::from_secs(20), |t| {
        t.contains("Policies")
    })
    .await?;
    follow(driver, "/admin/users", "Users").await?;
    fill_by_keys(driver, "new-username", "erin").await?;
    press(driver, &[enter]).await?;
    wait_text(driver, "#one-time-password", Duration::from_secs(10), |t| {
        t.len() >= 12
    })
    .await?;
    // That page names the new user with the password to hand over.
    wait_text(driver, "main", Duration::from_secs(10), |t| {
        t.contains("erin")
    })
    .await?;

    // A target with a tag.
    follow(driver, "/admin/targets", "Targets").await?;
    fill_by_keys(driver, "target-name", "web").await?;
    fill_by_keys(driver, "target-address", &net.ns_addr().to_string()).await?;
    fill_by_keys(driver, "target-tags", "prod").await?;
    press(driver, &[enter]).await?;
    wait_text(driver, "#targets", Duration::from_secs(10), |t| {
        t.contains("web")
    })
    .await?;

    // A policy for that user and tag, ticked with Space in the pickers.
    follow(driver, "/admin/policies", "Policies").await?;
    fill_by_keys(driver, "policy-name", "erin-prod").await?;
    tab_to(driver, Want::Id("subject-user-erin")).await?;
    press(driver, &[space]).await?;
    tab_to(driver, Want::Id("target-tag-prod")).await?;
    press(driver, &[space]).await?;
    tab_to(driver, Want::Id("preview-policy")).await?;
    // Shift+Tab goes back to the save button just before it, and Tab returns.
    press(driver, &[Key::Shift.into(), Key::Tab.into()]).await?;
    if !focused_is(driver, Want::Id("save-policy")).await? {
        bail!("Shift+Tab from Preview did not reach the save button");
    }
    press(driver, &[Key::Tab.into()]).await?;
    if !focused_is(driver, Want::Id("preview-policy")).await? {
        bail!("Tab from the save button did not return to Preview");
    }
    press(driver, &[enter]).await?;

    // The preview: the same form, still filled, and what it would grant; nothing saved yet.
    wait_heading(driver, "Add a policy").await?;
    let granted = wait_text(driver, "#preview-granted", Duration::from_secs(10), |t| {
        t.contains("erin") && t.contains("web")
    })
    .await?;
    assert!(granted.contains("ssh"), "{granted}");
    let added = wait_text(driver, "#preview-added", Duration::from_secs(10), |t| {
        t.contains("erin")
    })
    .await?;
    assert!(added.contains("web"), "{added}");
    for id in ["subject-user-erin", "target-tag-prod", "protocol-ssh"] {
        let ticked = driver
            .find(fantoccini::Locator::Id(id))
            .await?
            .prop("checked")
            .await?;
        assert_eq!(
            ticked.as_deref(),
            Some("true"),
            "{id} is not ticked after the preview"
        );
    }
    keep_screenshot(browser, shots, "policies.png").await?;

    tab_to(driver, Want::Id("save-policy")).await?;
    press(driver, &[enter]).await?;
    wait_heading(driver, "Policies").await?;
    wait_text(driver, "#policies", Duration::from_secs(10), |t| {
        t.contains("erin-prod")
    })
    .await?;
    let reach = wait_text(driver, "#reach", Duration::from_secs(10), |t| {
        t.contains("erin")
    })
    .await?;
    assert!(
        reach.contains("web") && reach.contains("erin-prod"),
        "the reach matrix lacks erin -> web via erin-prod:\n{reach}"
    );

    // The audit log has the change.
    follow(driver, "/admin/audit", "Audit log").await?;
    let log = wait_text(driver, "#audit", Duration::from_secs(10), |t| {
        t.contains("policy_added")
    })
    .await?;
    assert!(
        log.contains("erin-prod") && log.contains("user:erin") && log.contains("tag:prod"),
        "the audit log does not name the policy:\n{log}"
    );
    keep_screenshot(browser, shots, "audit-log.png").await?;
    Ok(())
}
