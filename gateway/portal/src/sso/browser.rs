//! The browser's provider sign-in (authorization-code flow with PKCE):
//!
//! - `GET /login/sso/{provider}`: a fresh `state`, `nonce` and PKCE verifier kept here, a
//!   browser-binding cookie set, and the browser sent to the provider;
//! - `GET /login/sso/{provider}/callback`: the `state` taken (one use), the binding cookie checked
//!   (a callback from another browser is refused), the provider's `iss` checked, the code traded and
//!   the ID token verified, then [`super::admit`] and the same second step as a password login.
//!
//! The binding cookie is `SameSite=Lax` because the callback is a navigation from the provider's site,
//! which `Strict` cookies do not ride along with; for the same reason the login session's `Strict`
//! cookie is set on a page that moves on by itself (a `Strict` cookie set in a redirect answering a
//! cross-site navigation is not sent on the redirect's own request).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use sallyport_sso::SsoError;
use serde::Deserialize;
use tracing::warn;

use super::{PendingLogin, audit, first_factor, key};
use crate::Portal;
use crate::auth::{cookie, expire_cookie, host_cookie, random_token};
use crate::html::components::error;
use crate::html::{PageError, moving_on, page};
use crate::pages::{NO_RANDOMNESS, capitalized_sentence};

/// The cookie that ties a provider sign-in to the browser that started it.
const BINDING_COOKIE: &str = "__Host-sallyport-sso";

/// The login page's provider buttons (nothing without providers).
pub(crate) fn buttons(portal: &Portal) -> Markup {
    html! {
        @for name in portal.sso.names() {
            a.button.sso id={ "sso-" (name) } href={ "/login/sso/" (name) } { "Sign in with " (name) }
        }
    }
}

/// Where the provider sends the browser back for this provider.
fn callback_url(portal: &Portal, provider: &str) -> Option<url::Url> {
    portal
        .config
        .public_url
        .as_ref()?
        .join(&format!("/login/sso/{provider}/callback"))
        .ok()
}

/// A refused sign-in as a page: what went wrong and the way back to the login page.
fn refusal_page(status: StatusCode, provider: &str, reason: &str) -> Response {
    let body = page(
        "Sign-in refused",
        None,
        html! {
            h1 { "Sign-in with " (provider) " refused" }
            (error(&capitalized_sentence(reason)))
            p { a href="/login" { "Back to the login page" } }
        },
    );
    (status, body).into_response()
}

/// The refusal while the throttle makes this source wait before another provider sign-in.
fn throttled_page(portal: &Portal, provider: &str, client: SocketAddr) -> Option<Response> {
    let wait = portal.login_wait(client.ip(), &throttle_name(provider, client))?;
    Some(refusal_page(
        StatusCode::TOO_MANY_REQUESTS,
        provider,
        &format!(
            "too many failed sign-ins from your address; try again in {} seconds",
            wait.as_secs().max(1)
        ),
    ))
}

/// `GET /login/sso/{provider}`.
pub async fn start(
    State(portal): State<Arc<Portal>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    Path(name): Path<String>,
) -> Response {
    let Some(provider) = portal.sso.provider(&name) else {
        return PageError::new(StatusCode::NOT_FOUND, "no such identity provider").into_response();
    };
    if let Some(page) = throttled_page(&portal, &name, client) {
        return page;
    }
    let Some(redirect) = callback_url(&portal, &name) else {
        return refusal_page(
            StatusCode::SERVICE_UNAVAILABLE,
            &name,
            "single sign-on needs the portal's public_url set in its configuration",
        );
    };
    let (url, login) = match provider.begin(&redirect).await {
        Ok(started) => started,
        Err(error) => {
            warn!(provider = %name, %error, "could not start a provider sign-in");
            return refusal_page(
                StatusCode::BAD_GATEWAY,
                &name,
                &format!("the identity provider could not be reached ({error})"),
            );
        }
    };
    let Some(binding) = random_token() else {
        return PageError::internal(NO_RANDOMNESS).into_response();
    };
    let state = login.state().to_owned();
    let pending = PendingLogin {
        provider: name.clone(),
        login,
        binding: key(&binding),
        created: std::time::Instant::now(),
    };
    if !portal.sso.remember(&state, pending) {
        return PageError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many sign-ins in progress; try again shortly",
        )
        .into_response();
    }
    let cookie = host_cookie(BINDING_COOKIE, &binding, "Lax", Some(super::PENDING_TTL));
    ([(header::SET_COOKIE, cookie)], Redirect::to(url.as_str())).into_response()
}

/// The callback's query.
#[derive(Deserialize)]
pub struct Callback {
    code: Option<String>,
    state: Option<String>,
    iss: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// The throttle's key for provider sign-ins from one source: failures count against the source, and
/// against this per-source name rather than any account (whose name is unknown before the check).
pub(crate) fn throttle_name(provider: &str, client: SocketAddr) -> String {
    format!("sso:{provider}:{}", client.ip())
}

/// `GET /login/sso/{provider}/callback`.
pub async fn callback(
    State(portal): State<Arc<Portal>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Query(query): Query<Callback>,
) -> Response {
    if let Some(page) = throttled_page(&portal, &name, client) {
        return page;
    }
    let throttled = throttle_name(&name, client);
    let refuse = |status: StatusCode, actor: Option<&str>, reason: &str| {
        audit(
            &portal,
            "sso_refused",
            actor,
            client,
            format!("provider {name}: {reason}"),
        );
        portal.record_login_failure(client, &throttled);
        refusal_page(status, &name, reason)
    };
    let Some(provider) = portal.sso.provider(&name) else {
        return refuse(StatusCode::NOT_FOUND, None, "no such identity provider");
    };
    let Some(state) = query.state.as_deref() else {
        return refuse(
            StatusCode::BAD_REQUEST,
            None,
            "the answer carried no state; start the sign-in again from the login page",
        );
    };
    let Some(pending) = portal.sso.take(state) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            None,
            "this sign-in answer was already used, has expired or was never started here; start again from the login page",
        );
    };
    let bound =
        cookie(&headers, BINDING_COOKIE).is_some_and(|token| key(&token) == pending.binding);
    if !bound {
        return refuse(
            StatusCode::FORBIDDEN,
            None,
            "this sign-in was started in another browser; start again from the login page",
        );
    }
    if pending.provider != name {
        return refuse(
            StatusCode::BAD_REQUEST,
            None,
            "the answer came back for another provider than the sign-in was started with",
        );
    }
    if let Some(code) = query.error.as_deref() {
        let description = query
            .error_description
            .as_deref()
            .unwrap_or("no reason given");
        return refuse(
            StatusCode::FORBIDDEN,
            None,
            &format!("the identity provider said no ({code}: {description})"),
        );
    }
    let Some(code) = query.code.as_deref() else {
        return refuse(StatusCode::BAD_REQUEST, None, "the answer carried no code");
    };
    let sign_in = match provider
        .finish(pending.login, code, query.iss.as_deref())
        .await
    {
        Ok(sign_in) => sign_in,
        Err(SsoError::Refused(reason)) => {
            return refuse(StatusCode::FORBIDDEN, None, &reason);
        }
        Err(SsoError::Unreachable(reason)) => {
            warn!(provider = %name, %reason, "provider sign-in failed");
            audit(
                &portal,
                "sso_refused",
                None,
                client,
                format!("provider {name}: {reason}"),
            );
            return refusal_page(
                StatusCode::BAD_GATEWAY,
                &name,
                &format!("the identity provider could not be reached ({reason})"),
            );
        }
    };
    let (user, identity) = match super::admit(&portal, &provider, sign_in, client, "browser").await
    {
        Ok(admitted) => admitted,
        Err(refused) => {
            return refuse(
                StatusCode::FORBIDDEN,
                refused.username.as_deref(),
                &refused.reason,
            );
        }
    };
    portal.login_succeeded(client.ip(), &throttled);
    let how = first_factor(&name, &identity);
    let response = crate::mfa::first_factor_accepted(&portal, user, client, &how);
    // The `Strict` cookies this answer sets ride along on the next request only when it starts from
    // this portal's own page.
    let mut response = moving_on(response, "Signed in");
    if let Ok(expire) = expire_cookie(BINDING_COOKIE, "Lax").parse() {
        response.headers_mut().append(header::SET_COOKIE, expire);
    }
    response
}
