//! Multi-factor login: the second step after a first factor (a password, an identity provider) for
//! users with TOTP or passkeys, TOTP enrollment with a QR code and recovery codes, and the per-role
//! requirements (`crate::second_factors`) that send users to enroll and that can demand a passkey.
//!
//! Between the two steps the browser holds only a short-lived, single-purpose cookie; the login session
//! exists only once both factors passed. Wrong codes and refused passkeys count as failed logins for the
//! throttle. The passkey ceremony itself is `crate::passkeys::sign_in`'s.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Form;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, PreEscaped, html};
use sallyport_core::mfa;
use sallyport_core::policy::Authenticated;
use sallyport_state::UserRecord;
use serde::Deserialize;
use tracing::warn;

use crate::Portal;
use crate::auth::{
    CurrentUser, cookie, expire_cookie, host_cookie, random_token, session_cookie, token_key as key,
};
use crate::html::components::{error, field};
use crate::html::{PageError, ShownTo, page};
use crate::pages::NO_RANDOMNESS;
pub(crate) use crate::second_factors::SecondFactors;

/// The cookie that carries a login between its password and its code.
const PENDING_COOKIE: &str = "__Host-sallyport-mfa";
/// How long the second step may take.
const PENDING_TTL: Duration = Duration::from_secs(300);
/// Codes one pending login may try.
const PENDING_ATTEMPTS: u8 = 5;
/// Bound on pending logins and enrollments kept at once.
const MAX_PENDING: usize = 10_000;

/// A login between its first factor and its second.
pub(crate) struct Pending {
    pub(crate) user: Authenticated,
    /// How the first step signed in, in the audit's words (`password`, `provider NAME subject SUB`).
    first_factor: String,
    must_change_password: bool,
    /// Which second factors complete this login.
    pub(crate) factors: SecondFactors,
    /// The passkey challenge this login was given, until it is answered.
    pub(crate) passkey_challenge: Option<webauthn_rs::prelude::PasskeyAuthentication>,
    created: Instant,
    attempts: u8,
}

/// Logins waiting for their second factor, and enrollments waiting for their first code.
#[derive(Default)]
pub struct MfaState {
    pending: Mutex<HashMap<[u8; 32], Pending>>,
    enrollments: Mutex<HashMap<i64, ([u8; mfa::SECRET_LEN], Instant)>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn random<const N: usize>() -> Option<[u8; N]> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).ok()?;
    Some(bytes)
}

/// Audits `kind` by `username` from `client`.
pub(crate) fn audit(
    portal: &Portal,
    kind: &str,
    username: &str,
    client: SocketAddr,
    detail: Option<String>,
) {
    portal.audit_from(kind, Some(username), client, detail);
}

fn internal(message: &str) -> Response {
    PageError::internal(message).into_response()
}

/// The refusal when too many logins or enrollments wait at once (the bound on what is kept).
fn too_many(what: &str) -> PageError {
    PageError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("too many {what} in progress; try again shortly"),
    )
}

/// A login session just made: the cookies to set and the page to go to.
pub(crate) struct Opened {
    cookies: Vec<String>,
    next: &'static str,
}

impl Opened {
    /// The answer of a form: a redirect.
    pub(crate) fn redirect(self) -> Response {
        self.with(Redirect::to(self.next).into_response())
    }

    /// The answer of a script (the passkey ceremonies): `{"next": PAGE}`.
    pub(crate) fn json(self) -> Response {
        self.with(axum::Json(serde_json::json!({ "next": self.next })).into_response())
    }

    fn with(&self, mut response: Response) -> Response {
        for cookie in &self.cookies {
            if let Ok(value) = cookie.parse() {
                response.headers_mut().append(header::SET_COOKIE, value);
            }
        }
        response
    }
}

/// Why no login session was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NotOpened {
    /// No login waits for its second factor in this browser (it expired, or a race completed it).
    Gone,
    /// The system gave no randomness for the session's token.
    NoRandomness,
}

/// Starts the login session (both factors done), audited as `detail`.
pub(crate) fn open_session(
    portal: &Portal,
    user: Authenticated,
    must_change_password: bool,
    client: SocketAddr,
    detail: String,
) -> Result<Opened, NotOpened> {
    let username = user.username().to_owned();
    let Ok(token) = portal.logins.create(user) else {
        return Err(NotOpened::NoRandomness);
    };
    audit(portal, "login", &username, client, Some(detail));
    Ok(Opened {
        cookies: vec![session_cookie(&token)],
        next: if must_change_password {
            "/password"
        } else {
            "/targets"
        },
    })
}

/// Called when a first factor passed (a password, an identity provider's sign-in), `first_factor` saying
/// which in the audit's words: straight in, or on to the code for users with TOTP. Every sign-in's audit
/// event names both steps.
pub fn first_factor_accepted(
    portal: &Portal,
    user: UserRecord,
    client: SocketAddr,
    first_factor: &str,
) -> Response {
    let authenticated = user.authenticated();
    let factors = match SecondFactors::of(portal, user.id, user.role) {
        Ok(factors) => factors,
        Err(error) => {
            warn!(%error, "could not read the user's MFA state");
            return internal("the login could not be checked; try again");
        }
    };
    if !factors.needed() {
        return open_session(
            portal,
            authenticated,
            user.must_change_password,
            client,
            format!("signed in with {first_factor}"),
        )
        .map_or_else(|_| internal(NO_RANDOMNESS), Opened::redirect);
    }
    let Some(token) = random_token() else {
        return internal(NO_RANDOMNESS);
    };
    let mut pending = lock(&portal.mfa.pending);
    pending.retain(|_, p| p.created.elapsed() < PENDING_TTL);
    if pending.len() >= MAX_PENDING {
        return too_many("logins").into_response();
    }
    pending.insert(
        key(&token),
        Pending {
            user: authenticated,
            first_factor: first_factor.to_owned(),
            must_change_password: user.must_change_password,
            factors,
            passkey_challenge: None,
            created: Instant::now(),
            attempts: 0,
        },
    );
    drop(pending);
    audit(
        portal,
        "login_password_ok",
        &user.username,
        client,
        Some(format!(
            "{first_factor} accepted; waiting for the second factor"
        )),
    );
    let cookie = host_cookie(PENDING_COOKIE, &token, "Strict", Some(PENDING_TTL));
    ([(header::SET_COOKIE, cookie)], Redirect::to("/login/mfa")).into_response()
}

/// The pending login the request's cookie names, while it may still try, for `f` to read or change;
/// an answer (a code, a passkey's signature) counts as one try.
pub(crate) fn with_pending<R>(
    portal: &Portal,
    headers: &HeaderMap,
    answer: bool,
    f: impl FnOnce(&mut Pending) -> R,
) -> Option<R> {
    let token = cookie(headers, PENDING_COOKIE)?;
    let mut pending = lock(&portal.mfa.pending);
    let entry = pending.get_mut(&key(&token))?;
    if entry.created.elapsed() >= PENDING_TTL || entry.attempts >= PENDING_ATTEMPTS {
        pending.remove(&key(&token));
        return None;
    }
    entry.attempts += u8::from(answer);
    Some(f(entry))
}

/// Ends the pending login with its second factor `second` (in the audit's words): the session starts
/// and the pending cookie goes.
pub(crate) fn complete(
    portal: &Portal,
    headers: &HeaderMap,
    client: SocketAddr,
    second: &str,
) -> Result<Opened, NotOpened> {
    let entry = cookie(headers, PENDING_COOKIE)
        .and_then(|token| lock(&portal.mfa.pending).remove(&key(&token)))
        .ok_or(NotOpened::Gone)?;
    let mut opened = open_session(
        portal,
        entry.user,
        entry.must_change_password,
        client,
        format!("signed in with {}, then {second}", entry.first_factor),
    )?;
    opened.cookies.push(expire_cookie(PENDING_COOKIE, "Strict"));
    Ok(opened)
}

/// The second step's page: a passkey button, the code form, or both, as the login's factors allow.
fn code_page(factors: SecondFactors, problem: Option<&str>) -> Markup {
    page(
        "Second factor",
        None,
        html! {
            h1 { "Second factor" }
            @if let Some(problem) = problem { (error(problem)) }
            @if factors.passkey() {
                (crate::passkeys::sign_in::second_factor_button())
            }
            @if factors.totp() {
                form.card method="post" action="/login/mfa" {
                    (field("The 6-digit code from your authenticator app, or a recovery code", html! {
                        input name="code" id="mfa-code" autocomplete="one-time-code" inputmode="text" required autofocus[!factors.passkey()];
                    }))
                    button type="submit" id="verify-code" { "Continue" }
                }
            }
        },
    )
}

/// Checks a TOTP code (once per time step) or a recovery code (once) for a user with TOTP; says
/// which one it was.
pub(crate) fn check_second_factor(
    portal: &Portal,
    user_id: i64,
    code: &str,
) -> Option<&'static str> {
    let state = portal.broker.state();
    match state.totp(user_id) {
        Ok(Some(totp)) => match mfa::verify(&totp.secret, code, unix_seconds(), totp.last_step) {
            Some(step) => state
                .accept_totp_step(user_id, step)
                .unwrap_or(false)
                .then_some("totp"),
            None => state
                .use_recovery_code(user_id, &mfa::normalize_recovery_code(code))
                .unwrap_or(false)
                .then_some("recovery code"),
        },
        _ => None,
    }
}

/// `GET /login/mfa`.
pub async fn code_form(State(portal): State<Arc<Portal>>, headers: HeaderMap) -> Response {
    match with_pending(&portal, &headers, false, |entry| entry.factors) {
        Some(factors) => code_page(factors, None).into_response(),
        None => Redirect::to("/login").into_response(),
    }
}

/// The code form.
#[derive(Deserialize)]
pub struct CodeForm {
    code: String,
}

/// `POST /login/mfa`.
pub async fn verify_code(
    State(portal): State<Arc<Portal>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<CodeForm>,
) -> Response {
    let Some((user, factors)) = with_pending(&portal, &headers, true, |entry| {
        (entry.user.clone(), entry.factors)
    }) else {
        return (StatusCode::UNAUTHORIZED, Redirect::to("/login")).into_response();
    };
    let accepted = factors
        .totp()
        .then(|| check_second_factor(&portal, user.user_id(), &form.code))
        .flatten();
    let Some(method) = accepted else {
        let problem = if factors.totp() {
            "That code is not valid."
        } else {
            "Your role must sign in with a passkey."
        };
        audit(&portal, "mfa_failed", user.username(), client, None);
        portal.record_login_failure(client, user.username());
        return (StatusCode::UNAUTHORIZED, code_page(factors, Some(problem))).into_response();
    };
    if method == "recovery code" {
        audit(&portal, "recovery_code_used", user.username(), client, None);
    }
    match complete(&portal, &headers, client, method) {
        Ok(opened) => opened.redirect(),
        Err(NotOpened::NoRandomness) => internal(NO_RANDOMNESS),
        Err(NotOpened::Gone) => (StatusCode::UNAUTHORIZED, Redirect::to("/login")).into_response(),
    }
}

/// The security page of `user`: what their role still needs, the authenticator app's part (`totp`),
/// and their passkeys.
fn account(portal: &Portal, user: &CurrentUser, totp: Markup) -> Result<Markup, PageError> {
    let factors =
        SecondFactors::of(portal, user.user.user_id(), user.user.role()).shown_to(user)?;
    let passkeys = crate::passkeys::account::section(portal, user)?;
    Ok(page(
        "Security",
        Some(&user.user),
        html! {
            h1 { "Security" }
            @if let Some(missing) = factors.missing() { p.notice id="security-required" { (missing) } }
            section aria-labelledby="totp-heading" {
                h2 id="totp-heading" { "Authenticator app" }
                (totp)
            }
            (passkeys)
        },
    ))
}

/// `GET /account/mfa`: the security page, with TOTP enrollment (QR code and secret) or its state.
pub async fn account_page(
    State(portal): State<Arc<Portal>>,
    user: CurrentUser,
) -> Result<Markup, PageError> {
    let enrolled = portal
        .broker
        .state()
        .totp(user.user.user_id())
        .shown_to(&user)?
        .is_some();
    if enrolled {
        return account(
            &portal,
            &user,
            html! {
                p id="mfa-status" {
                    "Your account uses an authenticator app. If you lose it, use a recovery code or ask an administrator to reset your MFA."
                }
            },
        );
    }
    let failed = |what: &str| PageError::internal(what).shown_to(&user);
    let secret = random::<{ mfa::SECRET_LEN }>().ok_or_else(|| failed(NO_RANDOMNESS))?;
    {
        let mut enrollments = lock(&portal.mfa.enrollments);
        enrollments.retain(|_, (_, created)| created.elapsed() < PENDING_TTL);
        if enrollments.len() >= MAX_PENDING {
            return Err(too_many("enrollments").shown_to(&user));
        }
        enrollments.insert(user.user.user_id(), (secret, Instant::now()));
    }
    let url = mfa::enrollment_url(&secret, user.user.username())
        .ok_or_else(|| failed("could not make the enrollment link"))?;
    let qr = qrcode::QrCode::new(url.as_bytes())
        .map_err(|_| failed("could not draw the QR code"))?
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(220, 220)
        .build();
    // The SVG is the QR code crate's drawing of our own URL (no user text reaches it unescaped: the
    // username in the URL is percent-encoded), without its XML declaration.
    let svg = qr.split_once("?>").map_or(qr.as_str(), |(_, svg)| svg);
    account(
        &portal,
        &user,
        html! {
            p { "Scan this code with an authenticator app (or type the secret), then enter the 6-digit code it shows." }
            div id="qr" role="img" aria-label="QR code of the enrollment link" { (PreEscaped(svg)) }
            p { "Secret: " code id="totp-secret" { (mfa::secret_base32(&secret)) } }
            form.card method="post" action="/account/mfa" {
                (field("Code", html! {
                    input name="code" id="totp-code" autocomplete="one-time-code" required;
                }))
                button type="submit" id="enable-mfa" { "Turn on" }
            }
        },
    )
}

/// `POST /account/mfa`: confirms enrollment with a first code and shows the recovery codes once.
pub async fn enroll(
    State(portal): State<Arc<Portal>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    user: CurrentUser,
    Form(form): Form<CodeForm>,
) -> Result<Response, PageError> {
    let Some((secret, _)) = lock(&portal.mfa.enrollments)
        .get(&user.user.user_id())
        .copied()
    else {
        return Ok(Redirect::to("/account/mfa").into_response());
    };
    let Some(step) = mfa::verify(&secret, &form.code, unix_seconds(), None) else {
        return Err(PageError::bad_request(
            "That code does not match. Scan the QR code again and use the newest code.",
        )
        .titled("Not turned on")
        .link("/account/mfa", "Try again")
        .shown_to(&user));
    };
    let failed = |what: &str| PageError::internal(what).shown_to(&user);
    let mut codes = Vec::with_capacity(10);
    for _ in 0..10 {
        let bytes = random::<10>().ok_or_else(|| failed(NO_RANDOMNESS))?;
        codes.push(mfa::recovery_code(&bytes));
    }
    let normalized: Vec<String> = codes
        .iter()
        .map(|c| mfa::normalize_recovery_code(c))
        .collect();
    if let Err(error) =
        portal
            .broker
            .state()
            .enable_totp(user.user.user_id(), &secret, step, &normalized)
    {
        warn!(%error, "could not store the TOTP secret");
        return Err(failed("two-factor authentication could not be turned on"));
    }
    lock(&portal.mfa.enrollments).remove(&user.user.user_id());
    audit(&portal, "mfa_enrolled", user.user.username(), client, None);
    Ok(page(
        "Security",
        Some(&user.user),
        html! {
            h1 { "Two-factor authentication is on" }
            p { "Keep these recovery codes somewhere safe. Each works once, instead of a code, if you lose your authenticator. They are shown only now." }
            ol id="recovery-codes" { @for code in &codes { li { code { (code) } } } }
            p { a href="/targets" id="continue" { "Continue" } }
        },
    )
    .into_response())
}
