//! The users page: the list, adding a user with a one-time password, changing role and groups, and the
//! per-user actions (disable, enable, reset password, reset MFA, delete), each ending the live sessions
//! it changes the grounds of.

use std::sync::Arc;

use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};

use sallyport_core::policy::Role;
use sallyport_state::{StateDb, StateError, UserRecord, random_password};
use serde::Deserialize;

use super::{AdminChange, Answer, split_list};
use crate::Portal;
use crate::access::AdminUser;
use crate::html::components::{field, notice, options, post_button, table};
use crate::html::{PageError, ShownTo, admin_page};
use crate::pages::NO_RANDOMNESS;

/// The roles, as the selects offer them.
const ROLES: [(&str, &str); 3] = [("user", "user"), ("auditor", "auditor"), ("admin", "admin")];

/// `GET /admin/users`.
pub(super) async fn list(
    State(portal): State<Arc<Portal>>,
    AdminUser(admin): AdminUser,
) -> Result<Markup, PageError> {
    let state = portal.broker.state();
    let users = state.users().shown_to(&admin)?;
    let accounts = state.provider_accounts().shown_to(&admin)?;
    let admins_only = state.password_sign_in_admins_only().shown_to(&admin)?;
    let mut rows = Vec::with_capacity(users.len());
    for user in &users {
        let account = accounts.get(&user.id);
        let groups = state.user_groups(user.id).unwrap_or_default().join(", ");
        let mfa = if matches!(state.totp(user.id), Ok(Some(_))) {
            "on"
        } else {
            "off"
        };
        let status = match (user.disabled, user.must_change_password) {
            (true, _) => "disabled",
            (false, true) => "one-time password",
            (false, false) => "active",
        };
        let base = format!("/admin/users/{}", user.id);
        let paths: Vec<_> = [
            Some(if user.disabled {
                ("enable", "Enable")
            } else {
                ("disable", "Disable")
            }),
            // A provider's account has no password here to reset.
            account
                .is_none()
                .then_some(("reset-password", "Reset password")),
            Some(("reset-mfa", "Reset MFA")),
            Some(("delete", "Delete")),
        ]
        .into_iter()
        .flatten()
        .map(|(path, label)| (format!("{base}/{path}"), path, label))
        .collect();
        let update = format!("{base}/update");
        rows.push(html! {
            tr data-user=(user.username) {
                td { (user.username) }
                td { (user.role.as_str()) }
                td { (groups) }
                td.sign-in {
                    @if let Some(account) = account {
                        (account.provider) " " small { "subject " code { (account.subject) } }
                    } @else { "password" }
                }
                td.status { (status) }
                td.mfa { (mfa) }
                td.actions {
                    @for (action, path, label) in &paths {
                        (post_button(action, label).data_action(path))
                    }
                    @if let Some(account) = account {
                        span.managed { "Role and groups set by " (account.provider) " at each sign-in" }
                    } @else {
                    form.inline method="post" action=(update) {
                        select name="role" aria-label={ "Role of " (user.username) } {
                            (options(&ROLES, Some(user.role.as_str())))
                        }
                        input name="groups" value=(groups) placeholder="groups" size="12"
                            aria-label={ "Groups of " (user.username) };
                        button type="submit" data-action="update" { "Save" }
                    }
                    }
                }
            }
        });
    }
    Ok(admin_page(
        "Users",
        &admin,
        &[],
        html! {
            (table(
                "users",
                &["User", "Role", "Groups", "Sign-in", "Status", "MFA", "Actions"],
                &rows,
                "No users yet.",
            ))
            h2 { "Password sign-in" }
            form.card method="post" action="/admin/password-sign-in" id="password-sign-in" {
                label {
                    input type="checkbox" name="admins_only" value="on" id="password-admins-only" checked[admins_only];
                    " Only administrators may sign in with a password (everyone else signs in with an identity provider; local admin accounts stay for break-glass)"
                }
                button type="submit" id="save-password-sign-in" { "Save" }
            }
            h2 { "Add a user" }
            form.card method="post" action="/admin/users" id="add-user" {
                (field("Username", html! {
                    input name="username" id="new-username" required pattern="[A-Za-z0-9._@-]{1,64}" autocapitalize="off";
                }))
                (field("Role", html! { select name="role" id="new-role" { (options(&ROLES, Some("user"))) } }))
                (field("Groups (comma-separated)", html! { input name="groups" id="new-groups"; }))
                button type="submit" id="create-user" { "Create with a one-time password" }
            }
        },
    ))
}

/// The add-user form.
#[derive(Deserialize)]
pub(super) struct NewUser {
    username: String,
    role: String,
    #[serde(default)]
    groups: String,
}

impl AdminChange {
    fn role(&self, text: &str) -> Result<Role, PageError> {
        Role::parse(text).ok_or_else(|| self.refuse(StatusCode::BAD_REQUEST, "unknown role"))
    }

    fn existing_user(&self, id: i64) -> Result<UserRecord, PageError> {
        self.check(self.portal.broker.state().user(id))?
            .ok_or_else(|| self.refuse(StatusCode::NOT_FOUND, "no such user"))
    }

    fn one_time_password(&self) -> Result<String, PageError> {
        random_password().map_err(|_| self.refuse(StatusCode::INTERNAL_SERVER_ERROR, NO_RANDOMNESS))
    }

    /// Runs `work` (password hashing) off the async threads; `failure` is the page's text if it dies.
    async fn blocking<T: Send + 'static>(
        &self,
        failure: &str,
        work: impl FnOnce(&StateDb) -> Result<T, StateError> + Send + 'static,
    ) -> Result<T, PageError> {
        let state = self.portal.broker.state().clone();
        match tokio::task::spawn_blocking(move || work(&state)).await {
            Ok(result) => self.check(result),
            Err(_) => Err(self.refuse(StatusCode::INTERNAL_SERVER_ERROR, failure)),
        }
    }
}

/// The page that shows a one-time password once, after `intro`.
fn one_time_password_page(
    change: &AdminChange,
    title: &str,
    intro: Markup,
    password: &str,
) -> Markup {
    admin_page(
        title,
        &change.admin,
        &[],
        html! {
            (notice(intro))
            p { code id="one-time-password" { (password) } }
            p { a href="/admin/users" { "Back to users" } }
        },
    )
}

/// `POST /admin/users`: creates a user with a one-time password shown once.
pub(super) async fn create(
    change: AdminChange,
    Form(form): Form<NewUser>,
) -> Result<Markup, PageError> {
    let role = change.role(&form.role)?;
    if !sallyport_core::policy::valid_username(&form.username) {
        return Err(change.refuse(
            StatusCode::BAD_REQUEST,
            "usernames are 1 to 64 letters, digits, dots, dashes, underscores or @",
        ));
    }
    let password = change.one_time_password()?;
    let (username, pw) = (form.username.clone(), password.clone());
    let user = change
        .blocking("the user could not be created", move |state| {
            state.create_user(&username, &pw, role, true, sallyport_relay::now_ms())
        })
        .await?;
    change.check(
        change
            .portal
            .broker
            .state()
            .set_user_groups(user.id, &split_list(&form.groups)),
    )?;
    change.audit(
        "user_created",
        None,
        format!("user {} role {}", user.username, role.as_str()),
    );
    let intro = html! {
        "User " strong { (user.username) } " was created. Give them this one-time password; it is shown only now and must be changed at first login:"
    };
    Ok(one_time_password_page(
        &change,
        "User created",
        intro,
        &password,
    ))
}

/// Role and groups of an existing user.
#[derive(Deserialize)]
pub(super) struct UserUpdate {
    role: String,
    #[serde(default)]
    groups: String,
}

/// `POST /admin/users/{id}/update`.
pub(super) async fn update(
    Path(id): Path<i64>,
    change: AdminChange,
    Form(form): Form<UserUpdate>,
) -> Answer {
    let state = change.portal.broker.state();
    let role = change.role(&form.role)?;
    let user = change.existing_user(id)?;
    if change.check(state.provider_account(id))?.is_some() {
        return Err(change.refuse(
            StatusCode::BAD_REQUEST,
            "this account's role and groups are set by its identity provider at each sign-in",
        ));
    }
    if user.id == change.admin.user.user_id() && role != Role::Admin {
        return Err(change.refuse(
            StatusCode::BAD_REQUEST,
            "you cannot take the admin role from yourself",
        ));
    }
    change.check(
        state
            .set_role(id, role)
            .and_then(|()| state.set_user_groups(id, &split_list(&form.groups))),
    )?;
    if role != user.role {
        // A changed role changes what the live sessions were allowed: end them.
        change
            .portal
            .revoke_user(id, "your role was changed by an administrator");
    }
    change.done(
        "user_updated",
        None,
        format!(
            "user {} role {} groups {}",
            user.username,
            role.as_str(),
            form.groups
        ),
        "/admin/users",
    )
}

/// `POST /admin/users/{id}/{action}` for disable, enable, reset-mfa, delete and reset-password.
pub(super) async fn action(
    Path((id, action)): Path<(i64, String)>,
    change: AdminChange,
) -> Result<Response, PageError> {
    let portal = &change.portal;
    let state = portal.broker.state();
    let user = change.existing_user(id)?;
    if user.id == change.admin.user.user_id() && action != "reset-password" {
        return Err(change.refuse(
            StatusCode::BAD_REQUEST,
            "you cannot disable or delete yourself",
        ));
    }
    let (done, revoked_because) = match action.as_str() {
        "disable" => (
            state.set_disabled(id, true),
            Some("your account was disabled by an administrator"),
        ),
        "enable" => (state.set_disabled(id, false), None),
        "reset-mfa" => (
            state
                .reset_totp(id)
                .and_then(|()| state.reset_passkeys(id).map(drop)),
            Some("your two-factor authentication was reset by an administrator"),
        ),
        "delete" => (
            state.delete_user(id),
            Some("your account was deleted by an administrator"),
        ),
        "reset-password" if change.check(state.provider_account(id))?.is_some() => {
            return Err(change.refuse(
                StatusCode::BAD_REQUEST,
                "this account signs in at its identity provider and has no password here",
            ));
        }
        "reset-password" => return Ok(reset_password(&change, &user).await?.into_response()),
        _ => return Err(change.refuse(StatusCode::NOT_FOUND, "unknown action")),
    };
    change.check(done)?;
    if let Some(reason) = revoked_because {
        portal.revoke_user(id, reason);
    }
    Ok(change
        .done(
            &format!("user_{}", action.replace('-', "_")),
            None,
            format!("user {}", user.username),
            "/admin/users",
        )?
        .into_response())
}

/// Gives `user` a new one-time password, shown once, and ends what they have open.
async fn reset_password(change: &AdminChange, user: &UserRecord) -> Result<Markup, PageError> {
    let password = change.one_time_password()?;
    let (id, pw) = (user.id, password.clone());
    change
        .blocking("the password could not be reset", move |state| {
            state.reset_password(id, &pw)
        })
        .await?;
    change
        .portal
        .revoke_user(id, "your password was reset by an administrator");
    change.audit(
        "user_reset_password",
        None,
        format!("user {}", user.username),
    );
    let intro = html! {
        "The new one-time password of " strong { (user.username) } " (shown only now):"
    };
    Ok(one_time_password_page(
        change,
        "Password reset",
        intro,
        &password,
    ))
}

/// The password sign-in setting's form (a checkbox, absent when unticked).
#[derive(Deserialize)]
pub(super) struct PasswordSignIn {
    #[serde(default)]
    admins_only: Option<String>,
}

/// `POST /admin/password-sign-in`: password sign-in for everyone, or for admins only.
pub(super) async fn password_sign_in(
    change: AdminChange,
    Form(form): Form<PasswordSignIn>,
) -> Answer {
    let admins_only = form.admins_only.is_some();
    change.check(
        change
            .portal
            .broker
            .state()
            .set_password_sign_in_admins_only(admins_only),
    )?;
    let words = if admins_only {
        "password sign-in for admins only"
    } else {
        "password sign-in for everyone"
    };
    change.done(
        "password_sign_in_changed",
        None,
        words.into(),
        "/admin/users",
    )
}
