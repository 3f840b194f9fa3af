//! The read-only recordings API for `sallyport-review --gateway`: auditors and admins log in with the
//! browser's rules (password, TOTP when enrolled, the throttle, the MFA requirement; `cli_api`'s
//! [`check_credentials`]) and get a bearer token that lives in the same login-session store as a browser
//! login (idle timeout, maximum age, ended by logout and by any change to the account).
//!
//! - `POST /api/review/login` (JSON [`ReviewLoginRequest`]) → [`ReviewLoginResponse`];
//! - `POST /api/review/logout`;
//! - `GET /api/review/key` → [`ReviewKey`], the recording public key;
//! - `GET /api/review/sessions` → [`ReviewSessions`];
//! - `GET /api/review/sessions/{id}/chunks?from=SEQ` → [`SessionPart`]: the row, the seal and the stored
//!   chunks as they are, for the reviewer to verify itself;
//! - `GET /api/review/ledger?from=SEQ` → [`LedgerPart`]: the recordings ledger's stored entries from `SEQ` on,
//!   as they are, for the reviewer to audit its copy of the database against.
//!
//! Every request after login is audited with the account and the client's address (`recordings_listed`,
//! `recording_read` with the session and the chunks sent, `recordings_ledger_read` with the entries sent). Refusals are JSON ([`ReviewError`]'s shape).
//! Users of other roles are refused at login (`review_refused`, audited). The token travels only in the
//! `Authorization` header, which no page of another site can make a browser send.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sallyport_core::policy::{Authenticated, Role};
use sallyport_relay::archive::ArchiveError;
use sallyport_relay::archive::remote::{
    LedgerPart, ReviewKey, ReviewLoginRequest, ReviewLoginResponse, ReviewSessions, SessionPart,
};
use sallyport_state::AuditEvent;
use serde::Deserialize;
use tracing::warn;

use crate::Portal;
use crate::api_error::ApiError;
use crate::auth::client_addr;
use crate::cli_api::{Credentials, check_credentials, login_request};

/// What the reviewer tells the audit log it is.
const VIA: &str = "sallyport-review";

fn audit(portal: &Portal, kind: &str, actor: &str, client: SocketAddr, detail: String) {
    portal.audit_from(kind, Some(actor), client, Some(detail));
}

impl Credentials for ReviewLoginRequest {
    fn credentials(&self) -> (&str, &str, Option<&str>) {
        (&self.username, &self.password, self.code.as_deref())
    }
}

/// `POST /api/review/login`.
pub async fn login(
    State(portal): State<Arc<Portal>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: ReviewLoginRequest = login_request(&headers, &body)?;
    // Right credentials make the throttle forget this source's failures, whatever the role.
    let (user, method) = check_credentials(&portal, client, &request, VIA).await?;
    let how = format!("second factor: {method}");
    Ok(axum::Json(start_review(&portal, user, client, &how)?).into_response())
}

/// Starts a review login session for a user who just signed in (`how`, in the audit's words), or
/// refuses (and audits) one whose role may not read recordings.
pub(crate) fn start_review(
    portal: &Portal,
    user: sallyport_state::UserRecord,
    client: SocketAddr,
    how: &str,
) -> Result<ReviewLoginResponse, ApiError> {
    if !matches!(user.role, Role::Admin | Role::Auditor) {
        audit(
            portal,
            "review_refused",
            &user.username,
            client,
            format!(
                "{VIA}: the {} role may not read recordings",
                user.role.as_str()
            ),
        );
        return Err(not_reviewer());
    }
    let authenticated = user.authenticated();
    let token = match portal.logins.create(authenticated) {
        Ok(token) => token,
        Err(e) => {
            warn!(error = %e, "could not start a review login session");
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the login could not be completed; try again",
            ));
        }
    };
    audit(
        portal,
        "review_login",
        &user.username,
        client,
        format!("{VIA} ({how})"),
    );
    Ok(ReviewLoginResponse {
        token,
        username: user.username,
        role: user.role.as_str().to_owned(),
    })
}

/// An auditor or admin holding a live review token.
pub struct Reviewer {
    user: Authenticated,
    token: String,
    client: SocketAddr,
}

fn login_required() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "login_required",
        "log in first (the login may have ended: it times out when idle)",
    )
}

fn not_reviewer() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "not_reviewer",
        "not allowed: recordings are for auditors and administrators",
    )
}

impl FromRequestParts<Arc<Portal>> for Reviewer {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        portal: &Arc<Portal>,
    ) -> Result<Self, Self::Rejection> {
        let client = client_addr(parts, portal).await?;
        Reviewer::check(&parts.headers, portal, client).map_err(IntoResponse::into_response)
    }
}

impl Reviewer {
    /// The reviewer whose bearer token is in `headers`, if it is live and still an auditor's or admin's.
    fn check(
        headers: &HeaderMap,
        portal: &Portal,
        client: SocketAddr,
    ) -> Result<Reviewer, ApiError> {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(login_required)?
            .to_owned();
        let user = portal.logins.lookup(&token).ok_or_else(login_required)?;
        // Re-read the account, so that a disabled or demoted one loses access at once.
        let stored = match portal.broker.state().user(user.user_id()) {
            Ok(Some(stored)) if !stored.disabled && !stored.must_change_password => stored,
            _ => {
                portal.logins.remove(&token);
                return Err(login_required());
            }
        };
        if !matches!(stored.role, Role::Admin | Role::Auditor) {
            return Err(not_reviewer());
        }
        Ok(Reviewer {
            user: stored.authenticated(),
            token,
            client,
        })
    }
}

/// A recordings error, in the review API's words (the detail of an internal one goes to the log only).
impl From<ArchiveError> for ApiError {
    fn from(e: ArchiveError) -> Self {
        match e {
            ArchiveError::NoSuchSession(id) => ApiError::new(
                StatusCode::NOT_FOUND,
                "no_such_session",
                format!("no recorded session {id}"),
            ),
            ArchiveError::Internal(detail) => {
                warn!(error = %detail, "the review API could not read the recordings");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the recordings could not be read",
                )
            }
        }
    }
}

fn no_archive() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "recordings_unavailable",
        "this gateway does not serve recordings",
    )
}

/// `POST /api/review/logout`.
pub async fn logout(State(portal): State<Arc<Portal>>, reviewer: Reviewer) -> Response {
    portal.logins.remove(&reviewer.token);
    audit(
        &portal,
        "review_logout",
        reviewer.user.username(),
        reviewer.client,
        VIA.into(),
    );
    StatusCode::NO_CONTENT.into_response()
}

/// `GET /api/review/key`.
pub async fn key(
    State(portal): State<Arc<Portal>>,
    _reviewer: Reviewer,
) -> Result<Response, ApiError> {
    let archive = portal.broker.archive().ok_or_else(no_archive)?;
    Ok(axum::Json(ReviewKey {
        public_key: hex::encode(archive.public_key()),
    })
    .into_response())
}

/// `GET /api/review/sessions`.
pub async fn sessions(
    State(portal): State<Arc<Portal>>,
    reviewer: Reviewer,
) -> Result<Response, ApiError> {
    let archive = portal.broker.archive().ok_or_else(no_archive)?;
    let sessions = archive.sessions().await?;
    audit(
        &portal,
        "recordings_listed",
        reviewer.user.username(),
        reviewer.client,
        format!("{VIA}: {} sessions", sessions.len()),
    );
    Ok(axum::Json(ReviewSessions { sessions }).into_response())
}

/// The query of a chunks request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChunksQuery {
    /// The first chunk wanted.
    #[serde(default)]
    from: u64,
}

/// `GET /api/review/sessions/{id}/chunks?from=SEQ`.
pub async fn chunks(
    State(portal): State<Arc<Portal>>,
    reviewer: Reviewer,
    Path(id): Path<String>,
    Query(query): Query<ChunksQuery>,
) -> Result<Response, ApiError> {
    // Session ids are 32 hex characters; anything else names nothing.
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_such_session",
            "no recorded session by that name",
        ));
    }
    let archive = portal.broker.archive().ok_or_else(no_archive)?;
    let part: SessionPart = archive.part(&id, query.from).await?;
    let sent = match (part.chunks.first(), part.chunks.last()) {
        (Some(first), Some(last)) => format!("chunks {}..={}", first.seq, last.seq),
        _ => "no chunks".to_owned(),
    };
    portal.broker.audit(AuditEvent {
        kind: "recording_read".into(),
        actor: Some(reviewer.user.username().to_owned()),
        client_addr: Some(reviewer.client.to_string()),
        target: Some(part.session.target.clone()),
        session_id: Some(part.session.id.clone()),
        detail: Some(format!(
            "{VIA}: {sent} of {} from {}",
            part.session.chunk_count, query.from
        )),
    });
    Ok(axum::Json(part).into_response())
}

/// The query of a ledger request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerQuery {
    /// The first entry wanted.
    #[serde(default)]
    from: u64,
}

/// `GET /api/review/ledger?from=SEQ`.
pub async fn ledger(
    State(portal): State<Arc<Portal>>,
    reviewer: Reviewer,
    Query(query): Query<LedgerQuery>,
) -> Result<Response, ApiError> {
    let archive = portal.broker.archive().ok_or_else(no_archive)?;
    let part: LedgerPart = archive.ledger(query.from).await?;
    let sent = match (part.entries.first(), part.entries.last()) {
        (Some(first), Some(last)) => format!("ledger entries {}..={}", first.seq, last.seq),
        _ => format!("no ledger entries from {}", query.from),
    };
    audit(
        &portal,
        "recordings_ledger_read",
        reviewer.user.username(),
        reviewer.client,
        format!("{VIA}: {sent}"),
    );
    Ok(axum::Json(part).into_response())
}
