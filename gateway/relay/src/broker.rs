//! The broker: one task per session, from the first client frame to the sealed recording.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use std::net::IpAddr;

use sallyport_core::egress::EgressPolicy;
use sallyport_core::errors::ErrorKind;
use sallyport_core::frames::{ClientMessage, ConnectRequest, ServerControl};
use sallyport_core::policy::Authorized;
use sallyport_recordings::{
    Event, Outcome, Recorder, SessionMeta, SessionRecorder, TryRecordError,
};
use sallyport_state::{AuditEvent, HostKeyPin, StateDb};
use tracing::{Instrument, info, info_span, warn};

use crate::desktop::{DesktopConfig, DesktopConnector};
use crate::live::{LiveHandle, LiveInfo, LiveSessions, SessionSlot};
use crate::resolve::{ResolveError, resolve_target};
use crate::traits::{
    TargetError, TargetEvent, TerminalChannel, TerminalConnect, TerminalConnector,
    TerminalTransport,
};

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

/// Runs sessions. Shared by every transport.
pub struct Broker {
    state: StateDb,
    recorder: Recorder,
    own_addresses: Vec<IpAddr>,
    ssh: Arc<dyn TerminalConnector>,
    desktop: Option<Arc<dyn DesktopConnector>>,
    proxy: Option<Arc<dyn crate::proxy::ProxyConnector>>,
    config: BrokerConfig,
    desktop_config: DesktopConfig,
    live: LiveSessions,
    archive: Option<crate::archive::Archive>,
}

/// What [`Broker::open_session`] prepared.
pub(crate) struct Opened {
    /// The vetted address to dial.
    pub addr: SocketAddr,
    /// The session's slot, held until the session ends.
    pub slot: SessionSlot,
    /// The open recording.
    pub recording: SessionRecorder,
}

/// How a relay loop ended.
pub(crate) enum End {
    ClientClosed,
    TargetClosed,
    Terminated(String),
    Failed(ErrorKind, String),
}

impl Broker {
    /// A broker over the given state, recorder and SSH connector. `own_addresses` are never dialled;
    /// the networks targets may live in are read from the state database at every connect, so an
    /// admin's change applies to the next session.
    pub fn new(
        state: StateDb,
        recorder: Recorder,
        own_addresses: Vec<IpAddr>,
        ssh: Arc<dyn TerminalConnector>,
        config: BrokerConfig,
    ) -> Self {
        Broker {
            state,
            recorder,
            own_addresses,
            ssh,
            desktop: None,
            proxy: None,
            config,
            desktop_config: DesktopConfig::default(),
            live: LiveSessions::default(),
            archive: None,
        }
    }

    /// Adds the protocol that opens desktops (RDP).
    pub fn with_desktop(
        mut self,
        connector: Arc<dyn DesktopConnector>,
        config: DesktopConfig,
    ) -> Self {
        self.desktop = Some(connector);
        self.desktop_config = config;
        self
    }

    /// Adds read-only access to the stored recordings (the portal's review API).
    pub fn with_archive(mut self, archive: crate::archive::Archive) -> Self {
        self.archive = Some(archive);
        self
    }

    /// The stored recordings, when the daemon gave access to them.
    pub fn archive(&self) -> Option<&crate::archive::Archive> {
        self.archive.as_ref()
    }

    pub(crate) fn desktop_connector(&self) -> Option<Arc<dyn DesktopConnector>> {
        self.desktop.clone()
    }

    /// Adds the SSH server that terminates `sallyport proxy` streams.
    pub fn with_proxy(mut self, proxy: Arc<dyn crate::proxy::ProxyConnector>) -> Self {
        self.proxy = Some(proxy);
        self
    }

    pub(crate) fn proxy_connector(&self) -> Option<Arc<dyn crate::proxy::ProxyConnector>> {
        self.proxy.clone()
    }

    /// The session limits and deadlines.
    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    pub(crate) fn desktop_config(&self) -> &DesktopConfig {
        &self.desktop_config
    }

    /// Judges an address a user typed ("connect by IP") with the same egress rules a connect uses,
    /// so a refusal comes before any target row is made.
    pub fn check_address(&self, ip: IpAddr) -> Result<IpAddr, String> {
        let networks = self
            .state
            .networks()
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|n| n.cidr)
            .collect();
        EgressPolicy::new(networks, self.own_addresses.clone())
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

    /// Records an audit event in the state database and on the `audit` log target.
    pub fn audit(&self, event: AuditEvent) {
        audit_into(&self.state, &event);
    }

    /// Runs one terminal session over `transport` for an authorized user and target, until either side
    /// ends it. Every failure reaches the user as a plain-words error; none escapes this task.
    pub async fn run_terminal<T: TerminalTransport>(
        &self,
        decision: Authorized,
        client_addr: SocketAddr,
        mut transport: T,
    ) {
        let span = info_span!(
            "session",
            user = %decision.user().username,
            target = %decision.target().name,
            protocol = decision.protocol().as_str(),
            client_addr = %client_addr,
            session_id = tracing::field::Empty,
        );
        async {
            if let Err((kind, detail)) = self
                .terminal_session(&decision, client_addr, &mut transport)
                .await
            {
                let _ = transport
                    .send_control(&ServerControl::error(kind, detail.as_deref()))
                    .await;
            }
            transport.close().await;
        }
        .instrument(span)
        .await
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
            actor: Some(decision.user().username.clone()),
            client_addr: Some(client_addr.to_string()),
            target: Some(decision.target().name.clone()),
            session_id: session_id.map(str::to_owned),
            detail,
        });
    }

    async fn terminal_session<T: TerminalTransport>(
        &self,
        decision: &Authorized,
        client_addr: SocketAddr,
        transport: &mut T,
    ) -> Result<(), (ErrorKind, Option<String>)> {
        let request =
            match tokio::time::timeout(self.config.connect_message_timeout, transport.recv()).await
            {
                Ok(Some(Ok(ClientMessage::Connect(request)))) => request,
                Ok(Some(Ok(_))) => {
                    return Err((
                        ErrorKind::BadRequest,
                        Some("the first message must be a connect".into()),
                    ));
                }
                Ok(Some(Err(error))) => {
                    return Err((ErrorKind::BadRequest, Some(error.to_string())));
                }
                Ok(None) | Err(_) => return Ok(()),
            };
        let Opened {
            addr,
            slot: _slot,
            recording,
        } = self.open_session(decision, client_addr).await?;
        let session_id = recording.id().to_owned();
        tracing::Span::current().record("session_id", session_id.as_str());
        let result = self
            .connect_and_relay(decision, client_addr, transport, &recording, request, addr)
            .await;
        self.conclude(decision, client_addr, recording, result)
    }

    /// Resolves and vets the target, claims a session slot and opens the recording: everything a session
    /// needs before anything is dialled. Refusals are audited.
    pub(crate) async fn open_session(
        &self,
        decision: &Authorized,
        client_addr: SocketAddr,
    ) -> Result<Opened, (ErrorKind, Option<String>)> {
        self.open_session_as(decision, client_addr, decision.protocol().as_str())
            .await
    }

    /// [`Broker::open_session`] with the protocol name the recording is filed under (`ssh-proxy` for
    /// sessions of OpenSSH clients through `sallyport proxy`).
    pub(crate) async fn open_session_as(
        &self,
        decision: &Authorized,
        client_addr: SocketAddr,
        protocol: &str,
    ) -> Result<Opened, (ErrorKind, Option<String>)> {
        let target = decision.target();
        let networks = match self.state.networks() {
            Ok(networks) => networks.into_iter().map(|n| n.cidr).collect(),
            Err(error) => return Err((ErrorKind::Internal, Some(error.to_string()))),
        };
        let egress = EgressPolicy::new(networks, self.own_addresses.clone());
        let addr = match resolve_target(
            &egress,
            &target.host,
            target.port,
            self.config.resolve_timeout,
        )
        .await
        {
            Ok(addr) => addr,
            Err(error) => {
                let kind = match error {
                    ResolveError::Denied { .. } | ResolveError::Parse(_) => ErrorKind::NotAllowed,
                    ResolveError::NotFound(_) | ResolveError::Timeout(_) => {
                        ErrorKind::TargetUnreachable
                    }
                };
                self.audit_for(
                    decision,
                    client_addr,
                    "connect_refused",
                    None,
                    Some(error.to_string()),
                );
                return Err((kind, Some(error.to_string())));
            }
        };

        // The recording exists before anything is dialled: no recording, no session.
        let meta = SessionMeta {
            user: decision.user().username.clone(),
            target: target.name.clone(),
            target_addr: addr.to_string(),
            protocol: protocol.to_owned(),
            client_addr: client_addr.to_string(),
        };
        // A slot is held from here until the session ends, connecting included.
        let slot = match self.live.claim_slot(
            decision.user().user_id,
            self.config.max_sessions,
            self.config.max_sessions_per_user,
        ) {
            Ok(slot) => slot,
            Err(limit) => {
                self.audit_for(
                    decision,
                    client_addr,
                    "connect_refused",
                    None,
                    Some(limit.to_string()),
                );
                return Err((ErrorKind::NotAllowed, Some(limit.to_string())));
            }
        };
        let recording = match self.recorder.open_session(meta) {
            Ok(recording) => recording,
            Err(error) => {
                warn!(%error, "recording unavailable, session refused");
                self.audit_for(
                    decision,
                    client_addr,
                    "connect_refused",
                    None,
                    Some(format!("recording unavailable: {error}")),
                );
                return Err((ErrorKind::RecordingUnavailable, None));
            }
        };
        Ok(Opened {
            addr,
            slot,
            recording,
        })
    }

    /// Seals the recording and audits the end of a session that was dialled (or failed to be).
    pub(crate) fn conclude(
        &self,
        decision: &Authorized,
        client_addr: SocketAddr,
        recording: SessionRecorder,
        result: Result<End, (ErrorKind, String)>,
    ) -> Result<(), (ErrorKind, Option<String>)> {
        let session_id = recording.id().to_owned();
        match result {
            Ok(end) => {
                let (outcome, detail, result) = match end {
                    End::ClientClosed => (Outcome::Ended, "client closed".to_owned(), Ok(())),
                    End::TargetClosed => (Outcome::Ended, "target closed".to_owned(), Ok(())),
                    End::Terminated(reason) => (
                        Outcome::Terminated,
                        format!("terminated: {reason}"),
                        Err((ErrorKind::Terminated, Some(reason))),
                    ),
                    End::Failed(kind, detail) => {
                        (Outcome::Failed, detail.clone(), Err((kind, Some(detail))))
                    }
                };
                let _ = recording.record(Event::Marker(format!("session ended: {detail}")));
                if let Err(error) = recording.finish(outcome) {
                    warn!(%error, "could not seal the recording");
                }
                self.audit_for(
                    decision,
                    client_addr,
                    "disconnect",
                    Some(&session_id),
                    Some(detail),
                );
                result
            }
            Err((kind, detail)) => {
                let _ =
                    recording.record(Event::Marker(format!("connect failed: {kind:?}: {detail}")));
                if let Err(error) = recording.finish(Outcome::Failed) {
                    warn!(%error, "could not seal the recording");
                }
                self.audit_for(
                    decision,
                    client_addr,
                    "connect_failed",
                    Some(&session_id),
                    Some(format!("{kind:?}: {detail}")),
                );
                // Target-side details help the user ("connection refused"); internal ones stay in the log.
                Err((kind, (kind != ErrorKind::Internal).then_some(detail)))
            }
        }
    }

    /// The outcome of dialling an SSH target, with a changed host key audited (a possible attack, or a
    /// rebuilt machine an admin should re-pin).
    pub(crate) fn dialled<O>(
        &self,
        outcome: Result<O, TargetError>,
        decision: &Authorized,
        client_addr: SocketAddr,
        session_id: &str,
    ) -> Result<O, (ErrorKind, String)> {
        outcome.map_err(|error| {
            if error.kind == ErrorKind::HostKeyChanged {
                self.audit_for(
                    decision,
                    client_addr,
                    "host_key_mismatch",
                    Some(session_id),
                    Some(error.detail.clone()),
                );
            }
            (error.kind, error.detail)
        })
    }

    /// Pins the host key a target presented when none was pinned before (audited). True when this
    /// connection pinned it.
    pub(crate) fn pin_on_first_use(
        &self,
        decision: &Authorized,
        client_addr: SocketAddr,
        session_id: &str,
        was_pinned: bool,
        public_key: &str,
        fingerprint: &str,
    ) -> Result<bool, (ErrorKind, String)> {
        if was_pinned {
            return Ok(false);
        }
        let pin = HostKeyPin {
            public_key: public_key.to_owned(),
            fingerprint: fingerprint.to_owned(),
            first_seen_ms: now_ms(),
        };
        let pinned_now = self
            .state
            .pin_host_key(decision.target().id, &pin)
            .map_err(|e| (ErrorKind::Internal, e.to_string()))?;
        if pinned_now {
            self.audit_for(
                decision,
                client_addr,
                "host_key_pinned",
                Some(session_id),
                Some(pin.fingerprint),
            );
        }
        Ok(pinned_now)
    }

    async fn connect_and_relay<T: TerminalTransport>(
        &self,
        decision: &Authorized,
        client_addr: SocketAddr,
        transport: &mut T,
        recording: &SessionRecorder,
        request: ConnectRequest,
        addr: SocketAddr,
    ) -> Result<End, (ErrorKind, String)> {
        let target = decision.target();
        let internal = |error: &dyn std::fmt::Display| (ErrorKind::Internal, error.to_string());
        let pinned = self
            .state
            .pinned_host_key(target.id)
            .map_err(|e| internal(&e))?;
        record(
            recording,
            Event::Marker(format!("connecting to {addr} as {}", request.username)),
        )
        .await
        .map_err(|e| (e.kind, e.detail))?;
        record(
            recording,
            Event::Resize {
                cols: request.size.cols,
                rows: request.size.rows,
            },
        )
        .await
        .map_err(|e| (e.kind, e.detail))?;
        let connect = TerminalConnect {
            addr,
            username: request.username,
            credential: request.credential,
            pinned_host_key: pinned.as_ref().map(|pin| pin.public_key.clone()),
            size: request.size,
            timeout: self.config.target_connect_timeout,
        };
        let opened = self.dialled(
            self.ssh.connect(connect).await,
            decision,
            client_addr,
            recording.id(),
        )?;
        let first_seen = self.pin_on_first_use(
            decision,
            client_addr,
            recording.id(),
            pinned.is_some(),
            &opened.host_key,
            &opened.host_key_fingerprint,
        )?;
        self.audit_for(
            decision,
            client_addr,
            "connect",
            Some(recording.id()),
            Some(addr.to_string()),
        );
        let connected = ServerControl::Connected {
            session_id: recording.id().to_owned(),
            host_key_fingerprint: opened.host_key_fingerprint.clone(),
            host_key_first_seen: first_seen,
        };
        let mut channel = opened.channel;
        let end = if transport.send_control(&connected).await.is_err() {
            End::ClientClosed
        } else {
            let _ = recording.record(Event::Marker("connected".into()));
            let mut live = self.live.register(LiveInfo {
                session_id: recording.id().to_owned(),
                user_id: decision.user().user_id,
                username: decision.user().username.clone(),
                target: target.name.clone(),
                client_addr,
                started_at_ms: recording.started_at_ms(),
                bytes_up: 0,
                bytes_down: 0,
            });
            relay(
                transport,
                channel.as_mut(),
                recording,
                &mut live,
                &self.config,
            )
            .await
        };
        channel.close().await;
        Ok(end)
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
pub(crate) async fn record(recording: &SessionRecorder, event: Event) -> Result<(), TargetError> {
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

/// The relay loop: client frames to the target and target output to the client, each recorded before
/// it is forwarded.
async fn relay<T: TerminalTransport>(
    transport: &mut T,
    channel: &mut dyn TerminalChannel,
    recording: &SessionRecorder,
    live: &mut LiveHandle,
    limits: &BrokerConfig,
) -> End {
    // Deadlines that are off sleep "forever" (a year) and are disabled in the select below.
    let far = Duration::from_secs(365 * 24 * 3600);
    let idle_after = limits.idle_timeout.unwrap_or(far);
    let idle = tokio::time::sleep(idle_after);
    let max = tokio::time::sleep(limits.max_duration.unwrap_or(far));
    tokio::pin!(idle, max);
    loop {
        tokio::select! {
            () = &mut idle, if limits.idle_timeout.is_some() => {
                let reason = format!("no input for {} s (idle timeout)", idle_after.as_secs());
                let _ = record(recording, Event::Marker(format!("terminated: {reason}"))).await;
                return End::Terminated(reason);
            }
            () = &mut max, if limits.max_duration.is_some() => {
                let reason = format!("the maximum session duration of {} s was reached", limits.max_duration.unwrap_or(far).as_secs());
                let _ = record(recording, Event::Marker(format!("terminated: {reason}"))).await;
                return End::Terminated(reason);
            }
            changed = live.terminated.changed() => {
                let reason = live.terminated.borrow().clone();
                // The sender lives in the registry entry our handle removes, so `changed` fails only if
                // the registry itself is gone; end the session rather than spin.
                let reason = match (changed, reason) {
                    (Ok(()), None) => continue,
                    (Ok(()), Some(reason)) => reason,
                    (Err(_), _) => "the gateway is shutting down".to_owned(),
                };
                let _ = record(recording, Event::Marker(format!("terminated: {reason}"))).await;
                return End::Terminated(reason);
            }
            message = transport.recv() => match message {
                None => return End::ClientClosed,
                Some(Err(error)) => return End::Failed(ErrorKind::BadRequest, error.to_string()),
                Some(Ok(ClientMessage::Input(data))) => {
                    idle.as_mut().reset(tokio::time::Instant::now() + idle_after);
                    if let Err(error) = record(recording, Event::Input(data.clone())).await {
                        return End::Failed(error.kind, error.detail);
                    }
                    if let Err(error) = channel.write(&data).await {
                        return End::Failed(error.kind, error.detail);
                    }
                    live.counters.add_up(data.len());
                }
                Some(Ok(ClientMessage::Resize(size))) => {
                    if let Err(error) = record(recording, Event::Resize { cols: size.cols, rows: size.rows }).await {
                        return End::Failed(error.kind, error.detail);
                    }
                    if let Err(error) = channel.resize(size).await {
                        return End::Failed(error.kind, error.detail);
                    }
                }
                Some(Ok(ClientMessage::Connect(_))) => {
                    return End::Failed(ErrorKind::BadRequest, "connect sent twice".into());
                }
            },
            event = channel.next_event() => match event {
                TargetEvent::Output(data) => {
                    if let Err(error) = record(recording, Event::Output(data.clone())).await {
                        return End::Failed(error.kind, error.detail);
                    }
                    if transport.send_output(&data).await.is_err() {
                        return End::ClientClosed;
                    }
                    live.counters.add_down(data.len());
                    live.publish(&data);
                }
                TargetEvent::Exit(status) => {
                    let _ = record(recording, Event::Marker(format!("exit status {status}"))).await;
                    if transport.send_control(&ServerControl::Exit { status }).await.is_err() {
                        return End::ClientClosed;
                    }
                }
                TargetEvent::ExitSignal(signal) => {
                    let _ = record(recording, Event::Marker(format!("killed by signal {signal}"))).await;
                }
                TargetEvent::Closed => return End::TargetClosed,
                TargetEvent::Failed(error) => return End::Failed(error.kind, error.detail),
            },
        }
    }
}
