//! SSH proxying for OpenSSH's `ProxyCommand` (`sallyport proxy TARGET`): the user's own ssh, scp or sftp
//! speaks SSH to the gateway inside a transport's data frames; a [`ProxyConnector`] (the SSH crate's
//! server) terminates that SSH, dials the target as a client and bridges channels, recording through a
//! [`ProxySink`] what passes: terminal bytes, commands, exit statuses, file transfers, forwarding.
//!
//! The broker side is the same as for terminals: the policy decision arrives as an
//! [`Authorized`](sallyport_core::policy::Authorized) value, the target is resolved and egress-vetted, a
//! session slot is claimed and the recording opened before anything is dialled; the target's host key is
//! checked against the pin inside the key exchange (pinned on first use); the session is registered in
//! the live sessions (terminate, revocation, byte counters, watching). The target's SSH handshake
//! happens before the user's ssh is told to go on, so an unreachable target or a changed host key comes
//! back as an error frame the CLI prints in words, not as an SSH failure.
//!
//! Recording is synchronous with forwarding: a channel's bytes are recorded before they are passed on,
//! a full recorder queue makes the channel wait, and a recorder failure ends the session (fail closed).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sallyport_core::errors::ErrorKind;
use sallyport_core::frames::ClientMessage;
use sallyport_core::policy::{Authorized, Protocol};
use sallyport_recordings::{Event, EventSink, SessionRecorder};
use sallyport_state::{AuditEvent, StateDb};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use crate::broker::{audit_into, record};
use crate::limits::Deadlines;
use crate::live::{LiveHandle, LivePublisher};
use crate::pipeline::{Dialled, End, GiveUp, Refusal, Session, SessionKind};
use crate::traits::{BoxFuture, TargetError, TerminalTransport};

/// The protocol name proxied sessions are filed under in recordings and audit.
pub const PROXY_PROTOCOL: &str = "ssh-proxy";

/// How long a proxied session may take to end on its own once the broker asked it to stop (a terminate,
/// a deadline), so the user's ssh hears why, before the stream is cut.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// Bytes of the user's SSH stream buffered between the transport and the SSH server, each way.
const PIPE_BYTES: usize = 64 * 1024;

/// A byte stream to the user's SSH client.
pub trait ProxyStream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> ProxyStream for T {}

/// What the SSH server needs to reach the target.
#[derive(Debug, Clone)]
pub struct ProxyConnect {
    /// The vetted address to dial (exactly this).
    pub addr: SocketAddr,
    /// The pinned host key (OpenSSH line), or `None` to trust on first use.
    pub pinned_host_key: Option<String>,
    /// Deadline for dialling and the target's SSH handshake.
    pub timeout: Duration,
    /// Deadline for the user's ssh to finish its handshake with the gateway and authenticate.
    pub login_timeout: Duration,
    /// Whether port forwarding (local, remote, agent, X11) is allowed by policy.
    pub forwarding: bool,
}

/// A target that completed its SSH handshake (host key checked) and waits for the user's ssh.
pub struct ProxyOpened {
    /// The host key the target presented (OpenSSH line).
    pub host_key: String,
    /// Its `SHA256:` fingerprint.
    pub host_key_fingerprint: String,
    /// The session to serve.
    pub session: Box<dyn ProxySession>,
}

/// A protocol that terminates SSH on a stream and relays it to a target.
pub trait ProxyConnector: Send + Sync {
    /// Dials the target and completes its SSH handshake (no authentication yet).
    fn connect(
        &self,
        request: ProxyConnect,
    ) -> BoxFuture<'static, Result<ProxyOpened, TargetError>>;
}

/// A proxied SSH session, ready for the user's ssh.
pub trait ProxySession: Send {
    /// Serves the user's SSH connection on `stream` until it ends, or until `stop` carries a reason (then
    /// the user's ssh is disconnected with it). An error says why the session failed.
    fn serve(
        self: Box<Self>,
        stream: Box<dyn ProxyStream>,
        sink: ProxySink,
        stop: watch::Receiver<Option<String>>,
    ) -> BoxFuture<'static, Result<(), TargetError>>;
}

/// Something a proxied session records or reports: an event of the recording as it is, or a security
/// event that is audited and recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyEvent {
    /// Recorded as it is (its output also goes to the live watchers).
    Recorded(Event),
    /// A security event, audited and recorded (a refused or an allowed forwarding, for instance).
    Audit {
        /// Event kind (`port_forward_refused`, ...).
        kind: String,
        /// Detail.
        detail: String,
    },
}

impl From<Event> for ProxyEvent {
    fn from(event: Event) -> ProxyEvent {
        ProxyEvent::Recorded(event)
    }
}

/// Where a proxied session records: the recording, the live watchers, the audit log. Cheap to clone;
/// every method returns only once the event is in the recorder's queue.
#[derive(Clone)]
pub struct ProxySink {
    recording: EventSink,
    watchers: Option<LivePublisher>,
    audit: Option<Arc<AuditContext>>,
}

/// The fields of every audit event of one session.
struct AuditContext {
    state: StateDb,
    /// The portal user and the target, for remembering the target username once the target accepts it.
    user_id: i64,
    target_id: i64,
    actor: String,
    client_addr: String,
    target: String,
    session_id: String,
}

impl std::fmt::Debug for ProxySink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxySink")
            .field("recording", &self.recording)
            .finish_non_exhaustive()
    }
}

impl ProxySink {
    /// A sink that only records (no watchers, no audit log): for tests of a protocol's server.
    pub fn recording_only(recording: EventSink) -> ProxySink {
        ProxySink {
            recording,
            watchers: None,
            audit: None,
        }
    }

    /// A sink for one session: its recording and its audit context (no watchers yet).
    pub(crate) fn for_session(
        state: &StateDb,
        decision: &Authorized,
        client_addr: SocketAddr,
        recording: &SessionRecorder,
    ) -> ProxySink {
        ProxySink {
            recording: recording.sink(),
            watchers: None,
            audit: Some(Arc::new(AuditContext {
                state: state.clone(),
                user_id: decision.user().user_id(),
                target_id: decision.target().id,
                actor: decision.user().username().to_owned(),
                client_addr: client_addr.to_string(),
                target: decision.target().name.clone(),
                session_id: recording.id().to_owned(),
            })),
        }
    }

    /// The target accepted the user's ssh as `username`: the target list remembers it for this user
    /// and target (the connect that came before had no username to tell). A failure is logged only.
    pub fn target_login(&self, username: &str) {
        let Some(context) = &self.audit else {
            return;
        };
        if let Err(error) = context.state.record_target_use(
            context.user_id,
            context.target_id,
            crate::now_ms(),
            Some(username),
        ) {
            tracing::warn!(%error, "could not remember the target username");
        }
    }

    /// Records an event before the bytes it describes are passed on. Waits (off the async workers) while
    /// the recorder's queue is full; an error means recording failed and the session must end.
    pub async fn record(&self, event: impl Into<ProxyEvent>) -> Result<(), TargetError> {
        let event = match event.into() {
            ProxyEvent::Recorded(event) => {
                if let (Event::Output(bytes), Some(watchers)) = (&event, &self.watchers) {
                    watchers.publish(bytes);
                }
                event
            }
            ProxyEvent::Audit { kind, detail } => {
                if let Some(context) = &self.audit {
                    audit_into(
                        &context.state,
                        &AuditEvent {
                            kind: kind.clone(),
                            actor: Some(context.actor.clone()),
                            client_addr: Some(context.client_addr.clone()),
                            target: Some(context.target.clone()),
                            session_id: Some(context.session_id.clone()),
                            detail: Some(detail.clone()),
                        },
                    );
                }
                Event::Marker(format!("{kind}: {detail}"))
            }
        };
        record(&self.recording, event).await
    }
}

/// A `sallyport proxy` session over this transport (the user's SSH bytes in data frames): run it
/// with [`Broker::run`](crate::Broker::run). The first frame back is `connected` (the target's host
/// key fingerprint) or an error in words; then SSH flows both ways.
pub struct Proxy<T>(pub T);

impl<T: TerminalTransport> SessionKind for Proxy<T> {
    /// A proxy stream has no connect message: the user's ssh speaks once the target is ready.
    type Request = ();
    type Transport = T;
    type Channel = Box<dyn ProxySession>;

    fn protocol(&self, _decision: &Authorized) -> &'static str {
        PROXY_PROTOCOL
    }

    fn admit(&self, decision: &Authorized) -> Result<(), Refusal> {
        if decision.protocol() != Protocol::Ssh {
            return Err((
                ErrorKind::NotAllowed,
                Some(format!(
                    "{} is a {} target; sallyport proxy carries ssh only",
                    decision.target().name,
                    decision.protocol().as_str()
                )),
            ));
        }
        Ok(())
    }

    async fn request(&mut self, _timeout: Duration) -> Result<Option<()>, Refusal> {
        Ok(Some(()))
    }

    fn connecting(&self, _request: &(), addr: SocketAddr) -> Vec<Event> {
        vec![Event::Marker(format!("ssh proxy: connecting to {addr}"))]
    }

    async fn dial(
        session: &Session<'_>,
        _request: (),
        addr: SocketAddr,
        pinned_key: Option<String>,
    ) -> Result<Dialled<Self::Channel>, TargetError> {
        let config = session.broker.config();
        let request = ProxyConnect {
            addr,
            pinned_host_key: pinned_key,
            timeout: config.target_connect_timeout,
            login_timeout: config.connect_message_timeout,
            forwarding: session.decision.forwarding(),
        };
        let opened = session.broker.connectors().proxy.connect(request).await?;
        Ok(Dialled {
            channel: opened.session,
            key: opened.host_key,
            fingerprint: opened.host_key_fingerprint,
        })
    }

    fn connect_detail(&self, decision: &Authorized, addr: SocketAddr) -> String {
        let forwarding = if decision.forwarding() {
            "allowed"
        } else {
            "refused"
        };
        format!("{addr} (ssh proxy, port forwarding {forwarding})")
    }

    fn connected_marker(&self, fingerprint: &str) -> String {
        format!("connected; target host key {fingerprint}")
    }

    async fn relay(
        &mut self,
        channel: Self::Channel,
        session: &Session<'_>,
        live: &mut LiveHandle,
    ) -> End {
        let mut sink = ProxySink::for_session(
            session.broker.state(),
            session.decision,
            session.client_addr,
            session.recording,
        );
        sink.watchers = Some(live.publisher());
        proxy_relay(&mut self.0, channel, sink, session, live).await
    }

    fn transport(&mut self) -> &mut T {
        &mut self.0
    }
}

/// A session never served ends when dropped: the target connection closes with it.
impl GiveUp for Box<dyn ProxySession> {
    async fn give_up(self) {}
}

/// Moves the user's SSH bytes between the transport and the SSH server until the server is done,
/// and applies the session's limits (idle, maximum duration, terminate).
async fn proxy_relay<T: TerminalTransport>(
    transport: &mut T,
    served_session: Box<dyn ProxySession>,
    sink: ProxySink,
    session: &Session<'_>,
    live: &mut LiveHandle,
) -> End {
    let recording = session.recording;
    let (ours, theirs) = tokio::io::duplex(PIPE_BYTES);
    let (stop_tx, stop_rx) = watch::channel(None);
    let serve = served_session.serve(Box::new(theirs), sink, stop_rx);
    tokio::pin!(serve);
    let (mut from_server, mut to_server) = tokio::io::split(ours);

    let mut deadlines = Deadlines::start(session.broker.config());
    // Armed once the broker asked the session to stop.
    let grace = tokio::time::sleep(STOP_GRACE);
    tokio::pin!(grace);

    // Client bytes read from the transport and not yet taken by the server.
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 32 * 1024];
    let mut client_open = true;
    let mut server_output_open = true;
    let mut served: Option<Result<(), TargetError>> = None;
    // Set when the broker asked the session to stop: the end to report once it has.
    let mut stopping: Option<End> = None;
    let stop = |reason: String, end: End, grace: &mut std::pin::Pin<&mut tokio::time::Sleep>| {
        let _ = stop_tx.send(Some(reason));
        grace
            .as_mut()
            .reset(tokio::time::Instant::now() + STOP_GRACE);
        end
    };
    loop {
        if served.is_some() && !server_output_open {
            break;
        }
        tokio::select! {
            message = transport.recv(), if client_open && pending.is_empty() => match message {
                None => {
                    // The user's ssh is gone: the server hears EOF and ends the session.
                    client_open = false;
                    let _ = to_server.shutdown().await;
                }
                Some(Ok(ClientMessage::Input(data))) => {
                    deadlines.input();
                    live.counters.add_up(data.len());
                    pending = data;
                }
                Some(Ok(_)) => {
                    return End::Failed(
                        ErrorKind::BadRequest,
                        "a proxy stream carries only ssh bytes in data frames".into(),
                    );
                }
                Some(Err(error)) => return End::Failed(ErrorKind::BadRequest, error.to_string()),
            },
            written = to_server.write(&pending), if !pending.is_empty() => match written {
                Ok(n) => {
                    pending.drain(..n.min(pending.len()));
                }
                // The server stopped reading: its end arrives through `serve`.
                Err(_) => pending.clear(),
            },
            read = from_server.read(&mut buf), if server_output_open => match read {
                Ok(0) | Err(_) => server_output_open = false,
                Ok(n) => {
                    let data = buf.get(..n).unwrap_or_default();
                    if transport.send_output(data).await.is_err() {
                        return End::ClientClosed;
                    }
                    live.counters.add_down(n);
                }
            },
            result = &mut serve, if served.is_none() => served = Some(result),
            reason = deadlines.reached(&mut live.terminated, recording), if stopping.is_none() => {
                stopping = Some(stop(reason.clone(), End::Terminated(reason), &mut grace));
            }
            () = &mut grace, if stopping.is_some() => break,
        }
    }
    if let Some(end) = stopping {
        return end;
    }
    match served {
        Some(Err(error)) => End::Failed(error.kind, error.detail),
        // The session ended on its own: the user's ssh closed it, or the target did.
        Some(Ok(())) | None => {
            if client_open {
                End::TargetClosed
            } else {
                End::ClientClosed
            }
        }
    }
}
