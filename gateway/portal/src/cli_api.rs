//! `POST /api/cli/login`: the `sallyport` CLI trades the portal credentials (and the TOTP or recovery
//! code, for users with one) for a short-lived client certificate from the user CA, bound to the
//! CLI's Ed25519 public key. The QUIC endpoint accepts only such certificates.
//!
//! The same rules as the browser login apply: the login throttle first, argon2id without user
//! enumeration, wrong codes counted as failed logins, one-time passwords and missing MFA enrollment
//! sent to the browser. The request must be JSON (`Content-Type: application/json`), which a page on
//! another site cannot send without a CORS preflight this portal never answers; a browser's foreign
//! Origin is refused outright. Answers are JSON: [`CliLoginResponse`] or [`CliError`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sallyport_core::quic::{CliError, CliLoginRequest, CliLoginResponse};
use sallyport_state::{AuditEvent, ClientCertRecord, LoginOutcome};
use tracing::warn;

use crate::Portal;
use crate::auth::same_origin;

fn error(status: StatusCode, kind: &str, message: &str) -> Response {
    let body = CliError {
        error: kind.to_owned(),
        message: message.to_owned(),
    };
    (status, axum::Json(body)).into_response()
}

/// `POST /api/cli/login`.
pub async fn login(
    State(portal): State<Arc<Portal>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(ca) = portal.user_ca.clone() else {
        return error(
            StatusCode::NOT_FOUND,
            "cli_disabled",
            "the command-line client is not enabled on this gateway",
        );
    };
    if headers.contains_key(header::ORIGIN) && !same_origin(&headers) {
        return error(
            StatusCode::FORBIDDEN,
            "foreign_origin",
            "request refused: it came from another site",
        );
    }
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim() == "application/json")
        });
    if !is_json {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "bad_request",
            "the login must be sent as application/json",
        );
    }
    let request: CliLoginRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                &format!("the login request is malformed: {e}"),
            );
        }
    };
    let public_key: [u8; 32] = match hex::decode(&request.public_key)
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
    {
        Some(key) => key,
        None => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "the public key must be 32 bytes of Ed25519, in hex",
            );
        }
    };
    if let Some(wait) = portal.login_wait(client.ip(), &request.username) {
        let seconds = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
        let mut response = error(
            StatusCode::TOO_MANY_REQUESTS,
            "throttled",
            &format!("too many failed logins; try again in {seconds} seconds"),
        );
        if let Ok(value) = seconds.to_string().parse() {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return response;
    }
    let audit = |kind: &str, detail: String| {
        portal.broker.audit(AuditEvent {
            kind: kind.into(),
            actor: Some(request.username.clone()),
            client_addr: Some(client.to_string()),
            detail: Some(detail),
            ..AuditEvent::default()
        })
    };
    let state = portal.broker.state().clone();
    let (username, password) = (request.username.clone(), request.password.clone());
    let outcome =
        tokio::task::spawn_blocking(move || state.verify_login(&username, &password)).await;
    let user = match outcome {
        Ok(Ok(LoginOutcome::Success(user))) => user,
        Ok(Ok(LoginOutcome::Failure)) => {
            audit("login_failed", "command-line client".into());
            portal.record_login_failure(client, &request.username);
            return error(
                StatusCode::UNAUTHORIZED,
                "bad_credentials",
                "wrong username or password",
            );
        }
        Ok(Err(e)) => {
            warn!(error = %e, "cli login check failed");
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the login could not be checked; try again",
            );
        }
        Err(e) => {
            warn!(error = %e, "cli login task failed");
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the login could not be checked; try again",
            );
        }
    };
    if user.must_change_password {
        return error(
            StatusCode::FORBIDDEN,
            "password_change_required",
            "your password is a one-time password: log in once in the browser and choose a new one",
        );
    }
    let state = portal.broker.state();
    let method = match state.totp(user.id) {
        Ok(Some(_)) => match request.code.as_deref().map(str::trim) {
            None | Some("") => {
                return error(
                    StatusCode::UNAUTHORIZED,
                    "code_required",
                    "enter the code from your authenticator app (or a recovery code)",
                );
            }
            Some(code) => match crate::mfa::check_second_factor(&portal, user.id, code) {
                Some(method) => method,
                None => {
                    audit("mfa_failed", "command-line client".into());
                    portal.record_login_failure(client, &request.username);
                    return error(
                        StatusCode::UNAUTHORIZED,
                        "bad_code",
                        "that code is not valid",
                    );
                }
            },
        },
        Ok(None) => {
            let required = state
                .mfa_required_roles()
                .map(|roles| roles.contains(&user.role))
                .unwrap_or(true);
            if required {
                return error(
                    StatusCode::FORBIDDEN,
                    "mfa_enrollment_required",
                    "your role must use two-factor authentication: set it up in the browser first",
                );
            }
            "password"
        }
        Err(e) => {
            warn!(error = %e, "could not read the user's MFA state");
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the login could not be checked; try again",
            );
        }
    };
    portal.login_succeeded(client.ip(), &request.username);
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
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the certificate could not be issued",
            );
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
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the certificate could not be recorded",
        );
    }
    audit(
        "cli_login",
        format!(
            "certificate {} issued (second factor: {method}), expires at {} ms",
            &issued.fingerprint[..16],
            issued.expires_at_ms
        ),
    );
    axum::Json(CliLoginResponse {
        username: user.username,
        certificate: issued.pem,
        expires_at_ms: issued.expires_at_ms,
    })
    .into_response()
}
