//! Sallyport's HTTPS portal: login, the target list, the terminal page and its WebSocket, and the
//! embedded web assets, served over rustls.
//!
//! The portal authenticates users (argon2id via sallyport-state, `__Host-` cookies), asks the policy for
//! an [`Authorized`](sallyport_core::policy::Authorized) decision before any WebSocket is upgraded, checks
//! the Origin of every WebSocket and state-changing request, and hands the session to the relay's
//! broker. It never talks to a target itself; it reads recordings only through the relay's
//! [`Archive`](sallyport_relay::archive::Archive), for the review API (`review_api`), and hands them out
//! as stored for the reviewer to verify.

mod access;
mod admin;
mod api_error;
mod assets;
mod auth;
mod ceremonies;
mod cli_api;
mod cli_browser;
mod connect_ip;
mod edge;
mod html;
mod mfa;
mod origin;
mod pages;
mod passkeys;
mod refusal;
mod review_api;
mod routes;
mod second_factors;
mod server;
mod sso;
mod target_list;
mod user_ca;
mod watch;
mod ws;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use sallyport_core::throttle::{LoginThrottle, ThrottleConfig};
use sallyport_relay::Broker;

pub use auth::LoginSessions;
pub use edge::{EdgeControl, EdgeCounter, EdgeInterface, EdgeStatus};
pub use routes::ROUTES;
pub use server::serve;
pub use user_ca::{CaError, IssuedCert, UserCa, cert_fingerprint};

/// Portal settings. The defaults are [`PortalConfig::default`], which the daemon's configuration
/// starts from.
#[derive(Debug, Clone)]
pub struct PortalConfig {
    /// The portal's own origin as users open it (`[portal] public_url`): where identity providers send
    /// users back and what passkeys are bound to. Without it single sign-on and passkeys are off.
    pub public_url: Option<url::Url>,
    /// A login session ends after this long without a request.
    pub session_idle_timeout: Duration,
    /// A login session ends this long after login, whatever happens.
    pub session_max_age: Duration,
    /// Deadline for the TLS handshake of a new connection.
    pub tls_handshake_timeout: Duration,
    /// Deadline for a request's headers (slowloris), counted from when the server starts waiting for
    /// them: it is also how long an idle keep-alive connection stays open between requests.
    pub header_read_timeout: Duration,
    /// Deadline for a request's body and its answer (slow bodies); a WebSocket is not affected once
    /// upgraded.
    pub request_timeout: Duration,
    /// Most connections open at once from one source (an IPv4 address or an IPv6 /64), counted from
    /// accept until the connection closes or becomes a WebSocket. Connections over it are closed at
    /// once, before any TLS work.
    pub max_connections_per_source: usize,
    /// Most connections open at once in all, counted the same way.
    pub max_connections: usize,
    /// Login brute-force defence.
    pub login_throttle: ThrottleConfig,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// How long a certificate issued to the CLI at login stays valid.
    pub cli_certificate_lifetime: Duration,
    /// The identity providers users may sign in with (`[[oidc]]`).
    pub identity_providers: Vec<sallyport_sso::ProviderConfig>,
}

impl Default for PortalConfig {
    fn default() -> Self {
        PortalConfig {
            public_url: None,
            session_idle_timeout: Duration::from_secs(30 * 60),
            session_max_age: Duration::from_secs(12 * 3600),
            tls_handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_connections_per_source: 32,
            max_connections: 4096,
            login_throttle: ThrottleConfig::default(),
            max_body_bytes: 64 * 1024,
            cli_certificate_lifetime: Duration::from_secs(8 * 3600),
            identity_providers: Vec::new(),
        }
    }
}

/// Everything the portal's handlers share.
pub struct Portal {
    broker: Arc<Broker>,
    logins: LoginSessions,
    config: PortalConfig,
    /// Login failures by source and username; `now` for it is the time since `started`.
    throttle: Mutex<LoginThrottle>,
    started: Instant,
    /// Logins between their two factors, and enrollments in progress.
    mfa: mfa::MfaState,
    /// The network edge, when the daemon attached one.
    edge: Option<Arc<dyn EdgeControl>>,
    /// The user CA that issues the CLI's certificates, when the QUIC endpoint is on.
    user_ca: Option<Arc<UserCa>>,
    /// The identity providers and their sign-ins in progress.
    sso: sso::Sso,
    /// The passkeys' relying party and the ceremonies in progress.
    passkeys: passkeys::Passkeys,
    /// The programs' browser sign-ins in progress.
    browser_sign_ins: cli_browser::BrowserSignIns,
}

impl Portal {
    /// A portal over the given broker, without a network edge.
    pub fn new(broker: Arc<Broker>, config: PortalConfig) -> Arc<Portal> {
        Self::with_edge(broker, config, None, None)
    }

    /// A portal over the given broker that puts locked-out sources into `edge`'s blocklist and shows
    /// its counters to admins, and, with a `user_ca`, issues client certificates to the CLI at
    /// `POST /api/cli/login`.
    pub fn with_edge(
        broker: Arc<Broker>,
        config: PortalConfig,
        edge: Option<Arc<dyn EdgeControl>>,
        user_ca: Option<Arc<UserCa>>,
    ) -> Arc<Portal> {
        let logins = LoginSessions::new(config.session_idle_timeout, config.session_max_age);
        Arc::new(Portal {
            broker,
            logins,
            throttle: Mutex::new(LoginThrottle::new(config.login_throttle.clone())),
            started: Instant::now(),
            mfa: mfa::MfaState::default(),
            sso: sso::Sso::new(&config.identity_providers),
            passkeys: passkeys::Passkeys::new(config.public_url.as_ref()),
            browser_sign_ins: cli_browser::BrowserSignIns::default(),
            config,
            edge,
            user_ca,
        })
    }

    /// Counts a failed second factor like a failed password, so codes cannot be guessed faster than
    /// passwords.
    pub(crate) fn record_login_failure(&self, client: std::net::SocketAddr, username: &str) {
        let now = self.started.elapsed();
        let mut throttle = self
            .throttle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let lockouts = throttle.record_failure(client.ip(), username, now);
        drop(throttle);
        self.block_locked_out_sources(&lockouts);
    }

    /// Hands each source lockout to the edge, which drops the source's packets for the lockout period.
    pub(crate) fn block_locked_out_sources(
        &self,
        lockouts: &[sallyport_core::throttle::LockEvent],
    ) {
        let Some(edge) = &self.edge else {
            return;
        };
        for lockout in lockouts {
            if let sallyport_core::throttle::LockEvent::Source { source, wait, .. } = lockout {
                edge.block_source(*source, *wait);
            }
        }
    }

    /// Ends everything a user has open: login sessions and live terminal sessions (logout, password
    /// change, disable, delete, role change). Live sessions see the termination within milliseconds.
    /// The CLI's client certificates are revoked too, so its next stream or connection is refused.
    pub fn revoke_user(&self, user_id: i64, reason: &str) {
        self.logins.remove_user(user_id);
        self.sso.rechecks.forget(user_id);
        if let Err(error) = self
            .broker
            .state()
            .revoke_user_client_certs(user_id, sallyport_relay::now_ms())
        {
            tracing::warn!(%error, "could not revoke the user's client certificates");
        }
        self.broker.live().terminate_user(user_id, reason);
    }

    /// How long anything a sign-in hands out can live: a login session or a CLI certificate (what a
    /// provider account's re-check must cover).
    pub(crate) fn recheck_horizon(&self) -> Duration {
        self.config
            .session_max_age
            .max(self.config.cli_certificate_lifetime)
    }

    /// Whether `user` may sign in with a password: always, unless an admin turned password sign-in
    /// off for everyone but admins. `Err` holds the words of the refusal.
    pub(crate) fn password_sign_in_allowed(
        &self,
        user: &sallyport_state::UserRecord,
    ) -> Result<(), String> {
        let admins_only = self
            .broker
            .state()
            .password_sign_in_admins_only()
            .unwrap_or(false);
        if admins_only && user.role != sallyport_core::policy::Role::Admin {
            let providers: Vec<&str> = self.sso.names().collect();
            let instead = if providers.is_empty() {
                "ask an administrator".to_owned()
            } else {
                format!("sign in with {}", providers.join(" or "))
            };
            return Err(format!(
                "password sign-in is turned off here for everyone but administrators; {instead}"
            ));
        }
        Ok(())
    }

    /// How long a login from `source` for `username` must wait, if the throttle says so.
    pub(crate) fn login_wait(&self, source: std::net::IpAddr, username: &str) -> Option<Duration> {
        let now = self.started.elapsed();
        let throttle = self
            .throttle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match throttle.check(source, username, now) {
            sallyport_core::throttle::Verdict::Allow => None,
            sallyport_core::throttle::Verdict::Wait { retry_after } => Some(retry_after),
            sallyport_core::throttle::Verdict::UserLocked { until } => {
                Some(until.saturating_sub(now))
            }
        }
    }

    /// Audits the sign-in event `kind` (a login, a refusal, a factor's change) by `actor`, when known,
    /// from `client`: the one shape of the sign-in code's audit events.
    pub(crate) fn audit_from(
        &self,
        kind: &str,
        actor: Option<&str>,
        client: std::net::SocketAddr,
        detail: Option<String>,
    ) {
        self.broker.audit(sallyport_state::AuditEvent {
            kind: kind.into(),
            actor: actor.map(str::to_owned),
            client_addr: Some(client.to_string()),
            detail,
            ..sallyport_state::AuditEvent::default()
        });
    }

    /// Forgets a source's and username's failures after a complete login.
    pub(crate) fn login_succeeded(&self, source: std::net::IpAddr, username: &str) {
        let now = self.started.elapsed();
        self.throttle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .record_success(source, username, now);
    }

    /// The portal's routes ([`routes::ROUTES`]), behind the Origin layer, the body limit and the security
    /// headers.
    pub fn router(self: &Arc<Self>) -> Router {
        routes::router()
            .fallback(pages::not_found)
            .layer(axum::middleware::from_fn_with_state(
                self.clone(),
                origin::require_same_origin,
            ))
            .layer(axum::extract::DefaultBodyLimit::max(
                self.config.max_body_bytes,
            ))
            .layer(axum::middleware::map_response(pages::security_headers))
            .with_state(self.clone())
    }
}
