//! The broker: one task per session, from the first client frame to the sealed recording.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sallyport_core::egress::EgressPolicy;
use sallyport_core::errors::ErrorKind;
use sallyport_core::policy::Authorized;
use sallyport_recordings::{
    Event, EventSink, Recorder, RecordingError, SessionRecorder, TryRecordError,
};
use sallyport_state::{AuditEvent, StateDb, StateError};
use tracing::{info, warn};

use crate::desktop::{DesktopConfig, DesktopConnector};
use crate::live::LiveSessions;
use crate::proxy::ProxyConnector;
use crate::traits::{TargetError, TerminalConnector};

/// Wall-clock milliseconds since the Unix epoch (for audit timestamps).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Session limits and deadlines.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// How long a new session may wait for the client's connect message.
    pub connect_message_timeout: Duration,
    /// Deadline for dialling, handshake and target authentication.
    pub target_connect_timeout: Duration,
    /// Deadline for DNS resolution of a target name.
    pub resolve_timeout: Duration,
    /// A session with no input from the user for this long is ended (`None`: never).
    pub idle_timeout: Option<Duration>,
    /// A session is ended this long after it started (`None`: never).
    pub max_duration: Option<Duration>,
    /// Most sessions open at once on the gateway.
    pub max_sessions: usize,
    /// Most sessions one user may have open at once.
    pub max_sessions_per_user: usize,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            connect_message_timeout: Duration::from_secs(120),
            target_connect_timeout: Duration::from_secs(20),
            resolve_timeout: Duration::from_secs(5),
            idle_timeout: Some(Duration::from_secs(30 * 60)),
            max_duration: Some(Duration::from_secs(12 * 3600)),
            // The design's target is over 1000 concurrent sessions on the appliance.
            max_sessions: 5000,
            max_sessions_per_user: 50,
        }
    }
}

/// The protocols a broker dials, one per session kind; all required when the broker is built.
#[derive(Clone)]
pub struct Connectors {
    /// Opens terminals (SSH).
    pub terminal: Arc<dyn TerminalConnector>,
    /// Opens desktops (RDP).
    pub desktop: Arc<dyn DesktopConnector>,
    /// Terminates `sallyport proxy` streams (the gateway's own SSH server).
    pub proxy: Arc<dyn ProxyConnector>,
}

/// Runs sessions. Shared by every transport.
pub struct Broker {
    state: StateDb,
    recorder: Recorder,
    own_addresses: Vec<IpAddr>,
    connectors: Connectors,
    config: BrokerConfig,
    desktop_config: DesktopConfig,
    live: LiveSessions,
    archive: Option<crate::archive::Archive>,
    dashboard: Option<crate::dashboard::DashboardSources>,
}

impl Broker {
    /// A broker over the given state, recorder and connectors. `own_addresses` are never dialled;
    /// the networks targets may live in are read from the state database at every connect, so an
    /// admin's change applies to the next session.
    pub fn new(
        state: StateDb,
        recorder: Recorder,
        own_addresses: Vec<IpAddr>,
        connectors: Connectors,
        config: BrokerConfig,
    ) -> Self {
        Broker {
            state,
            recorder,
            own_addresses,
            connectors,
            config,
            desktop_config: DesktopConfig::default(),
            live: LiveSessions::default(),
            archive: None,
            dashboard: None,
        }
    }

    /// Sets the desktop-specific settings (frame rate, clipboard).
    pub fn with_desktop_config(mut self, config: DesktopConfig) -> Self {
        self.desktop_config = config;
        self
    }

    /// Adds read-only access to the stored recordings (the portal's review API).
    pub fn with_archive(mut self, archive: crate::archive::Archive) -> Self {
        self.archive = Some(archive);
        self
    }

    /// Adds what the admin dashboard needs beyond the broker's own state (the edge, the directories).
    pub fn with_dashboard(mut self, sources: crate::dashboard::DashboardSources) -> Self {
        self.dashboard = Some(sources);
        self
    }

    /// The dashboard's sources, when the daemon gave them.
    pub fn dashboard_sources(&self) -> Option<&crate::dashboard::DashboardSources> {
        self.dashboard.as_ref()
    }

    /// The stored recordings, when the daemon gave access to them.
    pub fn archive(&self) -> Option<&crate::archive::Archive> {
        self.archive.as_ref()
    }

    pub(crate) fn connectors(&self) -> &Connectors {
        &self.connectors
    }

    pub(crate) fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    /// The session limits and deadlines.
    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    pub(crate) fn desktop_config(&self) -> &DesktopConfig {
        &self.desktop_config
    }

    /// The egress rules as they stand now: the networks targets may live in, never our own addresses.
    pub(crate) fn egress(&self) -> Result<EgressPolicy, StateError> {
        let networks = self.state.networks()?.into_iter().map(|n| n.cidr).collect();
        Ok(EgressPolicy::new(networks, self.own_addresses.clone()))
    }

    /// Judges an address a user typed ("connect by IP") with the same egress rules a connect uses,
    /// so a refusal comes before any target row is made.
    pub fn check_address(&self, ip: IpAddr) -> Result<IpAddr, String> {
        self.egress()
            .map_err(|e| e.to_string())?
            .check(ip)
            .map_err(|denied| format!("{ip} is refused because {denied}"))
    }

    /// The live sessions.
    pub fn live(&self) -> &LiveSessions {
        &self.live
    }

    /// The state database.
    pub fn state(&self) -> &StateDb {
        &self.state
    }

    /// What the recordings ledger has cost so far (for metrics).
    pub fn recorder_stats(&self) -> sallyport_recordings::RecorderStats {
        self.recorder.stats()
    }

    /// The recorder's backlog and health (for the dashboard).
    pub fn recorder_health(&self) -> sallyport_recordings::RecorderHealth {
        self.recorder.health()
    }

    /// Records an audit event in the state database and on the `audit` log target.
    pub fn audit(&self, event: AuditEvent) {
        audit_into(&self.state, &event);
    }

    pub(crate) fn audit_for(
        &self,
        decision: &Authorized,
        client_addr: SocketAddr,
        kind: &str,
        session_id: Option<&str>,
        detail: Option<String>,
    ) {
        self.audit(AuditEvent {
            kind: kind.to_owned(),
            actor: Some(decision.user().username().to_owned()),
            client_addr: Some(client_addr.to_string()),
            target: Some(decision.target().name.clone()),
            session_id: session_id.map(str::to_owned),
            detail,
        });
    }
}

/// Records an audit event in the state database and on the `audit` log target.
pub(crate) fn audit_into(state: &StateDb, event: &AuditEvent) {
    info!(
        target: "audit",
        kind = %event.kind,
        actor = event.actor.as_deref().unwrap_or(""),
        client_addr = event.client_addr.as_deref().unwrap_or(""),
        target = event.target.as_deref().unwrap_or(""),
        session_id = event.session_id.as_deref().unwrap_or(""),
        detail = event.detail.as_deref().unwrap_or(""),
        "audit event"
    );
    if let Err(error) = state.audit(now_ms(), event) {
        warn!(%error, "could not store an audit event");
    }
}

/// Records an event, waiting (off the async workers) when the recorder's queue is full, so a slow disk
/// slows the session instead of growing memory. A recorder failure ends the session (fail closed).
pub(crate) async fn record(recording: &impl Recording, event: Event) -> Result<(), TargetError> {
    let unavailable = |error: &dyn std::fmt::Display| TargetError {
        kind: ErrorKind::RecordingUnavailable,
        detail: error.to_string(),
    };
    match recording.try_record(event) {
        Ok(()) => Ok(()),
        Err(TryRecordError::Full(event)) => {
            tokio::task::block_in_place(|| recording.record(event)).map_err(|e| unavailable(&e))
        }
        Err(TryRecordError::Failed(error)) => Err(unavailable(&error)),
    }
}

/// Where events are recorded: a session's recording, or a sink of it handed to a protocol.
pub(crate) trait Recording: Sync {
    fn try_record(&self, event: Event) -> Result<(), TryRecordError>;
    fn record(&self, event: Event) -> Result<(), RecordingError>;
}

impl Recording for SessionRecorder {
    fn try_record(&self, event: Event) -> Result<(), TryRecordError> {
        SessionRecorder::try_record(self, event)
    }
    fn record(&self, event: Event) -> Result<(), RecordingError> {
        SessionRecorder::record(self, event)
    }
}

impl Recording for EventSink {
    fn try_record(&self, event: Event) -> Result<(), TryRecordError> {
        EventSink::try_record(self, event)
    }
    fn record(&self, event: Event) -> Result<(), RecordingError> {
        EventSink::record(self, event)
    }
}
