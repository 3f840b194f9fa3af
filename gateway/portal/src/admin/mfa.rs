//! The MFA requirement page: which roles must use a second factor (an authenticator app or a passkey),
//! and which must sign in with a passkey.

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

const ROLES: [Role; 3] = [Role::Admin, Role::Auditor, Role::User];

/// One fieldset of a checkbox per role, named `prefix` + role, the `checked` roles ticked.
fn role_boxes(legend: &str, prefix: &str, checked: &[Role]) -> Markup {
    html! {
        fieldset {
            legend { (legend) }
            @for role in ROLES {
                label.check {
                    input type="checkbox" name={ (prefix) (role.as_str()) } value="on"
                        id={ "require-" (prefix) (role.as_str()) } checked[checked.contains(&role)];
                    " " (role.as_str())
                }
            }
        }
    }
}

/// `GET /admin/mfa`: which roles must use two-factor authentication, and which a passkey.
pub(super) async fn settings(
    State(portal): State<Arc<Portal>>,
    AdminUser(admin): AdminUser,
) -> Result<Markup, PageError> {
    let state = portal.broker.state();
    let required = state.mfa_required_roles().shown_to(&admin)?;
    let passkey = state.passkey_required_roles().shown_to(&admin)?;
    Ok(admin_page(
        "Two-factor authentication",
        &admin,
        &[],
        html! {
            p { "Users of the checked roles must set up a second factor before they can do anything else: an authenticator app or a passkey." }
            form.card method="post" action="/admin/mfa" {
                (role_boxes("Roles that must use two-factor authentication", "", &required))
                @if portal.passkeys.available() {
                    p { "A role that must use a passkey signs in with one (without a password, or after it); an authenticator app is not enough for it. Programs that cannot use a passkey (the CLI's password login, the reviewer's) are refused for it: its users sign in there with an identity provider." }
                    (role_boxes("Roles that must sign in with a passkey", "passkey-", &passkey))
                } @else {
                    p id="passkeys-off" { "Passkeys are off, so no role can be made to use one: they need the portal's public_url (its DNS name) in the configuration." }
                }
                button type="submit" id="save-mfa" { "Save" }
            }
        },
    ))
}

/// The MFA settings form: a checkbox per role and requirement.
#[derive(Deserialize, Default)]
pub(super) struct MfaForm {
    #[serde(default)]
    admin: Option<String>,
    #[serde(default)]
    auditor: Option<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default, rename = "passkey-admin")]
    passkey_admin: Option<String>,
    #[serde(default, rename = "passkey-auditor")]
    passkey_auditor: Option<String>,
    #[serde(default, rename = "passkey-user")]
    passkey_user: Option<String>,
}

/// The roles whose box is ticked, and their names for the audit.
fn ticked(boxes: [&Option<String>; 3]) -> (Vec<Role>, String) {
    let roles: Vec<Role> = ROLES
        .into_iter()
        .zip(boxes)
        .filter(|(_, on)| on.is_some())
        .map(|(role, _)| role)
        .collect();
    let names = roles
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(",");
    (roles, names)
}

/// `POST /admin/mfa`.
pub(super) async fn save(change: AdminChange, Form(form): Form<MfaForm>) -> Answer {
    let (required, required_names) = ticked([&form.admin, &form.auditor, &form.user]);
    let (passkey, passkey_names) = ticked([
        &form.passkey_admin,
        &form.passkey_auditor,
        &form.passkey_user,
    ]);
    let state = change.portal.broker.state();
    change.check(state.set_mfa_required_roles(&required))?;
    change.check(state.set_passkey_required_roles(&passkey))?;
    change.done(
        "mfa_requirement_changed",
        None,
        format!("required for: {required_names}; passkey required for: {passkey_names}"),
        "/admin/mfa",
    )
}
