//! The users page: the list, adding a user with a one-time password, changing role and groups, and the
//! per-user actions (disable, enable, reset password, reset MFA, delete), each ending the live sessions
//! it changes the grounds of.

use std::sync::Arc;

use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use sallyport_core::policy::Role;
use sallyport_state::{StateDb, StateError, UserRecord, random_password};
use serde::Deserialize;

use super::{AdminChange, Answer, OrErrorPage, Refused, page, post_button, split_list, table};
use crate::Portal;
use crate::access::AdminUser;
use crate::pages::escape;

/// `GET /admin/users`.
pub(super) async fn list(State(portal): State<Arc<Portal>>, AdminUser(admin): AdminUser) -> Answer {
    let state = portal.broker.state();
    let users = state.users().or_error_page(&admin)?;
    let mut rows = String::new();
    for user in &users {
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
        let action = |path: &str, label: &str| {
            post_button(
                &format!("/admin/users/{}/{path}", user.id),
                &format!(r#" data-action="{path}""#),
                label,
            )
        };
        rows.push_str(&format!(
            r#"<tr data-user="{name}"><td>{name}</td><td>{role}</td><td>{groups}</td><td class="status">{status}</td><td class="mfa">{mfa}</td><td>{toggle}{reset}{reset_mfa}{delete}
<form method="post" action="/admin/users/{id}/update" class="inline"><select name="role">{options}</select><input name="groups" value="{groups}" placeholder="groups" size="12"><button type="submit" data-action="update">Save</button></form></td></tr>"#,
            name = escape(&user.username),
            role = user.role.as_str(),
            groups = escape(&groups),
            id = user.id,
            toggle = if user.disabled { action("enable", "Enable") } else { action("disable", "Disable") },
            reset = action("reset-password", "Reset password"),
            reset_mfa = action("reset-mfa", "Reset MFA"),
            delete = action("delete", "Delete"),
            options = role_options(user.role),
        ));
    }
    let body = format!(
        r#"{table}
<h2>Add a user</h2><form class="card" method="post" action="/admin/users" id="add-user">
<label>Username <input name="username" id="new-username" required pattern="[A-Za-z0-9._-]{{1,64}}"></label>
<label>Role <select name="role" id="new-role">{options}</select></label>
<label>Groups (comma-separated) <input name="groups" id="new-groups"></label>
<button type="submit" id="create-user">Create with a one-time password</button></form>"#,
        table = table(
            "users",
            &["User", "Role", "Groups", "Status", "MFA", "Actions"],
            &rows
        ),
        options = role_options(Role::User)
    );
    Ok(page("Users", &admin, &body))
}

fn role_options(selected: Role) -> String {
    [Role::User, Role::Auditor, Role::Admin]
        .iter()
        .map(|role| {
            let chosen = if *role == selected { " selected" } else { "" };
            format!(r#"<option value="{0}"{chosen}>{0}</option>"#, role.as_str())
        })
        .collect()
}

/// The add-user form.
#[derive(Deserialize)]
pub(super) struct NewUser {
    username: String,
    role: String,
    #[serde(default)]
    groups: String,
}

fn valid_username(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

impl AdminChange {
    fn role(&self, text: &str) -> Result<Role, Refused> {
        Role::parse(text).ok_or_else(|| self.refuse(StatusCode::BAD_REQUEST, "unknown role"))
    }

    fn existing_user(&self, id: i64) -> Result<UserRecord, Refused> {
        self.check(self.portal.broker.state().user(id))?
            .ok_or_else(|| self.refuse(StatusCode::NOT_FOUND, "no such user"))
    }

    fn one_time_password(&self) -> Result<String, Refused> {
        random_password()
            .map_err(|_| self.refuse(StatusCode::INTERNAL_SERVER_ERROR, "no randomness available"))
    }

    /// Runs `work` (password hashing) off the async threads; `failure` is the page's text if it dies.
    async fn blocking<T: Send + 'static>(
        &self,
        failure: &str,
        work: impl FnOnce(&StateDb) -> Result<T, StateError> + Send + 'static,
    ) -> Result<T, Refused> {
        let state = self.portal.broker.state().clone();
        match tokio::task::spawn_blocking(move || work(&state)).await {
            Ok(result) => self.check(result),
            Err(_) => Err(self.refuse(StatusCode::INTERNAL_SERVER_ERROR, failure)),
        }
    }
}

/// The page that shows a one-time password once.
fn one_time_password_page(
    change: &AdminChange,
    title: &str,
    intro: &str,
    password: &str,
) -> Answer {
    let body = format!(
        r#"{intro}<p><code id="one-time-password">{password}</code></p><p><a href="/admin/users">Back to users</a></p>"#
    );
    Ok(page(title, &change.admin, &body))
}

/// `POST /admin/users`: creates a user with a one-time password shown once.
pub(super) async fn create(change: AdminChange, Form(form): Form<NewUser>) -> Answer {
    let role = change.role(&form.role)?;
    if !valid_username(&form.username) {
        return Err(change.refuse(
            StatusCode::BAD_REQUEST,
            "usernames are 1 to 64 letters, digits, dots, dashes or underscores",
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
    let intro = format!(
        "<p>User <strong>{name}</strong> was created. Give them this one-time password; it is shown only now and must be changed at first login:</p>\n",
        name = escape(&user.username)
    );
    one_time_password_page(&change, "User created", &intro, &password)
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
pub(super) async fn action(Path((id, action)): Path<(i64, String)>, change: AdminChange) -> Answer {
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
            state.reset_totp(id),
            Some("your two-factor authentication was reset by an administrator"),
        ),
        "delete" => (
            state.delete_user(id),
            Some("your account was deleted by an administrator"),
        ),
        "reset-password" => return reset_password(&change, &user).await,
        _ => return Err(change.refuse(StatusCode::NOT_FOUND, "unknown action")),
    };
    change.check(done)?;
    if let Some(reason) = revoked_because {
        portal.revoke_user(id, reason);
    }
    change.done(
        &format!("user_{}", action.replace('-', "_")),
        None,
        format!("user {}", user.username),
        "/admin/users",
    )
}

/// Gives `user` a new one-time password, shown once, and ends what they have open.
async fn reset_password(change: &AdminChange, user: &UserRecord) -> Answer {
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
    let intro = format!(
        "<p>The new one-time password of <strong>{}</strong> (shown only now):</p>",
        escape(&user.username)
    );
    one_time_password_page(change, "Password reset", &intro, &password)
}
