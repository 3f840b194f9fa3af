//! Sallyport's HTTPS portal: login, the target list, the terminal page and its WebSocket, and the
//! embedded web assets, served over rustls.
//!
//! The portal authenticates users (argon2id via sallyport-state, `__Host-` cookies), asks the policy for
//! an [`Authorized`](sallyport_core::policy::Authorized) decision before any WebSocket is upgraded, checks
//! the Origin of every WebSocket and state-changing request, and hands the session to the relay's
//! broker. It never talks to a target itself and never sees a recording.

mod assets;
mod auth;
mod pages;
mod server;
mod ws;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use sallyport_relay::Broker;

pub use auth::LoginSessions;
pub use server::serve;

/// Portal settings (defaults live in the daemon's configuration).
#[derive(Debug, Clone)]
pub struct PortalConfig {
    /// A login session ends after this long without a request.
    pub session_idle_timeout: Duration,
    /// A login session ends this long after login, whatever happens.
    pub session_max_age: Duration,
    /// Deadline for the TLS handshake of a new connection.
    pub tls_handshake_timeout: Duration,
    /// Deadline for a request's headers (slowloris).
    pub header_read_timeout: Duration,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
}

impl Default for PortalConfig {
    fn default() -> Self {
        PortalConfig {
            session_idle_timeout: Duration::from_secs(30 * 60),
            session_max_age: Duration::from_secs(12 * 3600),
            tls_handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            max_body_bytes: 64 * 1024,
        }
    }
}

/// Everything the portal's handlers share.
pub struct Portal {
    broker: Arc<Broker>,
    logins: LoginSessions,
    config: PortalConfig,
}

impl Portal {
    /// A portal over the given broker.
    pub fn new(broker: Arc<Broker>, config: PortalConfig) -> Arc<Portal> {
        let logins = LoginSessions::new(config.session_idle_timeout, config.session_max_age);
        Arc::new(Portal {
            broker,
            logins,
            config,
        })
    }

    /// The portal's routes.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/", get(pages::home))
            .route("/login", get(pages::login_form).post(pages::login))
            .route("/logout", post(pages::logout))
            .route(
                "/password",
                get(pages::password_form).post(pages::change_password),
            )
            .route("/targets", get(pages::targets))
            .route("/connect/{target_id}", get(pages::connect_page))
            .route("/ws/terminal/{target_id}", get(ws::terminal))
            .route("/assets/{name}", get(assets::serve_asset))
            .fallback(pages::not_found)
            .layer(axum::extract::DefaultBodyLimit::max(
                self.config.max_body_bytes,
            ))
            .layer(axum::middleware::map_response(pages::security_headers))
            .with_state(self.clone())
    }
}
