//! `GET /targets`: the targets a user may reach ([`sallyport_relay::target_list`]), with a search box
//! (`?q=`, judged on the server by the relay's `search`, the query kept in the box), each target's tags
//! as labels that search for themselves, when this user last used it (in the viewer's time zone), and
//! a short "Recently used" list above the full list, which is by name.
//!
//! The ids and attributes browser tests and scripts rely on: `#targets` (the table), `tr[data-target]`
//! (a row, by target name), `a.connect` (its connect link), `#target-search` (the box), `#recent`.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use sallyport_relay::target_list::{TargetEntry, recently_used, search, target_list};
use serde::Deserialize;

use crate::Portal;
use crate::auth::CurrentUser;
use crate::html::components::table;
use crate::html::time::time_element;
use crate::html::{Asset, Layout, PageError, ShownTo};

/// How many targets the "Recently used" list shows.
const RECENT: usize = 5;

/// The search box's query string.
#[derive(Deserialize, Default)]
pub struct TargetQuery {
    #[serde(default)]
    q: String,
}

/// `GET /targets`.
pub async fn targets(
    State(portal): State<Arc<Portal>>,
    Query(query): Query<TargetQuery>,
    headers: HeaderMap,
    user: CurrentUser,
) -> Result<Response, PageError> {
    // Every sign-in lands here: one made for a program's browser sign-in goes back to its question.
    if let Some(resume) = crate::cli_browser::resume_target(&portal, &headers) {
        return Ok(resume.into_response());
    }
    let entries = target_list(portal.broker.state(), &user.user).shown_to(&user)?;
    let query = query.q.trim();
    Ok(Layout {
        title: "Targets",
        viewer: Some(&user.user),
        assets: &[Asset::Script("local-time.js")],
        ws_path: None,
    }
    .render(body(&entries, query))
    .into_response())
}

/// The page's main part for `entries` (by name) and the search `query`.
fn body(entries: &[TargetEntry], query: &str) -> Markup {
    let found = search(entries, query);
    let rows: Vec<Markup> = found.iter().map(|e| row(e)).collect();
    let empty = if entries.is_empty() {
        "No target is open to you yet: an administrator grants targets with a policy.".to_owned()
    } else {
        format!("No target matches “{query}”.")
    };
    // While searching, the matches are what matter; the recent list is for the plain page.
    let recent = if query.is_empty() {
        recently_used(entries, RECENT)
    } else {
        Vec::new()
    };
    html! {
        h1 { "Targets" }
        p { a href="/connect-ip" id="connect-ip" { "Connect by IP address" } }
        @if !recent.is_empty() {
            section id="recent" aria-labelledby="recent-heading" {
                h2 id="recent-heading" { "Recently used" }
                ul.recent {
                    @for e in &recent {
                        li data-recent=(e.target.name) {
                            a href={ "/connect/" (e.target.id) } { (e.target.name) }
                            " " span.muted { (last_used(e)) }
                        }
                    }
                }
            }
        }
        form.filters method="get" action="/targets" role="search" {
            label {
                "Search"
                input type="search" name="q" id="target-search" value=(query)
                    placeholder="name, address or tag" autocomplete="off";
            }
            button type="submit" id="search" { "Search" }
            @if !query.is_empty() { a href="/targets" id="clear-search" { "Show all" } }
        }
        (table("targets", &["Name", "Address", "Protocol", "Tags", "Last used", ""], &rows, &empty))
    }
}

fn row(entry: &TargetEntry) -> Markup {
    let t = &entry.target;
    html! {
        tr data-target=(t.name) {
            td { (t.name) }
            td { (t.host) ":" (t.port) }
            td { (t.protocol.as_str()) }
            td {
                @for tag in &t.tags {
                    a.tag href={ "/targets?" (tag_query(tag)) } { (tag) } " "
                }
            }
            td.last-used { (last_used(entry)) }
            td { a.connect href={ "/connect/" (t.id) } { "Connect" } }
        }
    }
}

/// When the user last used the target (a time the script shows locally), or "never".
fn last_used(entry: &TargetEntry) -> Markup {
    match entry.last_used_ms {
        Some(at) => time_element(at),
        None => html! { "never" },
    }
}

/// The query string searching for `tag` (escaped: a tag may hold `&` or spaces).
fn tag_query(tag: &str) -> String {
    serde_urlencoded::to_string([("q", tag)]).unwrap_or_default()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use sallyport_core::policy::Protocol;
    use sallyport_state::TargetRecord;

    use super::*;

    fn entry(id: i64, name: &str, tags: &[&str], last_used_ms: Option<u64>) -> TargetEntry {
        TargetEntry {
            target: TargetRecord {
                id,
                name: name.into(),
                host: "10.0.0.5".into(),
                port: 22,
                protocol: Protocol::Ssh,
                tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            },
            last_used_ms,
            remembered_username: None,
        }
    }

    #[test]
    fn the_list_shows_tags_as_searches_last_use_and_a_recent_list() {
        let entries = [
            entry(1, "db", &[], None),
            entry(2, "web", &["prod", "a&b"], Some(1_796_173_323_456)),
        ];
        let html = body(&entries, "").into_string();
        assert!(
            html.contains(r#"<li data-recent="web"><a href="/connect/2">web</a>"#),
            "{html}"
        );
        assert!(
            html.contains(r#"<a class="tag" href="/targets?q=prod">prod</a>"#),
            "{html}"
        );
        assert!(html.contains(r#"href="/targets?q=a%26b""#), "{html}");
        assert!(html.contains(r#"<td class="last-used">never</td>"#));
        assert!(
            html.contains(r#"<td class="last-used"><time datetime="2026-12-02T01:02:03.456Z""#)
        );
        assert!(html.contains(r#"<a class="connect" href="/connect/1">"#));
    }

    #[test]
    fn a_search_keeps_its_query_narrows_the_list_and_says_when_nothing_matches() {
        let entries = [
            entry(1, "db", &[], None),
            entry(2, "web", &["prod"], Some(5)),
        ];
        let html = body(&entries, "PROD").into_string();
        assert!(html.contains(r#"value="PROD""#));
        assert!(html.contains(r#"data-target="web""#) && !html.contains(r#"data-target="db""#));
        assert!(
            !html.contains("Recently used"),
            "no recent list while searching"
        );
        let html = body(&entries, "<x>").into_string();
        assert!(html.contains("No target matches “&lt;x&gt;”."), "{html}");
        assert!(
            body(&[], "")
                .into_string()
                .contains("No target is open to you yet")
        );
        assert!(
            !body(&[entry(1, "db", &[], None)], "")
                .into_string()
                .contains("Recently used")
        );
    }
}
