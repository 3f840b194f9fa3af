//! The admin pages: users (add, disable, delete, reset password, role, groups), targets, networks,
//! policies, pinned host keys, the MFA requirement and the audit log (and its export). Every change is done by an admin
//! and audited with who, what and from where: [`AdminChange`] does both for every change handler (the
//! Origin layer on the whole router has already refused foreign changes), and [`table`] and
//! [`post_button`] draw what the pages share.

mod audit_export;
mod audit_log;
mod host_keys;
mod mfa;
mod networks;
mod policies;
mod targets;
mod users;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{MethodRouter, get, post};
use sallyport_state::{AuditEvent, StateError};

use crate::access::AdminUser;
use crate::auth::{CurrentUser, client_addr};
use crate::pages::{escape, layout};
use crate::{Portal, edge, watch};

const NAV: &str = r#"<nav class="admin-nav"><a href="/admin/users">Users</a> · <a href="/admin/targets">Targets</a> · <a href="/admin/networks">Networks</a> · <a href="/admin/policies">Policies</a> · <a href="/admin/hostkeys">Host keys</a> · <a href="/admin/mfa">MFA</a> · <a href="/admin/sessions">Live sessions</a> · <a href="/admin/audit">Audit log</a> · <a href="/admin/edge">Edge</a></nav>"#;

/// What an admin handler answers: the page, or the page that says why not.
type Answer = Result<Response, Refused>;

/// The page that says why a request was not done, on its way out (boxed: a `Response` is large for the
/// `Err` of every helper that may refuse).
pub(crate) struct Refused(Box<Response>);

impl From<Response> for Refused {
    fn from(response: Response) -> Self {
        Refused(Box::new(response))
    }
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        *self.0
    }
}

/// The handler of an admin route of [`crate::routes::ROUTES`] (the live sessions and the edge pages
/// included).
pub(crate) fn endpoint(method: &str, path: &str) -> Option<MethodRouter<Arc<Portal>>> {
    Some(match (method, path) {
        ("GET", "/admin") => get(index),
        ("GET", "/admin/users") => get(users::list),
        ("POST", "/admin/users") => post(users::create),
        ("POST", "/admin/users/{id}/update") => post(users::update),
        ("POST", "/admin/users/{id}/{action}") => post(users::action),
        ("GET", "/admin/targets") => get(targets::list),
        ("POST", "/admin/targets") => post(targets::save),
        ("POST", "/admin/targets/{id}/delete") => post(targets::delete),
        ("GET", "/admin/networks") => get(networks::list),
        ("POST", "/admin/networks") => post(networks::add),
        ("POST", "/admin/networks/delete") => post(networks::delete),
        ("POST", "/admin/networks/connect-by-ip") => post(networks::toggle_connect_by_ip),
        ("GET", "/admin/policies") => get(policies::list),
        ("POST", "/admin/policies") => post(policies::add),
        ("POST", "/admin/policies/{id}/delete") => post(policies::delete),
        ("GET", "/admin/hostkeys") => get(host_keys::list),
        ("POST", "/admin/hostkeys/{target_id}/forget") => post(host_keys::forget),
        ("GET", "/admin/mfa") => get(mfa::settings),
        ("POST", "/admin/mfa") => post(mfa::save),
        ("GET", "/admin/audit") => get(audit_log::page),
        ("GET", "/admin/audit/export") => get(audit_export::download),
        ("GET", "/admin/edge") => get(edge::edge_page),
        ("GET", "/admin/metrics") => get(edge::metrics),
        ("GET", "/admin/sessions") => get(watch::sessions),
        ("POST", "/admin/sessions/{id}/terminate") => post(watch::terminate),
        ("GET", "/admin/sessions/{id}/watch") => get(watch::watch_page),
        _ => return None,
    })
}

/// An admin page: the admin navigation, the title and `body`.
pub(crate) fn page(title: &str, user: &CurrentUser, body: &str) -> Response {
    page_with_head(title, user, body, "")
}

/// An admin page with `head` (its scripts) in the document's head.
fn page_with_head(title: &str, user: &CurrentUser, body: &str, head: &str) -> Response {
    layout(
        title,
        Some(&user.user),
        &format!("{NAV}<h1>{}</h1>{body}", escape(title)),
        "",
        head,
    )
    .into_response()
}

fn error_page(user: &CurrentUser, status: StatusCode, message: &str) -> Response {
    let body = format!(
        r#"{NAV}<h1>Not done</h1><p class="error" id="error">{}</p><p><a href="javascript:history.back()">Back</a></p>"#,
        escape(message)
    );
    (status, layout("Not done", Some(&user.user), &body, "", "")).into_response()
}

fn state_error(user: &CurrentUser, error: StateError) -> Response {
    let status = match error {
        StateError::Exists(_) => StatusCode::CONFLICT,
        StateError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let mut page = error_page(user, status, &error.to_string());
    if status == StatusCode::SERVICE_UNAVAILABLE {
        page.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from(sallyport_state::BUSY_RETRY_AFTER_SECONDS),
        );
    }
    page
}

/// A state database answer, or the error page that shows its error to `user`.
trait OrErrorPage<T> {
    fn or_error_page(self, user: &CurrentUser) -> Result<T, Refused>;
}

impl<T> OrErrorPage<T> for Result<T, StateError> {
    fn or_error_page(self, user: &CurrentUser) -> Result<T, Refused> {
        self.map_err(|error| state_error(user, error).into())
    }
}

/// A table with an `id`, its column headers and its rendered rows.
fn table(id: &str, headers: &[&str], rows: &str) -> String {
    let headers: String = headers.iter().map(|h| format!("<th>{h}</th>")).collect();
    format!(r#"<table id="{id}"><thead><tr>{headers}</tr></thead><tbody>{rows}</tbody></table>"#)
}

/// A one-button form that posts to `action`; `attributes` go on the button (each with a leading space).
pub(crate) fn post_button(action: &str, attributes: &str, label: &str) -> String {
    format!(
        r#"<form method="post" action="{action}" class="inline"><button type="submit"{attributes}>{label}</button></form>"#
    )
}

/// Splits a comma- or line-separated list, dropping empty items.
fn split_list(text: &str) -> Vec<String> {
    text.split([',', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A state change asked by an admin (the Origin layer made sure it came from the portal's own pages):
/// the extractor refuses a non-admin before the form is read, and carries what the audit needs.
pub(crate) struct AdminChange {
    pub(crate) portal: Arc<Portal>,
    pub(crate) admin: CurrentUser,
    pub(crate) client: SocketAddr,
}

impl FromRequestParts<Arc<Portal>> for AdminChange {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        portal: &Arc<Portal>,
    ) -> Result<Self, Self::Rejection> {
        let client = client_addr(parts, portal).await?;
        let AdminUser(admin) = AdminUser::from_request_parts(parts, portal).await?;
        Ok(AdminChange {
            portal: portal.clone(),
            admin,
            client,
        })
    }
}

impl AdminChange {
    /// Audits the change as this admin's, from this client.
    pub(crate) fn audit(&self, kind: &str, target: Option<&str>, detail: String) {
        self.portal.broker.audit(AuditEvent {
            kind: kind.to_owned(),
            actor: Some(self.admin.user.username().to_owned()),
            client_addr: Some(self.client.to_string()),
            target: target.map(str::to_owned),
            detail: Some(detail),
            ..AuditEvent::default()
        });
    }

    /// Audits the change done and sends the admin back to the page `back`.
    fn done(&self, kind: &str, target: Option<&str>, detail: String, back: &str) -> Answer {
        self.audit(kind, target, detail);
        Ok(Redirect::to(back).into_response())
    }

    /// The error page saying why the change was not done.
    fn refuse(&self, status: StatusCode, message: &str) -> Refused {
        error_page(&self.admin, status, message).into()
    }

    /// The state database's answer, or its error page.
    fn check<T>(&self, result: Result<T, StateError>) -> Result<T, Refused> {
        result.or_error_page(&self.admin)
    }

    /// A CIDR from a form, or the page saying it is not one.
    fn parse_cidr(&self, text: &str) -> Result<ipnet::IpNet, Refused> {
        text.trim().parse().map_err(|_| {
            self.refuse(
                StatusCode::BAD_REQUEST,
                "that is not a CIDR such as 10.0.0.0/16",
            )
        })
    }
}

/// `GET /admin`.
async fn index(AdminUser(admin): AdminUser) -> Response {
    page(
        "Administration",
        &admin,
        "<p>Manage who may reach what, and watch what happens.</p>",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_and_buttons_draw_the_markup_the_pages_always_had() {
        assert_eq!(
            table("hostkeys", &["Target", ""], "<tr></tr>"),
            r#"<table id="hostkeys"><thead><tr><th>Target</th><th></th></tr></thead><tbody><tr></tr></tbody></table>"#
        );
        assert_eq!(
            post_button(
                "/admin/users/7/delete",
                r#" data-action="delete""#,
                "Delete"
            ),
            r#"<form method="post" action="/admin/users/7/delete" class="inline"><button type="submit" data-action="delete">Delete</button></form>"#
        );
    }

    #[test]
    fn lists_split_on_commas_and_lines_without_empty_items() {
        assert_eq!(split_list(" ops, dev\nweb ,, \n"), ["ops", "dev", "web"]);
        assert!(split_list(" , ").is_empty());
    }
}
