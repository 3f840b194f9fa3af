//! The audit log page (admins and auditors): the events, filtered by who, target, kind and time.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::IntoResponse;
use sallyport_core::policy::Role;
use sallyport_state::AuditFilter;
use serde::Deserialize;

use super::{Answer, OrErrorPage, table};
use crate::Portal;
use crate::access::ReviewerUser;
use crate::pages::{escape, layout};

/// The audit log's filter, from the query string.
#[derive(Deserialize, Default)]
pub(super) struct AuditQuery {
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
pub(super) async fn page(
    State(portal): State<Arc<Portal>>,
    ReviewerUser(viewer): ReviewerUser,
    Query(query): Query<AuditQuery>,
) -> Answer {
    let some = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_owned());
    let filter = AuditFilter {
        actor: some(&query.user),
        target: some(&query.target),
        kind: some(&query.kind),
        from_ms: query.from.trim().parse().ok(),
        to_ms: query.to.trim().parse().ok(),
        limit: 500,
    };
    let records = portal
        .broker
        .state()
        .audit_query(&filter)
        .or_error_page(&viewer)?;
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
{table}"#,
        user = escape(&query.user),
        target = escape(&query.target),
        kind = escape(&query.kind),
        from = escape(&query.from),
        to = escape(&query.to),
        table = table(
            "audit",
            &[
                "When (unix ms)",
                "Kind",
                "Who",
                "From",
                "Target",
                "Session",
                "Detail"
            ],
            &rows
        )
    );
    Ok(if viewer.user.role() == Role::Admin {
        super::page("Audit log", &viewer, &body)
    } else {
        // Auditors see the log without the admin navigation.
        layout(
            "Audit log",
            Some(&viewer.user),
            &format!("<h1>Audit log</h1>{body}"),
            "",
            "",
        )
        .into_response()
    })
}
