//! The admin pages: the dashboard (the landing page, for auditors too), users (add, disable, delete, reset password, role, groups), targets, networks,
//! policies, pinned host keys, the MFA requirement and the audit log (and its export). Every change is done by an admin
//! and audited with who, what and from where: [`AdminChange`] does both for every change handler (the
//! Origin layer on the whole router has already refused foreign changes); the pages are drawn with
//! [`crate::html`]'s admin layout and components, and refusals are [`PageError`]s.

mod audit_export;
mod audit_log;
mod dashboard;
mod host_keys;
mod mfa;
mod networks;
mod policies;
mod policy_editor;
mod policy_form;
mod targets;
mod users;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{Redirect, Response};
use axum::routing::{MethodRouter, get, post};
use sallyport_state::{AuditEvent, StateError};

use crate::access::AdminUser;
use crate::auth::{CurrentUser, client_addr};
use crate::html::{PageError, ShownTo};
use crate::{Portal, edge, watch};

/// What an admin change answers: back to its page, or the page that says why not.
type Answer = Result<Redirect, PageError>;

/// The handler of an admin route of [`crate::routes::ROUTES`] (the live sessions and the edge pages
/// included).
pub(crate) fn endpoint(method: &str, path: &str) -> Option<MethodRouter<Arc<Portal>>> {
    Some(match (method, path) {
        ("GET", "/admin") => get(dashboard::index),
        ("GET", "/admin/users") => get(users::list),
        ("POST", "/admin/users") => post(users::create),
        ("POST", "/admin/users/{id}/update") => post(users::update),
        ("POST", "/admin/users/{id}/{action}") => post(users::action),
        ("POST", "/admin/password-sign-in") => post(users::password_sign_in),
        ("GET", "/admin/targets") => get(targets::list),
        ("POST", "/admin/targets") => post(targets::save),
        ("POST", "/admin/targets/{id}/delete") => post(targets::delete),
        ("GET", "/admin/networks") => get(networks::list),
        ("POST", "/admin/networks") => post(networks::add),
        ("POST", "/admin/networks/delete") => post(networks::delete),
        ("POST", "/admin/networks/connect-by-ip") => post(networks::toggle_connect_by_ip),
        ("GET", "/admin/policies") => get(policies::list),
        ("POST", "/admin/policies") => post(policies::add),
        ("POST", "/admin/policies/preview") => post(policies::preview_new),
        ("GET", "/admin/policies/{id}/edit") => get(policies::edit),
        ("POST", "/admin/policies/{id}/update") => post(policies::update),
        ("POST", "/admin/policies/{id}/preview") => post(policies::preview_edit),
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
        Ok(Redirect::to(back))
    }

    /// The page saying why the change was not done: `message`, with `status`.
    fn refuse(&self, status: StatusCode, message: impl Into<String>) -> PageError {
        PageError::new(status, message).shown_to(&self.admin)
    }

    /// The state database's answer, or its error page.
    fn check<T>(&self, result: Result<T, StateError>) -> Result<T, PageError> {
        result.shown_to(&self.admin)
    }

    /// A CIDR from a form, or the page saying it is not one.
    fn parse_cidr(&self, text: &str) -> Result<ipnet::IpNet, PageError> {
        text.trim().parse().map_err(|_| {
            PageError::bad_request("that is not a CIDR such as 10.0.0.0/16").shown_to(&self.admin)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_split_on_commas_and_lines_without_empty_items() {
        assert_eq!(split_list(" ops, dev\nweb ,, \n"), ["ops", "dev", "web"]);
        assert!(split_list(" , ").is_empty());
    }
}
