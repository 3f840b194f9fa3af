//! The targets page: the list, adding or changing a target, and deleting one added here (configuration
//! targets are changed in the file).

use std::sync::Arc;

use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use maud::{Markup, html};
use sallyport_core::egress::parse_host;
use sallyport_core::policy::Protocol;
use sallyport_state::TargetSpec;
use serde::Deserialize;

use super::{AdminChange, Answer, split_list};
use crate::Portal;
use crate::access::AdminUser;
use crate::html::components::{field, post_button, table};
use crate::html::{PageError, ShownTo, admin_page};

/// `GET /admin/targets`.
pub(super) async fn list(
    State(portal): State<Arc<Portal>>,
    AdminUser(admin): AdminUser,
) -> Result<Markup, PageError> {
    let targets = portal.broker.state().targets().shown_to(&admin)?;
    let rows: Vec<Markup> = targets
        .iter()
        .map(|t| {
            let delete = format!("/admin/targets/{}/delete", t.id);
            html! {
                tr data-target=(t.name) {
                    td { (t.name) }
                    td { (t.host) ":" (t.port) }
                    td { (t.protocol.as_str()) }
                    td { (t.tags.join(", ")) }
                    td { (post_button(&delete, "Delete")) }
                }
            }
        })
        .collect();
    Ok(admin_page(
        "Targets",
        &admin,
        &[],
        html! {
            (table(
                "targets",
                &["Name", "Address", "Protocol", "Tags", ""],
                &rows,
                "No targets yet: add one below, or in the configuration file.",
            ))
            p { "Targets from the configuration file are changed there." }
            h2 { "Add or change a target" }
            form.card method="post" action="/admin/targets" id="add-target" {
                (field("Name", html! { input name="name" id="target-name" required; }))
                (field("Address (IP or DNS name inside a network)", html! {
                    input name="address" id="target-address" required autocapitalize="off";
                }))
                (field("Port", html! {
                    input name="port" id="target-port" type="number" min="1" max="65535" value="22" required;
                }))
                (field("Protocol", html! {
                    select name="protocol" { option value="ssh" { "ssh" } }
                }))
                (field("Tags (comma-separated)", html! { input name="tags" id="target-tags"; }))
                button type="submit" id="save-target" { "Save target" }
            }
        },
    ))
}

/// The target form.
#[derive(Deserialize)]
pub(super) struct TargetForm {
    name: String,
    address: String,
    port: u16,
    protocol: String,
    #[serde(default)]
    tags: String,
}

/// `POST /admin/targets`.
pub(super) async fn save(change: AdminChange, Form(form): Form<TargetForm>) -> Answer {
    let bad = |message: &str| Err(change.refuse(StatusCode::BAD_REQUEST, message));
    let name = form.name.trim();
    if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
        return bad("a target name is 1 to 64 printable characters");
    }
    if let Err(error) = parse_host(&form.address) {
        return bad(&error.to_string());
    }
    let Some(protocol) = Protocol::parse(&form.protocol) else {
        return bad("unknown protocol");
    };
    if form.port == 0 {
        return bad("port 0 is not a port");
    }
    let spec = TargetSpec {
        name: name.to_owned(),
        host: form.address.trim().to_owned(),
        port: form.port,
        protocol,
        tags: split_list(&form.tags),
    };
    change.check(change.portal.broker.state().upsert_target(&spec))?;
    change.done(
        "target_saved",
        Some(name),
        format!("{}:{} tags {}", spec.host, spec.port, spec.tags.join(",")),
        "/admin/targets",
    )
}

/// `POST /admin/targets/{id}/delete`.
pub(super) async fn delete(Path(id): Path<i64>, change: AdminChange) -> Answer {
    let state = change.portal.broker.state();
    let name = state
        .target(id)
        .ok()
        .flatten()
        .map(|t| t.name)
        .unwrap_or_default();
    if !change.check(state.delete_target(id))? {
        return Err(change.refuse(
            StatusCode::BAD_REQUEST,
            "only targets added here can be deleted here; remove configuration targets from the file",
        ));
    }
    change.done(
        "target_deleted",
        Some(&name),
        format!("target {name}"),
        "/admin/targets",
    )
}
