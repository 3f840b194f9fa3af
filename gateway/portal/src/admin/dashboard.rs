//! The admin landing page, `/admin`: what needs doing first (the relay's warnings, each in words with
//! what to do), then what is happening (live sessions with a link to watch each terminal, the newest
//! sign-ins and refusals), then the machine (the edge's drops per reason in the last hour, the
//! recorder's queue and the disk). Everything comes from one [`sallyport_relay::dashboard`] snapshot.
//!
//! Auditors see it too, read-only: it shows nothing the audit log does not already show them but the
//! live sessions, which are part of what they review; the watch links (admin only) are left out.

use std::sync::Arc;

use axum::extract::State;
use maud::{Markup, html};
use sallyport_core::policy::Role;
use sallyport_relay::dashboard::RecorderHealth;
use sallyport_relay::dashboard::{
    Dashboard, DiskUse, EdgeSummary, LiveSession, SignInEvent, SignInOutcome, human_bytes,
};

use crate::Portal;
use crate::access::ReviewerUser;
use crate::html::components::table;
use crate::html::time::{duration_text, time_element};
use crate::html::{Asset, PageError, reviewer_page};

/// `GET /admin` (admins and auditors).
pub(super) async fn index(
    State(portal): State<Arc<Portal>>,
    ReviewerUser(viewer): ReviewerUser,
) -> Result<Markup, PageError> {
    // The snapshot reads the state database and walks the state directory: not on the runtime's threads.
    let snapshot = {
        let portal = portal.clone();
        tokio::task::spawn_blocking(move || {
            sallyport_relay::dashboard::dashboard(&portal.broker, sallyport_relay::now_ms())
        })
        .await
        .map_err(|_| PageError::internal("the dashboard could not be read"))?
    };
    let may_watch = viewer.user.role() == Role::Admin;
    let body = html! {
        (warnings(&snapshot))
        h2 { "Live sessions" }
        (live_sessions(&snapshot.live, may_watch))
        h2 { "Recent sign-ins and refusals" }
        (sign_ins(&snapshot.sign_ins))
        div.dash-columns {
            section { h2 { "Edge" } (edge(&snapshot.edge)) }
            section { h2 { "Recordings" } (recordings(&snapshot.recorder, snapshot.disk.as_ref())) }
        }
    };
    Ok(reviewer_page(
        "Dashboard",
        &viewer,
        &[Asset::Script("local-time.js")],
        body,
    ))
}

/// The warnings, first and plain; then whatever could not be read, so an empty part is not mistaken
/// for a quiet one.
fn warnings(snapshot: &Dashboard) -> Markup {
    html! {
        section id="warnings" aria-labelledby="warnings-heading" {
            h2 id="warnings-heading" { "Needs attention" }
            @if snapshot.warnings.is_empty() {
                p.notice { "Nothing needs your attention." }
            } @else {
                ul.warnings role="alert" {
                    @for warning in &snapshot.warnings { li.warning { (warning) } }
                }
            }
            @if !snapshot.unavailable.is_empty() {
                p { "Some parts of this page could not be read:" }
                ul id="unavailable" { @for part in &snapshot.unavailable { li { (part) } } }
            }
        }
    }
}

fn live_sessions(live: &[LiveSession], may_watch: bool) -> Markup {
    let rows: Vec<Markup> = live
        .iter()
        .map(|s| {
            html! {
                tr data-session=(s.session_id) data-user=(s.username) data-target=(s.target) {
                    td { (s.username) }
                    td { (s.target) }
                    td { (s.protocol) }
                    td { (s.client_addr) }
                    td { (time_element(s.started_at_ms)) }
                    td { (duration_text(s.running_for)) }
                    td.num { (human_bytes(s.bytes_to_target)) }
                    td.num { (human_bytes(s.bytes_from_target)) }
                    td {
                        // The watch page is a terminal: desktops have nothing it could show.
                        @if may_watch && s.protocol != "rdp" {
                            a.watch href={ "/admin/sessions/" (s.session_id) "/watch" } { "Watch" }
                        }
                    }
                }
            }
        })
        .collect();
    let headers = [
        "User",
        "Target",
        "Protocol",
        "From",
        "Started",
        "Running for",
        "To target",
        "From target",
        "",
    ];
    html! {
        (table("live-sessions", &headers, &rows, "No session is live."))
        @if may_watch { p { a href="/admin/sessions" { "Terminate sessions on the live sessions page" } } }
    }
}

fn sign_ins(events: &[SignInEvent]) -> Markup {
    let rows: Vec<Markup> = events
        .iter()
        .map(|e| {
            let (class, outcome) = match e.outcome {
                SignInOutcome::SignedIn => ("ok", "signed in"),
                SignInOutcome::Refused => ("bad", "refused"),
            };
            html! {
                tr data-kind=(e.kind) {
                    td { (time_element(e.at_ms)) }
                    td { (e.user.as_deref().unwrap_or("")) }
                    td { (e.source.as_deref().unwrap_or("")) }
                    td class=(class) { (outcome) " (" (e.kind) ")" }
                    td { (e.detail.as_deref().unwrap_or("")) }
                }
            }
        })
        .collect();
    table(
        "sign-ins",
        &["Time", "User", "Source", "Outcome", "Detail"],
        &rows,
        "Nobody has signed in or been refused yet.",
    )
}

/// The edge: plainly "not attached" with why, or each drop reason with its count and a bar scaled to
/// the largest (a `<meter>`, which needs no script, no chart library and no inline style).
fn edge(edge: &EdgeSummary) -> Markup {
    let most = edge
        .drops_last_hour
        .iter()
        .map(|(_, n)| *n)
        .max()
        .unwrap_or(0);
    let rows: Vec<Markup> = edge
        .drops_last_hour
        .iter()
        .map(|(reason, count)| {
            html! {
                tr data-reason=(reason) {
                    td { (reason) }
                    td.num { (count) }
                    td { meter min="0" max=(most.max(1)) value=(count) aria-label={ (reason) " drops" } {} }
                }
            }
        })
        .collect();
    html! {
        div id="edge" {
            @if let Some(why) = &edge.not_attached {
                p.error data-edge="not-attached" { "Not attached: " (why) "." }
            } @else {
                p data-edge="attached" {
                    "Attached. Packets dropped in the last hour"
                    @if edge.minutes_sampled < 60 { " (" (edge.minutes_sampled) " minutes sampled so far)" }
                    ":"
                }
                (table("edge-drops", &["Reason", "Drops", ""], &rows, "Nothing was dropped in the last hour."))
            }
        }
    }
}

fn recordings(recorder: &RecorderHealth, disk: Option<&DiskUse>) -> Markup {
    html! {
        dl id="recordings" {
            dt { "Queue" }
            dd { (recorder.queued_events) " of " (recorder.queue_capacity) " events waiting for the writer" }
            dt { "Writer" }
            dd {
                @match &recorder.failing {
                    Some(why) => span.error { "failing: " (why) },
                    None => "writing",
                }
            }
            @if let Some(disk) = disk {
                dt { "Disk" }
                dd data-used-percent=(disk.used_percent()) {
                    (disk.used_percent()) " % used, " (human_bytes(disk.available_bytes)) " free of "
                    (human_bytes(disk.filesystem_bytes))
                }
                dt { "recordings.db" }
                dd { (human_bytes(disk.recordings_bytes)) }
                dt { "State directory" }
                dd { (human_bytes(disk.state_dir_bytes)) }
            } @else {
                dt { "Disk" }
                dd { "not measured (see above)" }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn session(protocol: &str) -> LiveSession {
        LiveSession {
            session_id: "s1".into(),
            username: "ann".into(),
            target: "web".into(),
            protocol: protocol.into(),
            client_addr: "192.0.2.7:5000".parse().unwrap(),
            started_at_ms: 1_796_173_323_456,
            running_for: Duration::from_secs(185),
            bytes_to_target: 2048,
            bytes_from_target: 17,
        }
    }

    #[test]
    fn live_sessions_show_who_where_how_long_and_bytes_with_a_watch_link_for_admins() {
        let html = live_sessions(&[session("ssh")], true).into_string();
        for part in [
            r#"data-user="ann""#,
            "<td>web</td>",
            "192.0.2.7:5000",
            r#"datetime="2026-12-02T01:02:03.456Z""#,
            "3 min 5 s",
            "2.0 KiB",
            "17 B",
            r#"href="/admin/sessions/s1/watch""#,
        ] {
            assert!(html.contains(part), "{part} missing from {html}");
        }
        assert!(
            !live_sessions(&[session("ssh")], false)
                .into_string()
                .contains("/watch")
        );
        assert!(
            !live_sessions(&[session("rdp")], true)
                .into_string()
                .contains("/watch")
        );
        assert!(
            live_sessions(&[], true)
                .into_string()
                .contains("No session is live.")
        );
    }

    #[test]
    fn the_edge_says_not_attached_plainly_or_draws_a_bar_per_reason() {
        let off = EdgeSummary {
            not_attached: Some("this gateway runs without the edge".into()),
            ..EdgeSummary::default()
        };
        assert!(
            edge(&off)
                .into_string()
                .contains("Not attached: this gateway runs without the edge.")
        );
        let on = EdgeSummary {
            not_attached: None,
            drops_last_hour: vec![("blocked".into(), 40), ("bad_header".into(), 10)],
            minutes_sampled: 60,
        };
        let html = edge(&on).into_string();
        assert!(
            html.contains(r#"<meter min="0" max="40" value="10""#),
            "{html}"
        );
        assert!(!html.contains("sampled so far"));
        let quiet = EdgeSummary {
            minutes_sampled: 3,
            ..EdgeSummary::default()
        };
        let html = edge(&quiet).into_string();
        assert!(html.contains("3 minutes sampled so far"));
        assert!(html.contains("Nothing was dropped in the last hour."));
    }

    #[test]
    fn sign_ins_and_recordings_are_in_words() {
        let events = [SignInEvent {
            at_ms: 1_796_173_323_456,
            kind: "login_failed".into(),
            user: Some("mallory".into()),
            source: Some("198.51.100.9:4000".into()),
            outcome: SignInOutcome::Refused,
            detail: None,
        }];
        let html = sign_ins(&events).into_string();
        assert!(
            html.contains("refused (login_failed)") && html.contains("mallory"),
            "{html}"
        );
        assert!(sign_ins(&[]).into_string().contains("Nobody has signed in"));
        let health = RecorderHealth {
            queued_events: 3,
            queue_capacity: 1024,
            failing: None,
        };
        let disk = DiskUse {
            recordings_bytes: 5 << 20,
            state_dir_bytes: 6 << 20,
            filesystem_bytes: 100 << 30,
            available_bytes: 7 << 30,
        };
        let html = recordings(&health, Some(&disk)).into_string();
        for part in [
            "3 of 1024 events",
            "93 % used, 7.0 GiB free of 100.0 GiB",
            "5.0 MiB",
        ] {
            assert!(html.contains(part), "{part} missing from {html}");
        }
        assert!(
            recordings(&health, None)
                .into_string()
                .contains("not measured")
        );
    }
}
