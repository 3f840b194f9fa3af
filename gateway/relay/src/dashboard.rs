//! The admin dashboard's data: one [`Dashboard`] snapshot, built by [`dashboard`] from what the broker
//! already holds (live sessions with their byte counters, the audit log, the recorder's health) and
//! what the daemon hands it once ([`DashboardSources`]: the edge's report and where the state lives).
//!
//! Building never fails as a whole: a part that cannot be read (a failing database, an unreadable
//! directory) is left empty and named in [`Dashboard::unavailable`] in words, so the page still shows
//! the rest. Problems an admin should act on are in [`Dashboard::warnings`], in words.

mod disk;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sallyport_core::policy::Role;
// Re-exported: the dashboard's users (the portal) reach recordings only through the relay.
pub use sallyport_recordings::RecorderHealth;
use sallyport_state::StateDb;

use crate::broker::Broker;
use crate::live::LiveSessions;

pub use disk::{DiskUse, human_bytes};

/// Audit kinds of a completed sign-in (browser, CLI, console, reviewer).
pub const SIGN_IN_KINDS: &[&str] = &["login", "cli_login", "console_login", "review_login"];
/// Audit kinds of a refused sign-in or connect.
pub const REFUSAL_KINDS: &[&str] = &[
    "login_failed",
    "mfa_failed",
    "throttled",
    "cli_disabled",
    "console_refused",
    "review_refused",
    "quic_refused",
    "quic_stream_refused",
    "connect_refused",
];
/// How many recent sign-ins and refusals the dashboard lists.
pub const RECENT_SIGN_INS: u32 = 20;
/// The disk is "nearly full" from this percentage on.
pub const DISK_WARNING_PERCENT: u8 = 90;

/// What the edge reports; the daemon implements it over sallyport-edge (this crate never loads eBPF).
pub trait EdgeSource: Send + Sync {
    /// The edge now. Must be quick: it is called from request handlers.
    fn summary(&self) -> EdgeSummary;
}

/// The edge as the dashboard shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EdgeSummary {
    /// Why the edge is not attached, when it is not.
    pub not_attached: Option<String>,
    /// Packets dropped in the last hour per drop reason (stable snake_case labels), counter order.
    pub drops_last_hour: Vec<(String, u64)>,
    /// Minutes of the last hour the history has samples for (fewer just after a start).
    pub minutes_sampled: usize,
}

impl EdgeSummary {
    /// Whether the edge is attached.
    pub fn attached(&self) -> bool {
        self.not_attached.is_none()
    }
}

/// What the daemon hands the broker for the dashboard ([`Broker::with_dashboard`]).
#[derive(Clone)]
pub struct DashboardSources {
    /// The state directory (its size and its filesystem's free space are shown).
    pub state_dir: PathBuf,
    /// The recordings database.
    pub recordings_db: PathBuf,
    /// The edge, when the daemon has one (attached or not).
    pub edge: Option<Arc<dyn EdgeSource>>,
}

/// One live session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveSession {
    /// The recording's session id (terminate and watch take it).
    pub session_id: String,
    /// Portal user.
    pub username: String,
    /// Target name.
    pub target: String,
    /// `ssh`, `rdp` or `ssh-proxy`.
    pub protocol: String,
    /// The user's address.
    pub client_addr: SocketAddr,
    /// When it started (unix ms).
    pub started_at_ms: u64,
    /// How long it has been running.
    pub running_for: Duration,
    /// Bytes from the user to the target.
    pub bytes_to_target: u64,
    /// Bytes from the target to the user.
    pub bytes_from_target: u64,
}

/// Whether a sign-in event is a sign-in or a refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignInOutcome {
    /// Signed in.
    SignedIn,
    /// Refused (wrong password or code, throttled, no access, ...).
    Refused,
}

/// One recent sign-in or refusal, from the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignInEvent {
    /// When (unix ms).
    pub at_ms: u64,
    /// The audit kind (`login`, `login_failed`, ...).
    pub kind: String,
    /// The user named, if any (a refused sign-in names what was typed).
    pub user: Option<String>,
    /// The source address.
    pub source: Option<String>,
    /// Signed in or refused.
    pub outcome: SignInOutcome,
    /// The audit detail (how, or why refused).
    pub detail: Option<String>,
}

/// The dashboard at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dashboard {
    /// When it was built (unix ms).
    pub at_ms: u64,
    /// Live sessions, oldest first.
    pub live: Vec<LiveSession>,
    /// The newest sign-ins and refusals, newest first.
    pub sign_ins: Vec<SignInEvent>,
    /// The edge.
    pub edge: EdgeSummary,
    /// The recorder's backlog and health.
    pub recorder: RecorderHealth,
    /// Disk use, unless it could not be measured (then named in `unavailable`).
    pub disk: Option<DiskUse>,
    /// What an admin should act on, in words.
    pub warnings: Vec<String>,
    /// Parts that could not be read, in words.
    pub unavailable: Vec<String>,
}

/// Everything [`build`] reads; [`dashboard`] takes it from a broker.
pub struct DashboardParts<'a> {
    /// The state database (audit log, users).
    pub state: &'a StateDb,
    /// The live sessions.
    pub live: &'a LiveSessions,
    /// The recorder's health.
    pub recorder: RecorderHealth,
    /// The daemon's sources, if it gave any.
    pub sources: Option<&'a DashboardSources>,
}

/// The dashboard of a running gateway.
pub fn dashboard(broker: &Broker, now_ms: u64) -> Dashboard {
    build(
        DashboardParts {
            state: broker.state(),
            live: broker.live(),
            recorder: broker.recorder_health(),
            sources: broker.dashboard_sources(),
        },
        now_ms,
    )
}

/// The dashboard from its parts (see the module's documentation).
pub fn build(parts: DashboardParts<'_>, now_ms: u64) -> Dashboard {
    let mut unavailable = Vec::new();
    let live = parts
        .live
        .list()
        .into_iter()
        .map(|info| LiveSession {
            running_for: Duration::from_millis(now_ms.saturating_sub(info.started_at_ms)),
            session_id: info.session_id,
            username: info.username,
            target: info.target,
            protocol: info.protocol,
            client_addr: info.client_addr,
            started_at_ms: info.started_at_ms,
            bytes_to_target: info.bytes_up,
            bytes_from_target: info.bytes_down,
        })
        .collect();
    let kinds: Vec<&str> = SIGN_IN_KINDS.iter().chain(REFUSAL_KINDS).copied().collect();
    let sign_ins = match parts.state.audit_recent(&kinds, RECENT_SIGN_INS) {
        Ok(records) => records
            .into_iter()
            .map(|r| SignInEvent {
                at_ms: r.at_ms,
                outcome: if SIGN_IN_KINDS.contains(&r.event.kind.as_str()) {
                    SignInOutcome::SignedIn
                } else {
                    SignInOutcome::Refused
                },
                kind: r.event.kind,
                user: r.event.actor,
                source: r.event.client_addr,
                detail: r.event.detail,
            })
            .collect(),
        Err(error) => {
            unavailable.push(format!("recent sign-ins: {error}"));
            Vec::new()
        }
    };
    let edge = match parts.sources.and_then(|s| s.edge.as_ref()) {
        Some(edge) => edge.summary(),
        None => EdgeSummary {
            not_attached: Some("this gateway runs without the edge".into()),
            ..EdgeSummary::default()
        },
    };
    let disk = parts.sources.and_then(|s| {
        disk::measure(&s.state_dir, &s.recordings_db)
            .map_err(|error| unavailable.push(format!("disk use: {error}")))
            .ok()
    });
    let one_time_admins = match parts.state.users() {
        Ok(users) => users
            .into_iter()
            .filter(|u| u.role == Role::Admin && u.must_change_password && !u.disabled)
            .map(|u| u.username)
            .collect(),
        Err(error) => {
            unavailable.push(format!("users: {error}"));
            Vec::new()
        }
    };
    let warnings = warnings(&edge, disk.as_ref(), &parts.recorder, &one_time_admins);
    Dashboard {
        at_ms: now_ms,
        live,
        sign_ins,
        edge,
        recorder: parts.recorder,
        disk,
        warnings,
        unavailable,
    }
}

/// The warnings, in words, in the order of urgency.
pub fn warnings(
    edge: &EdgeSummary,
    disk: Option<&DiskUse>,
    recorder: &RecorderHealth,
    one_time_admins: &[String],
) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(why) = &recorder.failing {
        out.push(format!(
            "Recording is failing ({why}): new sessions are refused until the recordings database takes writes again."
        ));
    }
    if let Some(disk) = disk
        && disk.used_percent() >= DISK_WARNING_PERCENT
    {
        out.push(format!(
            "The disk holding the state directory is {}% full ({} left): when it is full, recording fails and sessions are refused.",
            disk.used_percent(),
            human_bytes(disk.available_bytes)
        ));
    }
    if let Some(why) = &edge.not_attached {
        out.push(format!(
            "The network edge is not attached ({why}): every port this machine listens on is as open as its own firewall leaves it."
        ));
    }
    for name in one_time_admins {
        out.push(format!(
            "The admin account {name} still has its one-time password: sign in as {name} and set a password of your own."
        ));
    }
    // Most of the queue in use: sessions will soon wait for the recorder.
    if recorder.queue_capacity > 0
        && recorder.queued_events * 5 >= recorder.queue_capacity as u64 * 4
    {
        out.push(format!(
            "The recorder is behind: {} of {} queued events; sessions slow down while it catches up.",
            recorder.queued_events, recorder.queue_capacity
        ));
    }
    out
}

#[cfg(test)]
#[path = "dashboard_tests.rs"]
mod tests;
