//! The networks page: the networks targets may be dialled in, adding and deleting them, and turning
//! "connect by IP" on or off for each.

use std::sync::Arc;

use axum::Form;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;

use super::{AdminChange, Answer, OrErrorPage, page, table};
use crate::Portal;
use crate::access::AdminUser;
use crate::pages::escape;

/// `GET /admin/networks`.
pub(super) async fn list(State(portal): State<Arc<Portal>>, AdminUser(admin): AdminUser) -> Answer {
    let networks = portal.broker.state().networks().or_error_page(&admin)?;
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
{table}
<h2>Add a network</h2><form class="card" method="post" action="/admin/networks" id="add-network">
<label>Name <input name="name" required></label><label>CIDR <input name="cidr" placeholder="10.0.0.0/16" required></label>
<button type="submit">Add network</button></form>"#,
        table = table("networks", &["Name", "CIDR", "Connect by IP", ""], &rows)
    );
    Ok(page("Networks", &admin, &body))
}

/// The connect-by-IP toggle.
#[derive(Deserialize)]
pub(super) struct ConnectByIpForm {
    cidr: String,
    on: bool,
}

/// `POST /admin/networks/connect-by-ip`.
pub(super) async fn toggle_connect_by_ip(
    change: AdminChange,
    Form(form): Form<ConnectByIpForm>,
) -> Answer {
    let cidr = change.parse_cidr(&form.cidr)?;
    let state = change.portal.broker.state();
    if !change.check(state.set_connect_by_ip(cidr.trunc(), form.on))? {
        return Err(change.refuse(StatusCode::NOT_FOUND, "no such network"));
    }
    change.done(
        "network_connect_by_ip",
        None,
        format!(
            "{cidr} connect by IP {}",
            if form.on { "on" } else { "off" }
        ),
        "/admin/networks",
    )
}

/// The network form.
#[derive(Deserialize)]
pub(super) struct NetworkForm {
    #[serde(default)]
    name: String,
    cidr: String,
}

/// `POST /admin/networks`.
pub(super) async fn add(change: AdminChange, Form(form): Form<NetworkForm>) -> Answer {
    let cidr = change.parse_cidr(&form.cidr)?.trunc();
    change.check(
        change
            .portal
            .broker
            .state()
            .add_network(form.name.trim(), cidr),
    )?;
    change.done("network_add", None, cidr.to_string(), "/admin/networks")
}

/// `POST /admin/networks/delete`.
pub(super) async fn delete(change: AdminChange, Form(form): Form<NetworkForm>) -> Answer {
    let cidr = change.parse_cidr(&form.cidr)?.trunc();
    if !change.check(change.portal.broker.state().delete_network(cidr))? {
        return Err(change.refuse(
            StatusCode::BAD_REQUEST,
            "only networks added here can be deleted here",
        ));
    }
    change.done("network_delete", None, cidr.to_string(), "/admin/networks")
}
