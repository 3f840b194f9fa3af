//! Multi-factor login: the second step after a correct password for users with TOTP, enrollment with a
//! QR code and recovery codes, and the per-role requirement that sends users to enroll.
//!
//! Between the two steps the browser holds only a short-lived, single-purpose cookie; the login session
//! exists only once both factors passed. Wrong codes count as failed logins for the throttle.

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
use sallyport_state::{AuditEvent, UserRecord};
use serde::Deserialize;
use tracing::warn;

use crate::Portal;
use crate::auth::{CurrentUser, cookie, session_cookie, token_key as key};
use crate::html::components::{error, field};
use crate::html::{PageError, ShownTo, page};
use crate::pages::NO_RANDOMNESS;

/// The cookie that carries a login between its password and its code.
const PENDING_COOKIE: &str = "__Host-sallyport-mfa";
/// How long the second step may take.
const PENDING_TTL: Duration = Duration::from_secs(300);
/// Codes one pending login may try.
const PENDING_ATTEMPTS: u8 = 5;
/// Bound on pending logins and enrollments kept at once.
const MAX_PENDING: usize = 10_000;

struct Pending {
    user: Authenticated,
    /// How the first step signed in, in the audit's words (`password`, `provider NAME subject SUB`).
    first_factor: String,
    must_change_password: bool,
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

fn audit(portal: &Portal, kind: &str, username: &str, client: SocketAddr, detail: Option<String>) {
    portal.broker.audit(AuditEvent {
        kind: kind.into(),
        actor: Some(username.to_owned()),
        client_addr: Some(client.to_string()),
        detail,
        ..AuditEvent::default()
    });
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

/// Starts the login session (both factors done) and sends the user on.
fn start_session(
    portal: &Portal,
    user: Authenticated,
    must_change_password: bool,
    client: SocketAddr,
    detail: Option<String>,
) -> Response {
    let username = user.username().to_owned();
    let Ok(token) = portal.logins.create(user) else {
        return internal(NO_RANDOMNESS);
    };
    audit(portal, "login", &username, client, detail);
    let next = if must_change_password {
        "/password"
    } else {
        "/targets"
    };
    (
        [(header::SET_COOKIE, session_cookie(&token))],
        Redirect::to(next),
    )
        .into_response()
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
    match portal.broker.state().totp(user.id) {
        Ok(None) => start_session(
            portal,
            authenticated,
            user.must_change_password,
            client,
            Some(format!("signed in with {first_factor}")),
        ),
        Ok(Some(_)) => {
            let Some(bytes) = random::<32>() else {
                return internal(NO_RANDOMNESS);
            };
            let token = hex::encode(bytes);
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
            let cookie = format!(
                "{PENDING_COOKIE}={token}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={}",
                PENDING_TTL.as_secs()
            );
            ([(header::SET_COOKIE, cookie)], Redirect::to("/login/mfa")).into_response()
        }
        Err(error) => {
            warn!(%error, "could not read the user's MFA state");
            internal("the login could not be checked; try again")
        }
    }
}

fn code_page(problem: Option<&str>) -> Markup {
    page(
        "Second factor",
        None,
        html! {
            h1 { "Enter your code" }
            @if let Some(problem) = problem { (error(problem)) }
            form.card method="post" action="/login/mfa" {
                (field("The 6-digit code from your authenticator app, or a recovery code", html! {
                    input name="code" id="mfa-code" autocomplete="one-time-code" inputmode="text" required autofocus;
                }))
                button type="submit" id="verify-code" { "Continue" }
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
pub async fn code_form() -> Markup {
    code_page(None)
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
    let expired = || (StatusCode::UNAUTHORIZED, Redirect::to("/login")).into_response();
    let Some(token) = cookie(&headers, PENDING_COOKIE) else {
        return expired();
    };
    let (user, first_factor, must_change) = {
        let mut pending = lock(&portal.mfa.pending);
        let Some(entry) = pending.get_mut(&key(&token)) else {
            return expired();
        };
        if entry.created.elapsed() >= PENDING_TTL || entry.attempts >= PENDING_ATTEMPTS {
            pending.remove(&key(&token));
            return expired();
        }
        entry.attempts += 1;
        (
            entry.user.clone(),
            entry.first_factor.clone(),
            entry.must_change_password,
        )
    };
    let accepted = check_second_factor(&portal, user.user_id(), &form.code);
    match accepted {
        Some(method) => {
            lock(&portal.mfa.pending).remove(&key(&token));
            if method == "recovery code" {
                audit(&portal, "recovery_code_used", user.username(), client, None);
            }
            let mut response = start_session(
                &portal,
                user,
                must_change,
                client,
                Some(format!("signed in with {first_factor}, then {method}")),
            );
            if let Ok(expire) =
                format!("{PENDING_COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0")
                    .parse()
            {
                response.headers_mut().append(header::SET_COOKIE, expire);
            }
            response
        }
        None => {
            audit(&portal, "mfa_failed", user.username(), client, None);
            portal.record_login_failure(client, user.username());
            (
                StatusCode::UNAUTHORIZED,
                code_page(Some("That code is not valid.")),
            )
                .into_response()
        }
    }
}

/// The two-factor page of `user`, around `body`.
fn account(user: &CurrentUser, body: Markup) -> Markup {
    page("Two-factor authentication", Some(&user.user), body)
}

/// `GET /account/mfa`: enrollment (QR code and secret) or the current state.
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
        return Ok(account(
            &user,
            html! {
                h1 { "Two-factor authentication" }
                p id="mfa-status" {
                    "Your account uses an authenticator app. If you lose it, use a recovery code or ask an administrator to reset your MFA."
                }
            },
        ));
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
    Ok(account(
        &user,
        html! {
            h1 { "Set up two-factor authentication" }
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
    ))
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
    Ok(account(
        &user,
        html! {
            h1 { "Two-factor authentication is on" }
            p { "Keep these recovery codes somewhere safe. Each works once, instead of a code, if you lose your authenticator. They are shown only now." }
            ol id="recovery-codes" { @for code in &codes { li { code { (code) } } } }
            p { a href="/targets" id="continue" { "Continue" } }
        },
    )
    .into_response())
}
