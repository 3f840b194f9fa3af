//! The MFA requirement page: which roles must use two-factor authentication.

use std::sync::Arc;

use axum::Form;
use axum::extract::State;
use sallyport_core::policy::Role;
use serde::Deserialize;

use super::{AdminChange, Answer, OrErrorPage, page};
use crate::Portal;
use crate::access::AdminUser;

/// `GET /admin/mfa`: which roles must use two-factor authentication.
pub(super) async fn settings(
    State(portal): State<Arc<Portal>>,
    AdminUser(admin): AdminUser,
) -> Answer {
    let required = portal
        .broker
        .state()
        .mfa_required_roles()
        .or_error_page(&admin)?;
    let boxes: String = [Role::Admin, Role::Auditor, Role::User]
        .iter()
        .map(|role| {
            let checked = if required.contains(role) { " checked" } else { "" };
            format!(r#"<label><input type="checkbox" name="{0}" value="on" id="require-{0}"{checked}> {0}</label>"#, role.as_str())
        })
        .collect();
    let body = format!(
        r#"<p>Users of the checked roles must set up an authenticator app before they can do anything else.</p>
<form class="card" method="post" action="/admin/mfa">{boxes}<button type="submit" id="save-mfa">Save</button></form>"#
    );
    Ok(page("Two-factor authentication", &admin, &body))
}

/// The MFA settings form: a checkbox per role.
#[derive(Deserialize, Default)]
pub(super) struct MfaForm {
    #[serde(default)]
    admin: Option<String>,
    #[serde(default)]
    auditor: Option<String>,
    #[serde(default)]
    user: Option<String>,
}

/// `POST /admin/mfa`.
pub(super) async fn save(change: AdminChange, Form(form): Form<MfaForm>) -> Answer {
    let roles: Vec<Role> = [
        (Role::Admin, &form.admin),
        (Role::Auditor, &form.auditor),
        (Role::User, &form.user),
    ]
    .into_iter()
    .filter(|(_, on)| on.is_some())
    .map(|(role, _)| role)
    .collect();
    change.check(change.portal.broker.state().set_mfa_required_roles(&roles))?;
    let names = roles
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(",");
    change.done(
        "mfa_requirement_changed",
        None,
        format!("required for: {names}"),
        "/admin/mfa",
    )
}
