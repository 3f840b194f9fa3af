//! Two-factor authentication as people use it, in headless Chromium: enrollment with the QR page and a
//! first code, recovery codes shown once, the second login step (a fresh code works, a replayed or wrong
//! one does not, a recovery code works once), the per-role requirement, and an admin's reset.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use fantoccini::{Client as Driver, Locator};
use sallyport_core::mfa;
use sallyport_e2e::browser::steps::{
    click, fill, logout, password_login as login, text, wait_path,
};
use sallyport_e2e::portal::{create_user, first_login, login_admin};
use sallyport_e2e::{
    Browser, Gateway, GatewayOptions, Sshd, SshdOptions, TargetNet, ensure_test_user, require_root,
};

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn totp_enrollment_login_recovery_requirement_and_reset() -> Result<()> {
    require_root()?;
    let net = TargetNet::create("mfa")?;
    ensure_test_user()?;
    let _sshd = Sshd::start(&net, SshdOptions::default())?;
    let gateway = Gateway::start(GatewayOptions::for_net(&net)).await?;
    let admin = login_admin(&gateway).await?;
    let once = create_user(&admin, "erin", "user", "").await?;
    first_login(&gateway, "erin", &once, "erin-password-1").await?;
    let browser = Browser::start().await?;
    let driver = browser.client();
    let base = gateway.url().trim_end_matches('/').to_owned();
    let result = scenario(driver, &base, &gateway, &admin).await;
    browser
        .finish(
            result,
            std::path::Path::new(env!("CARGO_TARGET_TMPDIR")),
            "mfa_browser",
            || format!("gateway stderr:\n{}", gateway.stderr()),
        )
        .await
}

async fn scenario(
    driver: &Driver,
    base: &str,
    gateway: &Gateway,
    admin: &sallyport_e2e::Client,
) -> Result<()> {
    // Enroll: the page shows a QR code and the secret; the first code turns MFA on.
    login(driver, base, "erin", "erin-password-1").await?;
    wait_path(driver, "/targets").await?;
    driver.goto(&format!("{base}/account/mfa")).await?;
    assert!(
        driver.find(Locator::Css("#qr svg")).await.is_ok(),
        "no QR code on the enrollment page"
    );
    let secret = mfa::secret_from_base32(&text(driver, "#totp-secret").await?)
        .context("the page's secret is not base32")?;
    let first = mfa::code_at(&secret, now()).context("no code")?;
    fill(driver, "#totp-code", &first).await?;
    click(driver, "#enable-mfa").await?;
    let codes = text(driver, "#recovery-codes").await?;
    let recovery: Vec<String> = codes.split_whitespace().map(str::to_owned).collect();
    assert_eq!(recovery.len(), 10, "{codes}");
    logout(driver).await?;

    // The password alone no longer logs in; the replayed enrollment code and a wrong code are refused.
    login(driver, base, "erin", "erin-password-1").await?;
    wait_path(driver, "/login/mfa").await?;
    for bad in [first.as_str(), "000000"] {
        fill(driver, "#mfa-code", bad).await?;
        click(driver, "#verify-code").await?;
        let error = text(driver, "#error").await?;
        assert!(error.contains("not valid"), "{bad}: {error}");
    }
    // The next step's code is within the allowed drift and has not been used.
    let next = mfa::code_at(&secret, now() + mfa::STEP_SECONDS).context("no code")?;
    fill(driver, "#mfa-code", &next).await?;
    click(driver, "#verify-code").await?;
    wait_path(driver, "/targets").await?;
    logout(driver).await?;

    // A recovery code works once.
    login(driver, base, "erin", "erin-password-1").await?;
    wait_path(driver, "/login/mfa").await?;
    fill(driver, "#mfa-code", &recovery[0].to_uppercase()).await?;
    click(driver, "#verify-code").await?;
    wait_path(driver, "/targets").await?;
    logout(driver).await?;
    login(driver, base, "erin", "erin-password-1").await?;
    wait_path(driver, "/login/mfa").await?;
    fill(driver, "#mfa-code", &recovery[0]).await?;
    click(driver, "#verify-code").await?;
    assert!(
        text(driver, "#error").await?.contains("not valid"),
        "a used recovery code worked again"
    );

    // Required for the user role: a user without MFA is sent to enroll and reaches nothing else.
    let origin = admin.origin();
    assert_eq!(
        admin
            .post_form("/admin/mfa", &[("user", "on")], Some(&origin))
            .await?
            .status,
        303
    );
    let once = create_user(admin, "frank", "user", "").await?;
    let frank = first_login(gateway, "frank", &once, "frank-password-1").await?;
    let response = frank.get("/targets").await?;
    assert_eq!(
        (response.status, response.location()),
        (303, Some("/account/mfa"))
    );
    assert_eq!(frank.get("/account/mfa").await?.status, 200);

    // An admin's reset: erin logs in with the password alone again (and would be asked to enroll,
    // since the user role now requires MFA).
    let users = admin.get("/admin/users").await?.text();
    let erin_id = users
        .split(r#"<tr data-user="erin">"#)
        .nth(1)
        .and_then(|row| row.split("/admin/users/").nth(1))
        .and_then(|rest| rest.split('/').next())
        .context("erin is not listed")?
        .to_owned();
    assert!(
        users
            .split(r#"<tr data-user="erin">"#)
            .nth(1)
            .is_some_and(|row| row.contains(r#"<td class="mfa">on</td>"#))
    );
    assert_eq!(
        admin
            .post_form(
                &format!("/admin/users/{erin_id}/reset-mfa"),
                &[],
                Some(&origin)
            )
            .await?
            .status,
        303
    );
    login(driver, base, "erin", "erin-password-1").await?;
    wait_path(driver, "/account/mfa").await?;
    let audit = admin.get("/admin/audit").await?.text();
    // Two bad codes and the reused recovery code: exactly three refusals.
    assert_eq!(
        audit.matches(r#"data-kind="mfa_failed""#).count(),
        3,
        "the audit log should show three refused codes"
    );
    for kind in [
        "mfa_enrolled",
        "login_password_ok",
        "mfa_failed",
        "recovery_code_used",
        "mfa_requirement_changed",
        "user_reset_mfa",
    ] {
        assert!(
            audit.contains(&format!(r#"data-kind="{kind}""#)),
            "the audit log lacks {kind}"
        );
    }
    Ok(())
}
