//! The portal's view of the network edge: the [`EdgeControl`] trait the daemon implements over
//! sallyport-edge (the portal never loads eBPF itself), the admin page `/admin/edge` and the admin
//! metrics endpoint `/admin/metrics` (Prometheus text format).
//!
//! A login lockout hands the offending source to [`EdgeControl::block_source`], so that for the lockout
//! period its packets are dropped before the kernel allocates anything for them.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use ipnet::IpNet;
use maud::{Markup, html};

use crate::Portal;
use crate::access::AdminUser;
use crate::html::admin_page;
use crate::html::components::table;

/// What the portal asks of the edge. Implementations must not block for long: they are called from
/// request handlers.
pub trait EdgeControl: Send + Sync {
    /// Drops every packet from `source` for `duration` (a login lockout).
    fn block_source(&self, source: IpNet, duration: Duration);
    /// The edge as it is now.
    fn status(&self) -> EdgeStatus;
}

/// A snapshot of the edge for admins.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EdgeStatus {
    /// Why the edge is not attached, when it is not (the page says so plainly).
    pub not_attached: Option<String>,
    /// Interfaces: name, role, XDP mode.
    pub interfaces: Vec<EdgeInterface>,
    /// Packets per verdict reason since the edge was loaded.
    pub counters: Vec<EdgeCounter>,
    /// Sources in the blocklist and the time they have left.
    pub blocked: Vec<(IpNet, Duration)>,
    /// Flows the appliance opened that the edge tracks for their replies.
    pub tracked_flows: usize,
}

/// One attached interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EdgeInterface {
    /// Interface name.
    pub name: String,
    /// "public" or "internal".
    pub role: String,
    /// "native" or "generic".
    pub mode: String,
}

/// One counter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EdgeCounter {
    /// Stable snake_case reason.
    pub reason: String,
    /// True for a pass verdict.
    pub passes: bool,
    /// Packets.
    pub packets: u64,
}

fn status(portal: &Portal) -> EdgeStatus {
    match &portal.edge {
        Some(edge) => edge.status(),
        None => EdgeStatus {
            not_attached: Some("this gateway runs without the edge".into()),
            ..EdgeStatus::default()
        },
    }
}

/// `GET /admin/edge`: attachments, counters and the blocklist.
pub async fn edge_page(State(portal): State<Arc<Portal>>, AdminUser(admin): AdminUser) -> Markup {
    let status = status(&portal);
    let interfaces: Vec<Markup> = status
        .interfaces
        .iter()
        .map(|i| html! { tr { td { (i.name) } td { (i.role) } td { (i.mode) } } })
        .collect();
    let counters: Vec<Markup> = status
        .counters
        .iter()
        .map(|c| {
            html! {
                tr data-reason=(c.reason) {
                    td { (c.reason) }
                    td { (if c.passes { "pass" } else { "drop" }) }
                    td.num { (c.packets) }
                }
            }
        })
        .collect();
    let blocked: Vec<Markup> = status
        .blocked
        .iter()
        .map(|(net, left)| html! { tr data-source=(net) { td { (net) } td.num { (left.as_secs()) } } })
        .collect();
    admin_page(
        "Edge",
        &admin,
        &[],
        html! {
            @match &status.not_attached {
                Some(reason) => p.error id="edge-state" {
                    "Not attached: " (reason) ". Every port this machine listens on is reachable as far as its own firewall allows."
                },
                None => p id="edge-state" {
                    "Attached: only the portal port and replies of the gateway's own connections come in."
                },
            }
            h2 { "Interfaces" }
            (table("edge-interfaces", &["Interface", "Role", "XDP mode"], &interfaces, "No interface is attached."))
            h2 { "Packets by verdict" }
            (table("edge-counters", &["Reason", "Verdict", "Packets"], &counters, "No packet counted yet."))
            h2 { "Blocked sources" }
            p { "Sources locked out after repeated failed logins are dropped by the edge until their wait ends." }
            (table("edge-blocklist", &["Source", "Seconds left"], &blocked, "No source is blocked."))
            p {
                "Tracked outbound flows: " span id="edge-flows" { (status.tracked_flows) } ". "
                "The same figures for monitoring: " a href="/admin/metrics" { "/admin/metrics" } "."
            }
        },
    )
}

/// `GET /admin/metrics`: the edge counters (and whether it is attached), the recordings ledger's cost and
/// the sign-in bound's figures, in Prometheus text format.
pub async fn metrics(State(portal): State<Arc<Portal>>, AdminUser(_admin): AdminUser) -> Response {
    let status = status(&portal);
    let mut text = String::new();
    text.push_str("# HELP sallyport_edge_attached 1 when the XDP edge is attached.\n");
    text.push_str("# TYPE sallyport_edge_attached gauge\n");
    let _ = writeln!(
        text,
        "sallyport_edge_attached {}",
        u8::from(status.not_attached.is_none())
    );
    text.push_str(
        "# HELP sallyport_edge_packets_total Packets seen by the edge, by verdict and reason.\n",
    );
    text.push_str("# TYPE sallyport_edge_packets_total counter\n");
    for counter in &status.counters {
        let _ = writeln!(
            text,
            "sallyport_edge_packets_total{{verdict=\"{}\",reason=\"{}\"}} {}",
            if counter.passes { "pass" } else { "drop" },
            counter.reason,
            counter.packets
        );
    }
    text.push_str("# HELP sallyport_edge_blocked_sources Sources in the edge blocklist.\n");
    text.push_str("# TYPE sallyport_edge_blocked_sources gauge\n");
    let _ = writeln!(
        text,
        "sallyport_edge_blocked_sources {}",
        status.blocked.len()
    );
    text.push_str(
        "# HELP sallyport_edge_tracked_flows Outbound flows tracked for their replies.\n",
    );
    text.push_str("# TYPE sallyport_edge_tracked_flows gauge\n");
    let _ = writeln!(
        text,
        "sallyport_edge_tracked_flows {}",
        status.tracked_flows
    );
    let ledger = portal.broker.recorder_stats();
    let signins = sallyport_state::password_work_figures();
    for (name, kind, help, value) in [
        (
            "sallyport_signin_verifications_limit",
            "gauge",
            "How many argon2id password verifications or hashes may run at once.",
            signins.limit as f64,
        ),
        (
            "sallyport_signin_verifications_peak",
            "gauge",
            "The most argon2id password verifications or hashes that ran at once since start.",
            signins.peak as f64,
        ),
        (
            "sallyport_signin_refused_total",
            "counter",
            "Sign-ins and password changes refused because too many ran at once.",
            signins.refused as f64,
        ),
        (
            "sallyport_ledger_entries_total",
            "counter",
            "Entries written to the recordings ledger since start (checkpoints included).",
            ledger.ledger_entries as f64,
        ),
        (
            "sallyport_ledger_checkpoints_total",
            "counter",
            "Checkpoints of the recordings ledger signed since start.",
            ledger.checkpoints as f64,
        ),
        (
            "sallyport_ledger_seconds_total",
            "counter",
            "Time the recorder spent hashing, signing and storing ledger entries since start.",
            ledger.ledger_seconds,
        ),
    ] {
        let _ = writeln!(
            text,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}
