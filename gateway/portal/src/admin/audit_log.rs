//! The audit log page (admins and auditors): the events, filtered by who, target, kind and time, a
//! page of [`PAGE_SIZE`] at a time, with the times as dates.
//!
//! Times go out as `<time datetime="…Z">` with a UTC text, and the date pickers take UTC; the page's
//! script (`web/src/local-time.js`) shows both in the viewer's time zone and sends the pickers' times
//! as Unix ms, which `from`/`to` accept as well (the form of links and older bookmarks).

use std::sync::Arc;

use axum::extract::{Query, State};
use maud::{Markup, html};
use sallyport_state::{AuditFilter, AuditRecord};
use serde::{Deserialize, Serialize};
use time::macros::format_description;

use crate::Portal;
use crate::access::ReviewerUser;
use crate::auth::CurrentUser;
use crate::html::components::table;
pub(super) use crate::html::time::iso_time;
use crate::html::time::{format_utc, time_element};
use crate::html::{Asset, PageError, ShownTo, reviewer_page};

/// Events on one page of the audit log.
const PAGE_SIZE: u32 = 100;

/// The audit log's filter and page, from the query string (the export takes the same filter).
#[derive(Deserialize, Serialize, Default, Clone, Debug, PartialEq, Eq)]
pub(super) struct AuditQuery {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub(super) user: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub(super) target: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub(super) kind: String,
    /// Unix ms, or a date picker's `2026-12-02T01:02[:03[.456]]` in UTC.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub(super) from: String,
    /// Unix ms, or a date picker's time in UTC; inclusive.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub(super) to: String,
    /// The next page: events older than this event id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub(super) before: String,
    /// The previous page: events newer than this event id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub(super) after: String,
}

/// Why a query string is not a filter, in words.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct BadFilter(String);

impl AuditQuery {
    /// The filter this query asks for, at most `limit` events.
    pub(super) fn filter(&self, limit: u32) -> Result<AuditFilter, BadFilter> {
        let some = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_owned());
        Ok(AuditFilter {
            actor: some(&self.user),
            target: some(&self.target),
            kind: some(&self.kind),
            from_ms: parse_time("from", &self.from)?,
            to_ms: parse_time("to", &self.to)?,
            before_id: parse_id("before", &self.before)?,
            after_id: parse_id("after", &self.after)?,
            limit,
        })
    }

    /// This query's filter alone: the times as Unix ms, no page.
    pub(super) fn normalized(filter: &AuditFilter) -> AuditQuery {
        let text = |v: &Option<String>| v.clone().unwrap_or_default();
        let number = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
        AuditQuery {
            user: text(&filter.actor),
            target: text(&filter.target),
            kind: text(&filter.kind),
            from: number(filter.from_ms),
            to: number(filter.to_ms),
            ..AuditQuery::default()
        }
    }

    /// The query string of this query (without the `?`).
    pub(super) fn query_string(&self) -> String {
        serde_urlencoded::to_string(self).unwrap_or_default()
    }
}

/// A time from the filter: Unix ms, or a date picker's value read as UTC; empty is no bound.
fn parse_time(field: &str, text: &str) -> Result<Option<u64>, BadFilter> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    if let Ok(ms) = text.parse::<u64>() {
        return Ok(Some(ms));
    }
    let picker = format_description!(
        version = 2,
        "[year]-[month]-[day]T[hour]:[minute][optional [:[second][optional [.[subsecond]]]]]"
    );
    time::PrimitiveDateTime::parse(text, picker)
        .ok()
        .map(|at| at.assume_utc().unix_timestamp_nanos() / 1_000_000)
        .and_then(|ms| u64::try_from(ms).ok())
        .map(Some)
        .ok_or_else(|| {
            BadFilter(format!(
                "“{field}” is not a date and time such as 2026-12-02T01:02 (or Unix milliseconds)"
            ))
        })
}

fn parse_id(field: &str, text: &str) -> Result<Option<i64>, BadFilter> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .map_err(|_| BadFilter(format!("“{field}” is not an event number")))
}

/// A time as a date picker's value in UTC, to the millisecond: `2026-12-02T01:02:03.456`.
fn picker_time(at_ms: u64) -> String {
    format_utc(
        at_ms,
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]"),
    )
}

/// `GET /admin/audit` (admins and auditors).
pub(super) async fn page(
    State(portal): State<Arc<Portal>>,
    ReviewerUser(viewer): ReviewerUser,
    Query(query): Query<AuditQuery>,
) -> Result<Markup, PageError> {
    let filter = filter_or_refuse(&viewer, &query, PAGE_SIZE + 1)?;
    let mut records = portal
        .broker
        .state()
        .audit_query(&filter)
        .shown_to(&viewer)?;
    let page = Page::cut(&filter, &mut records);
    let filter_only = AuditQuery::normalized(&filter);
    let rows: Vec<Markup> = records.iter().map(row).collect();
    let body = html! {
        (filter_form(&filter_only))
        (table(
            "audit",
            &["When", "Kind", "Who", "From", "Target", "Session", "Detail"],
            &rows,
            "No event matches this filter.",
        ))
        (paging(&filter_only, &page))
        (export_links(&filter_only))
    };
    let assets = [Asset::Script("local-time.js")];
    Ok(reviewer_page("Audit log", &viewer, &assets, body))
}

/// The filter of `query`, or the page saying why it is not one.
pub(super) fn filter_or_refuse(
    viewer: &CurrentUser,
    query: &AuditQuery,
    limit: u32,
) -> Result<AuditFilter, PageError> {
    query
        .filter(limit)
        .map_err(|BadFilter(why)| PageError::bad_request(why).shown_to(viewer))
}

/// Where a page of events is among its neighbours: the event ids the links to them start from.
#[derive(Debug, PartialEq, Eq)]
struct Page {
    newer_after: Option<i64>,
    older_before: Option<i64>,
}

impl Page {
    /// Cuts the one event fetched beyond [`PAGE_SIZE`] (it only tells that more lie that way) and
    /// says which neighbouring pages exist.
    fn cut(filter: &AuditFilter, records: &mut Vec<AuditRecord>) -> Page {
        let more = records.len() > PAGE_SIZE as usize;
        if more {
            if filter.after_id.is_some() {
                // Read upwards from `after`: the extra event is the newest.
                records.remove(0);
            } else {
                records.truncate(PAGE_SIZE as usize);
            }
        }
        let (newer, older) = if filter.after_id.is_some() {
            (more, true)
        } else {
            (filter.before_id.is_some(), more)
        };
        Page {
            newer_after: records.first().filter(|_| newer).map(|r| r.id),
            older_before: records.last().filter(|_| older).map(|r| r.id),
        }
    }
}

fn row(record: &AuditRecord) -> Markup {
    let cell = |v: &Option<String>| v.clone().unwrap_or_default();
    let event = &record.event;
    html! {
        tr.audit data-kind=(event.kind) {
            td { (time_element(record.at_ms)) }
            td { (event.kind) }
            td { (cell(&event.actor)) }
            td { (cell(&event.client_addr)) }
            td { (cell(&event.target)) }
            td { (cell(&event.session_id)) }
            td { (cell(&event.detail)) }
        }
    }
}

fn filter_form(query: &AuditQuery) -> Markup {
    html! {
        form.filters method="get" action="/admin/audit" id="audit-filter" {
            @for (name, value) in [("user", &query.user), ("target", &query.target), ("kind", &query.kind)] {
                input name=(name) placeholder=(name) aria-label=(name) value=(value);
                " "
            }
            (time_picker("from", "From", &query.from))
            " "
            (time_picker("to", "To", &query.to))
            " "
            span.time-zone data-time-zone { "(UTC)" }
            " "
            button type="submit" { "Filter" }
        }
    }
}

/// A date picker for a bound in Unix ms, shown in UTC; the script turns it to the viewer's zone.
fn time_picker(name: &str, label: &str, ms: &str) -> Markup {
    let (value, ms) = match ms.parse::<u64>() {
        Ok(at) => (picker_time(at), at.to_string()),
        Err(_) => (String::new(), String::new()),
    };
    html! {
        label { (label) " " input type="datetime-local" step="any" name=(name) value=(value) data-unix-ms=(ms); }
    }
}

fn paging(query: &AuditQuery, page: &Page) -> Markup {
    let link = |rel: &str, id: &str, text: &str, page: AuditQuery| {
        html! { a rel=(rel) id=(id) href={ "/admin/audit?" (page.query_string()) } { (text) } }
    };
    let newer = page.newer_after.map(|after| {
        link(
            "prev",
            "audit-newer",
            "← Newer",
            AuditQuery {
                after: after.to_string(),
                ..query.clone()
            },
        )
    });
    let older = page.older_before.map(|before| {
        link(
            "next",
            "audit-older",
            "Older →",
            AuditQuery {
                before: before.to_string(),
                ..query.clone()
            },
        )
    });
    html! {
        @if newer.is_some() || older.is_some() {
            nav.paging aria-label="Pages of the audit log" {
                @if let Some(newer) = &newer { (newer) }
                @if newer.is_some() && older.is_some() { " · " }
                @if let Some(older) = older { (older) }
            }
        }
    }
}

fn export_links(query: &AuditQuery) -> Markup {
    let filter = query.query_string();
    let and = if filter.is_empty() { "" } else { "&" };
    let href = |format: &str| format!("/admin/audit/export?format={format}{and}{filter}");
    html! {
        p.export {
            "Export this filter (newest first, at most " (super::audit_export::EXPORT_LIMIT) " events): "
            a id="export-csv" href=(href("csv")) download { "CSV" }
            " · "
            a id="export-jsonl" href=(href("jsonl")) download { "JSON lines" }
        }
    }
}

#[cfg(test)]
#[path = "audit_log_tests.rs"]
mod tests;
