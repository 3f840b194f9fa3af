//! The device sign-in (RFC 8628) for programs that cannot take a browser redirect: `sallyport login`
//! and `sallyport-review --gateway` with a provider account.
//!
//! - `POST /api/sso/device` ([`DeviceStartRequest`]): the gateway starts the device flow at the
//!   provider with its own client, keeps the device code, and answers with the user code and where
//!   to confirm it ([`DeviceStarted`]). One task per sign-in then polls the provider at its interval
//!   until the code expires, verifies the ID token, and admits the account ([`super::admit`]), ending in
//!   the same certificate or review token a password login gets.
//! - `POST /api/sso/device/poll` ([`DevicePollRequest`]): waits up to 20 s for that result; `202` with
//!   [`DevicePending`] while there is none.
//!
//! Both are JSON-only program routes (no browser can send them cross-site without a preflight), under
//! the login throttle for the source, with a bound on sign-ins in progress at once.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use sallyport_core::sso::{
    DevicePending, DevicePollRequest, DevicePurpose, DeviceStartRequest, DeviceStarted,
};
use sallyport_sso::SsoError;
use tokio::sync::watch;

use super::{audit, first_factor, key, lock};
use crate::Portal;
use crate::api_error::ApiError;
use crate::cli_api::login_request;

/// Device sign-ins in progress at once, in all.
const MAX_DEVICE_LOGINS: usize = 256;
/// How long one poll request waits for the result.
const POLL_WAIT: Duration = Duration::from_secs(20);
/// A sign-in nobody polls for this long is dropped (its task stops).
const ABANDONED_AFTER: Duration = Duration::from_secs(120);
/// The longest a device code is honoured, whatever the provider says.
const MAX_DEVICE_LIFETIME: Duration = Duration::from_secs(900);

/// The finished sign-in: the JSON answer and its status.
type Outcome = Option<(StatusCode, serde_json::Value)>;

struct DeviceEntry {
    outcome: watch::Receiver<Outcome>,
    last_poll: Instant,
    task: tokio::task::AbortHandle,
}

/// Device sign-ins by the SHA-256 of their id.
#[derive(Default)]
pub(crate) struct DeviceLogins {
    entries: Mutex<HashMap<[u8; 32], DeviceEntry>>,
}

impl DeviceLogins {
    fn sweep(&self) {
        lock(&self.entries).retain(|_, entry| {
            let keep = entry.last_poll.elapsed() < ABANDONED_AFTER;
            if !keep {
                entry.task.abort();
            }
            keep
        });
    }
}

fn api_error(status: StatusCode, kind: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(status, kind, message)
}

/// `POST /api/sso/device`.
pub async fn start(
    State(portal): State<Arc<Portal>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: DeviceStartRequest = login_request(&headers, &body)?;
    let Some(provider) = portal.sso.provider(&request.provider) else {
        return Err(api_error(
            StatusCode::NOT_FOUND,
            "no_provider",
            format!(
                "this gateway has no identity provider named {:?}",
                request.provider
            ),
        ));
    };
    let throttled = super::browser::throttle_name(&request.provider, client);
    if let Some(wait) = portal.login_wait(client.ip(), &throttled) {
        return Err(ApiError::throttled(wait));
    }
    let public_key = match (request.purpose, request.public_key.as_deref()) {
        (DevicePurpose::Cli, Some(hex_key)) => Some(crate::cli_api::parse_public_key(hex_key)?),
        (DevicePurpose::Cli, None) => {
            return Err(api_error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "a command-line sign-in must send the public key to certify",
            ));
        }
        (DevicePurpose::Review, _) => None,
    };
    if request.purpose == DevicePurpose::Cli && portal.user_ca.is_none() {
        return Err(api_error(
            StatusCode::NOT_FOUND,
            "cli_disabled",
            "the command-line client is not enabled on this gateway",
        ));
    }
    portal.sso.devices.sweep();
    if lock(&portal.sso.devices.entries).len() >= MAX_DEVICE_LOGINS {
        return Err(api_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "too many sign-ins in progress; try again shortly",
        ));
    }
    let device = match provider.start_device().await {
        Ok(device) => device,
        Err(SsoError::Refused(reason)) => {
            audit(
                &portal,
                "sso_refused",
                None,
                client,
                format!("provider {} (device sign-in): {reason}", request.provider),
            );
            return Err(api_error(StatusCode::FORBIDDEN, "sso_refused", reason));
        }
        Err(SsoError::Unreachable(reason)) => {
            return Err(api_error(
                StatusCode::BAD_GATEWAY,
                "provider_unreachable",
                format!("the identity provider could not be reached ({reason})"),
            ));
        }
    };
    let mut id = [0u8; 32];
    if getrandom::fill(&mut id).is_err() {
        return Err(api_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            crate::pages::NO_RANDOMNESS,
        ));
    }
    let device_id = hex::encode(id);
    let started = DeviceStarted {
        device_id: device_id.clone(),
        user_code: device.user_code().to_owned(),
        verification_uri: device.verification_uri().to_owned(),
        verification_uri_complete: device.verification_uri_complete().map(str::to_owned),
        expires_in_secs: device.expires_in().min(MAX_DEVICE_LIFETIME).as_secs(),
    };
    let (tell, outcome) = watch::channel(None);
    let lifetime = device.expires_in().min(MAX_DEVICE_LIFETIME);
    let task_portal = portal.clone();
    let purpose = request.purpose;
    let task = tokio::spawn(async move {
        let finished = tokio::time::timeout(lifetime, provider.finish_device(&device)).await;
        let answer = conclude(
            &task_portal,
            &provider,
            finished,
            purpose,
            public_key,
            client,
        )
        .await;
        let _ = tell.send(Some(answer));
    });
    lock(&portal.sso.devices.entries).insert(
        key(&device_id),
        DeviceEntry {
            outcome,
            last_poll: Instant::now(),
            task: task.abort_handle(),
        },
    );
    Ok(axum::Json(started).into_response())
}

/// What a device sign-in ends in: the purpose's login answer, or a refusal (audited, and counted by
/// the throttle).
async fn conclude(
    portal: &Arc<Portal>,
    provider: &sallyport_sso::Provider,
    finished: Result<Result<sallyport_sso::SignIn, SsoError>, tokio::time::error::Elapsed>,
    purpose: DevicePurpose,
    public_key: Option<[u8; 32]>,
    client: SocketAddr,
) -> (StatusCode, serde_json::Value) {
    let name = provider.config().name.clone();
    let throttled = super::browser::throttle_name(&name, client);
    let refuse = |status: StatusCode, actor: Option<&str>, reason: String| {
        audit(
            portal,
            "sso_refused",
            actor,
            client,
            format!("provider {name} (device sign-in): {reason}"),
        );
        portal.record_login_failure(client, &throttled);
        error_body(status, "sso_refused", &reason)
    };
    let sign_in = match finished {
        Ok(Ok(sign_in)) => sign_in,
        Ok(Err(SsoError::Refused(reason))) => return refuse(StatusCode::FORBIDDEN, None, reason),
        Ok(Err(SsoError::Unreachable(reason))) => {
            return error_body(
                StatusCode::BAD_GATEWAY,
                "provider_unreachable",
                &format!("the identity provider could not be reached ({reason})"),
            );
        }
        Err(_) => {
            return refuse(
                StatusCode::FORBIDDEN,
                None,
                "the code was not confirmed at the identity provider in time; sign in again".into(),
            );
        }
    };
    let (user, identity) =
        match super::admit(portal, provider, sign_in, client, "device sign-in").await {
            Ok(admitted) => admitted,
            Err(refused) => {
                return refuse(
                    StatusCode::FORBIDDEN,
                    refused.username.as_deref(),
                    refused.reason,
                );
            }
        };
    portal.login_succeeded(client.ip(), &throttled);
    let how = first_factor(&name, &identity);
    let answer = match (purpose, public_key) {
        (DevicePurpose::Cli, Some(key)) => {
            crate::cli_api::issue_certificate(portal, user, key, client, &how)
                .map(|r| serde_json::to_value(r).unwrap_or_default())
        }
        (DevicePurpose::Review, _) => crate::review_api::start_review(portal, user, client, &how)
            .map(|r| serde_json::to_value(r).unwrap_or_default()),
        (DevicePurpose::Cli, None) => Err(api_error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "no public key to certify",
        )),
    };
    match answer {
        Ok(body) => (StatusCode::OK, body),
        Err(error) => error.into_parts(),
    }
}

fn error_body(
    status: StatusCode,
    kind: &'static str,
    message: &str,
) -> (StatusCode, serde_json::Value) {
    api_error(status, kind, message).into_parts()
}

/// `POST /api/sso/device/poll`.
pub async fn poll(
    State(portal): State<Arc<Portal>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: DevicePollRequest = login_request(&headers, &body)?;
    let id = key(&request.device_id);
    let mut outcome = {
        let mut entries = lock(&portal.sso.devices.entries);
        let Some(entry) = entries.get_mut(&id) else {
            return Err(api_error(
                StatusCode::NOT_FOUND,
                "no_sign_in",
                "no such sign-in in progress (it ended, expired or was never started); sign in again",
            ));
        };
        entry.last_poll = Instant::now();
        entry.outcome.clone()
    };
    let finished = tokio::time::timeout(POLL_WAIT, outcome.wait_for(Option::is_some)).await;
    let answer = match finished {
        Ok(Ok(answer)) => answer.clone(),
        Ok(Err(_)) => Some(error_body(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the sign-in ended without an answer; sign in again",
        )),
        Err(_) => None,
    };
    let Some((status, body)) = answer else {
        return Ok((
            StatusCode::ACCEPTED,
            axum::Json(DevicePending {
                status: "pending".into(),
            }),
        )
            .into_response());
    };
    // The answer is handed out once.
    lock(&portal.sso.devices.entries).remove(&id);
    Ok((status, axum::Json(body)).into_response())
}
