//! The programs' browser sign-in (RFC 8252, loopback redirect), with the portal as the programs'
//! authorization server: whatever the browser signs in with here (a provider, a passkey, a password and
//! its second factor) ends, after the user confirms it, in a one-time code the browser carries back to
//! the program's own loopback port, and the program trades it with its verifier for the same
//! certificate (`sallyport login`) or review token (`sallyport-review --gateway`) a password login gets.
//!
//! - `GET /login/cli?port&state&challenge&purpose[&provider]` (opened by the program in the browser):
//!   keeps the request under a `__Host-sallyport-cli` cookie and goes on to the confirmation, by the
//!   login page (or the named provider's sign-in) when the browser is not signed in yet. Every
//!   sign-in lands on `/targets`, which sends a browser with such a request back here
//!   ([`resume_target`]).
//! - `GET /login/cli/confirm`, `POST /login/cli/confirm`: "Sign the program in as USER?"; yes makes the
//!   code (60 s, once) and sends the browser to `http://127.0.0.1:PORT/callback`; no sends it there
//!   with `error=denied`. Only 127.0.0.1 is ever a destination; it is a page that moves on by itself
//!   (`moving_on`), since the pages' `form-action 'self'` stops a form's redirect to another origin.
//! - `POST /api/cli/exchange` ([`BrowserExchangeRequest`], a JSON program route): the code and the
//!   verifier whose SHA-256 the request named; a wrong verifier burns the code.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Form;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use sallyport_core::sso::{BrowserExchangeRequest, DevicePurpose};
use serde::Deserialize;

use crate::Portal;
use crate::api_error::ApiError;
use crate::auth::{CurrentUser, cookie, expire_cookie, host_cookie, random_token, token_key};
use crate::ceremonies::Ceremonies;
use crate::cli_api::login_request;
use crate::html::{PageError, moving_on, page};
use crate::mfa::audit;

/// The cookie that carries a program's request through the browser's sign-in.
const REQUEST_COOKIE: &str = "__Host-sallyport-cli";
/// How long the browser may take to sign in and confirm.
const REQUEST_TTL: Duration = Duration::from_secs(600);
/// How long the program may take to trade its code.
const CODE_TTL: Duration = Duration::from_secs(60);

/// A program's request, as `GET /login/cli` received it.
#[derive(Debug, Clone, Deserialize)]
pub struct ProgramRequest {
    port: u16,
    state: String,
    challenge: String,
    purpose: DevicePurpose,
    #[serde(default)]
    provider: Option<String>,
}

impl ProgramRequest {
    /// Why the request cannot be taken, if it cannot: a port a program can bind, a state of up to 128
    /// hex digits, a challenge that is a SHA-256 in hex.
    fn problem(&self) -> Option<&'static str> {
        let hex = |s: &str| s.bytes().all(|b| b.is_ascii_hexdigit());
        if self.port < 1024 {
            Some("the program's port must be above 1023")
        } else if self.state.is_empty() || self.state.len() > 128 || !hex(&self.state) {
            Some("the program's state is not hex")
        } else if self.challenge.len() != 64 || !hex(&self.challenge) {
            Some("the program's challenge is not a SHA-256 in hex")
        } else {
            None
        }
    }

    fn what(&self) -> &'static str {
        match self.purpose {
            DevicePurpose::Cli => "the sallyport command-line client",
            DevicePurpose::Review => "sallyport-review",
        }
    }

    /// Where the browser goes back to, with `outcome` (`code=…` or `error=…`).
    fn callback(&self, outcome: &str) -> String {
        format!(
            "http://127.0.0.1:{}/callback?state={}&{outcome}",
            self.port, self.state
        )
    }
}

/// A confirmed sign-in waiting for its program.
struct Code {
    user_id: i64,
    challenge: String,
    purpose: DevicePurpose,
}

/// The programs' requests in progress and their codes.
pub(crate) struct BrowserSignIns {
    requests: Ceremonies<[u8; 32], ProgramRequest>,
    codes: Ceremonies<[u8; 32], Code>,
}

impl Default for BrowserSignIns {
    fn default() -> Self {
        BrowserSignIns {
            requests: Ceremonies::new(REQUEST_TTL),
            codes: Ceremonies::new(CODE_TTL),
        }
    }
}

/// The refusal when too many programs' sign-ins are in progress at once.
fn too_many() -> PageError {
    PageError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "too many sign-ins in progress; try again shortly",
    )
}

/// The program's request this browser carries, if it is still live.
fn live_request(portal: &Portal, headers: &HeaderMap) -> Option<ProgramRequest> {
    let token = cookie(headers, REQUEST_COOKIE)?;
    portal
        .browser_sign_ins
        .requests
        .peek(&token_key(&token), Clone::clone)
}

/// Where `/targets` sends a browser that signed in for a program: back to the confirmation.
pub(crate) fn resume_target(portal: &Portal, headers: &HeaderMap) -> Option<Redirect> {
    live_request(portal, headers).map(|_| Redirect::to("/login/cli/confirm"))
}

/// `GET /login/cli`.
pub async fn start(
    State(portal): State<Arc<Portal>>,
    Query(request): Query<ProgramRequest>,
) -> Result<Response, PageError> {
    if let Some(problem) = request.problem() {
        return Err(PageError::bad_request(problem).titled("Not a program's sign-in"));
    }
    let token = random_token().ok_or_else(|| PageError::internal(crate::pages::NO_RANDOMNESS))?;
    if !portal
        .browser_sign_ins
        .requests
        .insert(token_key(&token), request)
    {
        return Err(too_many());
    }
    let cookie = host_cookie(REQUEST_COOKIE, &token, "Strict", Some(REQUEST_TTL));
    Ok((
        [(header::SET_COOKIE, cookie)],
        Redirect::to("/login/cli/confirm"),
    )
        .into_response())
}

fn confirm_page(user: &CurrentUser, request: &ProgramRequest) -> Markup {
    page(
        "Sign a program in",
        Some(&user.user),
        html! {
            h1 { "Sign " (request.what()) " in?" }
            p id="program-sign-in" {
                "A program on this computer (listening on port " (request.port) ") asks to be signed in as "
                strong { (user.user.username()) } ". Confirm only if you just started it."
            }
            form.card method="post" action="/login/cli/confirm" {
                button type="submit" name="answer" value="yes" id="confirm-program" { "Sign it in" }
                " "
                button type="submit" name="answer" value="no" id="deny-program" { "Cancel" }
            }
        },
    )
}

/// `GET /login/cli/confirm`: the question, once the browser is signed in (else the sign-in first).
pub async fn confirm_form(
    State(portal): State<Arc<Portal>>,
    headers: HeaderMap,
    user: Result<CurrentUser, Response>,
) -> Result<Response, PageError> {
    let Some(request) = live_request(&portal, &headers) else {
        return Err(PageError::bad_request(
            "no program's sign-in is in progress in this browser (or it expired): start it again from the program",
        )
        .titled("Nothing to confirm"));
    };
    match user {
        Ok(user) => Ok(confirm_page(&user, &request).into_response()),
        Err(_) => Ok(match &request.provider {
            Some(provider) => Redirect::to(&format!("/login/sso/{provider}")).into_response(),
            None => Redirect::to("/login").into_response(),
        }),
    }
}

/// The confirmation's answer.
#[derive(Deserialize)]
pub struct Answer {
    answer: String,
}

/// `POST /login/cli/confirm`.
pub async fn confirm(
    State(portal): State<Arc<Portal>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    user: CurrentUser,
    Form(answer): Form<Answer>,
) -> Result<Response, PageError> {
    let request = cookie(&headers, REQUEST_COOKIE)
        .and_then(|token| portal.browser_sign_ins.requests.take(&token_key(&token)))
        .ok_or_else(|| {
            PageError::bad_request(
                "no program's sign-in is in progress in this browser (or it expired)",
            )
            .shown_to(&user)
        })?;
    let expire = expire_cookie(REQUEST_COOKIE, "Strict");
    let username = user.user.username();
    if answer.answer != "yes" {
        audit(
            &portal,
            "program_sign_in_denied",
            username,
            client,
            Some(request.what().into()),
        );
        let back = request.callback("error=denied");
        let answer = ([(header::SET_COOKIE, expire)], Redirect::to(&back)).into_response();
        return Ok(moving_on(answer, "Back to the program"));
    }
    let code = random_token()
        .ok_or_else(|| PageError::internal(crate::pages::NO_RANDOMNESS).shown_to(&user))?;
    let confirmed = Code {
        user_id: user.user.user_id(),
        challenge: request.challenge.clone(),
        purpose: request.purpose,
    };
    if !portal
        .browser_sign_ins
        .codes
        .insert(token_key(&code), confirmed)
    {
        return Err(too_many().shown_to(&user));
    }
    audit(
        &portal,
        "program_sign_in_confirmed",
        username,
        client,
        Some(format!(
            "{} on loopback port {}",
            request.what(),
            request.port
        )),
    );
    let back = request.callback(&format!("code={code}"));
    let answer = ([(header::SET_COOKIE, expire)], Redirect::to(&back)).into_response();
    Ok(moving_on(answer, "Back to the program"))
}

/// The throttle's name for code exchanges from one source.
fn throttle_name(client: SocketAddr) -> String {
    format!("browser-code:{}", client.ip())
}

/// `POST /api/cli/exchange`.
pub async fn exchange(
    State(portal): State<Arc<Portal>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let throttled = throttle_name(client);
    if let Some(wait) = portal.login_wait(client.ip(), &throttled) {
        return Err(ApiError::throttled(wait));
    }
    let request: BrowserExchangeRequest = login_request(&headers, &body)?;
    let refuse = |actor: Option<&str>, reason: &str| {
        portal.audit_from(
            "program_sign_in_refused",
            actor,
            client,
            Some(reason.to_owned()),
        );
        portal.record_login_failure(client, &throttled);
        ApiError::new(StatusCode::UNAUTHORIZED, "sign_in_refused", reason)
    };
    // Taken before it is checked: a code is tried once, whatever the answer.
    let Some(code) = portal
        .browser_sign_ins
        .codes
        .take(&token_key(&request.code))
    else {
        return Err(refuse(
            None,
            "the sign-in's code is unknown, used or expired; sign in again",
        ));
    };
    if sallyport_loopback::challenge_of(&request.verifier) != code.challenge {
        return Err(refuse(
            None,
            "the code was not traded by the program that asked for it",
        ));
    }
    let user = portal
        .broker
        .state()
        .user(code.user_id)?
        .filter(|user| !user.disabled)
        .ok_or_else(|| refuse(None, "the account is disabled or gone"))?;
    portal.login_succeeded(client.ip(), &throttled);
    let how = "a browser sign-in";
    let answer = match code.purpose {
        DevicePurpose::Cli => {
            let hex_key = request.public_key.as_deref().ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "no public key to certify",
                )
            })?;
            let key = crate::cli_api::parse_public_key(hex_key)?;
            serde_json::to_value(crate::cli_api::issue_certificate(
                &portal, user, key, client, how,
            )?)
        }
        DevicePurpose::Review => {
            serde_json::to_value(crate::review_api::start_review(&portal, user, client, how)?)
        }
    };
    Ok(axum::Json(answer.unwrap_or_default()).into_response())
}
