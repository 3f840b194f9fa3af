//! The Origin check, as one layer on the whole router, so that no route can forget it: every request
//! that may change state (any method but `GET`, `HEAD` and `OPTIONS`) and every WebSocket upgrade must
//! come from this portal's own pages ([`same_origin`]), or it is refused with 403 before any handler
//! runs. The only exemptions are [`PROGRAM_ROUTES`], named here and nowhere else. An upgrade is told by
//! its `Upgrade: websocket` header, which axum's `WebSocketUpgrade` requires before it upgrades
//! anything, so no WebSocket can open without passing here.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sallyport_state::AuditEvent;

use crate::Portal;
use crate::api_error::ApiError;
use crate::auth::{foreign_origin, same_origin, session_token};

/// Routes that programs call (the CLI's login and its browser sign-in's exchange, the reviewer's login
/// and logout, the device sign-in), where a missing Origin
/// is allowed: their credential is one no other site can make a browser send. A login must be
/// `application/json` (which a page on another site cannot send without a CORS preflight this portal
/// never answers) and carries the password itself, not a cookie; the review logout needs the reviewer's
/// bearer token, which a browser never attaches on its own. A browser's Origin, when present, must
/// still be this portal's.
pub(crate) const PROGRAM_ROUTES: &[&str] = &[
    "/api/cli/login",
    "/api/cli/exchange",
    "/api/review/login",
    "/api/review/logout",
    "/api/sso/device",
    "/api/sso/device/poll",
];

/// What the layer makes of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Safe (a read), or from this portal's own pages.
    Pass,
    /// A WebSocket upgrade from elsewhere.
    ForeignUpgrade,
    /// A program's request with a browser's foreign Origin.
    ForeignProgram,
    /// A state change from elsewhere.
    ForeignChange,
}

fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    headers.get_all(header::UPGRADE).iter().any(|value| {
        value
            .to_str()
            .is_ok_and(|value| value.to_ascii_lowercase().contains("websocket"))
    })
}

fn verdict(method: &Method, path: &str, headers: &HeaderMap) -> Verdict {
    let upgrade = is_websocket_upgrade(headers);
    let reads_only = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    if (reads_only && !upgrade) || same_origin(headers) {
        Verdict::Pass
    } else if upgrade {
        Verdict::ForeignUpgrade
    } else if PROGRAM_ROUTES.contains(&path) {
        if headers.contains_key(header::ORIGIN) {
            Verdict::ForeignProgram
        } else {
            Verdict::Pass
        }
    } else {
        Verdict::ForeignChange
    }
}

/// The layer (`axum::middleware::from_fn_with_state`) that refuses what [`verdict`] refuses. A refused
/// WebSocket is audited as `connect_refused`, as the session WebSockets' other refusals are.
pub(crate) async fn require_same_origin(
    State(portal): State<Arc<Portal>>,
    request: Request,
    next: Next,
) -> Response {
    match verdict(request.method(), request.uri().path(), request.headers()) {
        Verdict::Pass => next.run(request).await,
        Verdict::ForeignUpgrade => {
            let detail = "websocket refused: foreign or missing Origin";
            let actor = session_token(request.headers())
                .and_then(|token| portal.logins.lookup(&token))
                .map(|user| user.username().to_owned());
            let client = request
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(client)| client.to_string());
            portal.broker.audit(AuditEvent {
                kind: "connect_refused".into(),
                actor,
                client_addr: client,
                detail: Some(detail.to_owned()),
                ..AuditEvent::default()
            });
            (StatusCode::FORBIDDEN, detail).into_response()
        }
        Verdict::ForeignProgram => ApiError::new(
            StatusCode::FORBIDDEN,
            "foreign_origin",
            "request refused: it came from another site",
        )
        .into_response(),
        Verdict::ForeignChange => foreign_origin(),
    }
}

#[cfg(test)]
#[path = "origin_tests.rs"]
mod tests;
