//! The host keys page: each target's pinned SSH host key, and forgetting one after a checked change.

use std::sync::Arc;

use axum::extract::{Path, State};
use maud::{Markup, html};

use super::{AdminChange, Answer};
use crate::Portal;
use crate::access::AdminUser;
use crate::html::components::{post_button, table};
use crate::html::{PageError, ShownTo, admin_page};

/// `GET /admin/hostkeys`.
pub(super) async fn list(
    State(portal): State<Arc<Portal>>,
    AdminUser(admin): AdminUser,
) -> Result<Markup, PageError> {
    let keys = portal.broker.state().pinned_keys().shown_to(&admin)?;
    let rows: Vec<Markup> = keys
        .iter()
        .map(|k| {
            let forget = format!("/admin/hostkeys/{}/forget", k.target_id);
            html! {
                tr data-target=(k.target) {
                    td { (k.target) }
                    td { code { (k.pin.fingerprint) } }
                    td { (k.pin.first_seen_ms) }
                    td { (post_button(&forget, "Forget")) }
                }
            }
        })
        .collect();
    Ok(admin_page(
        "Host keys",
        &admin,
        &[],
        html! {
            p { "Each target's SSH host key is pinned the first time anyone connects. Forget a key only after checking the target's new key out of band." }
            (table(
                "hostkeys",
                &["Target", "Fingerprint", "First seen (unix ms)", ""],
                &rows,
                "No host key is pinned yet.",
            ))
        },
    ))
}

/// `POST /admin/hostkeys/{target_id}/forget`.
pub(super) async fn forget(Path(target_id): Path<i64>, change: AdminChange) -> Answer {
    let state = change.portal.broker.state();
    let name = state.target(target_id).ok().flatten().map(|t| t.name);
    change.check(state.forget_host_key(target_id))?;
    change.done(
        "host_key_forgotten",
        name.as_deref(),
        format!("target {target_id}"),
        "/admin/hostkeys",
    )
}
