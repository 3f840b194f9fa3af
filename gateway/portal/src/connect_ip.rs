//! "Connect by IP": in networks where an admin turned it on, a user may type an address instead of
//! picking a named target. The address is checked like any connect (egress rules, then policy, where a
//! `network:NAME` selector grants the network's addresses) before a target row `ADDRESS:PORT` is made
//! for it, so host key pinning, audit and recording work exactly as for named targets.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Form;
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use sallyport_core::egress::{Host, parse_host};
use sallyport_core::policy::Protocol;
use sallyport_state::{AuditEvent, TargetRecord};
use serde::Deserialize;

use crate::Portal;
use crate::access::{AccessError, decide};
use crate::auth::CurrentUser;
use crate::pages::{escape, layout};

fn refuse(user: &CurrentUser, status: StatusCode, message: &str) -> Response {
    let body = format!(
        r#"<h1>Not connected</h1><p class="error" id="error">{}</p><p><a href="/connect-ip">Back</a></p>"#,
        escape(message)
    );
    (
        status,
        layout("Connect by IP", Some(&user.user), &body, "", ""),
    )
        .into_response()
}

/// `GET /connect-ip`.
pub async fn form(State(portal): State<Arc<Portal>>, user: CurrentUser) -> Response {
    let networks = match portal.broker.state().networks() {
        Ok(networks) => networks,
        Err(_) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the network list is unavailable",
            )
                .into_response();
        }
    };
    let open: String = networks
        .iter()
        .filter(|n| n.connect_by_ip)
        .map(|n| format!("<li>{} <code>{}</code></li>", escape(&n.name), n.cidr))
        .collect();
    let body = if open.is_empty() {
        r#"<h1>Connect by IP</h1><p id="no-networks">No network allows connecting by IP address; pick a target from the list.</p>"#.to_owned()
    } else {
        format!(
            r#"<h1>Connect by IP</h1><p>Networks where you may type an address:</p><ul id="ip-networks">{open}</ul>
<form class="card" method="post" action="/connect-ip"><label>IP address <input name="address" id="ip-address" required></label>
<label>Port <input name="port" id="ip-port" type="number" min="1" max="65535" value="22" required></label>
<button type="submit" id="ip-connect">Continue</button></form>"#
        )
    };
    layout("Connect by IP", Some(&user.user), &body, "", "").into_response()
}

/// The address form.
#[derive(Deserialize)]
pub struct AddressForm {
    address: String,
    port: u16,
}

/// `POST /connect-ip`: checks the address and sends the user to the connect page of its target row.
pub async fn submit(
    State(portal): State<Arc<Portal>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    user: CurrentUser,
    Form(form): Form<AddressForm>,
) -> Response {
    let ip = match parse_host(&form.address) {
        Ok(Host::Ip(ip)) => ip,
        Ok(Host::Name(_)) => {
            return refuse(
                &user,
                StatusCode::BAD_REQUEST,
                "type an IP address; names are for named targets",
            );
        }
        Err(error) => return refuse(&user, StatusCode::BAD_REQUEST, &error.to_string()),
    };
    if form.port == 0 {
        return refuse(&user, StatusCode::BAD_REQUEST, "port 0 is not a port");
    }
    let state = portal.broker.state();
    let ip = match portal.broker.check_address(ip) {
        Ok(ip) => ip,
        Err(reason) => {
            return refuse(
                &user,
                StatusCode::FORBIDDEN,
                &format!("not allowed: {reason}"),
            );
        }
    };
    let allowed_here = state
        .networks()
        .map(|nets| nets.iter().any(|n| n.connect_by_ip && n.cidr.contains(&ip)))
        .unwrap_or(false);
    if !allowed_here {
        return refuse(
            &user,
            StatusCode::FORBIDDEN,
            "not allowed: connecting by IP is not turned on for the network of that address",
        );
    }
    // Decide before making the row, so a refused address leaves nothing behind.
    let provisional = TargetRecord {
        id: 0,
        name: ip.to_string(),
        host: ip.to_string(),
        port: form.port,
        protocol: Protocol::Ssh,
        tags: Vec::new(),
    };
    match decide(&portal, &user.user, &provisional) {
        Ok(_) => {}
        Err(AccessError::Denied(denied)) => {
            return refuse(
                &user,
                StatusCode::FORBIDDEN,
                &format!("not allowed: {denied}"),
            );
        }
        Err(AccessError::State(_)) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the access decision is unavailable",
            )
                .into_response();
        }
    }
    let target = match state.adhoc_target(ip, form.port) {
        Ok(target) => target,
        Err(_) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the target could not be recorded",
            )
                .into_response();
        }
    };
    portal.broker.audit(AuditEvent {
        kind: "connect_by_ip".into(),
        actor: Some(user.user.username().to_owned()),
        client_addr: Some(client.to_string()),
        target: Some(target.name.clone()),
        ..AuditEvent::default()
    });
    Redirect::to(&format!("/connect/{}", target.id)).into_response()
}
