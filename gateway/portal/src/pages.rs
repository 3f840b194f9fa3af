//! The portal's pages for everyone: login, logout, password change and the connect pages (terminal and
//! desktop; the target list is [`crate::target_list`]), drawn with the templates of [`crate::html`].

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Form;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use sallyport_core::policy::{Authenticated, Protocol};
use sallyport_core::throttle::LockEvent;
use sallyport_state::{AuditEvent, LoginOutcome, TargetRecord};
use serde::Deserialize;
use tracing::{debug, warn};

use crate::Portal;
use crate::access::{AccessError, decide};
use crate::auth::{CurrentUser, expired_cookie, session_cookie, session_token};
use crate::html::components::{error, field};
use crate::html::{Asset, Layout, PageError, ShownTo, page};
use crate::refusal::{LOGIN_UNCHECKED, Refusal};

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
pub(crate) fn capitalized_sentence(words: &str) -> String {
    let mut chars = words.chars();
    chars.next().map_or_else(String::new, |first| {
        format!("{}{}.", first.to_uppercase(), chars.as_str())
    })
}

fn login_page(portal: &Portal, problem: Option<&str>) -> Markup {
    page(
        "Log in",
        None,
        html! {
            h1 { "Log in" }
            @if let Some(problem) = problem { (error(problem)) }
            form.card method="post" action="/login" {
                (field("Username", html! {
                    input name="username" id="username" autocomplete="username" required autofocus;
                }))
                (field("Password", html! {
                    input name="password" id="password" type="password" autocomplete="current-password" required;
                }))
                button type="submit" id="login" { "Log in" }
            }
            (crate::passkeys::sign_in::login_button(portal))
            (crate::sso::browser::buttons(portal))
        },
    )
}

/// `GET /login`.
pub async fn login_form(State(portal): State<Arc<Portal>>) -> Markup {
    login_page(&portal, None)
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
        let refusal = Refusal {
            retry_after: Some(seconds),
            ..Refusal::new(StatusCode::TOO_MANY_REQUESTS, "throttled", "")
        };
        return refusal.respond(login_page(
            &portal,
            Some(&format!("Too many failed logins. Try again in {when}.")),
        ));
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
            if let Err(reason) = portal.password_sign_in_allowed(&user) {
                audit("login_refused", Some(reason.clone()));
                return (
                    StatusCode::FORBIDDEN,
                    login_page(&portal, Some(&capitalized_sentence(&reason))),
                )
                    .into_response();
            }
            crate::mfa::first_factor_accepted(&portal, user, client, "password")
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
                login_page(&portal, Some("Wrong username or password.")),
            )
                .into_response()
        }
        Ok(Err(error)) => {
            let refusal = Refusal::state(error, LOGIN_UNCHECKED);
            refusal.respond(login_page(
                &portal,
                Some(&capitalized_sentence(&refusal.message)),
            ))
        }
        Err(error) => {
            warn!(%error, "login task failed");
            let refusal = Refusal::internal(LOGIN_UNCHECKED);
            refusal.respond(login_page(
                &portal,
                Some(&capitalized_sentence(&refusal.message)),
            ))
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

fn password_page(user: &Authenticated, problem: Option<&str>) -> Markup {
    page(
        "Choose a password",
        Some(user),
        html! {
            h1 { "Choose a new password" }
            p { "Passwords shown once (like the first admin password) must be replaced before you continue." }
            @if let Some(problem) = problem { (error(problem)) }
            form.card method="post" action="/password" {
                (field("New password (at least 12 characters)", html! {
                    input name="new_password" id="new_password" type="password" autocomplete="new-password" minlength="12" required autofocus;
                }))
                (field("Repeat it", html! {
                    input name="repeat" id="repeat" type="password" autocomplete="new-password" minlength="12" required;
                }))
                button type="submit" id="save-password" { "Save" }
            }
        },
    )
}

/// `GET /password`.
pub async fn password_form(user: CurrentUser) -> Markup {
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
                return PageError::internal(NO_RANDOMNESS)
                    .shown_to(&user)
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
        Ok(Err(error)) => {
            let refusal = Refusal::state(error, "the password could not be saved");
            refusal.respond(password_page(
                &user.user,
                Some(&capitalized_sentence(&refusal.message)),
            ))
        }
        Err(error) => {
            warn!(%error, "password change task failed");
            let refusal = Refusal::internal("the password could not be saved");
            refusal.respond(password_page(
                &user.user,
                Some(&capitalized_sentence(&refusal.message)),
            ))
        }
    }
}

/// `GET /connect/{target_id}`: the connect form and the terminal.
pub async fn connect_page(
    State(portal): State<Arc<Portal>>,
    Path(target_id): Path<i64>,
    user: CurrentUser,
) -> Result<Markup, PageError> {
    let no_target = || {
        PageError::not_found("there is no such target")
            .link("/targets", "Back to your targets")
            .shown_to(&user)
    };
    let target = portal
        .broker
        .state()
        .target(target_id)
        .shown_to(&user)?
        .ok_or_else(no_target)?;
    // The page is shown only to users the policy lets through; the WebSocket checks again.
    match decide(&portal, &user.user, &target) {
        Ok(_) => {}
        Err(AccessError::Denied(denied)) => {
            return Err(PageError::forbidden(denied.to_string()).shown_to(&user));
        }
        Err(AccessError::State(error)) => return Err(PageError::from(error).shown_to(&user)),
    }
    // The target username this user logged in with last time (never a secret), to type it only once.
    let remembered = portal
        .broker
        .state()
        .remembered_username(user.user.user_id(), target.id)
        .shown_to(&user)?;
    let login = TargetLogin {
        username: remembered.as_deref(),
    };
    Ok(match target.protocol {
        Protocol::Rdp => desktop_page(&user, &target, login),
        Protocol::Ssh => terminal_page(&user, &target, login),
    })
}

/// The heading of a connect page: the target, its address and, for desktops, the protocol.
fn target_heading(target: &TargetRecord, protocol: Option<&str>) -> Markup {
    html! {
        h1 {
            (target.name) " "
            small { (target.host) ":" (target.port) @if let Some(p) = protocol { " (" (p) ")" } }
        }
    }
}

/// What the connect form fills in: the username remembered from this user's last login to the target.
#[derive(Clone, Copy)]
struct TargetLogin<'a> {
    username: Option<&'a str>,
}

impl TargetLogin<'_> {
    /// The target-username input, filled with the remembered name; it has the focus unless it is
    /// filled, when the password field takes it (what is left to type).
    fn username_field(self, target: &TargetRecord) -> Markup {
        let label = format!("Username on {}", target.name);
        field(
            &label,
            html! {
                input name="username" id="target-username" required autofocus[self.username.is_none()]
                    autocapitalize="off" value=[self.username];
            },
        )
    }

    /// Whether the password field takes the focus.
    fn password_focus(self) -> bool {
        self.username.is_some()
    }
}

/// The terminal page of an SSH target: the connect form, then the terminal.
fn terminal_page(user: &CurrentUser, target: &TargetRecord, login: TargetLogin<'_>) -> Markup {
    let body = html! {
        (target_heading(target, None))
        form.card id="connect-form" autocomplete="off" {
            (login.username_field(target))
            fieldset.auth-choice {
                legend { "Sign in with" }
                label { input type="radio" name="auth" value="password" checked; " Password" }
                label { input type="radio" name="auth" value="key" id="auth-key"; " Private key" }
            }
            div id="password-fields" {
                (field("Password", html! {
                    input name="password" id="target-password" type="password" autocomplete="off"
                        autofocus[login.password_focus()];
                }))
            }
            div id="key-fields" hidden {
                (field("Private key (PEM)", html! {
                    textarea name="private_key" id="target-key" rows="6" spellcheck="false" {}
                }))
                (field("Passphrase (if any)", html! {
                    input name="passphrase" id="target-passphrase" type="password" autocomplete="off";
                }))
            }
            p { "The credential is used for this connection only; Sallyport never stores it. The session is recorded." }
            button type="submit" id="connect" { "Connect" }
        }
        div id="status" data-state="idle" role="status" {}
        div id="terminal" hidden {}
    };
    let assets = [Asset::XTERM.as_slice(), &[Asset::Script("terminal.js")]].concat();
    Layout {
        title: &target.name,
        viewer: Some(&user.user),
        assets: &assets,
        ws_path: Some(format!("/ws/terminal/{}", target.id)),
    }
    .render(body)
}

/// The desktop page of an RDP target: the connect form, then the canvas.
fn desktop_page(user: &CurrentUser, target: &TargetRecord, login: TargetLogin<'_>) -> Markup {
    let body = html! {
        (target_heading(target, Some("RDP")))
        form.card id="connect-form" autocomplete="off" {
            (login.username_field(target))
            (field("Password", html! {
                input name="password" id="target-password" type="password" autocomplete="off" required
                    autofocus[login.password_focus()];
            }))
            (field("Domain (if any)", html! {
                input name="domain" id="target-domain" autocapitalize="off";
            }))
            p { "The password is used for this connection only; Sallyport never stores it. The session is recorded." }
            button type="submit" id="connect" { "Connect" }
        }
        div id="desktop-page" hidden {
            div id="desktop-toolbar" {
                button type="button" id="ctrl-alt-del" { "Ctrl+Alt+Del" }
                button type="button" id="fullscreen" { "Full screen" }
                button type="button" id="clipboard-toggle" aria-controls="clipboard-panel" { "Clipboard" }
                div id="status" data-state="idle" role="status" {}
            }
            div.card id="clipboard-panel" hidden {
                (field("Clipboard text (copied on the remote desktop, or to paste there)", html! {
                    textarea id="clipboard-text" rows="4" autocomplete="off" {}
                }))
                button type="button" id="clipboard-send" { "Send to the remote clipboard" }
                " "
                span id="clipboard-status" role="status" {}
            }
            div id="desktop-area" {
                canvas id="desktop" tabindex="0" width="1" height="1" aria-label="Remote desktop" {}
            }
        }
    };
    Layout {
        title: &target.name,
        viewer: Some(&user.user),
        // The protocol codec first, then the page that uses it.
        assets: &[
            Asset::Script("desktop-protocol.js"),
            Asset::Script("desktop.js"),
        ],
        ws_path: Some(format!("/ws/desktop/{}", target.id)),
    }
    .render(body)
}

/// What the pages say when no randomness is to be had for a token.
pub(crate) const NO_RANDOMNESS: &str = "no randomness available for a session token; try again";

/// Anything else.
pub async fn not_found() -> PageError {
    PageError::not_found("there is no page at this address").link("/", "Go to the start page")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn a_remembered_username_is_filled_in_and_the_password_takes_the_focus() {
        let target = TargetRecord {
            id: 1,
            name: "web".into(),
            host: "10.0.0.5".into(),
            port: 22,
            protocol: Protocol::Ssh,
            tags: Vec::new(),
        };
        let fresh = TargetLogin { username: None };
        assert!(!fresh.password_focus());
        let html = fresh.username_field(&target).into_string();
        assert!(
            html.contains("autofocus") && !html.contains("value="),
            "{html}"
        );
        let known = TargetLogin {
            username: Some("deploy\""),
        };
        assert!(known.password_focus());
        let html = known.username_field(&target).into_string();
        assert!(html.contains(r#"value="deploy&quot;""#), "{html}");
        assert!(!html.contains("autofocus"), "{html}");
    }
}
