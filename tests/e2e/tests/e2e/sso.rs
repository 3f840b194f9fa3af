//! Single sign-on against a real OpenID provider (panva's oidc-provider, `sallyport_e2e::idp`):
//!
//! - in Chromium: "Sign in with TestIdP", the provider's own login page, back in Sallyport as a new
//!   account whose provider group maps to a policy, a terminal on the target; an account in no mapped
//!   group refused in words; the users page showing the provider and subject;
//! - over HTTPS, the code flow driven step by step: crafted ID tokens (wrong audience, wrong issuer,
//!   a bad signature, an unknown key id, expired, a wrong nonce), a missing or replayed `state`, a code
//!   used twice, a callback from another browser or naming another issuer: each refused, audited,
//!   and no account made;
//! - a group removed at the provider refuses the next sign-in; an account disabled there loses its
//!   live terminal within the re-check interval.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use sallyport_e2e::browser::steps::{click, fill, wait_text};
use sallyport_e2e::idp::{IDP_NAME, IdpAccount, Tamper, TestIdp, sign_in_at_provider_page};
use sallyport_e2e::portal::{Terminal, add_policy, audit_rows, login_admin, target_id};
use sallyport_e2e::{
    Browser, Client, Gateway, GatewayOptions, Sshd, SshdOptions, TargetNet, ensure_test_user,
    free_port, require_root,
};

/// Failed sign-ins one source may make before it must wait.
const SOURCE_MAX_FAILURES: u32 = 20;

/// The re-check interval the gateway is given (the shortest it accepts).
const RECHECK_SECS: u64 = 10;

fn accounts(dave_groups: Vec<&'static str>, dave_disabled: bool) -> Vec<IdpAccount> {
    vec![
        IdpAccount {
            login: "dave",
            password: "dave-idp-password",
            groups: dave_groups,
            disabled: dave_disabled,
        },
        IdpAccount {
            login: "erin",
            password: "erin-idp-password",
            groups: vec!["sales"],
            disabled: false,
        },
        IdpAccount {
            login: "aud",
            password: "aud-idp-password",
            groups: vec!["audit"],
            disabled: false,
        },
        IdpAccount {
            login: "frank",
            password: "frank-idp-password",
            groups: vec!["engineers"],
            disabled: false,
        },
    ]
}

/// A target network with sshd, a provider, and a gateway that trusts it and maps its group
/// `engineers` to the Sallyport group `eng`, which a policy lets reach target `alpha`.
pub(crate) struct Setup {
    _sshd: Sshd,
    pub(crate) net: TargetNet,
    pub(crate) idp: TestIdp,
    pub(crate) gateway: Gateway,
    pub(crate) admin: Client,
}

pub(crate) async fn setup(name: &str) -> Result<Setup> {
    setup_named(name, "127.0.0.1").await
}

/// [`setup`] with the portal's public_url on `host` (the gateway still listens on 127.0.0.1): a DNS
/// name such as `localhost` where passkeys must work.
pub(crate) async fn setup_named(name: &str, host: &str) -> Result<Setup> {
    require_root()?;
    let net = TargetNet::create(name)?;
    let sshd = Sshd::start(&net, SshdOptions::default())?;
    let port = free_port()?;
    let url = format!("https://{host}:{port}");
    let idp = TestIdp::start(&url, &accounts(vec!["engineers"], false)).await?;
    let opts = GatewayOptions::for_net(&net)
        .listen(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
        .extra_toml(&idp.gateway_toml(
            RECHECK_SECS,
            &[("engineers", "user", &["eng"]), ("audit", "auditor", &[])],
        ));
    let mut opts = opts;
    opts.extra_portal.push(format!("public_url = \"{url}\""));
    // The refusal scenario fails on purpose more often than the default throttle lets a source.
    opts.extra_portal
        .push(format!("login_source_max_failures = {SOURCE_MAX_FAILURES}"));
    let gateway = Gateway::start(opts).await?;
    let admin = login_admin(&gateway).await?;
    add_policy(&admin, "eng-alpha", "group:eng", "name:alpha").await?;
    Ok(Setup {
        _sshd: sshd,
        net,
        idp,
        gateway,
        admin,
    })
}

/// How many accounts the users page lists.
async fn user_rows(admin: &Client) -> Result<usize> {
    Ok(admin
        .get("/admin/users")
        .await?
        .text()
        .matches("<tr data-user=")
        .count())
}

/// Starts a sign-in at the gateway for `browser` (its binding cookie kept there) and signs `login`
/// in at the provider: the callback path to deliver.
async fn sign_in_at_provider(
    setup: &Setup,
    browser: &Client,
    login: &str,
    password: &str,
) -> Result<String> {
    let started = browser.get(&format!("/login/sso/{IDP_NAME}")).await?;
    let authorize = started
        .location()
        .with_context(|| format!("no redirect to the provider: {}", started.text()))?
        .to_owned();
    let at_provider = Client::new(&setup.idp.issuer(), None)?;
    setup
        .idp
        .sign_in_http(&at_provider, &authorize, login, password)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_signs_in_with_the_provider_and_opens_a_terminal() -> Result<()> {
    let setup = setup("sso1").await?;
    let user = ensure_test_user()?;
    let browser = Browser::start().await?;
    let result = drive_browser(&browser, &setup, &user.name, &user.password).await;
    browser
        .finish(
            result,
            std::path::Path::new(env!("CARGO_TARGET_TMPDIR")),
            "sso_browser",
            || {
                format!(
                    "gateway stderr:\n{}\nprovider log:\n{}",
                    setup.gateway.stderr(),
                    setup.idp.log()
                )
            },
        )
        .await?;
    // The users page shows the new account as the provider's, with its subject.
    let users = setup.admin.get("/admin/users").await?.text();
    let row = users
        .split(r#"<tr data-user="dave">"#)
        .nth(1)
        .context("dave is not on the users page")?;
    let row = row.split("</tr>").next().unwrap_or_default();
    assert!(row.contains(IDP_NAME) && row.contains("subject"), "{row}");
    assert!(!row.contains("reset-password"), "{row}");
    assert!(!users.contains(r#"<tr data-user="erin">"#), "erin was made");
    let created = audit_rows(&setup.admin, "sso_account_created").await?;
    assert!(
        created
            .iter()
            .any(|r| r.contains("dave") && r.contains("eng")),
        "{created:?}"
    );
    let logins = audit_rows(&setup.admin, "login").await?;
    assert!(
        logins
            .iter()
            .any(|r| r.contains("signed in with provider TestIdP subject dave")),
        "{logins:?}"
    );
    let refused = audit_rows(&setup.admin, "sso_refused").await?;
    assert!(
        refused
            .iter()
            .any(|r| r.contains("erin") && r.contains("none of your groups")),
        "{refused:?}"
    );
    Ok(())
}

async fn drive_browser(
    browser: &Browser,
    setup: &Setup,
    target_user: &str,
    target_password: &str,
) -> Result<()> {
    let driver = browser.client();
    let base = setup.gateway.url();
    driver.goto(&format!("{base}login")).await?;
    click(driver, &format!("#sso-{IDP_NAME}")).await?;
    sign_in_at_provider_page(driver, "dave", "dave-idp-password").await?;
    // Back in Sallyport, signed in: the target list with the target the group's policy gives.
    wait_text(driver, "body", Duration::from_secs(20), |t| {
        t.contains("alpha")
    })
    .await?;
    let url = driver.current_url().await?;
    if !url.as_str().ends_with("/targets") {
        bail!("after the provider's sign-in the browser is at {url}");
    }
    click(driver, r#"tr[data-target="alpha"] a.connect"#).await?;
    fill(driver, "#target-username", target_user).await?;
    fill(driver, "#target-password", target_password).await?;
    click(driver, "#connect").await?;
    wait_text(driver, "#status", Duration::from_secs(20), |s| {
        s.starts_with("Connected")
    })
    .await?;
    let terminal = driver
        .find(fantoccini::Locator::Css(".xterm-helper-textarea"))
        .await?;
    terminal.send_keys("echo sso-$((6*7))\n").await?;
    wait_text(driver, ".xterm-rows", Duration::from_secs(10), |s| {
        s.contains("sso-42")
    })
    .await?;
    terminal.send_keys("exit\n").await?;
    wait_text(driver, "#status", Duration::from_secs(10), |s| {
        s.contains("exited")
    })
    .await?;

    // A second browser profile is not needed: logging out and signing in as erin, whose only group
    // maps to nothing, is refused in words.
    driver.goto(&format!("{base}targets")).await?;
    click(driver, "#logout").await?;
    // The provider remembers dave's session: sign out there by clearing its cookies (WebDriver
    // deletes the cookies of the page's own site).
    driver.goto(&setup.idp.issuer()).await?;
    driver.delete_all_cookies().await?;
    driver.goto(&format!("{base}login")).await?;
    click(driver, &format!("#sso-{IDP_NAME}")).await?;
    sign_in_at_provider_page(driver, "erin", "erin-idp-password").await?;
    wait_text(driver, "#error", Duration::from_secs(20), |t| {
        t.contains("None of your groups at the identity provider (sales) gives access here")
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crafted_tokens_replays_and_foreign_callbacks_are_refused_and_nothing_is_made() -> Result<()>
{
    let setup = setup("sso2").await?;
    let before = user_rows(&setup.admin).await?;
    let crafted = [
        (Tamper::WrongAudience, "Invalid audiences"),
        (Tamper::WrongIssuer, "Invalid issuer"),
        (Tamper::BadSignature, "Signature verification failed"),
        (Tamper::UnknownKeyId, "does not publish"),
        (Tamper::Expired, "Expired"),
        (Tamper::WrongNonce, "nonce"),
    ];
    for (defect, words) in crafted {
        let browser = setup.gateway.client()?;
        let callback = sign_in_at_provider(&setup, &browser, "frank", "frank-idp-password").await?;
        setup.idp.tamper(defect)?;
        let answer = browser.get(&callback).await;
        setup.idp.tamper_off()?;
        let answer = answer?;
        assert_eq!(answer.status, 403, "{defect:?}: {}", answer.text());
        assert!(
            answer.text().contains(words),
            "{defect:?}: {}",
            answer.text()
        );
        assert!(browser.cookie("__Host-sallyport").is_none(), "{defect:?}");
    }
    assert_eq!(
        user_rows(&setup.admin).await?,
        before,
        "an account was made"
    );
    let refused = audit_rows(&setup.admin, "sso_refused").await?;
    assert!(refused.len() >= crafted.len(), "{refused:?}");

    // A callback without state, and one whose state was never started here.
    let stranger = setup.gateway.client()?;
    let missing = stranger
        .get(&format!("/login/sso/{IDP_NAME}/callback?code=abc"))
        .await?;
    assert_eq!(missing.status, 400);
    assert!(missing.text().contains("no state"), "{}", missing.text());

    // A genuine sign-in works; replaying its callback does not.
    let browser = setup.gateway.client()?;
    let callback = sign_in_at_provider(&setup, &browser, "frank", "frank-idp-password").await?;
    let first = browser.get(&callback).await?;
    assert_eq!(first.status, 200, "{}", first.text());
    assert!(browser.cookie("__Host-sallyport").is_some());
    let replay = setup.gateway.client()?;
    for (name, value) in browser.cookies() {
        replay.set_cookie(&name, &value);
    }
    let replayed = replay.get(&callback).await?;
    assert_eq!(replayed.status, 400, "{}", replayed.text());
    assert!(
        replayed.text().contains("already used"),
        "{}",
        replayed.text()
    );

    // The code used twice: a fresh sign-in's state with the first sign-in's code.
    let old_code = query_value(&callback, "code")?;
    let again = setup.gateway.client()?;
    let fresh = sign_in_at_provider(&setup, &again, "frank", "frank-idp-password").await?;
    let fresh_state = query_value(&fresh, "state")?;
    let iss = query_value(&fresh, "iss")?;
    let reused = again
        .get(&format!(
            "/login/sso/{IDP_NAME}/callback?code={old_code}&state={fresh_state}&iss={iss}"
        ))
        .await?;
    assert_eq!(reused.status, 403, "{}", reused.text());
    assert!(
        reused.text().contains("refused the sign-in code"),
        "{}",
        reused.text()
    );

    // A callback delivered to another browser than the one that started it.
    let starter = setup.gateway.client()?;
    let foreign = sign_in_at_provider(&setup, &starter, "frank", "frank-idp-password").await?;
    let elsewhere = setup.gateway.client()?;
    let delivered = elsewhere.get(&foreign).await?;
    assert_eq!(delivered.status, 403, "{}", delivered.text());
    assert!(
        delivered.text().contains("started in another browser"),
        "{}",
        delivered.text()
    );

    // A callback naming another issuer (RFC 9207's mix-up defence).
    let mixed = setup.gateway.client()?;
    let answer = sign_in_at_provider(&setup, &mixed, "frank", "frank-idp-password").await?;
    let evil = answer.replace(
        &format!("iss={}", query_value(&answer, "iss")?),
        "iss=https%3A%2F%2Fevil.example",
    );
    let mixed_up = mixed.get(&evil).await?;
    assert_eq!(mixed_up.status, 403, "{}", mixed_up.text());
    assert!(
        mixed_up.text().contains("came from issuer"),
        "{}",
        mixed_up.text()
    );
    let refusals = audit_rows(&setup.admin, "sso_refused").await?;
    for words in [
        "no state",
        "already used",
        "sign-in code",
        "another browser",
        "came from issuer",
    ] {
        assert!(
            refusals.iter().any(|r| r.contains(words)),
            "no audited refusal says {words:?}: {refusals:?}"
        );
    }
    // Only frank's one genuine sign-in made an account.
    assert_eq!(user_rows(&setup.admin).await?, before + 1);

    // Refused callbacks count against the source like wrong passwords: it is made to wait.
    let mut throttled = None;
    for attempt in 0..=SOURCE_MAX_FAILURES {
        let answer = stranger
            .get(&format!(
                "/login/sso/{IDP_NAME}/callback?code=abc&state=guess-{attempt}"
            ))
            .await?;
        if answer.status == 429 {
            throttled = Some(answer.text());
            break;
        }
        assert_eq!(answer.status, 400, "{}", answer.text());
    }
    let throttled = throttled.context("the source was never throttled")?;
    assert!(
        throttled.contains("Too many failed sign-ins"),
        "{throttled}"
    );
    drop(setup.net);
    Ok(())
}

fn query_value(path_and_query: &str, name: &str) -> Result<String> {
    let query = path_and_query.split_once('?').map(|(_, q)| q).unwrap_or("");
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
        .with_context(|| format!("no {name} in {path_and_query}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_removal_and_a_disabled_account_take_access_away() -> Result<()> {
    let setup = setup("sso3").await?;
    let user = ensure_test_user()?;

    // dave signs in and opens a terminal.
    let browser = setup.gateway.client()?;
    let callback = sign_in_at_provider(&setup, &browser, "dave", "dave-idp-password").await?;
    assert_eq!(browser.get(&callback).await?.status, 200);
    let alpha = target_id(&browser, "alpha").await?;
    let mut terminal = Terminal::open(&browser, alpha, &user.name, &user.password).await?;
    terminal.expect_connected().await?;

    // Disabled at the provider: the live terminal ends within the re-check interval.
    setup.idp.set_accounts(&accounts(vec!["engineers"], true))?;
    let disabled_at = Instant::now();
    let (kind, message) = terminal.expect_error().await?;
    let took = disabled_at.elapsed();
    assert_eq!(kind, "terminated", "{message}");
    assert!(message.contains("no longer vouches"), "{message}");
    assert!(
        took <= Duration::from_secs(RECHECK_SECS + 3),
        "the session ended {took:?} after the account was disabled"
    );
    eprintln!(
        "disabled at the provider: the live session ended after {took:?} (re-check every {RECHECK_SECS} s)"
    );
    let login = browser.get("/targets").await?;
    assert_eq!(
        login.location(),
        Some("/login"),
        "the login session survived"
    );
    let rechecks = audit_rows(&setup.admin, "sso_recheck_refused").await?;
    assert!(rechecks.iter().any(|r| r.contains("dave")), "{rechecks:?}");

    // Enabled again but out of the mapped group: the next sign-in is refused in words.
    setup
        .idp
        .set_accounts(&accounts(vec!["marketing"], false))?;
    let browser = setup.gateway.client()?;
    let callback = sign_in_at_provider(&setup, &browser, "dave", "dave-idp-password").await?;
    let refused = browser.get(&callback).await?;
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert!(
        refused.text().contains("(marketing) gives access here"),
        "{}",
        refused.text()
    );
    // And back in the group: in again, with the same account.
    setup
        .idp
        .set_accounts(&accounts(vec!["engineers"], false))?;
    let browser = setup.gateway.client()?;
    let callback = sign_in_at_provider(&setup, &browser, "dave", "dave-idp-password").await?;
    assert_eq!(browser.get(&callback).await?.status, 200);
    assert_eq!(target_id(&browser, "alpha").await?, alpha);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_signs_in_by_the_device_flow_and_opens_a_terminal() -> Result<()> {
    let setup = setup("sso4").await?;
    let user = ensure_test_user()?;
    let cli = sallyport_e2e::cli::Cli::new(&setup.gateway)?;
    let mut login = cli.spawn(&[
        "login",
        &cli.gateway_url,
        "--provider",
        IDP_NAME,
        "--device",
    ])?;
    login.exp_string("Trust this gateway")?;
    login.send_line("yes")?;
    login.exp_string("and confirm the code  ")?;
    login.exp_string("(or open ")?;
    let complete = login.exp_string(", which has the code in it)")?;
    let complete = complete.trim().to_owned();
    if !complete.starts_with(&setup.idp.issuer()) {
        bail!("the CLI shows {complete:?}, not a page of the provider");
    }
    confirm_device_code(&setup, &complete, "dave", "dave-idp-password", "sso_device").await?;
    let printed = tokio::task::spawn_blocking(move || {
        sallyport_e2e::cli::finished(login, "sallyport login --provider --device")
    })
    .await??;
    assert!(
        printed.contains("Logged in to") && printed.contains("as dave"),
        "{printed}"
    );
    let issued = audit_rows(&setup.admin, "cli_login").await?;
    assert!(
        issued
            .iter()
            .any(|r| r.contains("dave") && r.contains("provider TestIdP subject dave")),
        "{issued:?}"
    );

    // The certificate opens a recorded terminal like a password login's.
    let destination = format!("{}@alpha", user.name);
    tokio::task::spawn_blocking(move || cli.ssh_echo(&destination, &user.password, "device", 3))
        .await??;
    Ok(())
}

/// Completes a device sign-in at the provider's pages in Chromium: the code (already in `complete`)
/// confirmed, `login` signed in, the provider's success page reached.
async fn confirm_device_code(
    setup: &Setup,
    complete: &str,
    login: &str,
    password: &str,
    name: &str,
) -> Result<()> {
    let browser = Browser::start().await?;
    let driver = browser.client();
    let result = async {
        driver.goto(complete).await?;
        click(driver, "button[autofocus]").await?;
        sign_in_at_provider_page(driver, login, password).await?;
        wait_text(driver, "body", Duration::from_secs(20), |t| {
            t.contains("Sign-in Success")
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
            || setup.idp.log(),
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reviewer_signs_in_by_the_device_flow() -> Result<()> {
    use std::io::BufRead;
    let setup = setup("sso5").await?;
    let home = tempfile::tempdir()?;
    let fingerprint = setup
        .gateway
        .fingerprint()
        .context("the gateway printed no fingerprint")?;
    let url = format!("https://127.0.0.1:{}", setup.gateway.port());
    let mut review = std::process::Command::new(sallyport_e2e::tmux::review_bin()?)
        .args(["--verify", "--gateway", &url, "--fingerprint", &fingerprint])
        .args(["--provider", IDP_NAME, "--device"])
        .env("XDG_CONFIG_HOME", home.path().join("config"))
        .env("XDG_CACHE_HOME", home.path().join("cache"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let stderr = review.stderr.take().context("no stderr")?;
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut said = String::new();
    let complete = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = lines_rx.recv_timeout(left) else {
            let _ = review.kill();
            bail!("the reviewer showed no code within 20 s:\n{said}");
        };
        said.push_str(&line);
        said.push('\n');
        if let Some(rest) = line.strip_prefix("(or open ") {
            break rest
                .trim_end_matches(", which has the code in it)")
                .to_owned();
        }
    };
    confirm_device_code(&setup, &complete, "aud", "aud-idp-password", "sso_review").await?;
    let output = tokio::task::spawn_blocking(move || review.wait_with_output()).await??;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let rest: Vec<String> = lines_rx.try_iter().collect();
    assert!(
        output.status.success(),
        "the reviewer failed: {stdout}\n{said}{}",
        rest.join("\n")
    );
    assert!(stdout.contains("0 sessions failed"), "{stdout}");
    let logins = audit_rows(&setup.admin, "review_login").await?;
    assert!(
        logins
            .iter()
            .any(|r| r.contains("aud") && r.contains("provider TestIdP subject aud")),
        "{logins:?}"
    );
    Ok(())
}
