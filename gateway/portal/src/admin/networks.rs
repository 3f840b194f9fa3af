//! The networks page: the networks targets may be dialled in, adding and deleting them, and turning
//! "connect by IP" on or off for each.

use std::sync::Arc;

use axum::Form;
use axum::extract::State;
use axum::http::StatusCode;
use maud::{Markup, html};
use serde::Deserialize;

use super::{AdminChange, Answer};
use crate::Portal;
use crate::access::AdminUser;
use crate::html::components::{field, post_button, table};
use crate::html::{PageError, ShownTo, admin_page};

/// `GET /admin/networks`.
pub(super) async fn list(
    State(portal): State<Arc<Portal>>,
    AdminUser(admin): AdminUser,
) -> Result<Markup, PageError> {
    let networks = portal.broker.state().networks().shown_to(&admin)?;
    let rows: Vec<Markup> = networks
        .iter()
        .map(|n| {
            let cidr = n.cidr.to_string();
            let (state, toggle, label) = if n.connect_by_ip {
                ("on", "false", "Turn connect by IP off")
            } else {
                ("off", "true", "Turn connect by IP on")
            };
            html! {
                tr data-network=(n.name) {
                    td { (n.name) }
                    td { (cidr) }
                    td.by-ip { (state) }
                    td {
                        (post_button("/admin/networks/connect-by-ip", label)
                            .hidden("cidr", cidr.as_str())
                            .hidden("on", toggle))
                        " "
                        (post_button("/admin/networks/delete", "Delete").hidden("cidr", cidr.as_str()))
                    }
                }
            }
        })
        .collect();
    Ok(admin_page(
        "Networks",
        &admin,
        &[],
        html! {
            p { "Targets are dialled only inside these networks (never loopback, link-local, metadata services or the gateway itself)." }
            p {
                "With \"connect by IP\" on, users may type an address in the network; policies grant such addresses with "
                code { "network:NAME" } "."
            }
            (table(
                "networks",
                &["Name", "CIDR", "Connect by IP", ""],
                &rows,
                "No networks yet: no target can be dialled until one is added.",
            ))
            h2 { "Add a network" }
            form.card method="post" action="/admin/networks" id="add-network" {
                (field("Name", html! { input name="name" required; }))
                (field("CIDR", html! { input name="cidr" placeholder="10.0.0.0/16" required; }))
                button type="submit" { "Add network" }
            }
        },
    ))
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
