//! The admin pages: users (add, disable, delete, reset password, role, groups), targets, networks,
//! policies, pinned host keys and the audit log. Every change is checked for Origin, done by an admin,
//! and audited with who, what and from where.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Form;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use sallyport_core::egress::parse_host;
use sallyport_core::policy::{ClipboardAccess, Policy, Protocol, Role, Subject, TargetSelector};
use sallyport_state::{AuditEvent, AuditFilter, StateError, TargetSpec, random_password};
use serde::Deserialize;

use crate::Portal;
use crate::access::{AdminUser, ReviewerUser};
use crate::auth::{CurrentUser, same_origin};
use crate::pages::{escape, layout};

const NAV: &str = r#"<nav class="admin-nav"><a href="/admin/users">Users</a> · <a href="/admin/targets">Targets</a> · <a href="/admin/networks">Networks</a> · <a href="/admin/policies">Policies</a> · <a href="/admin/hostkeys">Host keys</a> · <a href="/admin/mfa">MFA</a> · <a href="/admin/sessions">Live sessions</a> · <a href="/admin/audit">Audit log</a> · <a href="/admin/edge">Edge</a></nav>"#;

pub(crate) fn page(title: &str, user: &CurrentUser, body: &str) -> Response {
    layout(
        title,
        Some(&user.user),
        &format!("{NAV}<h1>{}</h1>{body}", escape(title)),
        "",
        "",
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
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error_page(user, status, &error.to_string())
}

/// The refusal for a state change that did not come from the portal's own pages, if it did not.
pub(crate) fn refuse_foreign_origin(headers: &HeaderMap) -> Option<Response> {
    (!same_origin(headers)).then(|| {
        (
            StatusCode::FORBIDDEN,
            "request refused: it did not come from this portal's own pages",
        )
            .into_response()
    })
}

pub(crate) fn audit(
    portal: &Portal,
    admin: &CurrentUser,
    client: SocketAddr,
    kind: &str,
    target: Option<&str>,
    detail: String,
) {
    portal.broker.audit(AuditEvent {
        kind: kind.to_owned(),
        actor: Some(admin.user.username.clone()),
        client_addr: Some(client.to_string()),
        target: target.map(str::to_owned),
        detail: Some(detail),
        ..AuditEvent::default()
    });
}

fn split_list(text: &str) -> Vec<String> {
    text.split([',', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `GET /admin`.
pub async fn index(AdminUser(admin): AdminUser) -> Response {
    page(
        "Administration",
        &admin,
        "<p>Manage who may reach what, and watch what happens.</p>",
    )
}

// ---- Users ----------------------------------------------------------------------------------------

/// `GET /admin/users`.
pub async fn users(State(portal): State<Arc<Portal>>, AdminUser(admin): AdminUser) -> Response {
    let state = portal.broker.state();
    let users = match state.users() {
        Ok(users) => users,
        Err(error) => return state_error(&admin, error),
    };
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
            format!(
                r#"<form method="post" action="/admin/users/{}/{path}" class="inline"><button type="submit" data-action="{path}">{label}</button></form>"#,
                user.id
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
        r#"<table id="users"><thead><tr><th>User</th><th>Role</th><th>Groups</th><th>Status</th><th>MFA</th><th>Actions</th></tr></thead><tbody>{rows}</tbody></table>
<h2>Add a user</h2><form class="card" method="post" action="/admin/users" id="add-user">
<label>Username <input name="username" id="new-username" required pattern="[A-Za-z0-9._-]{{1,64}}"></label>
<label>Role <select name="role" id="new-role">{options}</select></label>
<label>Groups (comma-separated) <input name="groups" id="new-groups"></label>
<button type="submit" id="create-user">Create with a one-time password</button></form>"#,
        options = role_options(Role::User)
    );
    page("Users", &admin, &body)
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
pub struct NewUser {
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

/// `POST /admin/users`: creates a user with a one-time password shown once.
pub async fn create_user(
    State(portal): State<Arc<Portal>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    AdminUser(admin): AdminUser,
    Form(form): Form<NewUser>,
) -> Response {
    if let Some(refused) = refuse_foreign_origin(&headers) {
        return refused;
    }
    let Some(role) = Role::parse(&form.role) else {
        return error_page(&admin, StatusCode::BAD_REQUEST, "unknown role");
    };
    if !valid_username(&form.username) {
        return error_page(
            &admin,
            StatusCode::BAD_REQUEST,
            "usernames are 1 to 64 letters, digits, dots, dashes or underscores",
        );
    }
    let Ok(password) = random_password() else {
        return error_page(
            &admin,
            StatusCode::INTERNAL_SERVER_ERROR,
            "no randomness available",
        );
    };
    let state = portal.broker.state().clone();
    let (username, pw) = (form.username.clone(), password.clone());
    let created = tokio::task::spawn_blocking(move || {
        state.create_user(&username, &pw, role, true, sallyport_relay::now_ms())
    })
    .await;
    let user = match created {
        Ok(Ok(user)) => user,
        Ok(Err(error)) => return state_error(&admin, error),
        Err(_) => {
            return error_page(
                &admin,
                StatusCode::INTERNAL_SERVER_ERROR,
                "the user could not be created",
            );
        }
    };
    if let Err(error) = portal
        .broker
        .state()
        .set_user_groups(user.id, &split_list(&form.groups))
    {
        return state_error(&admin, error);
    }
    audit(
        &portal,
        &admin,
        client,
        "user_created",
        None,
        format!("user {} role {}", user.username, role.as_str()),
    );
    let body = format!(
        r#"<p>User <strong>{name}</strong> was created. Give them this one-time password; it is shown only now and must be changed at first login:</p>
<p><code id="one-time-password">{password}</code></p><p><a href="/admin/users">Back to users</a></p>"#,
        name = escape(&user.username)
    );
    page("User created", &admin, &body)
}

/// Role and groups of an existing user.
#[derive(Deserialize)]
pub struct UserUpdate {
    role: String,
    #[serde(default)]
    groups: String,
}

/// `POST /admin/users/{id}/update`.
pub async fn update_user(
    State(portal): State<Arc<Portal>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    Path(id): Path<i64>,
    headers: HeaderMap,
    AdminUser(admin): AdminUser,
    Form(form): Form<UserUpdate>,
) -> Response {
    if let Some(refused) = refuse_foreign_origin(&headers) {
        return refused;
    }
    let state = portal.broker.state();
    let Some(role) = Role::parse(&form.role) else {
        return error_page(&admin, StatusCode::BAD_REQUEST, "unknown role");
    };
    let user = match state.user(id) {
        Ok(Some(user)) => user,
        Ok(None) => return error_page(&admin, StatusCode::NOT_FOUND, "no such user"),
        Err(error) => return state_error(&admin, error),
    };
    if user.id == admin.user.user_id && role != Role::Admin {
        return error_page(
            &admin,
            StatusCode::BAD_REQUEST,
            "you cannot take the admin role from yourself",
        );
    }
    if let Err(error) = state
        .set_role(id, role)
        .and_then(|()| state.set_user_groups(id, &split_list(&form.groups)))
    {
        return state_error(&admin, error);
    }
    if role != user.role {
        // A changed role changes what the live sessions were allowed: end them.
        portal.revoke_user(id, "your role was changed by an administrator");
    }
    audit(
        &portal,
        &admin,
        client,
        "user_updated",
        None,
        format!(
            "user {} role {} groups {}",
            user.username,
            role.as_str(),
            form.groups
        ),
    );
    Redirect::to("/admin/users").into_response()
}

/// `POST /admin/users/{id}/{action}` for disable, enable, delete and reset-password.
pub async fn user_action(
    State(portal): State<Arc<Portal>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    Path((id, action)): Path<(i64, String)>,
    headers: HeaderMap,
    AdminUser(admin): AdminUser,
) -> Response {
    if let Some(refused) = refuse_foreign_origin(&headers) {
        return refused;
    }
    let state = portal.broker.state();
    let user = match state.user(id) {
        Ok(Some(user)) => user,
        Ok(None) => return error_page(&admin, StatusCode::NOT_FOUND, "no such user"),
        Err(error) => return state_error(&admin, error),
    };
    if user.id == admin.user.user_id && action != "reset-password" {
        return error_page(
            &admin,
            StatusCode::BAD_REQUEST,
            "you cannot disable or delete yourself",
        );
    }
    let result = match action.as_str() {
        "disable" => state.set_disabled(id, true).map(|()| {
            portal.revoke_user(id, "your account was disabled by an administrator");
            None
        }),
        "enable" => state.set_disabled(id, false).map(|()| None),
        "reset-mfa" => state.reset_totp(id).map(|()| {
            portal.revoke_user(
                id,
                "your two-factor authentication was reset by an administrator",
            );
            None
        }),
        "delete" => state.delete_user(id).map(|()| {
            portal.revoke_user(id, "your account was deleted by an administrator");
            None
        }),
        "reset-password" => {
            let Ok(password) = random_password() else {
                return error_page(
                    &admin,
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "no randomness available",
                );
            };
            let state = state.clone();
            let pw = password.clone();
            match tokio::task::spawn_blocking(move || state.reset_password(id, &pw)).await {
                Ok(Ok(())) => {
                    portal.revoke_user(id, "your password was reset by an administrator");
                    Ok(Some(password))
                }
                Ok(Err(error)) => Err(error),
                Err(_) => {
                    return error_page(
                        &admin,
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "the password could not be reset",
                    );
                }
            }
        }
        _ => return error_page(&admin, StatusCode::NOT_FOUND, "unknown action"),
    };
    match result {
        Err(error) => state_error(&admin, error),
        Ok(one_time) => {
            audit(
                &portal,
                &admin,
                client,
                &format!("user_{}", action.replace('-', "_")),
                None,
                format!("user {}", user.username),
            );
            match one_time {
                Some(password) => page(
                    "Password reset",
                    &admin,
                    &format!(
                        r#"<p>The new one-time password of <strong>{}</strong> (shown only now):</p><p><code id="one-time-password">{password}</code></p><p><a href="/admin/users">Back to users</a></p>"#,
                        escape(&user.username)
                    ),
                ),
                None => Redirect::to("/admin/users").into_response(),
            }
        }
    }
}

// ---- Targets --------------------------------------------------------------------------------------

/// `GET /admin/targets`.
pub async fn targets(State(portal): State<Arc<Portal>>, AdminUser(admin): AdminUser) -> Response {
    let targets = match portal.broker.state().targets() {
        Ok(targets) => targets,
        Err(error) => return state_error(&admin, error),
    };
    let rows: String = targets
        .iter()
        .map(|t| {
            format!(
                r#"<tr data-target="{name}"><td>{name}</td><td>{host}:{port}</td><td>{protocol}</td><td>{tags}</td><td><form method="post" action="/admin/targets/{id}/delete" class="inline"><button type="submit">Delete</button></form></td></tr>"#,
                name = escape(&t.name),
                host = escape(&t.host),
                port = t.port,
                protocol = t.protocol.as_str(),
                tags = escape(&t.tags.join(", ")),
                id = t.id
            )
        })
        .collect();
    let body = format!(
        r#"<table id="targets"><thead><tr><th>Name</th><th>Address</th><th>Protocol</th><th>Tags</th><th></th></tr></thead><tbody>{rows}</tbody></table>
<p>Targets from the configuration file are changed there.</p>
<h2>Add or change a target</h2><form class="card" method="post" action="/admin/targets" id="add-target">
<label>Name <input name="name" id="target-name" required></label>
<label>Address (IP or DNS name inside a network) <input name="address" id="target-address" required></label>
<label>Port <input name="port" id="target-port" type="number" min="1" max="65535" value="22" required></label>
<label>Protocol <select name="protocol"><option value="ssh">ssh</option></select></label>
<label>Tags (comma-separated) <input name="tags" id="target-tags"></label>
<button type="submit" id="save-target">Save target</button></form>"#
    );
    page("Targets", &admin, &body)
}

/// The target form.
#[derive(Deserialize)]
pub struct TargetForm {
    name: String,
    address: String,
    port: u16,
    protocol: String,
    #[serde(default)]
    tags: String,
}

/// `POST /admin/targets`.
pub async fn save_target(
    State(portal): State<Arc<Portal>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    AdminUser(admin): AdminUser,
    Form(form): Form<TargetForm>,
) -> Response {
    if let Some(refused) = refuse_foreign_origin(&headers) {
        return refused;
    }
    let name = form.name.trim();
    if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
        return error_page(
            &admin,
            StatusCode::BAD_REQUEST,
            "a target name is 1 to 64 printable characters",
        );
    }
    if let Err(error) = parse_host(&form.address) {
        return error_page(&admin, StatusCode::BAD_REQUEST, &error.to_string());
    }
    let Some(protocol) = Protocol::parse(&form.protocol) else {
        return error_page(&admin, StatusCode::BAD_REQUEST, "unknown protocol");
    };
    if form.port == 0 {
        return error_page(&admin, StatusCode::BAD_REQUEST, "port 0 is not a port");
    }
    let spec = TargetSpec {
        name: name.to_owned(),
        host: form.address.trim().to_owned(),
        port: form.port,
        protocol,
        tags: split_list(&form.tags),
    };
    if let Err(error) = portal.broker.state().upsert_target(&spec) {
        return state_error(&admin, error);
    }
    audit(
        &portal,
        &admin,
        client,
        "target_saved",
        Some(name),
        format!("{}:{} tags {}", spec.host, spec.port, spec.tags.join(",")),
    );
    Redirect::to("/admin/targets").into_response()
}

/// `POST /admin/targets/{id}/delete`.
pub async fn delete_target(
    State(portal): State<Arc<Portal>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    Path(id): Path<i64>,
    headers: HeaderMap,
    AdminUser(admin): AdminUser,
) -> Response {
    if let Some(refused) = refuse_foreign_origin(&headers) {
        return refused;
    }
    let state = portal.broker.state();
    let name = state
        .target(id)
        .ok()
        .flatten()
        .map(|t| t.name)
        .unwrap_or_default();
    match state.delete_target(id) {
        Ok(true) => {
            audit(
                &portal,
                &admin,
                client,
                "target_deleted",
                Some(&name),
                format!("target {name}"),
            );
            Redirect::to("/admin/targets").into_response()
        }
        Ok(false) => error_page(
            &admin,
            StatusCode::BAD_REQUEST,
            "only targets added here can be deleted here; remove configuration targets from the file",
        ),
        Err(error) => state_error(&admin, error),
    }
}

// ---- Networks -------------------------------------------------------------------------------------

/// `GET /admin/networks`.
pub async fn networks(State(portal): State<Arc<Portal>>, AdminUser(admin): AdminUser) -> Response {
    let networks = match portal.broker.state().networks() {
        Ok(networks) => networks,
        Err(error) => return state_error(&admin, error),
    };
    let rows: String = networks
        .iter()
        .map(|n| {
            format!(
                r#"<tr data-network="{name}"><td>{name}</td><td>{cidr}</td><td class="by-ip">{state}</td><td><form method="post" action="/admin/networks/connect-by-ip" class="inline"><input type="hidden" name="cidr" value="{cidr}"><input type="hidden" name="on" value="{toggle}"><button type="submit">{label}</button></form> <form method="post" action="/admin/networks/delete" class="inline"><input type="hidden" name="cidr" value="{cidr}"><button type="submit">Delete</button></form></td></tr>"#,
                name = escape(&n.name),
                cidr = n.cidr,
                state = if n.connect_by_ip { "on" } else { "off" },
                toggle = if n.connect_by_ip { "false" } else { "true" },
                label = if n.connect_by_ip { "Turn connect by IP off" } else { "Turn connect by IP on" },
            )
        })
        .collect();
    let body = format!(
        r#"<p>Targets are dialled only inside these networks (never loopback, link-local, metadata services or the gateway itself).</p>
<p>With "connect by IP" on, users may type an address in the network; policies grant such addresses with <code>network:NAME</code>.</p>
<table id="networks"><thead><tr><th>Name</th><th>CIDR</th><th>Connect by IP</th><th></th></tr></thead><tbody>{rows}</tbody></table>
<h2>Add a network</h2><form class="card" method="post" action="/admin/networks" id="add-network">
<label>Name <input name="name" required></label><label>CIDR <input name="cidr" placeholder="10.0.0.0/16" required></label>
<button type="submit">Add network</button></form>"#
    );
    page("Networks", &admin, &body)
}

/// The connect-by-IP toggle.
#[derive(Deserialize)]
pub struct ConnectByIpForm {
    cidr: String,
    on: bool,
}

/// `POST /admin/networks/connect-by-ip`.
pub async fn toggle_connect_by_ip(
    State(portal): State<Arc<Portal>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    AdminUser(admin): AdminUser,
    Form(form): Form<ConnectByIpForm>,
) -> Response {
    if let Some(refused) = refuse_foreign_origin(&headers) {
        return refused;
    }
    let Ok(cidr) = form.cidr.trim().parse::<ipnet::IpNet>() else {
        return error_page(
            &admin,
            StatusCode::BAD_REQUEST,
            "that is not a CIDR such as 10.0.0.0/16",
        );
    };
    match portal
        .broker
        .state()
        .set_connect_by_ip(cidr.trunc(), form.on)
    {
        Ok(true) => {
            audit(
                &portal,
                &admin,
                client,
                "network_connect_by_ip",
                None,
                format!(
                    "{cidr} connect by IP {}",
                    if form.on { "on" } else { "off" }
                ),
            );
            Redirect::to("/admin/networks").into_response()
        }
        Ok(false) => error_page(&admin, StatusCode::NOT_FOUND, "no such network"),
        Err(error) => state_error(&admin, error),
    }
}

/// The network form.
#[derive(Deserialize)]
pub struct NetworkForm {
    #[serde(default)]
    name: String,
    cidr: String,
}

/// `POST /admin/networks`.
pub async fn add_network(
    State(portal): State<Arc<Portal>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    AdminUser(admin): AdminUser,
    Form(form): Form<NetworkForm>,
) -> Response {
    change_network(&portal, client, &headers, &admin, &form, "add").await
}

/// `POST /admin/networks/delete`.
pub async fn delete_network(
    State(portal): State<Arc<Portal>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    AdminUser(admin): AdminUser,
    Form(form): Form<NetworkForm>,
) -> Response {
    change_network(&portal, client, &headers, &admin, &form, "delete").await
}

async fn change_network(
    portal: &Portal,
    client: SocketAddr,
    headers: &HeaderMap,
    admin: &CurrentUser,
    form: &NetworkForm,
    action: &str,
) -> Response {
    if let Some(refused) = refuse_foreign_origin(headers) {
        return refused;
    }
    let Ok(cidr) = form.cidr.trim().parse::<ipnet::IpNet>() else {
        return error_page(
            admin,
            StatusCode::BAD_REQUEST,
            "that is not a CIDR such as 10.0.0.0/16",
        );
    };
    let cidr = cidr.trunc();
    let state = portal.broker.state();
    let result = if action == "add" {
        state.add_network(form.name.trim(), cidr).map(|()| true)
    } else {
        state.delete_network(cidr)
    };
    match result {
        Ok(true) => {
            audit(
                portal,
                admin,
                client,
                &format!("network_{action}"),
                None,
                cidr.to_string(),
            );
            Redirect::to("/admin/networks").into_response()
        }
        Ok(false) => error_page(
            admin,
            StatusCode::BAD_REQUEST,
            "only networks added here can be deleted here",
        ),
        Err(error) => state_error(admin, error),
    }
}

// ---- Policies -------------------------------------------------------------------------------------

/// `GET /admin/policies`.
pub async fn policies(State(portal): State<Arc<Portal>>, AdminUser(admin): AdminUser) -> Response {
    let policies = match portal.broker.state().policies() {
        Ok(policies) => policies,
        Err(error) => return state_error(&admin, error),
    };
    let rows: String = policies
        .iter()
        .map(|record| {
            let p = &record.policy;
            format!(
                r#"<tr data-policy="{name}"><td>{name}</td><td>{subjects}</td><td>{targets}</td><td>{protocols}</td><td>{forwarding}</td><td>{clipboard}</td><td><form method="post" action="/admin/policies/{id}/delete" class="inline"><button type="submit">Delete</button></form></td></tr>"#,
                name = escape(&p.name),
                subjects = escape(&p.subjects.iter().map(Subject::to_text).collect::<Vec<_>>().join(", ")),
                targets = escape(&p.targets.iter().map(TargetSelector::to_text).collect::<Vec<_>>().join(", ")),
                protocols = p.protocols.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(", "),
                forwarding = if p.forwarding { "allowed" } else { "refused" },
                clipboard = clipboard_words(p.clipboard),
                id = record.id
            )
        })
        .collect();
    let body = format!(
        r#"<p>Users reach a target when a policy names them (<code>user:NAME</code>), a group of theirs (<code>group:NAME</code>) or their role (<code>role:user</code>), and the target (<code>name:NAME</code>, <code>tag:TAG</code> or <code>*</code>). Admins reach every target; auditors none.</p>
<table id="policies"><thead><tr><th>Name</th><th>Who</th><th>Targets</th><th>Protocols</th><th>Port forwarding</th><th>Desktop clipboard</th><th></th></tr></thead><tbody>{rows}</tbody></table>
<h2>Add a policy</h2><form class="card" method="post" action="/admin/policies" id="add-policy">
<label>Name <input name="name" id="policy-name" required></label>
<label>Who (comma-separated) <input name="subjects" id="policy-subjects" placeholder="group:ops, user:alice" required></label>
<label>Targets (comma-separated) <input name="targets" id="policy-targets" placeholder="tag:prod, name:web-1" required></label>
<label>Protocols <input name="protocols" value="ssh" required></label>
<label><input type="checkbox" name="forwarding" value="on" id="policy-forwarding"> Allow SSH port forwarding (local, remote, agent, X11) in <code>sallyport proxy</code> sessions; every forward is audited</label>
<label>Desktop clipboard (text; within the gateway's own <code>[desktop] clipboard</code> setting) <select name="clipboard" id="policy-clipboard">{clipboard_options}</select></label>
<button type="submit" id="save-policy">Add policy</button></form>"#,
        clipboard_options = ClipboardAccess::ALL
            .iter()
            .map(|access| format!(
                r#"<option value="{}">{}</option>"#,
                access.as_str(),
                clipboard_words(*access)
            ))
            .collect::<String>(),
    );
    page("Policies", &admin, &body)
}

/// How the policy pages word a clipboard setting.
fn clipboard_words(access: ClipboardAccess) -> &'static str {
    match access {
        ClipboardAccess::Both => "both ways",
        ClipboardAccess::ToTarget => "to the target only",
        ClipboardAccess::ToClient => "from the target only",
        ClipboardAccess::Off => "off",
    }
}

/// The policy form.
#[derive(Deserialize)]
pub struct PolicyForm {
    name: String,
    subjects: String,
    targets: String,
    protocols: String,
    /// A checkbox: present (`on`) when ticked.
    #[serde(default)]
    forwarding: Option<String>,
    /// `both`, `to-target`, `to-client` or `off`; both when absent.
    #[serde(default)]
    clipboard: Option<String>,
}

/// Parses the policy form into a policy, naming the first thing that does not parse.
fn parse_policy(form: &PolicyForm) -> Result<Policy, String> {
    let name = form.name.trim();
    if name.is_empty() || name.len() > 64 {
        return Err("a policy name is 1 to 64 characters".into());
    }
    let subjects = split_list(&form.subjects)
        .iter()
        .map(|s| {
            Subject::parse(s)
                .ok_or_else(|| format!("{s:?} is not user:NAME, group:NAME or role:ROLE"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let targets = split_list(&form.targets)
        .iter()
        .map(|t| {
            TargetSelector::parse(t).ok_or_else(|| format!("{t:?} is not name:NAME, tag:TAG or *"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let protocols = split_list(&form.protocols)
        .iter()
        .map(|p| Protocol::parse(p).ok_or_else(|| format!("{p:?} is not a protocol (ssh)")))
        .collect::<Result<Vec<_>, _>>()?;
    if subjects.is_empty() || targets.is_empty() || protocols.is_empty() {
        return Err("a policy needs at least one subject, one target and one protocol".into());
    }
    let clipboard = match form.clipboard.as_deref() {
        None | Some("") => ClipboardAccess::Both,
        Some(text) => ClipboardAccess::parse(text).ok_or_else(|| {
            format!("{text:?} is not a clipboard setting (both, to-target, to-client, off)")
        })?,
    };
    Ok(Policy {
        name: name.to_owned(),
        subjects,
        targets,
        protocols,
        forwarding: form.forwarding.as_deref() == Some("on"),
        clipboard,
    })
}

/// `POST /admin/policies`.
pub async fn add_policy(
    State(portal): State<Arc<Portal>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    AdminUser(admin): AdminUser,
    Form(form): Form<PolicyForm>,
) -> Response {
    if let Some(refused) = refuse_foreign_origin(&headers) {
        return refused;
    }
    let policy = match parse_policy(&form) {
        Ok(policy) => policy,
        Err(message) => return error_page(&admin, StatusCode::BAD_REQUEST, &message),
    };
    if let Err(error) = portal.broker.state().add_policy(&policy) {
        return state_error(&admin, error);
    }
    audit(
        &portal,
        &admin,
        client,
        "policy_added",
        None,
        format!(
            "{}: {} -> {}{}, desktop clipboard {}",
            policy.name,
            form.subjects,
            form.targets,
            if policy.forwarding {
                " (port forwarding allowed)"
            } else {
                ""
            },
            clipboard_words(policy.clipboard)
        ),
    );
    Redirect::to("/admin/policies").into_response()
}

/// `POST /admin/policies/{id}/delete`.
pub async fn delete_policy(
    State(portal): State<Arc<Portal>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    Path(id): Path<i64>,
    headers: HeaderMap,
    AdminUser(admin): AdminUser,
) -> Response {
    if let Some(refused) = refuse_foreign_origin(&headers) {
        return refused;
    }
    if let Err(error) = portal.broker.state().delete_policy(id) {
        return state_error(&admin, error);
    }
    audit(
        &portal,
        &admin,
        client,
        "policy_deleted",
        None,
        format!("policy {id}"),
    );
    Redirect::to("/admin/policies").into_response()
}

// ---- Host keys ------------------------------------------------------------------------------------

/// `GET /admin/hostkeys`.
pub async fn host_keys(State(portal): State<Arc<Portal>>, AdminUser(admin): AdminUser) -> Response {
    let keys = match portal.broker.state().pinned_keys() {
        Ok(keys) => keys,
        Err(error) => return state_error(&admin, error),
    };
    let rows: String = keys
        .iter()
        .map(|k| {
            format!(
                r#"<tr data-target="{name}"><td>{name}</td><td><code>{fp}</code></td><td>{seen}</td><td><form method="post" action="/admin/hostkeys/{id}/forget" class="inline"><button type="submit">Forget</button></form></td></tr>"#,
                name = escape(&k.target),
                fp = escape(&k.pin.fingerprint),
                seen = k.pin.first_seen_ms,
                id = k.target_id
            )
        })
        .collect();
    let body = format!(
        r#"<p>Each target's SSH host key is pinned the first time anyone connects. Forget a key only after checking the target's new key out of band.</p>
<table id="hostkeys"><thead><tr><th>Target</th><th>Fingerprint</th><th>First seen (unix ms)</th><th></th></tr></thead><tbody>{rows}</tbody></table>"#
    );
    page("Host keys", &admin, &body)
}

/// `POST /admin/hostkeys/{target_id}/forget`.
pub async fn forget_host_key(
    State(portal): State<Arc<Portal>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    Path(target_id): Path<i64>,
    headers: HeaderMap,
    AdminUser(admin): AdminUser,
) -> Response {
    if let Some(refused) = refuse_foreign_origin(&headers) {
        return refused;
    }
    let state = portal.broker.state();
    let name = state.target(target_id).ok().flatten().map(|t| t.name);
    if let Err(error) = state.forget_host_key(target_id) {
        return state_error(&admin, error);
    }
    audit(
        &portal,
        &admin,
        client,
        "host_key_forgotten",
        name.as_deref(),
        format!("target {target_id}"),
    );
    Redirect::to("/admin/hostkeys").into_response()
}

// ---- Audit log ------------------------------------------------------------------------------------

/// The audit log's filter, from the query string.
#[derive(Deserialize, Default)]
pub struct AuditQuery {
    #[serde(default)]
    user: String,
    #[serde(default)]
    target: String,
    #[serde(default)]
    kind: String,
    /// Unix ms.
    #[serde(default)]
    from: String,
    /// Unix ms.
    #[serde(default)]
    to: String,
}

/// `GET /admin/audit` (admins and auditors).
pub async fn audit_log(
    State(portal): State<Arc<Portal>>,
    ReviewerUser(viewer): ReviewerUser,
    Query(query): Query<AuditQuery>,
) -> Response {
    let some = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_owned());
    let filter = AuditFilter {
        actor: some(&query.user),
        target: some(&query.target),
        kind: some(&query.kind),
        from_ms: query.from.trim().parse().ok(),
        to_ms: query.to.trim().parse().ok(),
        limit: 500,
    };
    let records = match portal.broker.state().audit_query(&filter) {
        Ok(records) => records,
        Err(error) => return state_error(&viewer, error),
    };
    let cell = |v: &Option<String>| escape(v.as_deref().unwrap_or(""));
    let rows: String = records
        .iter()
        .map(|r| {
            format!(
                r#"<tr class="audit" data-kind="{kind}"><td>{at}</td><td>{kind}</td><td>{actor}</td><td>{client}</td><td>{target}</td><td>{session}</td><td>{detail}</td></tr>"#,
                at = r.at_ms,
                kind = escape(&r.event.kind),
                actor = cell(&r.event.actor),
                client = cell(&r.event.client_addr),
                target = cell(&r.event.target),
                session = cell(&r.event.session_id),
                detail = cell(&r.event.detail)
            )
        })
        .collect();
    let body = format!(
        r#"<form method="get" action="/admin/audit" class="filters">
<input name="user" placeholder="user" value="{user}"> <input name="target" placeholder="target" value="{target}"> <input name="kind" placeholder="kind" value="{kind}">
<input name="from" placeholder="from (unix ms)" value="{from}"> <input name="to" placeholder="to (unix ms)" value="{to}"> <button type="submit">Filter</button></form>
<table id="audit"><thead><tr><th>When (unix ms)</th><th>Kind</th><th>Who</th><th>From</th><th>Target</th><th>Session</th><th>Detail</th></tr></thead><tbody>{rows}</tbody></table>"#,
        user = escape(&query.user),
        target = escape(&query.target),
        kind = escape(&query.kind),
        from = escape(&query.from),
        to = escape(&query.to)
    );
    if viewer.user.role == Role::Admin {
        page("Audit log", &viewer, &body)
    } else {
        layout(
            "Audit log",
            Some(&viewer.user),
            &format!("<h1>Audit log</h1>{body}"),
            "",
            "",
        )
        .into_response()
    }
}

// ---- MFA requirement ------------------------------------------------------------------------------

/// `GET /admin/mfa`: which roles must use two-factor authentication.
pub async fn mfa_settings(
    State(portal): State<Arc<Portal>>,
    AdminUser(admin): AdminUser,
) -> Response {
    let required = match portal.broker.state().mfa_required_roles() {
        Ok(roles) => roles,
        Err(error) => return state_error(&admin, error),
    };
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
    page("Two-factor authentication", &admin, &body)
}

/// The MFA settings form: a checkbox per role.
#[derive(Deserialize, Default)]
pub struct MfaForm {
    #[serde(default)]
    admin: Option<String>,
    #[serde(default)]
    auditor: Option<String>,
    #[serde(default)]
    user: Option<String>,
}

/// `POST /admin/mfa`.
pub async fn save_mfa_settings(
    State(portal): State<Arc<Portal>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    AdminUser(admin): AdminUser,
    Form(form): Form<MfaForm>,
) -> Response {
    if let Some(refused) = refuse_foreign_origin(&headers) {
        return refused;
    }
    let roles: Vec<Role> = [
        (Role::Admin, &form.admin),
        (Role::Auditor, &form.auditor),
        (Role::User, &form.user),
    ]
    .into_iter()
    .filter(|(_, on)| on.is_some())
    .map(|(role, _)| role)
    .collect();
    if let Err(error) = portal.broker.state().set_mfa_required_roles(&roles) {
        return state_error(&admin, error);
    }
    let names = roles
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(",");
    audit(
        &portal,
        &admin,
        client,
        "mfa_requirement_changed",
        None,
        format!("required for: {names}"),
    );
    Redirect::to("/admin/mfa").into_response()
}
