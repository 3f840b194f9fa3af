//! The Origin layer on the real router of a portal over an in-memory state database: every
//! state-changing route of [`ROUTES`] refuses a foreign or missing Origin with 403 before its handler
//! runs, reads pass, and the programs' routes of [`PROGRAM_ROUTES`] need no Origin but refuse a
//! foreign one.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use ed25519_dalek::SigningKey;
use sallyport_core::errors::ErrorKind;
use sallyport_recordings::{Limits, Recorder};
use sallyport_relay::{
    BoxFuture, Broker, BrokerConfig, Connectors, DesktopConnect, DesktopConnector, DesktopOpened,
    ProxyConnect, ProxyConnector, ProxyOpened, TargetError, TerminalConnect, TerminalConnector,
    TerminalOpened,
};
use sallyport_state::{AuditFilter, StateDb};
use tower::ServiceExt;

use super::PROGRAM_ROUTES;
use crate::routes::ROUTES;
use crate::{Portal, PortalConfig};

const HOST: &str = "gw.example";
const FOREIGN_CHANGE: &str = "request refused: it did not come from this portal's own pages";
const FOREIGN_UPGRADE: &str = "websocket refused: foreign or missing Origin";

/// Targets no test dials: every connect fails.
struct NoTargets;

fn unreachable() -> TargetError {
    TargetError {
        kind: ErrorKind::TargetUnreachable,
        detail: "no targets in this test".into(),
    }
}

impl TerminalConnector for NoTargets {
    fn connect(&self, _: TerminalConnect) -> BoxFuture<'_, Result<TerminalOpened, TargetError>> {
        Box::pin(async { Err(unreachable()) })
    }
}

impl DesktopConnector for NoTargets {
    fn connect(&self, _: DesktopConnect) -> BoxFuture<'_, Result<DesktopOpened, TargetError>> {
        Box::pin(async { Err(unreachable()) })
    }
}

impl ProxyConnector for NoTargets {
    fn connect(&self, _: ProxyConnect) -> BoxFuture<'static, Result<ProxyOpened, TargetError>> {
        Box::pin(async { Err(unreachable()) })
    }
}

/// A portal over an in-memory state database and a recorder in a temporary directory.
struct TestPortal {
    _dir: tempfile::TempDir,
    state: StateDb,
    router: Router,
}

fn portal() -> TestPortal {
    let dir = tempfile::tempdir().unwrap();
    let state = StateDb::open_in_memory().unwrap();
    let recorder = Recorder::start(
        &dir.path().join("recordings.db"),
        SigningKey::from_bytes(&[7; 32]),
        Limits::default(),
    )
    .unwrap();
    let targets = Arc::new(NoTargets);
    let broker = Broker::new(
        state.clone(),
        recorder,
        Vec::new(),
        Connectors {
            terminal: targets.clone(),
            desktop: targets.clone(),
            proxy: targets,
        },
        BrokerConfig::default(),
    );
    let router = Portal::new(Arc::new(broker), PortalConfig::default()).router();
    TestPortal {
        _dir: dir,
        state,
        router,
    }
}

/// A path of the pattern `pattern`, its parameters filled in.
fn concrete(pattern: &str) -> String {
    pattern
        .split('/')
        .map(|segment| match segment {
            "{action}" => "disable",
            s if s.starts_with('{') => "1",
            s => s,
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Sends `method path` (a `WS` is a WebSocket handshake) with `origin`, and returns the status and body.
async fn ask(
    router: &Router,
    method: &str,
    path: &str,
    origin: Option<&str>,
) -> (StatusCode, String) {
    let mut request = Request::builder()
        .uri(path)
        .header("host", HOST)
        .extension(ConnectInfo(SocketAddr::from(([192, 0, 2, 1], 40000))));
    request = match method {
        "WS" => request
            .method("GET")
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        other => request.method(other),
    };
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    let response = router
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn every_state_change_and_websocket_refuses_a_foreign_or_missing_origin() {
    let portal = portal();
    let mut checked = 0;
    for &(method, pattern) in ROUTES {
        if method == "GET" {
            continue;
        }
        let path = concrete(pattern);
        let program = PROGRAM_ROUTES.contains(&pattern);
        for origin in [
            Some("https://evil.example"),
            Some("null"),
            Some("http://gw.example"),
            None,
        ] {
            if program && origin.is_none() {
                continue;
            }
            let (status, body) = ask(&portal.router, method, &path, origin).await;
            assert_eq!(
                status,
                StatusCode::FORBIDDEN,
                "{method} {path} with Origin {origin:?}: {body}"
            );
            let expected = match method {
                "WS" => FOREIGN_UPGRADE,
                _ if program => r#""error":"foreign_origin""#,
                _ => FOREIGN_CHANGE,
            };
            assert!(
                body.contains(expected),
                "{method} {path} with Origin {origin:?}: {body}"
            );
        }
        checked += 1;
    }
    assert!(checked >= 25, "only {checked} state-changing routes");
    // The refused WebSockets are audited as refused connections.
    let refused = portal
        .state
        .audit_query(&AuditFilter {
            kind: Some("connect_refused".into()),
            limit: 1000,
            ..AuditFilter::default()
        })
        .unwrap();
    let upgrades = ROUTES.iter().filter(|(method, _)| *method == "WS").count();
    assert_eq!(refused.len(), upgrades * 4);
    assert!(
        refused
            .iter()
            .all(|r| r.event.detail.as_deref() == Some(FOREIGN_UPGRADE)
                && r.event.client_addr.as_deref() == Some("192.0.2.1:40000"))
    );
}

#[tokio::test]
async fn the_portals_own_origin_and_reads_get_past_the_layer() {
    let portal = portal();
    for &(method, pattern) in ROUTES {
        let path = concrete(pattern);
        let origins: &[Option<&str>] = if method == "GET" {
            // Reads need no Origin, and a foreign one changes nothing.
            &[
                Some("https://gw.example"),
                Some("https://evil.example"),
                None,
            ]
        } else {
            &[Some("https://gw.example")]
        };
        for &origin in origins {
            let (status, body) = ask(&portal.router, method, &path, origin).await;
            assert!(
                !body.contains(FOREIGN_CHANGE)
                    && !body.contains(FOREIGN_UPGRADE)
                    && !body.contains("foreign_origin"),
                "{method} {path} with Origin {origin:?} was refused by the layer: {status} {body}"
            );
        }
    }
}

#[tokio::test]
async fn programs_need_no_origin_but_browsers_need_theirs() {
    let portal = portal();
    // Without an Origin the programs' routes reach their handlers: the CLI login is off on this
    // portal, the review login and the device sign-in want JSON, the review logout wants its bearer token.
    // Their refusals are JSON in words (`ApiError`).
    let expected = [
        ("/api/cli/login", StatusCode::NOT_FOUND, "cli_disabled"),
        (
            "/api/cli/exchange",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "bad_request",
        ),
        (
            "/api/review/login",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "bad_request",
        ),
        (
            "/api/review/logout",
            StatusCode::UNAUTHORIZED,
            "login_required",
        ),
        (
            "/api/sso/device",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "bad_request",
        ),
        (
            "/api/sso/device/poll",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "bad_request",
        ),
    ];
    assert_eq!(
        PROGRAM_ROUTES,
        expected.map(|(path, _, _)| path),
        "the exemptions are exactly the programs' routes"
    );
    for (path, status, kind) in expected {
        let (got, body) = ask(&portal.router, "POST", path, None).await;
        assert_eq!(got, status, "{path}: {body}");
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["error"], kind, "{path}: {body}");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // Every other state change needs an Origin: a missing one is refused like a foreign one.
    let (status, body) = ask(&portal.router, "POST", "/login", None).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::FORBIDDEN, FOREIGN_CHANGE)
    );
}
