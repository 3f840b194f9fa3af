//! How the reviewer signs in to a gateway's review API, ending in a review token: the portal password
//! (and its second factor), the browser sign-in (RFC 8252 through the gateway's `/login/cli`, any way the
//! portal's login page offers, passkeys included), or the device flow at an identity provider (RFC 8628).
//! The gateway's messages are spoken as JSON here: the reviewer does not depend on the gateway's core.

use std::time::Duration;

use anyhow::{Context, bail};
use sallyport_loopback::LoopbackSignIn;
use sallyport_recordings::remote::{ReviewLoginRequest, ReviewLoginResponse};

use super::{GatewayAddr, Options, PASSWORD_ENV, Refused, answer, ask_line};

/// Signs in the way `options` asks: `--browser`, or `--provider` in the browser where one can be
/// opened (else, or with `--device`, by the device flow), or the password.
pub(super) fn sign_in(
    agent: &ureq::Agent,
    addr: &GatewayAddr,
    options: &Options,
) -> anyhow::Result<ReviewLoginResponse> {
    let provider = options.provider.as_deref();
    let browser_first = options.browser || (provider.is_some() && !options.device);
    if browser_first
        && let Some(response) = browser_sign_in(agent, addr, provider, options.browser)?
    {
        return Ok(response);
    }
    match provider {
        Some(provider) => device_sign_in(agent, addr, provider),
        None => password_login(agent, addr, options.user.as_deref()),
    }
}

/// Signs in in the browser: opens the gateway's `/login/cli` for a loopback port of this program, waits
/// for the browser to come back with the code, and trades it for the review token. `None` when no
/// browser could be opened and another way may be tried; with `must`, the page is printed to be opened
/// by hand instead.
fn browser_sign_in(
    agent: &ureq::Agent,
    addr: &GatewayAddr,
    provider: Option<&str>,
    must: bool,
) -> anyhow::Result<Option<ReviewLoginResponse>> {
    let sign_in = LoopbackSignIn::bind().context("listening on a loopback port for the browser")?;
    let base = url::Url::parse(&addr.base()).context("the gateway's address")?;
    let url = sign_in.authorize_url(&base, "review", provider)?;
    if !sallyport_loopback::offer(&url, must) {
        return Ok(None);
    }
    let callback = sign_in.wait(sallyport_loopback::BROWSER_WAIT)?;
    let exchange =
        serde_json::json!({ "code": callback.code, "verifier": callback.verifier }).to_string();
    answer(
        agent
            .post(&format!("{}/api/cli/exchange", addr.base()))
            .set("Content-Type", "application/json")
            .send_string(&exchange),
        "the sign-in",
    )
    .map(Some)
}

/// Logs in with the portal password: the username given or asked, the password from [`PASSWORD_ENV`] or
/// asked without echo, then the second factor when the account has one.
fn password_login(
    agent: &ureq::Agent,
    addr: &GatewayAddr,
    user: Option<&str>,
) -> anyhow::Result<ReviewLoginResponse> {
    let username = match user {
        Some(user) => user.to_owned(),
        None => ask_line(&format!("username on {}: ", addr.name()))?,
    };
    let password = match std::env::var(PASSWORD_ENV) {
        Ok(password) if !password.is_empty() => password,
        _ => rpassword::prompt_password(format!("password for {username}: "))
            .context("reading the password")?,
    };
    let login = |code: Option<String>| -> anyhow::Result<ReviewLoginResponse> {
        let body = serde_json::to_string(&ReviewLoginRequest {
            username: username.clone(),
            password: password.clone(),
            code,
        })?;
        answer(
            agent
                .post(&format!("{}/api/review/login", addr.base()))
                .set("Content-Type", "application/json")
                .send_string(&body),
            "the login",
        )
    };
    match login(None) {
        Err(e)
            if e.downcast_ref::<Refused>()
                .is_some_and(|r| r.kind == "code_required") =>
        {
            let code = ask_line("code from your authenticator app (or a recovery code): ")?;
            login(Some(code))
        }
        other => other,
    }
}

/// Signs in at the gateway's identity provider by the device flow: the gateway starts it, the user
/// confirms the code at the provider's page, and the gateway's answer to the polls is the review token.
fn device_sign_in(
    agent: &ureq::Agent,
    addr: &GatewayAddr,
    provider: &str,
) -> anyhow::Result<ReviewLoginResponse> {
    // The messages of the portal's `sallyport_core::sso`, as JSON (the reviewer does not depend on the
    // gateway's core).
    let start = serde_json::json!({ "provider": provider, "purpose": "review" }).to_string();
    let started: serde_json::Value = answer(
        agent
            .post(&format!("{}/api/sso/device", addr.base()))
            .set("Content-Type", "application/json")
            .send_string(&start),
        "the sign-in",
    )?;
    let field = |name: &str| started.get(name).and_then(|v| v.as_str());
    let (Some(device_id), Some(uri), Some(code)) = (
        field("device_id"),
        field("verification_uri"),
        field("user_code"),
    ) else {
        bail!("the gateway's answer to the sign-in is not what was expected");
    };
    eprintln!("To sign in with {provider}, open\n  {uri}\nand confirm the code  {code}");
    if let Some(complete) = field("verification_uri_complete") {
        eprintln!("(or open {complete}, which has the code in it)");
    }
    let expires_in_secs = started
        .get("expires_in_secs")
        .and_then(|v| v.as_u64())
        .unwrap_or(600);
    let poll = serde_json::json!({ "device_id": device_id }).to_string();
    // Each poll waits up to 20 s at the gateway; the code's lifetime bounds the loop.
    let deadline = std::time::Instant::now() + Duration::from_secs(expires_in_secs + 30);
    while std::time::Instant::now() < deadline {
        let answered: serde_json::Value = answer(
            agent
                .post(&format!("{}/api/sso/device/poll", addr.base()))
                .set("Content-Type", "application/json")
                .send_string(&poll),
            "the sign-in",
        )?;
        if answered.get("status").and_then(|s| s.as_str()) == Some("pending") {
            continue;
        }
        return serde_json::from_value(answered)
            .context("the gateway's answer to the sign-in is not what was expected");
    }
    bail!("the code was not confirmed in time; sign in again")
}
