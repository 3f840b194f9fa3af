//! "Connect by IP": in networks where an admin turned it on, a user may type an address instead of
//! picking a named target. The address is checked like any connect (egress rules, then policy, where a
//! `network:NAME` selector grants the network's addresses) before a target row `ADDRESS:PORT` is made
//! for it, so host key pinning, audit and recording work exactly as for named targets.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Form;
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::response::Redirect;
use maud::{Markup, html};
use sallyport_core::egress::{Host, parse_host};
use sallyport_core::policy::Protocol;
use sallyport_state::{AuditEvent, TargetRecord};
use serde::Deserialize;

use crate::Portal;
use crate::access::{AccessError, decide};
use crate::auth::CurrentUser;
use crate::html::components::field;
use crate::html::{PageError, ShownTo, page};

/// The refusal of an address, with the way back to the form.
fn refuse(user: &CurrentUser, status: StatusCode, message: impl Into<String>) -> PageError {
    PageError::new(status, message)
        .titled("Not connected")
        .link("/connect-ip", "Try another address")
        .shown_to(user)
}

/// `GET /connect-ip`.
pub async fn form(
    State(portal): State<Arc<Portal>>,
    user: CurrentUser,
) -> Result<Markup, PageError> {
    let networks = portal.broker.state().networks().shown_to(&user)?;
    let open: Vec<_> = networks.iter().filter(|n| n.connect_by_ip).collect();
    Ok(page(
        "Connect by IP",
        Some(&user.user),
        html! {
            h1 { "Connect by IP" }
            @if open.is_empty() {
                p id="no-networks" { "No network allows connecting by IP address; pick a target from the list." }
            } @else {
                p { "Networks where you may type an address:" }
                ul id="ip-networks" { @for n in &open { li { (n.name) " " code { (n.cidr) } } } }
                form.card method="post" action="/connect-ip" {
                    (field("IP address", html! { input name="address" id="ip-address" required autocapitalize="off"; }))
                    (field("Port", html! {
                        input name="port" id="ip-port" type="number" min="1" max="65535" value="22" required;
                    }))
                    button type="submit" id="ip-connect" { "Continue" }
                }
            }
        },
    ))
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
) -> Result<Redirect, PageError> {
    let ip = match parse_host(&form.address) {
        Ok(Host::Ip(ip)) => ip,
        Ok(Host::Name(_)) => {
            return Err(refuse(
                &user,
                StatusCode::BAD_REQUEST,
                "type an IP address; names are for named targets",
            ));
        }
        Err(error) => return Err(refuse(&user, StatusCode::BAD_REQUEST, error.to_string())),
    };
    if form.port == 0 {
        return Err(refuse(
            &user,
            StatusCode::BAD_REQUEST,
            "port 0 is not a port",
        ));
    }
    let state = portal.broker.state();
    let ip = match portal.broker.check_address(ip) {
        Ok(ip) => ip,
        Err(reason) => {
            return Err(refuse(
                &user,
                StatusCode::FORBIDDEN,
                format!("not allowed: {reason}"),
            ));
        }
    };
    let allowed_here = state
        .networks()
        .map(|nets| nets.iter().any(|n| n.connect_by_ip && n.cidr.contains(&ip)))
        .unwrap_or(false);
    if !allowed_here {
        return Err(refuse(
            &user,
            StatusCode::FORBIDDEN,
            "not allowed: connecting by IP is not turned on for the network of that address",
        ));
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
            return Err(refuse(
                &user,
                StatusCode::FORBIDDEN,
                format!("not allowed: {denied}"),
            ));
        }
        Err(AccessError::State(error)) => return Err(PageError::from(error).shown_to(&user)),
    }
    let target = state.adhoc_target(ip, form.port).shown_to(&user)?;
    portal.broker.audit(AuditEvent {
        kind: "connect_by_ip".into(),
        actor: Some(user.user.username().to_owned()),
        client_addr: Some(client.to_string()),
        target: Some(target.name.clone()),
        ..AuditEvent::default()
    });
    Ok(Redirect::to(&format!("/connect/{}", target.id)))
}
