//! The one session pipeline every kind of session (terminal, desktop, proxied SSH) runs through:
//! the span, the kind's admission and connect message, the egress check, the session slot, the
//! recording opened before anything is dialled (fail closed), dial, pin on first use, audit, the live
//! registration, the kind's relay and the sealed conclusion. What differs between kinds (what is
//! dialled, how bytes are relayed and recorded) is a [`SessionKind`]; the shared steps exist here once.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use sallyport_core::errors::ErrorKind;
use sallyport_core::frames::{FrameError, ServerControl};
use sallyport_core::policy::Authorized;
use sallyport_recordings::{Event, Outcome, SessionMeta, SessionRecorder};
use sallyport_state::HostKeyPin;
use tracing::{Instrument, info_span, warn};

use crate::broker::{Broker, now_ms, record};
use crate::live::{LiveHandle, LiveInfo, SessionSlot};
use crate::resolve::{ResolveError, resolve_target};
use crate::traits::{TargetError, Transport};

/// Why a session did not start or ended badly: what the user is told (detail `None`: the kind's
/// plain words alone).
pub type Refusal = (ErrorKind, Option<String>);

/// How a relay loop ended.
pub enum End {
    /// The user went away.
    ClientClosed,
    /// The target ended the session in order.
    TargetClosed,
    /// The broker ended it (a deadline, an admin, a revocation), for this reason.
    Terminated(String),
    /// Something failed.
    Failed(ErrorKind, String),
}

/// What a kind's protocol returned once the target proved its identity.
pub struct Dialled<C> {
    /// The open channel (or session) to relay over.
    pub channel: C,
    /// The key to pin (stored form).
    pub key: String,
    /// Its fingerprint, as shown to people.
    pub fingerprint: String,
}

/// One session being run: what every step of a kind may need.
pub struct Session<'a> {
    /// The broker running it.
    pub broker: &'a Broker,
    /// The policy decision it runs under.
    pub decision: &'a Authorized,
    /// The user's address.
    pub client_addr: SocketAddr,
    /// Its open recording.
    pub recording: &'a SessionRecorder,
}

impl Session<'_> {
    /// Audits an event of this session.
    pub fn audit(&self, kind: &str, detail: String) {
        self.broker.audit_for(
            self.decision,
            self.client_addr,
            kind,
            Some(self.recording.id()),
            Some(detail),
        );
    }
}

/// A kind of session: its transport and the steps that differ between kinds. Sealed in effect (the
/// types its steps take are not exported): the kinds are [`Terminal`](crate::Terminal),
/// [`Desktop`](crate::Desktop) and [`Proxy`](crate::Proxy); a file transfer kind would be a fourth.
pub trait SessionKind: Send {
    /// The user's side of the session.
    type Transport: Transport;
    /// What the user asked for in the connect message.
    type Request: Send;
    /// What the protocol relays over once dialled.
    type Channel: GiveUp;

    /// The protocol the span, the recording and the audit name (`ssh`, `rdp`, `ssh-proxy`): the
    /// target's, unless the kind files its sessions under another.
    fn protocol(&self, decision: &Authorized) -> &'static str {
        decision.protocol().as_str()
    }
    /// Refuses a decision this kind cannot carry, before anything is read or dialled.
    fn admit(&self, _decision: &Authorized) -> Result<(), Refusal> {
        Ok(())
    }
    /// The user's connect message; `Ok(None)` when the user went away (or never spoke) in time.
    fn request(
        &mut self,
        timeout: Duration,
    ) -> impl Future<Output = Result<Option<Self::Request>, Refusal>> + Send;
    /// The username the user asked to log in to the target as, when the connect message says (the
    /// target list remembers it per user and target). Never a credential. A proxied session has none
    /// here; its SSH server tells it once the target accepted it (`ProxySink::target_login`).
    fn target_username(&self, _request: &Self::Request) -> Option<String> {
        None
    }
    /// Events recorded before dialling.
    fn connecting(&self, request: &Self::Request, addr: SocketAddr) -> Vec<Event>;
    /// Dials the vetted `addr` and checks the target's key against `pinned_key`.
    fn dial(
        session: &Session<'_>,
        request: Self::Request,
        addr: SocketAddr,
        pinned_key: Option<String>,
    ) -> impl Future<Output = Result<Dialled<Self::Channel>, TargetError>> + Send;
    /// The detail of the `connect` audit event: the address dialled, unless the kind says more.
    fn connect_detail(&self, _decision: &Authorized, addr: SocketAddr) -> String {
        addr.to_string()
    }
    /// The marker recorded once the user heard `connected`.
    fn connected_marker(&self, _fingerprint: &str) -> String {
        "connected".to_owned()
    }
    /// Relays until either side ends the session (the channel is closed when it returns).
    fn relay(
        &mut self,
        channel: Self::Channel,
        session: &Session<'_>,
        live: &mut LiveHandle,
    ) -> impl Future<Output = End> + Send;
    /// The user's side.
    fn transport(&mut self) -> &mut Self::Transport;
}

/// A dialled channel the pipeline can give up without relaying it (the user left before
/// `connected`, or pinning failed): closed politely, or simply dropped.
pub trait GiveUp: Send {
    /// Closes the channel.
    fn give_up(self) -> impl Future<Output = ()> + Send;
}

/// The user's connect message, read by `next` within `timeout`; `connect` picks it out of a message
/// (`None`: it was another message, refused). `Ok(None)` when the user went away or said nothing.
pub(crate) async fn connect_message<M, R>(
    timeout: Duration,
    next: impl Future<Output = Option<Result<M, FrameError>>>,
    connect: impl FnOnce(M) -> Option<R>,
) -> Result<Option<R>, Refusal> {
    match tokio::time::timeout(timeout, next).await {
        Ok(Some(Ok(message))) => match connect(message) {
            Some(request) => Ok(Some(request)),
            None => Err((
                ErrorKind::BadRequest,
                Some("the first message must be a connect".into()),
            )),
        },
        Ok(Some(Err(error))) => Err((ErrorKind::BadRequest, Some(error.to_string()))),
        Ok(None) | Err(_) => Ok(None),
    }
}

/// What [`Broker::admit`] prepared before anything is dialled.
struct Admitted {
    addr: SocketAddr,
    /// Held until the session ends, connecting included.
    _slot: SessionSlot,
    recording: SessionRecorder,
}

impl Broker {
    /// Runs one session of `kind` for an authorized user and target, until either side ends it. Every
    /// failure reaches the user as a plain-words error; none escapes this task.
    pub async fn run<K: SessionKind>(
        &self,
        decision: Authorized,
        client_addr: SocketAddr,
        mut kind: K,
    ) {
        let span = info_span!(
            "session",
            user = %decision.user().username(),
            target = %decision.target().name,
            protocol = kind.protocol(&decision),
            client_addr = %client_addr,
            session_id = tracing::field::Empty,
        );
        async {
            if let Err((error, detail)) = self.session(&decision, client_addr, &mut kind).await {
                let _ = kind
                    .transport()
                    .send_control(&ServerControl::error(error, detail.as_deref()))
                    .await;
            }
            kind.transport().close().await;
        }
        .instrument(span)
        .await
    }

    async fn session<K: SessionKind>(
        &self,
        decision: &Authorized,
        client_addr: SocketAddr,
        kind: &mut K,
    ) -> Result<(), Refusal> {
        kind.admit(decision)?;
        let Some(request) = kind.request(self.config().connect_message_timeout).await? else {
            return Ok(());
        };
        let Admitted {
            addr,
            _slot,
            recording,
        } = self
            .admit(decision, client_addr, kind.protocol(decision))
            .await?;
        tracing::Span::current().record("session_id", recording.id());
        let session = Session {
            broker: self,
            decision,
            client_addr,
            recording: &recording,
        };
        let result = self.connect_and_relay(kind, &session, request, addr).await;
        self.conclude(decision, client_addr, recording, result)
    }

    /// Resolves and vets the target, claims a session slot and opens the recording (filed under
    /// `protocol`): everything a session needs before anything is dialled. Refusals are audited.
    async fn admit(
        &self,
        decision: &Authorized,
        client_addr: SocketAddr,
        protocol: &str,
    ) -> Result<Admitted, Refusal> {
        let target = decision.target();
        let refused = |detail: String| {
            self.audit_for(decision, client_addr, "connect_refused", None, Some(detail));
        };
        let egress = self
            .egress()
            .map_err(|error| (ErrorKind::Internal, Some(error.to_string())))?;
        let resolve_timeout = self.config().resolve_timeout;
        let addr = match resolve_target(&egress, &target.host, target.port, resolve_timeout).await {
            Ok(addr) => addr,
            Err(error) => {
                let kind = match error {
                    ResolveError::Denied { .. } | ResolveError::Parse(_) => ErrorKind::NotAllowed,
                    ResolveError::NotFound(_) | ResolveError::Timeout(_) => {
                        ErrorKind::TargetUnreachable
                    }
                };
                refused(error.to_string());
                return Err((kind, Some(error.to_string())));
            }
        };
        // The recording exists before anything is dialled: no recording, no session.
        let meta = SessionMeta {
            user: decision.user().username().to_owned(),
            target: target.name.clone(),
            target_addr: addr.to_string(),
            protocol: protocol.to_owned(),
            client_addr: client_addr.to_string(),
        };
        let config = self.config();
        let slot = match self.live().claim_slot(
            decision.user().user_id(),
            config.max_sessions,
            config.max_sessions_per_user,
        ) {
            Ok(slot) => slot,
            Err(limit) => {
                refused(limit.to_string());
                return Err((ErrorKind::NotAllowed, Some(limit.to_string())));
            }
        };
        let recording = match self.recorder().open_session(meta) {
            Ok(recording) => recording,
            Err(error) => {
                warn!(%error, "recording unavailable, session refused");
                refused(format!("recording unavailable: {error}"));
                return Err((ErrorKind::RecordingUnavailable, None));
            }
        };
        Ok(Admitted {
            addr,
            _slot: slot,
            recording,
        })
    }

    /// Dials, pins, audits, tells the user `connected`, registers the live session and relays.
    async fn connect_and_relay<K: SessionKind>(
        &self,
        kind: &mut K,
        session: &Session<'_>,
        request: K::Request,
        addr: SocketAddr,
    ) -> Result<End, (ErrorKind, String)> {
        let (decision, recording) = (session.decision, session.recording);
        let pinned = self
            .state()
            .pinned_host_key(decision.target().id)
            .map_err(|e| (ErrorKind::Internal, e.to_string()))?;
        for event in kind.connecting(&request, addr) {
            record(recording, event)
                .await
                .map_err(|e| (e.kind, e.detail))?;
        }
        let pinned_key = pinned.as_ref().map(|pin| pin.public_key.clone());
        let target_username = kind.target_username(&request);
        let dialled = K::dial(session, request, addr, pinned_key)
            .await
            .map_err(|error| {
                if error.kind == ErrorKind::HostKeyChanged {
                    // A possible attack, or a rebuilt machine an admin should re-pin.
                    session.audit("host_key_mismatch", error.detail.clone());
                }
                (error.kind, error.detail)
            })?;
        let first_seen = match pinned {
            Some(_) => false,
            None => match self.pin_on_first_use(session, &dialled) {
                Ok(first_seen) => first_seen,
                Err(error) => {
                    dialled.channel.give_up().await;
                    return Err(error);
                }
            },
        };
        session.audit("connect", kind.connect_detail(decision, addr));
        self.remember_use(decision, target_username.as_deref());
        // Registered before the user hears `connected`, so a session the user sees can be terminated
        // (and watched) at once.
        let mut live = self.live().register(LiveInfo {
            session_id: recording.id().to_owned(),
            user_id: decision.user().user_id(),
            username: decision.user().username().to_owned(),
            target: decision.target().name.clone(),
            client_addr: session.client_addr,
            protocol: kind.protocol(decision).to_owned(),
            started_at_ms: recording.started_at_ms(),
            bytes_up: 0,
            bytes_down: 0,
        });
        let connected = ServerControl::Connected {
            session_id: recording.id().to_owned(),
            host_key_fingerprint: dialled.fingerprint.clone(),
            host_key_first_seen: first_seen,
        };
        if kind.transport().send_control(&connected).await.is_err() {
            dialled.channel.give_up().await;
            return Ok(End::ClientClosed);
        }
        let marker = Event::Marker(kind.connected_marker(&dialled.fingerprint));
        if let Err(error) = record(recording, marker).await {
            dialled.channel.give_up().await;
            return Err((error.kind, error.detail));
        }
        Ok(kind.relay(dialled.channel, session, &mut live).await)
    }

    /// Remembers that this user reached this target now, as `username` (the target list's "last used"
    /// and its username field). Recorded once the target accepted the login, so a mistyped username is
    /// not remembered; a failure is logged and never ends the session.
    fn remember_use(&self, decision: &Authorized, username: Option<&str>) {
        if let Err(error) = self.state().record_target_use(
            decision.user().user_id(),
            decision.target().id,
            now_ms(),
            username,
        ) {
            warn!(%error, "could not remember the target's last use");
        }
    }

    /// Pins the key a target presented when none was pinned before (audited). True when this
    /// connection pinned it.
    fn pin_on_first_use<C>(
        &self,
        session: &Session<'_>,
        dialled: &Dialled<C>,
    ) -> Result<bool, (ErrorKind, String)> {
        let pin = HostKeyPin {
            public_key: dialled.key.clone(),
            fingerprint: dialled.fingerprint.clone(),
            first_seen_ms: now_ms(),
        };
        let pinned_now = self
            .state()
            .pin_host_key(session.decision.target().id, &pin)
            .map_err(|e| (ErrorKind::Internal, e.to_string()))?;
        if pinned_now {
            session.audit("host_key_pinned", pin.fingerprint);
        }
        Ok(pinned_now)
    }

    /// Seals the recording and audits the end of a session that was dialled (or failed to be).
    fn conclude(
        &self,
        decision: &Authorized,
        client_addr: SocketAddr,
        recording: SessionRecorder,
        result: Result<End, (ErrorKind, String)>,
    ) -> Result<(), Refusal> {
        let session_id = recording.id().to_owned();
        let (marker, outcome, audit_kind, audit_detail, result) = match result {
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
                let marker = format!("session ended: {detail}");
                (marker, outcome, "disconnect", detail, result)
            }
            Err((kind, detail)) => (
                format!("connect failed: {kind:?}: {detail}"),
                Outcome::Failed,
                "connect_failed",
                format!("{kind:?}: {detail}"),
                // Target-side details help the user ("connection refused"); internal ones stay in
                // the log.
                Err((kind, (kind != ErrorKind::Internal).then_some(detail))),
            ),
        };
        let _ = recording.record(Event::Marker(marker));
        if let Err(error) = recording.finish(outcome) {
            warn!(%error, "could not seal the recording");
        }
        self.audit_for(
            decision,
            client_addr,
            audit_kind,
            Some(&session_id),
            Some(audit_detail),
        );
        result
    }
}
