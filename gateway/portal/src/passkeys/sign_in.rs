//! Signing in with a passkey, as two JSON calls around the browser's `navigator.credentials.get`:
//! without a password for local accounts (a discoverable passkey names its account by the user handle
//! it was made with), and as the second factor of a login whose first factor passed (`crate::mfa`).
//!
//! A password-less sign-in's challenge is tied to the browser it was given to by a short-lived cookie,
//! and used once. Every refusal is audited with its reason and counts for the login throttle, under a
//! per-source name (the account is not known before the check) or, for a second factor, the user.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use sallyport_state::PasskeyRecord;
use webauthn_rs::prelude::{AuthenticationResult, Passkey, PublicKeyCredential, WebauthnResult};

use super::credential;
use crate::Portal;
use crate::api_error::ApiError;
use crate::auth::{cookie, expire_cookie, host_cookie, random_token, token_key};
use crate::html::Asset;
use crate::mfa;

/// The cookie that ties a password-less sign-in's challenge to its browser.
const CEREMONY_COOKIE: &str = "__Host-sallyport-passkey";

/// The login page's "Sign in with a passkey", when passkeys are on.
pub(crate) fn login_button(portal: &Portal) -> Markup {
    if !portal.passkeys.available() {
        return html! {};
    }
    html! {
        div.card.passkey {
            button type="button" id="passkey-login" data-passkey-sign-in
                data-options="/login/passkey/options" data-finish="/login/passkey" { "Sign in with a passkey" }
            p.error id="passkey-error" role="alert" hidden {}
        }
        (Asset::Script("passkeys.js"))
    }
}

/// The second step's "Use a passkey".
pub(crate) fn second_factor_button() -> Markup {
    html! {
        div.card.passkey {
            button type="button" id="passkey-second-factor" data-passkey-sign-in
                data-options="/login/mfa/passkey/options" data-finish="/login/mfa/passkey" { "Use a passkey" }
            p.error id="passkey-error" role="alert" hidden {}
        }
        (Asset::Script("passkeys.js"))
    }
}

/// The throttle's name for password-less sign-ins from one source.
fn throttle_name(client: SocketAddr) -> String {
    format!("passkey:{}", client.ip())
}

fn refused(status: StatusCode, message: impl Into<String>) -> ApiError {
    ApiError::new(status, "passkey_refused", message)
}

/// Checks an answer against the stored passkey `record` with `check` (the library's finish), and
/// stores the credential's new signature counter. The error is the reason, in words.
fn accept_assertion(
    portal: &Portal,
    record: &PasskeyRecord,
    check: impl FnOnce(&Passkey) -> WebauthnResult<AuthenticationResult>,
) -> Result<(), String> {
    let mut passkey = credential(record).ok_or("the stored passkey cannot be read")?;
    let result = check(&passkey).map_err(|error| {
        use webauthn_rs::prelude::WebauthnError;
        match error {
            WebauthnError::CredentialPossibleCompromise => {
                "its signature counter did not grow: the authenticator may have been cloned"
                    .to_owned()
            }
            WebauthnError::InvalidRPOrigin => {
                "its answer was made on another site (origin), not this portal".to_owned()
            }
            WebauthnError::InvalidRPIDHash => {
                "its answer was made for another relying party (RP ID)".to_owned()
            }
            WebauthnError::MismatchedChallenge => {
                "its answer is for another challenge (a replayed answer)".to_owned()
            }
            other => format!("its answer was not accepted ({other})"),
        }
    })?;
    passkey.update_credential(&result);
    let stored = serde_json::to_string(&passkey).map_err(|error| error.to_string())?;
    portal
        .broker
        .state()
        .passkey_used(record.id, &stored, sallyport_relay::now_ms())
        .map_err(|error| error.to_string())
}

/// `POST /login/passkey/options`: a challenge any of this portal's passkeys can answer.
pub async fn options(
    State(portal): State<Arc<Portal>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
) -> Result<Response, ApiError> {
    if let Some(wait) = portal.login_wait(client.ip(), &throttle_name(client)) {
        return Err(ApiError::throttled(wait));
    }
    let relying_party = portal
        .passkeys
        .relying_party()
        .map_err(|reason| refused(StatusCode::NOT_FOUND, reason))?;
    let (mut challenge, ceremony) = relying_party
        .start_discoverable_authentication()
        .map_err(|error| refused(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()))?;
    // A button press, not the browser's autofill prompt that the library's default asks for.
    challenge.mediation = None;
    let token = random_token().ok_or_else(|| {
        refused(
            StatusCode::INTERNAL_SERVER_ERROR,
            crate::pages::NO_RANDOMNESS,
        )
    })?;
    if !portal.passkeys.sign_ins.insert(token_key(&token), ceremony) {
        return Err(refused(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many passkey sign-ins in progress; try again shortly",
        ));
    }
    let cookie = host_cookie(CEREMONY_COOKIE, &token, "Strict", Some(super::CEREMONY_TTL));
    Ok(([(header::SET_COOKIE, cookie)], Json(challenge)).into_response())
}

/// `POST /login/passkey`: the browser's answer; a local account's login session when it holds.
pub async fn finish(
    State(portal): State<Arc<Portal>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Json(answer): Json<PublicKeyCredential>,
) -> Result<Response, ApiError> {
    let throttled = throttle_name(client);
    if let Some(wait) = portal.login_wait(client.ip(), &throttled) {
        return Err(ApiError::throttled(wait));
    }
    let refuse = |actor: Option<&str>, reason: String| {
        portal.audit_from("passkey_refused", actor, client, Some(reason.clone()));
        portal.record_login_failure(client, &throttled);
        refused(StatusCode::UNAUTHORIZED, reason)
    };
    let relying_party = portal
        .passkeys
        .relying_party()
        .map_err(|reason| refused(StatusCode::NOT_FOUND, reason))?;
    let ceremony = cookie(&headers, CEREMONY_COOKIE)
        .and_then(|token| portal.passkeys.sign_ins.take(&token_key(&token)));
    let Some(ceremony) = ceremony else {
        return Err(refuse(
            None,
            "no passkey sign-in was started in this browser (or it expired); try again".into(),
        ));
    };
    let (handle, credential_id) = relying_party
        .identify_discoverable_authentication(&answer)
        .map_err(|_| {
            refuse(
                None,
                "the passkey did not say which account it is for".into(),
            )
        })?;
    let state = portal.broker.state();
    let record = state
        .passkey_by_credential_id(credential_id)?
        .ok_or_else(|| refuse(None, "this passkey is not registered here".into()))?;
    let user = state
        .user(record.user_id)?
        .filter(|_| {
            state
                .user_by_passkey_handle(handle.as_bytes())
                .ok()
                .flatten()
                == Some(record.user_id)
        })
        .ok_or_else(|| refuse(None, "this passkey names another account".into()))?;
    let named = |reason: &str| format!("passkey {}: {reason}", record.name);
    if user.disabled {
        return Err(refuse(
            Some(&user.username),
            named("the account is disabled"),
        ));
    }
    if state.provider_account(user.id)?.is_some() {
        return Err(refuse(
            Some(&user.username),
            named(
                "this account signs in at its identity provider; its passkey is its second factor",
            ),
        ));
    }
    accept_assertion(&portal, &record, |passkey| {
        relying_party.finish_discoverable_authentication_v2(&answer, ceremony, passkey)
    })
    .map_err(|reason| refuse(Some(&user.username), named(&reason)))?;
    portal.login_succeeded(client.ip(), &throttled);
    let opened = mfa::open_session(
        &portal,
        user.authenticated(),
        user.must_change_password,
        client,
        format!("signed in with passkey {}", record.name),
    )
    .map_err(|_| {
        refused(
            StatusCode::INTERNAL_SERVER_ERROR,
            crate::pages::NO_RANDOMNESS,
        )
    })?;
    let mut response = opened.json();
    if let Ok(expire) = expire_cookie(CEREMONY_COOKIE, "Strict").parse() {
        response.headers_mut().append(header::SET_COOKIE, expire);
    }
    Ok(response)
}

/// The refusal when no login waits for its second factor in this browser.
fn no_pending_login() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "login_required",
        "the login expired or was not started here; log in again",
    )
}

/// `POST /login/mfa/passkey/options`: a challenge for the passkeys of the login waiting for its second
/// factor.
pub async fn second_factor_options(
    State(portal): State<Arc<Portal>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let relying_party = portal
        .passkeys
        .relying_party()
        .map_err(|reason| refused(StatusCode::NOT_FOUND, reason))?;
    let (user_id, allowed) = mfa::with_pending(&portal, &headers, false, |entry| {
        (entry.user.user_id(), entry.factors.passkey())
    })
    .ok_or_else(no_pending_login)?;
    if !allowed {
        return Err(refused(StatusCode::FORBIDDEN, "this login has no passkey"));
    }
    let passkeys: Vec<Passkey> = portal
        .broker
        .state()
        .passkeys(user_id)?
        .iter()
        .filter_map(credential)
        .collect();
    let (challenge, ceremony) = relying_party
        .start_passkey_authentication(&passkeys)
        .map_err(|error| refused(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()))?;
    mfa::with_pending(&portal, &headers, false, |entry| {
        entry.passkey_challenge = Some(ceremony);
    })
    .ok_or_else(no_pending_login)?;
    Ok(Json(challenge).into_response())
}

/// `POST /login/mfa/passkey`: the browser's answer; the login session when it holds.
pub async fn second_factor(
    State(portal): State<Arc<Portal>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Json(answer): Json<PublicKeyCredential>,
) -> Result<Response, ApiError> {
    let relying_party = portal
        .passkeys
        .relying_party()
        .map_err(|reason| refused(StatusCode::NOT_FOUND, reason))?;
    let (user, ceremony) = mfa::with_pending(&portal, &headers, true, |entry| {
        (entry.user.clone(), entry.passkey_challenge.take())
    })
    .ok_or_else(no_pending_login)?;
    let username = user.username();
    let refuse = |reason: String| {
        portal.audit_from("mfa_failed", Some(username), client, Some(reason.clone()));
        portal.record_login_failure(client, username);
        refused(StatusCode::UNAUTHORIZED, reason)
    };
    let Some(ceremony) = ceremony else {
        return Err(refuse(
            "no passkey challenge was asked for this login".into(),
        ));
    };
    let record = portal
        .broker
        .state()
        .passkey_by_credential_id(answer.get_credential_id())?
        .filter(|record| record.user_id == user.user_id())
        .ok_or_else(|| refuse("this passkey is not one of this account's".into()))?;
    accept_assertion(&portal, &record, |_| {
        relying_party.finish_passkey_authentication(&answer, &ceremony)
    })
    .map_err(|reason| refuse(format!("passkey {}: {reason}", record.name)))?;
    match mfa::complete(
        &portal,
        &headers,
        client,
        &format!("passkey {}", record.name),
    ) {
        Ok(opened) => Ok(opened.json()),
        Err(mfa::NotOpened::NoRandomness) => Err(refused(
            StatusCode::INTERNAL_SERVER_ERROR,
            crate::pages::NO_RANDOMNESS,
        )),
        Err(mfa::NotOpened::Gone) => Err(no_pending_login()),
    }
}
