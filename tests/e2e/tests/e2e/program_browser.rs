//! The programs' browser sign-in (RFC 8252, loopback redirect) against the real provider of `sso`:
//!
//! - `sallyport login --provider TestIdP` opens "the browser" (`$BROWSER`: a script that hands the page
//!   to the test, which opens it in Chromium); the provider's login page signs dave in, the portal asks
//!   whether to sign the CLI in, and the browser comes back to the CLI's loopback port; the certificate
//!   lists and opens targets like a password login's;
//! - `sallyport-review --gateway … --browser` the same way with the local admin's password in the
//!   browser, ending in a verified review;
//! - a code taken from the callback is worthless to anyone else: traded without the program's verifier
//!   it is refused (and burnt).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use sallyport_e2e::browser::steps::{click, fill, wait_path, wait_text};
use sallyport_e2e::idp::{IDP_NAME, sign_in_at_provider_page};
use sallyport_e2e::portal::{ADMIN_PASSWORD, audit_rows};
use sallyport_e2e::{Browser, ensure_test_user};

use crate::sso::{Setup, setup};

/// A `$BROWSER` that writes the page it is asked to open into `opened` and succeeds.
fn fake_opener(dir: &Path) -> Result<(PathBuf, PathBuf)> {
    use std::os::unix::fs::PermissionsExt;
    let opened = dir.join("opened-url");
    let script = dir.join("open-browser");
    std::fs::write(
        &script,
        format!("#!/bin/sh\nprintf '%s' \"$1\" > '{}'\n", opened.display()),
    )?;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))?;
    Ok((script, opened))
}

/// Waits up to 30 s for the program to have opened a page.
async fn opened_page(opened: &Path) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(url) = std::fs::read_to_string(opened)
            && !url.is_empty()
        {
            return Ok(url);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the program opened no page within 30 s")
}

/// In Chromium: opens `page`, signs in with `sign_in` when the portal asks, confirms the program,
/// and waits for the program's own answer on its loopback port.
async fn confirm_in_browser<F, Fut>(setup: &Setup, page: &str, name: &str, sign_in: F) -> Result<()>
where
    F: FnOnce(fantoccini::Client) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let browser = Browser::start().await?;
    let driver = browser.client().clone();
    let result = async {
        driver.goto(page).await?;
        sign_in(driver.clone()).await?;
        wait_path(&driver, "/login/cli/confirm").await?;
        click(&driver, "#confirm-program").await?;
        wait_text(&driver, "body", Duration::from_secs(20), |t| {
            t.contains("signed in. You can close this tab")
        })
        .await?;
        Ok(())
    }
    .await;
    browser
        .finish(
            result,
            std::path::Path::new(env!("CARGO_TARGET_TMPDIR")),
            name,
            || format!("gateway stderr:\n{}", setup.gateway.stderr()),
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_signs_in_in_the_browser_and_opens_a_terminal() -> Result<()> {
    let setup = setup("pbs1").await?;
    let user = ensure_test_user()?;
    let dir = tempfile::tempdir()?;
    let (opener, opened) = fake_opener(dir.path())?;
    let cli = sallyport_e2e::cli::Cli::new(&setup.gateway)?;
    let mut command = cli.command(&["login", &cli.gateway_url, "--provider", IDP_NAME]);
    command.env("BROWSER", &opener);
    let mut login = rexpect::session::spawn_command(command, Some(60_000))?;
    login.exp_string("Trust this gateway")?;
    login.send_line("yes")?;
    login.exp_string("Your browser was opened to sign in")?;
    let page = opened_page(&opened).await?;
    assert!(
        page.starts_with(&format!("{}login/cli?", setup.gateway.url())),
        "{page}"
    );
    confirm_in_browser(&setup, &page, "program_browser_cli", |driver| async move {
        // Not signed in yet: the portal sends the browser to the provider the CLI named.
        sign_in_at_provider_page(&driver, "dave", "dave-idp-password").await
    })
    .await?;
    let printed = tokio::task::spawn_blocking(move || {
        sallyport_e2e::cli::finished(login, "sallyport login --provider (browser)")
    })
    .await??;
    assert!(
        printed.contains("Logged in to") && printed.contains("as dave"),
        "{printed}"
    );
    let confirmed = audit_rows(&setup.admin, "program_sign_in_confirmed").await?;
    assert!(
        confirmed
            .iter()
            .any(|r| r.contains("dave") && r.contains("command-line client")),
        "{confirmed:?}"
    );
    let issued = audit_rows(&setup.admin, "cli_login").await?;
    assert!(
        issued
            .iter()
            .any(|r| r.contains("dave") && r.contains("a browser sign-in")),
        "{issued:?}"
    );

    // The certificate opens a recorded terminal like a password login's.
    let destination = format!("{}@alpha", user.name);
    tokio::task::spawn_blocking(move || cli.ssh_echo(&destination, &user.password, "browser", 4))
        .await??;

    // A code is traded once, and only with the verifier: a made-up one and a reused one are refused.
    let client = setup.gateway.client()?;
    let body = serde_json::json!({
        "code": "00".repeat(32),
        "verifier": "not-the-program's",
        "public_key": "11".repeat(32),
    });
    let refused = client.post_json("/api/cli/exchange", &body, None).await?;
    assert_eq!(refused.status, 401, "{}", refused.text());
    assert!(
        refused.text().contains("unknown, used or expired"),
        "{}",
        refused.text()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reviewer_signs_in_in_the_browser_with_a_local_password() -> Result<()> {
    let setup = setup("pbs2").await?;
    let home = tempfile::tempdir()?;
    let (opener, opened) = fake_opener(home.path())?;
    let fingerprint = setup
        .gateway
        .fingerprint()
        .context("the gateway printed no fingerprint")?;
    let url = format!("https://127.0.0.1:{}", setup.gateway.port());
    let review = std::process::Command::new(sallyport_e2e::tmux::review_bin()?)
        .args([
            "--verify",
            "--gateway",
            &url,
            "--fingerprint",
            &fingerprint,
            "--browser",
        ])
        .env("BROWSER", &opener)
        .env("XDG_CONFIG_HOME", home.path().join("config"))
        .env("XDG_CACHE_HOME", home.path().join("cache"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let page = opened_page(&opened).await?;
    confirm_in_browser(
        &setup,
        &page,
        "program_browser_review",
        |driver| async move {
            // Not signed in, and no provider named: the portal's own login page.
            wait_path(&driver, "/login").await?;
            fill(&driver, "#username", "admin").await?;
            fill(&driver, "#password", ADMIN_PASSWORD).await?;
            click(&driver, "#login").await
        },
    )
    .await?;
    let output = tokio::task::spawn_blocking(move || review.wait_with_output()).await??;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "the reviewer failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("0 sessions failed"), "{stdout}");
    let logins = audit_rows(&setup.admin, "review_login").await?;
    assert!(
        logins
            .iter()
            .any(|r| r.contains("admin") && r.contains("a browser sign-in")),
        "{logins:?}"
    );
    Ok(())
}
