//! The audit log's export (admins and auditors): the events the page's filter selects, as CSV or
//! JSON lines, newest first and at most [`EXPORT_LIMIT`] of them. Every export is itself audited.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use sallyport_state::{AuditEvent, AuditRecord};
use serde::{Deserialize, Serialize};

use super::audit_log::{AuditQuery, filter_or_refuse, iso_time};
use crate::Portal;
use crate::access::ReviewerUser;
use crate::html::{PageError, ShownTo};

/// The most events one export holds: the export is built in memory, so it is bounded.
pub(super) const EXPORT_LIMIT: u32 = 100_000;

/// The CSV header: [`ExportedEvent`]'s fields, written even when no event is.
const CSV_HEADER: [&str; 9] = [
    "id",
    "at",
    "at_ms",
    "kind",
    "actor",
    "client_addr",
    "target",
    "session_id",
    "detail",
];

/// The formats of an export.
#[derive(Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(super) enum ExportFormat {
    Csv,
    Jsonl,
}

impl ExportFormat {
    fn content_type(self) -> &'static str {
        match self {
            ExportFormat::Csv => "text/csv; charset=utf-8",
            ExportFormat::Jsonl => "application/jsonl; charset=utf-8",
        }
    }

    fn extension(self) -> &'static str {
        match self {
            ExportFormat::Csv => "csv",
            ExportFormat::Jsonl => "jsonl",
        }
    }
}

/// One exported event: its columns (CSV) or keys (JSON), in this order. CSV writes a missing value
/// and an empty one alike (an empty field); JSON lines write a missing one as `null`.
#[derive(Serialize, Deserialize, Debug, PartialEq, Eq)]
pub(super) struct ExportedEvent {
    pub(super) id: i64,
    /// UTC, to the millisecond: `2026-12-02T01:02:03.456Z`.
    pub(super) at: String,
    pub(super) at_ms: u64,
    pub(super) kind: String,
    pub(super) actor: Option<String>,
    pub(super) client_addr: Option<String>,
    pub(super) target: Option<String>,
    pub(super) session_id: Option<String>,
    pub(super) detail: Option<String>,
}

impl From<&AuditRecord> for ExportedEvent {
    fn from(record: &AuditRecord) -> Self {
        let event = &record.event;
        ExportedEvent {
            id: record.id,
            at: iso_time(record.at_ms),
            at_ms: record.at_ms,
            kind: event.kind.clone(),
            actor: event.actor.clone(),
            client_addr: event.client_addr.clone(),
            target: event.target.clone(),
            session_id: event.session_id.clone(),
            detail: event.detail.clone(),
        }
    }
}

/// The first characters with which a spreadsheet reads a cell as a formula (or, for tab and carriage
/// return, strips them so that the next one is read as one).
const FORMULA_STARTS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// A CSV cell a spreadsheet shows as text: a cell that would start a formula gets one leading `'`.
/// Usernames typed at a failed sign-in land in the audit log as typed, so without this a stranger could
/// put `=HYPERLINK(…)` into an auditor's spreadsheet. A cell that already starts with `'` gets one more,
/// so removing exactly one leading `'` from every cell that has one gives back what was logged (the
/// JSON-lines export needs no such rule and holds the text as it is).
pub(super) fn spreadsheet_cell(text: String) -> String {
    if text.starts_with(FORMULA_STARTS) || text.starts_with('\'') {
        format!("'{text}")
    } else {
        text
    }
}

impl ExportedEvent {
    /// The event with every text cell made safe for spreadsheets ([`spreadsheet_cell`]); `at`, `id`
    /// and `at_ms` start with a digit and are left alone.
    fn spreadsheet_safe(self) -> ExportedEvent {
        let cell = |text: Option<String>| text.map(spreadsheet_cell);
        ExportedEvent {
            kind: spreadsheet_cell(self.kind),
            actor: cell(self.actor),
            client_addr: cell(self.client_addr),
            target: cell(self.target),
            session_id: cell(self.session_id),
            detail: cell(self.detail),
            ..self
        }
    }
}

/// Why an export could not be written.
#[derive(Debug, thiserror::Error)]
pub(super) enum ExportError {
    #[error("the CSV could not be written: {0}")]
    Csv(#[from] csv::Error),
    #[error("the JSON could not be written: {0}")]
    Json(#[from] serde_json::Error),
}

/// The export of `records` in `format`: a header line and one record per event for CSV (cells that
/// would start a spreadsheet formula are prefixed, see [`spreadsheet_cell`]), one JSON object per line
/// for JSON lines.
pub(super) fn export(
    records: &[AuditRecord],
    format: ExportFormat,
) -> Result<Vec<u8>, ExportError> {
    match format {
        ExportFormat::Csv => {
            let mut writer = csv::WriterBuilder::new()
                .has_headers(false)
                .from_writer(Vec::new());
            writer.write_record(CSV_HEADER)?;
            for record in records {
                writer.serialize(ExportedEvent::from(record).spreadsheet_safe())?;
            }
            writer
                .into_inner()
                .map_err(|error| ExportError::Csv(error.into_error().into()))
        }
        ExportFormat::Jsonl => {
            let mut out = Vec::new();
            for record in records {
                serde_json::to_writer(&mut out, &ExportedEvent::from(record))?;
                out.push(b'\n');
            }
            Ok(out)
        }
    }
}

/// The export's query: its format and the page's filter.
#[derive(Deserialize)]
pub(super) struct ExportQuery {
    format: ExportFormat,
    #[serde(flatten)]
    filter: AuditQuery,
}

/// `GET /admin/audit/export?format=csv|jsonl&<the page's filter>` (admins and auditors).
pub(super) async fn download(
    State(portal): State<Arc<Portal>>,
    ReviewerUser(viewer): ReviewerUser,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    Query(query): Query<ExportQuery>,
) -> Result<Response, PageError> {
    let AuditQuery { before, after, .. } = &query.filter;
    if !before.is_empty() || !after.is_empty() {
        return Err(PageError::bad_request(
            "an export holds the whole filter, not a page: leave out “before” and “after”",
        )
        .shown_to(&viewer));
    }
    let filter = filter_or_refuse(&viewer, &query.filter, EXPORT_LIMIT)?;
    let state = portal.broker.state();
    let records = state.audit_query(&filter).shown_to(&viewer)?;
    let body = export(&records, query.format)
        .map_err(|error| PageError::internal(error.to_string()).shown_to(&viewer))?;
    let described = AuditQuery::normalized(&filter).query_string();
    portal.broker.audit(AuditEvent {
        kind: "audit_exported".to_owned(),
        actor: Some(viewer.user.username().to_owned()),
        client_addr: Some(client.to_string()),
        detail: Some(format!(
            "{} events as {}{}{described}",
            records.len(),
            query.format.extension(),
            if described.is_empty() { "" } else { ": " },
        )),
        ..AuditEvent::default()
    });
    let disposition = format!(
        "attachment; filename=\"sallyport-audit.{}\"",
        query.format.extension()
    );
    Ok((
        [
            (header::CONTENT_TYPE, query.format.content_type().to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        body,
    )
        .into_response())
}

#[cfg(test)]
#[path = "audit_export_tests.rs"]
mod tests;
