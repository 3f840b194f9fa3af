//! Login sessions, the session cookie, the current-user extractor and the Origin check.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use sallyport_core::policy::Authenticated;
#[cfg(test)]
use sallyport_core::policy::Role;
use sha2::{Digest, Sha256};

use crate::Portal;

/// The session cookie. The `__Host-` prefix makes browsers insist on Secure, Path=/ and no Domain, so
/// no sibling host can set or read it.
pub const COOKIE_NAME: &str = "__Host-sallyport";

struct LoginSession {
    user: Authenticated,
    created: Instant,
    last_seen: Instant,
}

/// Logged-in sessions, kept in memory (a restart logs everyone out). Keyed by the SHA-256 of the cookie
/// token so a memory dump does not hand out live cookies.
#[derive(Clone)]
pub struct LoginSessions {
    inner: Arc<Mutex<HashMap<[u8; 32], LoginSession>>>,
    idle_timeout: Duration,
    max_age: Duration,
}

/// The SHA-256 of a secret token: what the portal's in-memory stores key on, so that a memory dump
/// does not hand out live tokens.
pub(crate) fn token_key(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl LoginSessions {
    /// An empty store with the given timeouts.
    pub fn new(idle_timeout: Duration, max_age: Duration) -> Self {
        LoginSessions {
            inner: Arc::default(),
            idle_timeout,
            max_age,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], LoginSession>> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts a session and returns its cookie token.
    pub fn create(&self, user: Authenticated) -> Result<String, getrandom::Error> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)?;
        let token = hex::encode(bytes);
        let now = Instant::now();
        let mut sessions = self.lock();
        sessions.retain(|_, s| {
            now.duration_since(s.last_seen) < self.idle_timeout
                && now.duration_since(s.created) < self.max_age
        });
        sessions.insert(
            token_key(&token),
            LoginSession {
                user,
                created: now,
                last_seen: now,
            },
        );
        Ok(token)
    }

    /// The user of a live session, refreshing its idle timer.
    pub fn lookup(&self, token: &str) -> Option<Authenticated> {
        let now = Instant::now();
        let mut sessions = self.lock();
        let key = token_key(token);
        let session = sessions.get_mut(&key)?;
        if now.duration_since(session.last_seen) >= self.idle_timeout
            || now.duration_since(session.created) >= self.max_age
        {
            sessions.remove(&key);
            return None;
        }
        session.last_seen = now;
        Some(session.user.clone())
    }

    /// Ends a session.
    pub fn remove(&self, token: &str) {
        self.lock().remove(&token_key(token));
    }

    /// Ends every login session of a user.
    pub fn remove_user(&self, user_id: i64) {
        self.lock()
            .retain(|_, session| session.user.user_id() != user_id);
    }
}

/// The value of the cookie `name` in the request, if any.
pub(crate) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(found, _)| *found == name)
        .map(|(_, value)| value.to_owned())
}

/// The session token in the request's cookies, if any.
pub fn session_token(headers: &HeaderMap) -> Option<String> {
    cookie(headers, COOKIE_NAME)
}

/// The `Set-Cookie` value for a new session.
pub fn session_cookie(token: &str) -> String {
    host_cookie(COOKIE_NAME, token, "Strict", None)
}

/// The `Set-Cookie` value that deletes the session cookie.
pub fn expired_cookie() -> String {
    expire_cookie(COOKIE_NAME, "Strict")
}

/// The `Set-Cookie` value of one of the portal's `__Host-` cookies: `Secure`, `HttpOnly`, on every path,
/// `SameSite=same_site`, for `max_age` (the browser's session when `None`).
pub(crate) fn host_cookie(
    name: &str,
    value: &str,
    same_site: &str,
    max_age: Option<Duration>,
) -> String {
    let mut cookie = format!("{name}={value}; Path=/; Secure; HttpOnly; SameSite={same_site}");
    if let Some(max_age) = max_age {
        cookie.push_str(&format!("; Max-Age={}", max_age.as_secs()));
    }
    cookie
}

/// The `Set-Cookie` value that deletes the `__Host-` cookie `name`.
pub(crate) fn expire_cookie(name: &str, same_site: &str) -> String {
    host_cookie(name, "", same_site, Some(Duration::ZERO))
}

/// A random token (32 bytes, hex) that names a sign-in step in a cookie or a URL; `None` without
/// randomness.
pub(crate) fn random_token() -> Option<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).ok()?;
    Some(hex::encode(bytes))
}

/// True when the request's Origin is this portal (`https://` + the Host it was sent to). Browsers send
/// Origin on WebSocket handshakes and POSTs; a page on another origin cannot make them lie about it.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    match (host, origin) {
        (Some(host), Some(origin)) => origin
            .strip_prefix("https://")
            .is_some_and(|rest| rest.eq_ignore_ascii_case(host)),
        _ => false,
    }
}

/// The refusal of a state change that did not come from the portal's own pages (the Origin layer's).
pub fn foreign_origin() -> Response {
    (
        StatusCode::FORBIDDEN,
        "request refused: it did not come from this portal's own pages",
    )
        .into_response()
}

/// The client's address of a request, for the extractors that audit it.
pub(crate) async fn client_addr<S: Send + Sync>(
    parts: &mut Parts,
    state: &S,
) -> Result<SocketAddr, Response> {
    let ConnectInfo(client) = ConnectInfo::<SocketAddr>::from_request_parts(parts, state)
        .await
        .map_err(IntoResponse::into_response)?;
    Ok(client)
}

/// The logged-in user of a request. Pages that need one redirect to the login page without it, and
/// to the password page while a one-time password is still in use.
pub struct CurrentUser {
    /// Who.
    pub user: Authenticated,
}

impl FromRequestParts<Arc<Portal>> for CurrentUser {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        portal: &Arc<Portal>,
    ) -> Result<Self, Self::Rejection> {
        let to_login = || Redirect::to("/login").into_response();
        let token = session_token(&parts.headers).ok_or_else(to_login)?;
        let user = portal.logins.lookup(&token).ok_or_else(to_login)?;
        // Re-read the user so that a disabled or demoted user loses access at once.
        let stored = match portal.broker.state().user(user.user_id()) {
            Ok(Some(stored)) if !stored.disabled => stored,
            _ => {
                portal.logins.remove(&token);
                return Err(to_login());
            }
        };
        let path = parts.uri.path();
        if stored.must_change_password && path != "/password" && path != "/logout" {
            return Err(Redirect::to("/password").into_response());
        }
        // Users whose role needs a second factor or a passkey they have not set up reach nothing but
        // the security page (and logout) until they have.
        if !matches!(path, "/password" | "/logout") && !path.starts_with("/account/") {
            let missing = crate::mfa::SecondFactors::of(portal, stored.id, stored.role)
                .map(|factors| factors.missing().is_some())
                .unwrap_or(true);
            if missing {
                return Err(Redirect::to("/account/mfa").into_response());
            }
        }
        Ok(CurrentUser {
            user: stored.authenticated(),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn origin_must_match_host() {
        assert!(same_origin(&headers(&[
            ("host", "gw.example:8443"),
            ("origin", "https://gw.example:8443")
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "gw.example:8443"),
            ("origin", "https://evil.example")
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "gw.example"),
            ("origin", "http://gw.example")
        ])));
        assert!(!same_origin(&headers(&[("host", "gw.example")])));
        assert!(!same_origin(&headers(&[
            ("host", "gw.example"),
            ("origin", "null")
        ])));
    }

    #[test]
    fn cookie_is_found_among_others() {
        let map = headers(&[("cookie", "a=1; __Host-sallyport=abc; b=2")]);
        assert_eq!(session_token(&map).as_deref(), Some("abc"));
        assert_eq!(
            session_token(&headers(&[("cookie", "sallyport=abc")])),
            None
        );
    }

    #[test]
    fn sessions_expire_when_idle() {
        let store = LoginSessions::new(Duration::from_millis(30), Duration::from_secs(60));
        let token = store
            .create(
                sallyport_state::StateDb::open_in_memory()
                    .unwrap()
                    .create_user("a", "correct horse battery", Role::User, false, 0)
                    .unwrap()
                    .authenticated(),
            )
            .unwrap();
        assert!(store.lookup(&token).is_some());
        std::thread::sleep(Duration::from_millis(40));
        assert!(store.lookup(&token).is_none());
    }
}
