//! The portal's HTML pages: login, logout, password change, target list and the terminal page.
//!
//! Pages are small server-rendered HTML; every dynamic value goes through [`escape`].

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Form;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use sallyport_core::policy::{Authenticated, Protocol, Role};
use sallyport_core::throttle::LockEvent;
use sallyport_state::{
    AuditEvent, BUSY_RETRY_AFTER_SECONDS, LoginOutcome, StateError, TargetRecord,
};
use serde::Deserialize;
use tracing::{debug, warn};

use crate::Portal;
use crate::access::{AccessError, decide, visible_targets};
use crate::auth::{CurrentUser, expired_cookie, session_cookie, session_token};

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

pub fn layout(
    title: &str,
    user: Option<&Authenticated>,
    body: &str,
    body_attrs: &str,
    head: &str,
) -> Html<String> {
    let who = match user {
        Some(user) => format!(
            r#"{nav}<a href="/account/mfa" style="color:inherit">Security</a><span class="who">{} ({})</span><form method="post" action="/logout"><button type="submit" id="logout">Log out</button></form>"#,
            escape(user.username()),
            user.role().as_str(),
            nav = match user.role() {
                Role::Admin => r#"<a href="/admin" style="color:inherit">Admin</a>"#,
                Role::Auditor => r#"<a href="/admin/audit" style="color:inherit">Audit log</a>"#,
                Role::User => "",
            }
        ),
        None => String::new(),
    };
    Html(format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · Sallyport</title><link rel="stylesheet" href="/assets/style.css">{head}</head>
<body{body_attrs}><header><span class="brand">Sallyport</span><a href="/targets" style="color:inherit">Targets</a>{who}</header>
<main>{body}</main></body></html>"#,
        title = escape(title)
    ))
}

/// Adds the security headers every response carries.
pub async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let set = |headers: &mut HeaderMap, name: &'static str, value: &'static str| {
        headers.insert(name, HeaderValue::from_static(value));
    };
    // xterm.js injects <style> elements for its theme, hence 'unsafe-inline' for styles only.
    set(
        headers,
        "content-security-policy",
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    );
    set(headers, "x-frame-options", "DENY");
    set(headers, "x-content-type-options", "nosniff");
    // `same-origin`, not `no-referrer`: under `no-referrer` browsers send `Origin: null` on form posts,
    // which the Origin check must refuse. Nothing leaks to other sites either way.
    set(headers, "referrer-policy", "same-origin");
    set(headers, "cross-origin-opener-policy", "same-origin");
    if !headers.contains_key(header::CACHE_CONTROL) {
        set(headers, "cache-control", "no-store");
    }
    response
}

/// `GET /`.
pub async fn home(headers: HeaderMap, State(portal): State<Arc<Portal>>) -> Redirect {
    match session_token(&headers).and_then(|token| portal.logins.lookup(&token)) {
        Some(_) => Redirect::to("/targets"),
        None => Redirect::to("/login"),
    }
}

/// Words of the state database (lower case, no full stop, as the CLI shows them) as a sentence of a page.
fn capitalized_sentence(words: &str) -> String {
    let mut chars = words.chars();
    chars.next().map_or_else(String::new, |first| {
        format!("{}{}.", first.to_uppercase(), chars.as_str())
    })
}

fn login_page(error: Option<&str>) -> Html<String> {
    let error = error
        .map(|e| format!(r#"<p class="error" id="error">{}</p>"#, escape(e)))
        .unwrap_or_default();
    layout(
        "Log in",
        None,
        &format!(
            r#"<h1>Log in</h1>{error}
<form class="card" method="post" action="/login">
<label>Username <input name="username" id="username" autocomplete="username" required autofocus></label>
<label>Password <input name="password" id="password" type="password" autocomplete="current-password" required></label>
<button type="submit" id="login">Log in</button></form>"#
        ),
        "",
        "",
    )
}

/// `GET /login`.
pub async fn login_form() -> Html<String> {
    login_page(None)
}

/// The login form's fields.
#[derive(Deserialize)]
pub struct LoginForm {
    username: String,
    password: String,
}

/// `POST /login`.
///
/// The login throttle is asked first: a source that is backing off, or a username that is locked,
/// gets 429 with `Retry-After` before the password is looked at. A locked username that does not exist
/// gets the very same answer as one that does (the throttle tracks both alike), so neither the answer
/// nor its timing tells which users exist.
pub async fn login(
    State(portal): State<Arc<Portal>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    Form(form): Form<LoginForm>,
) -> Response {
    let throttle = || {
        portal
            .throttle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    };
    if let Some(wait) = portal.login_wait(client.ip(), &form.username) {
        // Whole seconds, rounded up, so that a client honouring Retry-After is not refused again.
        let seconds = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
        let when = if seconds < 120 {
            format!("{seconds} seconds")
        } else {
            format!("{} minutes", seconds.div_ceil(60))
        };
        debug!(client_addr = %client, retry_after = seconds, "login refused: too many failures");
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, seconds.to_string())],
            login_page(Some(&format!(
                "Too many failed logins. Try again in {when}."
            ))),
        )
            .into_response();
    }
    let state = portal.broker.state().clone();
    let username = form.username.clone();
    let outcome =
        tokio::task::spawn_blocking(move || state.verify_login(&form.username, &form.password))
            .await;
    let audit = |kind: &str, detail: Option<String>| {
        portal.broker.audit(AuditEvent {
            kind: kind.into(),
            actor: Some(username.clone()),
            client_addr: Some(client.to_string()),
            detail,
            ..AuditEvent::default()
        })
    };
    match outcome {
        Ok(Ok(LoginOutcome::Success(user))) => {
            portal.login_succeeded(client.ip(), &username);
            crate::mfa::password_accepted(&portal, user, client)
        }
        Ok(Ok(LoginOutcome::Failure)) => {
            audit("login_failed", None);
            let failed_at = portal.started.elapsed();
            let lockouts = throttle().record_failure(client.ip(), &username, failed_at);
            portal.block_locked_out_sources(&lockouts);
            for lockout in lockouts {
                let detail = match lockout {
                    LockEvent::Source { source, wait, .. } => format!(
                        "source {source} must wait {} s after repeated failed logins",
                        wait.as_secs_f64()
                    ),
                    LockEvent::User { until, .. } => format!(
                        "username locked for {} s after repeated failed logins",
                        until.saturating_sub(failed_at).as_secs()
                    ),
                };
                audit("lockout", Some(detail));
            }
            (
                StatusCode::UNAUTHORIZED,
                login_page(Some("Wrong username or password.")),
            )
                .into_response()
        }
        Ok(Err(StateError::Busy(words))) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, BUSY_RETRY_AFTER_SECONDS.to_string())],
            login_page(Some(&capitalized_sentence(&words))),
        )
            .into_response(),
        Ok(Err(error)) => {
            warn!(%error, "login check failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                login_page(Some("The login could not be checked; try again.")),
            )
                .into_response()
        }
        Err(error) => {
            warn!(%error, "login task failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                login_page(Some("The login could not be checked; try again.")),
            )
                .into_response()
        }
    }
}

/// `POST /logout`.
pub async fn logout(
    State(portal): State<Arc<Portal>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    user: CurrentUser,
) -> Response {
    // Logging out ends everything this user has open, on every device.
    portal.revoke_user(user.user.user_id(), "you logged out");
    portal.broker.audit(AuditEvent {
        kind: "logout".into(),
        actor: Some(user.user.username().to_owned()),
        client_addr: Some(client.to_string()),
        ..AuditEvent::default()
    });
    (
        [(header::SET_COOKIE, expired_cookie())],
        Redirect::to("/login"),
    )
        .into_response()
}

fn password_page(user: &Authenticated, error: Option<&str>) -> Html<String> {
    let error = error
        .map(|e| format!(r#"<p class="error" id="error">{}</p>"#, escape(e)))
        .unwrap_or_default();
    layout(
        "Choose a password",
        Some(user),
        &format!(
            r#"<h1>Choose a new password</h1>
<p>Passwords shown once (like the first admin password) must be replaced before you continue.</p>{error}
<form class="card" method="post" action="/password">
<label>New password (at least 12 characters) <input name="new_password" id="new_password" type="password" autocomplete="new-password" minlength="12" required autofocus></label>
<label>Repeat it <input name="repeat" id="repeat" type="password" autocomplete="new-password" minlength="12" required></label>
<button type="submit" id="save-password">Save</button></form>"#
        ),
        "",
        "",
    )
}

/// `GET /password`.
pub async fn password_form(user: CurrentUser) -> Html<String> {
    password_page(&user.user, None)
}

/// The password form's fields.
#[derive(Deserialize)]
pub struct PasswordForm {
    new_password: String,
    repeat: String,
}

/// `POST /password`.
pub async fn change_password(
    State(portal): State<Arc<Portal>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    user: CurrentUser,
    Form(form): Form<PasswordForm>,
) -> Response {
    if form.new_password != form.repeat {
        return (
            StatusCode::BAD_REQUEST,
            password_page(&user.user, Some("The two passwords differ.")),
        )
            .into_response();
    }
    if form.new_password.chars().count() < 12 {
        return (
            StatusCode::BAD_REQUEST,
            password_page(&user.user, Some("Use at least 12 characters.")),
        )
            .into_response();
    }
    let state = portal.broker.state().clone();
    let id = user.user.user_id();
    match tokio::task::spawn_blocking(move || state.set_password(id, &form.new_password)).await {
        Ok(Ok(())) => {
            // A new password ends every other login and every live session of this user; this browser
            // gets a fresh login session.
            portal.revoke_user(user.user.user_id(), "your password was changed");
            let Ok(token) = portal.logins.create(user.user.clone()) else {
                return (StatusCode::INTERNAL_SERVER_ERROR, "no randomness available")
                    .into_response();
            };
            portal.broker.audit(AuditEvent {
                kind: "password_changed".into(),
                actor: Some(user.user.username().to_owned()),
                client_addr: Some(client.to_string()),
                ..AuditEvent::default()
            });
            (
                [(header::SET_COOKIE, session_cookie(&token))],
                Redirect::to("/targets"),
            )
                .into_response()
        }
        Ok(Err(StateError::Busy(words))) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, BUSY_RETRY_AFTER_SECONDS.to_string())],
            password_page(&user.user, Some(&capitalized_sentence(&words))),
        )
            .into_response(),
        _ => (
            StatusCode::INTERNAL_SERVER_ERROR,
            password_page(&user.user, Some("The password could not be saved.")),
        )
            .into_response(),
    }
}

/// `GET /targets`.
pub async fn targets(State(portal): State<Arc<Portal>>, user: CurrentUser) -> Response {
    let targets = match visible_targets(&portal, &user.user) {
        Ok(targets) => targets,
        Err(error) => {
            warn!(%error, "could not list targets");
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the target list is unavailable",
            )
                .into_response();
        }
    };
    let rows: String = targets
        .iter()
        .map(|t| {
            format!(
                r#"<tr data-target="{name}"><td>{name}</td><td>{host}:{port}</td><td>{protocol}</td><td><a class="connect" href="/connect/{id}">Connect</a></td></tr>"#,
                name = escape(&t.name),
                host = escape(&t.host),
                port = t.port,
                protocol = t.protocol.as_str(),
                id = t.id
            )
        })
        .collect();
    let body = if targets.is_empty() {
        "<h1>Targets</h1><p>No targets are registered yet.</p><p><a href=\"/connect-ip\" id=\"connect-ip\">Connect by IP address</a></p>".to_owned()
    } else {
        format!(
            r#"<h1>Targets</h1><p><a href="/connect-ip" id="connect-ip">Connect by IP address</a></p><table id="targets"><thead><tr><th>Name</th><th>Address</th><th>Protocol</th><th></th></tr></thead><tbody>{rows}</tbody></table>"#
        )
    };
    layout("Targets", Some(&user.user), &body, "", "").into_response()
}

/// `GET /connect/{target_id}`: the connect form and the terminal.
pub async fn connect_page(
    State(portal): State<Arc<Portal>>,
    Path(target_id): Path<i64>,
    user: CurrentUser,
) -> Response {
    let target = match portal.broker.state().target(target_id) {
        Ok(Some(target)) => target,
        _ => return not_found().await.into_response(),
    };
    // The page is shown only to users the policy lets through; the WebSocket checks again.
    match decide(&portal, &user.user, &target) {
        Ok(_) => {}
        Err(AccessError::Denied(denied)) => {
            let body = format!(
                r#"<h1>Not allowed</h1><p id="error" class="error">{}</p>"#,
                escape(&denied.to_string())
            );
            return (
                StatusCode::FORBIDDEN,
                layout("Not allowed", Some(&user.user), &body, "", ""),
            )
                .into_response();
        }
        Err(AccessError::State(error)) => {
            warn!(%error, "could not decide access");
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the access decision is unavailable",
            )
                .into_response();
        }
    }
    if target.protocol == Protocol::Rdp {
        return desktop_page(&user, &target);
    }
    let body = format!(
        r#"<h1>{name} <small>{host}:{port}</small></h1>
<form class="card" id="connect-form" autocomplete="off">
<label>Username on {name} <input name="username" id="target-username" required autofocus autocapitalize="off"></label>
<div class="auth-choice"><label><input type="radio" name="auth" value="password" checked> Password</label><label><input type="radio" name="auth" value="key" id="auth-key"> Private key</label></div>
<div id="password-fields"><label>Password <input name="password" id="target-password" type="password" autocomplete="off"></label></div>
<div id="key-fields" hidden><label>Private key (PEM) <textarea name="private_key" id="target-key" rows="6" spellcheck="false"></textarea></label>
<label>Passphrase (if any) <input name="passphrase" id="target-passphrase" type="password" autocomplete="off"></label></div>
<p>The credential is used for this connection only; Sallyport never stores it. The session is recorded.</p>
<button type="submit" id="connect">Connect</button></form>
<div id="status" data-state="idle"></div><div id="terminal" hidden></div>"#,
        name = escape(&target.name),
        host = escape(&target.host),
        port = target.port
    );
    let head = r#"<link rel="stylesheet" href="/assets/xterm.css"><script src="/assets/xterm.js" defer></script><script src="/assets/addon-fit.js" defer></script><script src="/assets/terminal.js" defer></script>"#;
    layout(
        &target.name,
        Some(&user.user),
        &body,
        &format!(r#" data-ws-path="/ws/terminal/{}""#, target.id),
        head,
    )
    .into_response()
}

/// The desktop page of an RDP target: the connect form, then the canvas.
fn desktop_page(user: &CurrentUser, target: &TargetRecord) -> Response {
    let body = format!(
        r#"<h1>{name} <small>{host}:{port} (RDP)</small></h1>
<form class="card" id="connect-form" autocomplete="off">
<label>Username on {name} <input name="username" id="target-username" required autofocus autocapitalize="off"></label>
<label>Password <input name="password" id="target-password" type="password" autocomplete="off" required></label>
<label>Domain (if any) <input name="domain" id="target-domain" autocapitalize="off"></label>
<p>The password is used for this connection only; Sallyport never stores it. The session is recorded.</p>
<button type="submit" id="connect">Connect</button></form>
<div id="desktop-page" hidden><div id="desktop-toolbar"><button type="button" id="ctrl-alt-del">Ctrl+Alt+Del</button><button type="button" id="fullscreen">Full screen</button><button type="button" id="clipboard-toggle">Clipboard</button><div id="status" data-state="idle"></div></div>
<div id="clipboard-panel" class="card" hidden><label>Clipboard text (copied on the remote desktop, or to paste there) <textarea id="clipboard-text" rows="4" autocomplete="off"></textarea></label><button type="button" id="clipboard-send">Send to the remote clipboard</button> <span id="clipboard-status" role="status"></span></div>
<div id="desktop-area"><canvas id="desktop" tabindex="0" width="1" height="1"></canvas></div></div>"#,
        name = escape(&target.name),
        host = escape(&target.host),
        port = target.port
    );
    // Deferred scripts run in order: the protocol codec first, then the page that uses it.
    let head = r#"<script src="/assets/desktop-protocol.js" defer></script><script src="/assets/desktop.js" defer></script>"#;
    layout(
        &target.name,
        Some(&user.user),
        &body,
        &format!(r#" data-ws-path="/ws/desktop/{}""#, target.id),
        head,
    )
    .into_response()
}

/// Anything else.
pub async fn not_found() -> (StatusCode, Html<String>) {
    (
        StatusCode::NOT_FOUND,
        layout("Not found", None, "<h1>Not found</h1>", "", ""),
    )
}
