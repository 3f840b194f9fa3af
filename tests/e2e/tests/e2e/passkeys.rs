//! Passkeys in headless Chromium with its virtual authenticator (`sallyport_e2e::webauthn`), at a
//! gateway whose public_url is `https://localhost:PORT` (WebAuthn needs a DNS name):
//!
//! - two passkeys registered by name on the security page (on two authenticators: one holding a
//!   passkey of the account is asked not to make another), one removed again;
//! - a sign-in without a password, and a password followed by the passkey as the second factor, each
//!   audited with the passkey's name; the CLI's password login refused for an account whose second
//!   factor is a passkey;
//! - refused, audited, and no session made: the passkey used from another origin of the same RP ID
//!   (another port of localhost), answers signed here with its key for another RP ID or replayed
//!   (after the same answer was first accepted), and a cloned authenticator (the same key with its
//!   signature counter set back);
//! - the per-role requirement: a user of a role that must use a passkey reaches only the security page;
//! - the refusals count for the login throttle: past the limit the source must wait (429);
//! - an account of the identity provider (`sso`'s) adds a passkey, which then is its second factor
//!   after the provider's sign-in, and never signs it in without the provider.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use fantoccini::{Client as Driver, Locator};
use sallyport_e2e::browser::steps::{
    click, fill, logout, password_login, path, text, wait_path, wait_text,
};
use sallyport_e2e::portal::{audit_rows, create_user, first_login, login_admin};
use sallyport_e2e::webauthn::{Claims, VirtualAuthenticator, craft_assertion};
use sallyport_e2e::{
    Browser, Client, Gateway, GatewayOptions, Response, TargetNet, free_port, require_root,
};
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};

const ERIN_PASSWORD: &str = "erin-password-1";
/// Failed sign-ins one source may make before it must wait.
const SOURCE_MAX_FAILURES: u32 = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passkeys_register_sign_in_and_refuse_clones_and_foreign_origins() -> Result<()> {
    require_root()?;
    let net = TargetNet::create("pk")?;
    let port = free_port()?;
    let mut opts = GatewayOptions::for_net(&net).listen(([127, 0, 0, 1], port).into());
    opts.extra_portal
        .push(format!("public_url = \"https://localhost:{port}\""));
    // More failed sign-ins from one source than the default before it must wait: the scenario's
    // refusals are five, and its last step adds more until the source waits.
    opts.extra_portal
        .push(format!("login_source_max_failures = {SOURCE_MAX_FAILURES}"));
    let gateway = Gateway::start(opts).await?;
    let admin = login_admin(&gateway).await?;
    let once = create_user(&admin, "erin", "user", "").await?;
    first_login(&gateway, "erin", &once, ERIN_PASSWORD).await?;
    let once = create_user(&admin, "gus", "user", "").await?;
    first_login(&gateway, "gus", &once, "gus-password-1").await?;
    // Another origin of the same RP ID: a plain TCP relay from another localhost port to the portal.
    let relay = TcpListener::bind("127.0.0.1:0").await?;
    let other_port = relay.local_addr()?.port();
    let relay_task = tokio::spawn(async move {
        // Bounded: the test aborts the task at its end; each connection ends with either side.
        while let Ok((mut inbound, _)) = relay.accept().await {
            tokio::spawn(async move {
                if let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", port)).await {
                    tokio::io::copy_bidirectional(&mut inbound, &mut outbound)
                        .await
                        .ok();
                }
            });
        }
    });
    let browser = Browser::start().await?;
    let base = format!("https://localhost:{port}");
    let other = format!("https://localhost:{other_port}");
    let result = scenario(browser.client(), &base, &other, &gateway, &admin).await;
    relay_task.abort();
    browser
        .finish(
            result,
            std::path::Path::new(env!("CARGO_TARGET_TMPDIR")),
            "passkeys",
            || format!("gateway stderr:\n{}", gateway.stderr()),
        )
        .await
}

/// Names the passkeys the security page lists (empty while the page is being replaced).
async fn listed_passkeys(driver: &Driver) -> Vec<String> {
    let read = async {
        let mut names = Vec::new();
        for row in driver
            .find_all(Locator::Css("#passkeys tr[data-passkey]"))
            .await?
        {
            names.push(row.attr("data-passkey").await?.unwrap_or_default());
        }
        Ok::<_, fantoccini::error::CmdError>(names)
    };
    read.await.unwrap_or_default()
}

/// Waits up to 10 s for the security page to list exactly `names`.
async fn wait_passkeys(driver: &Driver, names: &[&str]) -> Result<()> {
    for _ in 0..100 {
        if listed_passkeys(driver).await == names {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let error = text(driver, "#passkey-error").await.unwrap_or_default();
    bail!(
        "the security page lists {:?}, not {names:?} ({error:?})",
        listed_passkeys(driver).await
    )
}

/// Adds a passkey named `name` on the security page, which then lists `then`.
async fn add_passkey(driver: &Driver, base: &str, name: &str, then: &[&str]) -> Result<()> {
    driver.goto(&format!("{base}/account/mfa")).await?;
    fill(driver, "#passkey-name", name).await?;
    click(driver, "#add-passkey").await?;
    wait_passkeys(driver, then)
        .await
        .with_context(|| format!("adding passkey {name}"))
}

/// Asks the portal for a password-less challenge as `client` (which keeps the ceremony's cookie).
async fn passkey_challenge(client: &Client) -> Result<String> {
    match passkey_options(client).await? {
        Ok(challenge) => Ok(challenge),
        Err(refusal) => bail!("no challenge: {} {}", refusal.status, refusal.text()),
    }
}

/// The challenge `client` is given, or the portal's refusal to give one.
async fn passkey_options(client: &Client) -> Result<std::result::Result<String, Response>> {
    let origin = client.origin();
    let answer = client
        .request(
            "POST",
            "/login/passkey/options",
            &[("Origin", &origin)],
            Some(b""),
        )
        .await?;
    if answer.status != 200 {
        return Ok(Err(answer));
    }
    let options: serde_json::Value = serde_json::from_str(&answer.text())?;
    options["publicKey"]["challenge"]
        .as_str()
        .map(|challenge| Ok(challenge.to_owned()))
        .with_context(|| format!("no challenge in {options}"))
}

/// Sends `assertion` as `client`'s answer to its challenge.
async fn post_assertion(client: &Client, assertion: &serde_json::Value) -> Result<Response> {
    client
        .post_json("/login/passkey", assertion, Some(&client.origin()))
        .await
}

/// Clicks "Sign in with a passkey" on the login page of `base` and waits for the page's refusal.
async fn refused_passkey_sign_in(driver: &Driver, base: &str) -> Result<String> {
    driver.goto(&format!("{base}/login")).await?;
    click(driver, "#passkey-login").await?;
    let error = wait_text(driver, "#passkey-error", Duration::from_secs(15), |t| {
        !t.is_empty()
    })
    .await?;
    assert_eq!(path(driver).await?, "/login", "a refused passkey went on");
    Ok(error)
}

async fn scenario(
    driver: &Driver,
    base: &str,
    other: &str,
    gateway: &Gateway,
    admin: &Client,
) -> Result<()> {
    let authenticator = VirtualAuthenticator::add(driver).await?;

    // Register two passkeys by name; remove one.
    password_login(driver, base, "erin", ERIN_PASSWORD).await?;
    wait_path(driver, "/targets").await?;
    add_passkey(driver, base, "laptop", &["laptop"]).await?;
    let laptop = authenticator
        .credentials(driver)
        .await?
        .first()
        .context("the authenticator holds no credential")?
        .clone();
    assert_eq!(
        laptop["isResidentCredential"],
        json!(true),
        "the passkey is not discoverable: {laptop}"
    );
    // A second passkey lives on another authenticator: this one holds a credential of the account
    // already, and the portal asks authenticators not to make a second.
    authenticator.remove(driver).await?;
    let spare = VirtualAuthenticator::add(driver).await?;
    add_passkey(driver, base, "spare key", &["laptop", "spare key"]).await?;
    spare.remove(driver).await?;
    click(
        driver,
        r#"tr[data-passkey="spare key"] button[data-action="remove-passkey"]"#,
    )
    .await?;
    wait_passkeys(driver, &["laptop"]).await?;
    // The laptop's authenticator again, with its credential as it was read.
    let authenticator = VirtualAuthenticator::add(driver).await?;
    authenticator.add_credential(driver, &laptop).await?;
    logout(driver).await?;

    // The password is followed by the passkey as the second factor (no code form: erin has no TOTP).
    password_login(driver, base, "erin", ERIN_PASSWORD).await?;
    wait_path(driver, "/login/mfa").await?;
    assert!(
        driver.find(Locator::Css("#mfa-code")).await.is_err(),
        "a code form is offered to an account without TOTP"
    );
    click(driver, "#passkey-second-factor").await?;
    wait_path(driver, "/targets").await?;
    logout(driver).await?;

    // Without a password at all.
    driver.goto(&format!("{base}/login")).await?;
    click(driver, "#passkey-login").await?;
    wait_path(driver, "/targets").await?;
    logout(driver).await?;
    let logins = audit_rows(admin, "login").await?;
    for how in [
        "signed in with password, then passkey laptop",
        "signed in with passkey laptop",
    ] {
        assert!(logins.iter().any(|r| r.contains(how)), "{how}: {logins:?}");
    }
    let added = audit_rows(admin, "passkey_added").await?;
    assert_eq!(added.len(), 2, "{added:?}");
    assert_eq!(audit_rows(admin, "passkey_removed").await?.len(), 1);

    // A password alone must not stand in for the passkey at the CLI's login.
    let body = json!({
        "username": "erin",
        "password": ERIN_PASSWORD,
        "public_key": "00".repeat(32),
    });
    let answer = gateway
        .client()?
        .post_json("/api/cli/login", &body, None)
        .await?;
    assert_eq!(answer.status, 403, "{}", answer.text());
    assert!(
        answer.text().contains("passkey_required"),
        "{}",
        answer.text()
    );

    // The same passkey from another origin of the same RP ID: the browser signs (the RP ID matches),
    // the portal refuses the origin.
    let error = refused_passkey_sign_in(driver, other).await?;
    assert!(error.contains("origin"), "{error}");

    // Answers signed here with the passkey's own key: first one the portal must take (so that the
    // refusals after it are the portal's checks, not a broken answer), then that answer replayed, and
    // one for another RP ID from the right origin.
    // What a genuine answer at this portal claims, for `challenge`.
    fn genuine_claims<'a>(challenge: &'a str, origin: &'a str) -> Claims<'a> {
        Claims {
            challenge,
            origin,
            rp_id: "localhost",
            counter: 1000,
        }
    }
    let first = gateway.client()?;
    let challenge = passkey_challenge(&first).await?;
    let genuine = craft_assertion(&laptop, &genuine_claims(&challenge, base))?;
    let taken = post_assertion(&first, &genuine).await?;
    assert_eq!(
        taken.status,
        200,
        "the crafted control answer: {}",
        taken.text()
    );
    let replayed = post_assertion(&first, &genuine).await?;
    assert_eq!(replayed.status, 401, "{}", replayed.text());
    let second = gateway.client()?;
    passkey_challenge(&second).await?;
    let replayed = post_assertion(&second, &genuine).await?;
    assert_eq!(replayed.status, 401, "{}", replayed.text());
    assert!(replayed.text().contains("replayed"), "{}", replayed.text());
    let third = gateway.client()?;
    let challenge = passkey_challenge(&third).await?;
    let other_rp = craft_assertion(
        &laptop,
        &Claims {
            rp_id: "bastion.example",
            counter: 1001,
            ..genuine_claims(&challenge, base)
        },
    )?;
    let refused = post_assertion(&third, &other_rp).await?;
    assert_eq!(refused.status, 401, "{}", refused.text());
    assert!(refused.text().contains("RP ID"), "{}", refused.text());

    // A clone: the same key planted in a new authenticator with its counter set back to zero.
    let counter = authenticator.credentials(driver).await?[0]["signCount"]
        .as_u64()
        .context("no signCount")?;
    assert!(counter >= 2, "the counter did not grow: {counter}");
    authenticator.remove(driver).await?;
    let clone = VirtualAuthenticator::add(driver).await?;
    let mut cloned = laptop.clone();
    cloned["signCount"] = json!(0);
    clone.add_credential(driver, &cloned).await?;
    let error = refused_passkey_sign_in(driver, base).await?;
    assert!(error.contains("cloned"), "{error}");
    let refused = audit_rows(admin, "passkey_refused").await?;
    assert!(
        refused
            .iter()
            .any(|r| r.contains("laptop") && r.contains("cloned")),
        "{refused:?}"
    );
    for reason in [
        "origin",
        "RP ID",
        "replayed",
        "no passkey sign-in was started",
    ] {
        assert!(
            refused.iter().any(|r| r.contains(reason)),
            "no refusal says {reason:?}: {refused:?}"
        );
    }
    // Three sessions by passkey: the browser's two and the crafted control answer; no refusal made one.
    assert_eq!(
        audit_rows(admin, "login")
            .await?
            .iter()
            .filter(|r| r.contains("passkey"))
            .count(),
        3,
        "a refused passkey made a session"
    );

    // Passkeys required for the user role: gus, who has none, reaches only the security page.
    let origin = admin.origin();
    let saved = admin
        .post_form("/admin/mfa", &[("passkey-user", "on")], Some(&origin))
        .await?;
    assert_eq!(saved.status, 303, "{}", saved.text());
    password_login(driver, base, "gus", "gus-password-1").await?;
    wait_path(driver, "/account/mfa").await?;
    driver.goto(&format!("{base}/targets")).await?;
    wait_path(driver, "/account/mfa").await?;
    let required = text(driver, "#security-required").await?;
    assert!(required.contains("passkey"), "{required}");

    // The refusals count for the login throttle: more of them, and this source must wait (within
    // the limit, whatever the steps above left counted).
    let mut waited = None;
    for attempt in 0..SOURCE_MAX_FAILURES {
        let client = gateway.client()?;
        let challenge = match passkey_options(&client).await? {
            Ok(challenge) => challenge,
            Err(refusal) if refusal.status == 429 => {
                waited = Some(attempt);
                break;
            }
            Err(refusal) => bail!("{} {}", refusal.status, refusal.text()),
        };
        let wrong_origin = craft_assertion(
            &laptop,
            &Claims {
                origin: "https://bastion.example",
                counter: 2000 + attempt,
                ..genuine_claims(&challenge, base)
            },
        )?;
        let refused = post_assertion(&client, &wrong_origin).await?;
        assert_eq!(refused.status, 401, "{}", refused.text());
    }
    assert!(
        waited.is_some(),
        "{SOURCE_MAX_FAILURES} more refused passkeys did not make the source wait"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_account_uses_its_passkey_as_the_second_factor_only() -> Result<()> {
    let setup = crate::sso::setup_named("pk2", "localhost").await?;
    let browser = Browser::start().await?;
    let result = provider_scenario(browser.client(), &setup).await;
    browser
        .finish(
            result,
            std::path::Path::new(env!("CARGO_TARGET_TMPDIR")),
            "passkeys_provider",
            || format!("gateway stderr:\n{}", setup.gateway.stderr()),
        )
        .await
}

/// Signs dave in at the provider from the portal's login page; the provider forgets its own session
/// first, so that its login page is shown every time.
async fn provider_sign_in(driver: &Driver, setup: &crate::sso::Setup, base: &str) -> Result<()> {
    driver.goto(&setup.idp.issuer()).await?;
    driver.delete_all_cookies().await?;
    driver.goto(&format!("{base}/login")).await?;
    click(driver, &format!("#sso-{}", sallyport_e2e::idp::IDP_NAME)).await?;
    sallyport_e2e::idp::sign_in_at_provider_page(driver, "dave", "dave-idp-password").await
}

async fn provider_scenario(driver: &Driver, setup: &crate::sso::Setup) -> Result<()> {
    let base = format!("https://localhost:{}", setup.gateway.port());
    VirtualAuthenticator::add(driver).await?;
    provider_sign_in(driver, setup, &base).await?;
    wait_path(driver, "/targets").await?;
    add_passkey(driver, &base, "dave-key", &["dave-key"]).await?;
    logout(driver).await?;

    // The provider's sign-in is now followed by the passkey.
    provider_sign_in(driver, setup, &base).await?;
    wait_path(driver, "/login/mfa").await?;
    click(driver, "#passkey-second-factor").await?;
    wait_path(driver, "/targets").await?;
    logout(driver).await?;
    let logins = audit_rows(&setup.admin, "login").await?;
    assert!(
        logins
            .iter()
            .any(|r| r
                .contains("signed in with provider TestIdP subject dave, then passkey dave-key")),
        "{logins:?}"
    );

    // Without the provider, the passkey alone does not let the account in.
    let error = refused_passkey_sign_in(driver, &base).await?;
    assert!(error.contains("identity provider"), "{error}");
    Ok(())
}
