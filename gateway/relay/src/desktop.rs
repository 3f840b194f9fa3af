//! Desktop (RDP) sessions through the broker: the same authorization, egress check, recording opened
//! before dialling, session slots, live registry and end-of-session sealing as terminals, with a display
//! stream instead of terminal bytes.
//!
//! A transport implements [`DesktopTransport`] (the portal's desktop WebSocket); a protocol implements
//! [`DesktopConnector`] (sallyport-rdp). The protocol's channel decodes the target's graphics into its own
//! framebuffer and records every server PDU (and keyframes) through the [`EventSink`] it is given, before
//! decoding it; the relay loop records the user's input and resizes before forwarding them, and pulls
//! display updates from the channel at most every [`DesktopConfig::min_frame_interval`], so a slow browser
//! gets fewer, fresher frames.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use sallyport_core::display::{
    ClipboardPolicy, DesktopConnectRequest, DesktopMessage, DesktopServerControl, DesktopSize,
    InputEvent, encode_input,
};
use sallyport_core::errors::ErrorKind;
use sallyport_core::frames::{Credential, FrameError};
use sallyport_core::policy::{Authorized, ClipboardAccess, Protocol};
use sallyport_recordings::{DesktopEvent, Event, EventSink};

use crate::broker::record;
use crate::limits::Deadlines;
use crate::live::LiveHandle;
use crate::pipeline::{Dialled, End, GiveUp, Refusal, Session, SessionKind, connect_message};
use crate::terminal::failed;
use crate::traits::{BoxFuture, TargetError, Transport, TransportClosed};

/// Frames to and from the user of a desktop.
pub trait DesktopTransport: Transport {
    /// The next client message; `None` when the client is gone. Must be cancel-safe.
    fn recv(&mut self) -> impl Future<Output = Option<Result<DesktopMessage, FrameError>>> + Send;
    /// Sends one display update (`sallyport_core::display` format).
    fn send_update(
        &mut self,
        update: Vec<u8>,
    ) -> impl Future<Output = Result<(), TransportClosed>> + Send;
    /// Sends a desktop-only control message (clipboard).
    fn send_desktop_control(
        &mut self,
        msg: &DesktopServerControl,
    ) -> impl Future<Output = Result<(), TransportClosed>> + Send;
}

/// What a protocol needs to open a desktop. The address is already vetted by the egress rules.
pub struct DesktopConnect {
    /// The vetted address to dial.
    pub addr: SocketAddr,
    /// Account on the target.
    pub username: String,
    /// Windows domain, if any.
    pub domain: Option<String>,
    /// Credential for this connection only.
    pub credential: Credential,
    /// The pinned key, or `None` to trust on first use.
    pub pinned_key: Option<String>,
    /// Initial desktop size.
    pub size: DesktopSize,
    /// Deadline for dialling, TLS, authentication and the connection sequence.
    pub timeout: Duration,
    /// Where the channel records the server's PDUs and keyframes; a failure must end the session.
    pub recording: EventSink,
    /// Which way clipboard text may cross.
    pub clipboard: ClipboardPolicy,
}

impl std::fmt::Debug for DesktopConnect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DesktopConnect")
            .field("addr", &self.addr)
            .field("username", &self.username)
            .field("credential", &self.credential)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// An open desktop and the key the target proved.
pub struct DesktopOpened {
    /// The desktop channel.
    pub channel: Box<dyn DesktopChannel>,
    /// The key to pin (stored form).
    pub key: String,
    /// Its fingerprint, as shown to people.
    pub key_fingerprint: String,
}

/// Something the desktop channel reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DesktopTargetEvent {
    /// The framebuffer changed: take an update when the viewer is ready.
    Damaged,
    /// Text was copied on the target (already within the policy's cap).
    Clipboard(String),
    /// Text copied on the target was held back, in plain words.
    ClipboardRefused(String),
    /// The target ended the session in order.
    Closed(String),
    /// The session failed.
    Failed(TargetError),
}

/// A protocol that opens desktops.
pub trait DesktopConnector: Send + Sync {
    /// Dials, checks the key against the pin, authenticates and starts the desktop.
    fn connect(&self, request: DesktopConnect)
    -> BoxFuture<'_, Result<DesktopOpened, TargetError>>;
}

/// An open desktop.
pub trait DesktopChannel: Send {
    /// The next event. Must be cancel-safe.
    fn next_event(&mut self) -> BoxFuture<'_, DesktopTargetEvent>;
    /// Encodes the damage since the last call (everything when `full`) as one display update.
    fn take_update(&mut self, full: bool) -> Result<Option<Vec<u8>>, TargetError>;
    /// Sends input to the target.
    fn input(&mut self, events: Vec<InputEvent>) -> BoxFuture<'_, Result<(), TargetError>>;
    /// Asks the target for a new desktop size.
    fn resize(&mut self, size: DesktopSize) -> BoxFuture<'_, Result<(), TargetError>>;
    /// Offers the user's clipboard text to the target.
    fn set_clipboard(&mut self, text: String) -> BoxFuture<'_, Result<(), TargetError>>;
    /// Bytes received from the target so far.
    fn bytes_received(&self) -> u64;
    /// Closes politely.
    fn close(self: Box<Self>) -> BoxFuture<'static, ()>;
}

/// Desktop-specific settings of the broker.
#[derive(Debug, Clone)]
pub struct DesktopConfig {
    /// The shortest time between two display updates to one viewer (a frame-rate cap; damage in between
    /// is merged).
    pub min_frame_interval: Duration,
    /// Which way clipboard text may cross, and how much.
    pub clipboard: ClipboardPolicy,
}

impl Default for DesktopConfig {
    fn default() -> Self {
        DesktopConfig {
            min_frame_interval: Duration::from_millis(33),
            clipboard: ClipboardPolicy::default(),
        }
    }
}

/// A desktop session over this transport: run it with [`Broker::run`](crate::Broker::run).
pub struct Desktop<T>(pub T);

impl<T: DesktopTransport> SessionKind for Desktop<T> {
    type Request = DesktopConnectRequest;
    type Transport = T;
    type Channel = Box<dyn DesktopChannel>;

    fn admit(&self, decision: &Authorized) -> Result<(), Refusal> {
        if decision.protocol() != Protocol::Rdp {
            return Err((
                ErrorKind::BadRequest,
                Some("this target is not an RDP target".into()),
            ));
        }
        Ok(())
    }

    async fn request(&mut self, timeout: Duration) -> Result<Option<Self::Request>, Refusal> {
        connect_message(timeout, self.0.recv(), |message| match message {
            DesktopMessage::Connect(request) => Some(request),
            _ => None,
        })
        .await
    }

    fn target_username(&self, request: &Self::Request) -> Option<String> {
        Some(request.username.clone())
    }

    fn connecting(&self, request: &Self::Request, addr: SocketAddr) -> Vec<Event> {
        vec![
            Event::Marker(format!("connecting to {addr} as {}", request.username)),
            Event::Desktop(DesktopEvent::Resize {
                width: request.size.width,
                height: request.size.height,
            }),
        ]
    }

    async fn dial(
        session: &Session<'_>,
        request: Self::Request,
        addr: SocketAddr,
        pinned_key: Option<String>,
    ) -> Result<Dialled<Self::Channel>, TargetError> {
        let broker = session.broker;
        let connect = DesktopConnect {
            addr,
            username: request.username,
            domain: request.domain,
            credential: request.credential,
            pinned_key,
            size: request.size,
            timeout: broker.config().target_connect_timeout,
            recording: session.recording.sink(),
            clipboard: session_clipboard(
                broker.desktop_config().clipboard,
                session.decision.clipboard(),
            ),
        };
        let opened = broker.connectors().desktop.connect(connect).await?;
        Ok(Dialled {
            channel: opened.channel,
            key: opened.key,
            fingerprint: opened.key_fingerprint,
        })
    }

    async fn relay(
        &mut self,
        mut channel: Self::Channel,
        session: &Session<'_>,
        live: &mut LiveHandle,
    ) -> End {
        let gateway = session.broker.desktop_config();
        let desktop = DesktopConfig {
            clipboard: session_clipboard(gateway.clipboard, session.decision.clipboard()),
            ..gateway.clone()
        };
        let pasting_refused = if !gateway.clipboard.to_target {
            "the gateway does not let clipboard text reach targets"
        } else {
            "your access policy does not let clipboard text reach this target"
        };
        let end = desktop_relay(
            &mut self.0,
            channel.as_mut(),
            session,
            live,
            (&desktop, pasting_refused),
        )
        .await;
        channel.close().await;
        end
    }

    fn transport(&mut self) -> &mut T {
        &mut self.0
    }
}

impl GiveUp for Box<dyn DesktopChannel> {
    async fn give_up(self) {
        DesktopChannel::close(self).await;
    }
}

/// The clipboard a session may use: the gateway's own setting, narrowed to the directions the access
/// decision allows.
fn session_clipboard(gateway: ClipboardPolicy, access: ClipboardAccess) -> ClipboardPolicy {
    ClipboardPolicy {
        to_target: gateway.to_target && access.to_target(),
        to_client: gateway.to_client && access.to_client(),
        ..gateway
    }
}

/// The desktop relay loop: input and resizes to the target, recorded first; display updates to the
/// viewer, paced and coalesced. `desktop` holds this session's clipboard directions; `pasting_refused`
/// says in words why the user's clipboard may not reach the target, when it may not.
async fn desktop_relay<T: DesktopTransport>(
    transport: &mut T,
    channel: &mut dyn DesktopChannel,
    session: &Session<'_>,
    live: &mut LiveHandle,
    (desktop, pasting_refused): (&DesktopConfig, &str),
) -> End {
    let recording = session.recording;
    let mut deadlines = Deadlines::start(session.broker.config());
    // The next display update may go out at this time; `pending` says there is damage to send.
    let next_frame = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(next_frame);
    let mut pending = false;
    let mut first = true;
    loop {
        tokio::select! {
            reason = deadlines.reached(&mut live.terminated, recording) => {
                return End::Terminated(reason);
            }
            () = &mut next_frame, if pending => {
                pending = false;
                let update = match channel.take_update(first) {
                    Ok(update) => update,
                    Err(error) => return failed(error),
                };
                first = false;
                if let Some(update) = update {
                    let len = update.len();
                    if transport.send_update(update).await.is_err() {
                        return End::ClientClosed;
                    }
                    live.counters.add_down(len);
                }
                next_frame.as_mut().reset(tokio::time::Instant::now() + desktop.min_frame_interval);
            }
            message = transport.recv() => match message {
                None => return End::ClientClosed,
                Some(Err(error)) => return End::Failed(ErrorKind::BadRequest, error.to_string()),
                Some(Ok(DesktopMessage::Input(events))) => {
                    deadlines.input();
                    let encoded = encode_input(&events);
                    live.counters.add_up(encoded.len());
                    if let Err(error) = record(recording, Event::Desktop(DesktopEvent::Input(encoded))).await {
                        return failed(error);
                    }
                    if let Err(error) = channel.input(events).await {
                        return failed(error);
                    }
                }
                Some(Ok(DesktopMessage::Resize(size))) => {
                    let event = Event::Desktop(DesktopEvent::Resize { width: size.width, height: size.height });
                    if let Err(error) = record(recording, event).await {
                        return failed(error);
                    }
                    if let Err(error) = channel.resize(size).await {
                        return failed(error);
                    }
                }
                Some(Ok(DesktopMessage::Connect(_))) => {
                    return End::Failed(ErrorKind::BadRequest, "connect sent twice".into());
                }
                Some(Ok(DesktopMessage::Clipboard(text))) => {
                    let policy = desktop.clipboard;
                    let refusal = if !policy.to_target || policy.cap() == 0 {
                        Some(pasting_refused.to_owned())
                    } else if text.len() > policy.cap() {
                        Some(format!("the clipboard text ({} bytes) is over the {} byte limit", text.len(), policy.cap()))
                    } else {
                        None
                    };
                    if let Some(message) = refusal {
                        if let Err(error) = record(recording, Event::Marker(format!("clipboard to the target refused: {message}"))).await {
                            return failed(error);
                        }
                        if transport.send_desktop_control(&DesktopServerControl::ClipboardRefused { message }).await.is_err() {
                            return End::ClientClosed;
                        }
                        continue;
                    }
                    let event = Event::Desktop(DesktopEvent::Clipboard { to_target: true, bytes: u32::try_from(text.len()).unwrap_or(u32::MAX) });
                    if let Err(error) = record(recording, event).await {
                        return failed(error);
                    }
                    live.counters.add_up(text.len());
                    if let Err(error) = channel.set_clipboard(text).await {
                        return failed(error);
                    }
                }
            },
            event = channel.next_event(), if !pending => match event {
                DesktopTargetEvent::Damaged => pending = true,
                DesktopTargetEvent::Clipboard(text) => {
                    // The channel holds text back unless the policy lets it out; checked again here.
                    if !desktop.clipboard.to_client || text.len() > desktop.clipboard.cap() {
                        continue;
                    }
                    let event = Event::Desktop(DesktopEvent::Clipboard { to_target: false, bytes: u32::try_from(text.len()).unwrap_or(u32::MAX) });
                    if let Err(error) = record(recording, event).await {
                        return failed(error);
                    }
                    live.counters.add_down(text.len());
                    if transport.send_desktop_control(&DesktopServerControl::Clipboard { text }).await.is_err() {
                        return End::ClientClosed;
                    }
                }
                DesktopTargetEvent::ClipboardRefused(message) => {
                    if let Err(error) = record(recording, Event::Marker(format!("clipboard from the target refused: {message}"))).await {
                        return failed(error);
                    }
                    if transport.send_desktop_control(&DesktopServerControl::ClipboardRefused { message }).await.is_err() {
                        return End::ClientClosed;
                    }
                }
                DesktopTargetEvent::Closed(reason) => {
                    let _ = record(recording, Event::Marker(format!("target closed: {reason}"))).await;
                    return End::TargetClosed;
                }
                DesktopTargetEvent::Failed(error) => return failed(error),
            },
        }
    }
}
