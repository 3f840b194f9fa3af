//! The host keys page: each target's pinned SSH host key, and forgetting one after a checked change.

use std::sync::Arc;

use axum::extract::{Path, State};

use super::{AdminChange, Answer, OrErrorPage, page, post_button, table};
use crate::Portal;
use crate::access::AdminUser;
use crate::pages::escape;

/// `GET /admin/hostkeys`.
pub(super) async fn list(State(portal): State<Arc<Portal>>, AdminUser(admin): AdminUser) -> Answer {
    let keys = portal.broker.state().pinned_keys().or_error_page(&admin)?;
    let rows: String = keys
        .iter()
        .map(|k| {
            format!(
                r#"<tr data-target="{name}"><td>{name}</td><td><code>{fp}</code></td><td>{seen}</td><td>{forget}</td></tr>"#,
                name = escape(&k.target),
                fp = escape(&k.pin.fingerprint),
                seen = k.pin.first_seen_ms,
                forget = post_button(&format!("/admin/hostkeys/{}/forget", k.target_id), "", "Forget"),
            )
        })
        .collect();
    let body = format!(
        r#"<p>Each target's SSH host key is pinned the first time anyone connects. Forget a key only after checking the target's new key out of band.</p>
{table}"#,
        table = table(
            "hostkeys",
            &["Target", "Fingerprint", "First seen (unix ms)", ""],
            &rows
        )
    );
    Ok(page("Host keys", &admin, &body))
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
