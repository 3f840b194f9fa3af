//! `POST /api/cli/login`: the `sallyport` CLI trades the portal credentials (and the TOTP or recovery
//! code, for users with one) for a short-lived client certificate from the user CA, bound to the
//! CLI's Ed25519 public key. The QUIC endpoint accepts only such certificates.
//!
//! The same rules as the browser login apply: the login throttle first, argon2id without user
//! enumeration, wrong codes counted as failed logins, one-time passwords and missing MFA enrollment
//! sent to the browser. The request must be JSON (`Content-Type: application/json`), which a page on
//! another site cannot send without a CORS preflight this portal never answers; a browser's foreign
//! Origin is refused outright (by the Origin layer, which names this route among its exemptions from
//! needing an Origin at all). Answers are JSON: [`CliLoginResponse`] or an [`ApiError`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sallyport_core::quic::{CliLoginRequest, CliLoginResponse};
use sallyport_state::{AuditEvent, ClientCertRecord, LoginOutcome};
use serde::de::DeserializeOwned;
use tracing::warn;

use crate::Portal;
use crate::api_error::ApiError;
use crate::refusal::{LOGIN_UNCHECKED, Refusal};

/// `POST /api/cli/login`.
pub async fn login(
    State(portal): State<Arc<Portal>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    if portal.user_ca.is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "cli_disabled",
            "the command-line client is not enabled on this gateway",
        ));
    }
    let request: CliLoginRequest = login_request(&headers, &body)?;
    let public_key = parse_public_key(&request.public_key)?;
    let (user, method) =
        check_credentials(&portal, client, &request, "command-line client").await?;
    let how = format!("password, second factor: {method}");
    Ok(axum::Json(issue_certificate(&portal, user, public_key, client, &how)?).into_response())
}

/// The CLI's Ed25519 public key from its hex form.
pub(crate) fn parse_public_key(hex_key: &str) -> Result<[u8; 32], ApiError> {
    hex::decode(hex_key)
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "the public key must be 32 bytes of Ed25519, in hex",
            )
        })
}

/// Issues and records a client certificate for `public_key` to a user who just signed in (`how`, in
/// the audit's words: the password and second factor, or the provider), and audits it.
pub(crate) fn issue_certificate(
    portal: &Portal,
    user: sallyport_state::UserRecord,
    public_key: [u8; 32],
    client: SocketAddr,
    how: &str,
) -> Result<CliLoginResponse, ApiError> {
    let Some(ca) = portal.user_ca.clone() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "cli_disabled",
            "the command-line client is not enabled on this gateway",
        ));
    };
    let state = portal.broker.state();
    let now = SystemTime::now();
    let issued = match ca.issue(
        &user.username,
        public_key,
        now,
        portal.config.cli_certificate_lifetime,
    ) {
        Ok(issued) => issued,
        Err(e) => {
            warn!(error = %e, "could not issue a client certificate");
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the certificate could not be issued",
            ));
        }
    };
    let record = ClientCertRecord {
        fingerprint: issued.fingerprint.clone(),
        user_id: user.id,
        issued_at_ms: sallyport_relay::now_ms(),
        expires_at_ms: issued.expires_at_ms,
        revoked_at_ms: None,
    };
    if let Err(e) = state.add_client_cert(&record) {
        warn!(error = %e, "could not record a client certificate");
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the certificate could not be recorded",
        ));
    }
    portal.broker.audit(AuditEvent {
        kind: "cli_login".into(),
        actor: Some(user.username.clone()),
        client_addr: Some(client.to_string()),
        detail: Some(format!(
            "certificate {} issued ({how}), expires at {} ms",
            &issued.fingerprint[..16],
            issued.expires_at_ms
        )),
        ..AuditEvent::default()
    });
    Ok(CliLoginResponse {
        username: user.username,
        certificate: issued.pem,
        expires_at_ms: issued.expires_at_ms,
    })
}

/// The browser login's rules for a program's login (the CLI's, the reviewer's): the throttle first, argon2id
/// without user enumeration, one-time passwords sent to the browser, then the TOTP or a recovery code for
/// accounts that have one (wrong codes count as failed logins) and the MFA requirement of the user's role.
/// Failures are audited with `via` as their detail; a success makes the throttle forget the source's failures.
/// Returns the user and the second factor used.
pub(crate) async fn check_credentials(
    portal: &Portal,
    client: SocketAddr,
    request: &impl Credentials,
    via: &str,
) -> Result<(sallyport_state::UserRecord, &'static str), ApiError> {
    let (username, password, code) = request.credentials();
    let found = verify_credentials(portal, client, username, password, code, via).await?;
    portal.login_succeeded(client.ip(), username);
    Ok(found)
}

/// The credentials a program's login request carries: username, password and the second factor's code.
pub(crate) trait Credentials {
    fn credentials(&self) -> (&str, &str, Option<&str>);
}

impl Credentials for CliLoginRequest {
    fn credentials(&self) -> (&str, &str, Option<&str>) {
        (&self.username, &self.password, self.code.as_deref())
    }
}

/// The checks of [`check_credentials`].
async fn verify_credentials(
    portal: &Portal,
    client: SocketAddr,
    username: &str,
    password: &str,
    code: Option<&str>,
    via: &str,
) -> Result<(sallyport_state::UserRecord, &'static str), ApiError> {
    if let Some(wait) = portal.login_wait(client.ip(), username) {
        return Err(ApiError::throttled(wait));
    }
    let audit = |kind: &str| {
        portal.broker.audit(AuditEvent {
            kind: kind.into(),
            actor: Some(username.to_owned()),
            client_addr: Some(client.to_string()),
            detail: Some(via.to_owned()),
            ..AuditEvent::default()
        })
    };
    let state = portal.broker.state().clone();
    let (name, secret) = (username.to_owned(), password.to_owned());
    let outcome = tokio::task::spawn_blocking(move || state.verify_login(&name, &secret)).await;
    let user = match outcome {
        Ok(Ok(LoginOutcome::Success(user))) => user,
        Ok(Ok(LoginOutcome::Failure)) => {
            audit("login_failed");
            portal.record_login_failure(client, username);
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "bad_credentials",
                "wrong username or password",
            ));
        }
        Ok(Err(error)) => return Err(Refusal::state(error, LOGIN_UNCHECKED).into()),
        Err(error) => {
            warn!(%error, "api login task failed");
            return Err(Refusal::internal(LOGIN_UNCHECKED).into());
        }
    };
    if let Err(reason) = portal.password_sign_in_allowed(&user) {
        audit("login_refused");
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "password_sign_in_off",
            reason,
        ));
    }
    if user.must_change_password {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "password_change_required",
            "your password is a one-time password: log in once in the browser and choose a new one",
        ));
    }
    let factors = crate::mfa::SecondFactors::of(portal, user.id, user.role)
        .map_err(|error| ApiError::from(Refusal::state(error, LOGIN_UNCHECKED)))?;
    if factors.missing().is_some() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "mfa_enrollment_required",
            "your role must use two-factor authentication or a passkey: set it up in the browser first",
        ));
    }
    let method = if factors.totp() {
        match code.map(str::trim) {
            None | Some("") => {
                return Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "code_required",
                    "enter the code from your authenticator app (or a recovery code)",
                ));
            }
            Some(code) => match crate::mfa::check_second_factor(portal, user.id, code) {
                Some(method) => method,
                None => {
                    audit("mfa_failed");
                    portal.record_login_failure(client, username);
                    return Err(ApiError::new(
                        StatusCode::UNAUTHORIZED,
                        "bad_code",
                        "that code is not valid",
                    ));
                }
            },
        }
    } else if factors.passkey() {
        // A password alone must not stand in for a passkey the program cannot ask for.
        audit("login_refused");
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "passkey_required",
            "your account's second factor is a passkey, which a password login here cannot ask for: sign in with --browser (the portal's login page, passkeys included), or add an authenticator app on the security page",
        ));
    } else {
        "password"
    };
    Ok((user, method))
}

/// The JSON login request of a program (the CLI, the reviewer), unless it must be refused (a foreign Origin
/// was refused by the Origin layer already): a body that is not `application/json` (which no page can send cross-site without a CORS preflight this portal
/// never answers), or one that does not parse.
pub(crate) fn login_request<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<T, ApiError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim() == "application/json")
        });
    if !is_json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "bad_request",
            "the login must be sent as application/json",
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("the login request is malformed: {e}"),
        )
    })
}
