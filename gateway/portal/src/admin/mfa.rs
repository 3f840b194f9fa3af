//! The MFA requirement page: which roles must use two-factor authentication.

use std::sync::Arc;

use axum::Form;
use axum::extract::State;
use maud::{Markup, html};
use sallyport_core::policy::Role;
use serde::Deserialize;

use super::{AdminChange, Answer};
use crate::Portal;
use crate::access::AdminUser;
use crate::html::{PageError, ShownTo, admin_page};

/// `GET /admin/mfa`: which roles must use two-factor authentication.
pub(super) async fn settings(
    State(portal): State<Arc<Portal>>,
    AdminUser(admin): AdminUser,
) -> Result<Markup, PageError> {
    let required = portal
        .broker
        .state()
        .mfa_required_roles()
        .shown_to(&admin)?;
    Ok(admin_page(
        "Two-factor authentication",
        &admin,
        &[],
        html! {
            p { "Users of the checked roles must set up an authenticator app before they can do anything else." }
            form.card method="post" action="/admin/mfa" {
                fieldset {
                    legend { "Roles that must use two-factor authentication" }
                    @for role in [Role::Admin, Role::Auditor, Role::User] {
                        label.check {
                            input type="checkbox" name=(role.as_str()) value="on" id={ "require-" (role.as_str()) }
                                checked[required.contains(&role)];
                            " " (role.as_str())
                        }
                    }
                }
                button type="submit" id="save-mfa" { "Save" }
            }
        },
    ))
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
