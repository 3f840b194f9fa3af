//! A connected RDP session: one task owns the connection and the ironrdp `ActiveStage`, decodes every
//! server PDU into the gateway's framebuffer and accumulates the damage; the handle ([`RdpSession`]) sends
//! input and resizes to that task and takes display updates out of the framebuffer when its viewer is ready
//! for one, so a slow viewer gets fewer, fresher frames and memory stays bounded (one framebuffer, at most
//! [`MAX_RECTS`](sallyport_core::display::MAX_RECTS) damaged rectangles).

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ironrdp_cliprdr::CliprdrClient;
use ironrdp_connector::ConnectionResult;
use ironrdp_connector::Sequence as _;
use ironrdp_connector::connection_activation::{
    ConnectionActivationFactory, ConnectionActivationState,
};
use ironrdp_core::WriteBuf;
use ironrdp_dvc::DrdynvcClient;
use ironrdp_graphics::image_processing::PixelFormat;
use ironrdp_input::{Database, MouseButton, MousePosition, Operation, Scancode, WheelRotations};
use ironrdp_pdu::Action;
use ironrdp_pdu::geometry::{InclusiveRectangle, Rectangle as _};
use ironrdp_session::image::DecodedImage;
use ironrdp_session::{ActiveStage, ActiveStageBuilder, ActiveStageOutput};
use ironrdp_tokio::{FramedWrite, TokioFramed};
use sallyport_core::display::{
    ClipboardPolicy, Damage, DesktopSize, InputEvent, Rect, UpdateWriter,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Notify, mpsc, watch};
use tracing::{debug, warn};

use crate::clipboard::{self, Pending, Queue};
use crate::connect::connector_error;
use crate::encode::{EncodeError, encode_png, encode_rect};
use crate::error::RdpError;
use crate::strict::Strict;

/// Most pixels a target may make the gateway hold for one desktop (64 MiB of RGBA, e.g. two 4K screens).
pub const MAX_PIXELS: u32 = 16 * 1024 * 1024;
/// Most steps a deactivation-reactivation sequence may take before it counts as a protocol violation.
const MAX_REACTIVATION_STEPS: usize = 64;
/// How long a reactivation may take.
const REACTIVATION_TIMEOUT: Duration = Duration::from_secs(20);

/// The parameters a decoder needs to follow the stream from this point: the ironrdp `ActiveStage`
/// identifiers and the desktop size. Sent at the start and after every reactivation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Activation {
    /// Desktop width.
    pub width: u16,
    /// Desktop height.
    pub height: u16,
    /// MCS I/O channel.
    pub io_channel_id: u16,
    /// MCS user channel.
    pub user_channel_id: u16,
    /// Share id.
    pub share_id: u32,
    /// The static channel of dynamic virtual channels (display control), if joined.
    pub drdynvc_channel_id: Option<u16>,
}

/// Sees what the session receives, in order, before it is decoded (the recorder). An error ends the
/// session (fail closed).
pub trait Observer: Send + Sync {
    /// The stage was (re)activated with these parameters; a fresh black framebuffer of this size follows.
    fn activated(&self, activation: &Activation) -> Result<(), String>;
    /// A server PDU (fast-path or X.224 framing) about to be decoded.
    fn server_pdu(&self, fast_path: bool, pdu: &[u8]) -> Result<(), String>;
    /// The whole framebuffer as PNG, after every PDU observed so far was decoded.
    fn keyframe(&self, width: u16, height: u16, png: &[u8]) -> Result<(), String>;
}

/// How a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEnd {
    /// The target or the user closed it in order.
    Closed(String),
    /// It failed.
    Failed(RdpError),
}

/// What the handle waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// The framebuffer changed: call [`RdpSession::take_update`].
    Damaged,
    /// Text was copied on the target and the policy lets it reach the user.
    Clipboard(String),
    /// Text copied on the target was not passed on (over the size cap); the session goes on.
    ClipboardRefused(String),
    /// The session is over.
    Ended(SessionEnd),
}

enum Command {
    Input(Vec<InputEvent>),
    Resize(DesktopSize),
    Clipboard(String),
}

/// How long after an activation, and after the first picture following it, before the gateway asks for a
/// new desktop size. xrdp (xorgxrdp) frees the shared memory of the old screen when it resizes; a resize
/// asked for while xrdp is still attaching the first one's makes xrdp drop the whole session ("Can't
/// attach to shared memory"), which happened when the browser's area settled right after connecting.
const RESIZE_SETTLE: Duration = Duration::from_millis(1500);

/// Most clipboard events waiting for the handle; more are dropped (the newest copy wins next time).
const CLIPBOARD_EVENTS: usize = 4;
/// Largest clipboard channel message the gateway reassembles from the target: the cap's worth of UTF-16
/// and headers, whatever length a target declares.
const MAX_CLIPBOARD_PDU: u32 = 8 * 1024 * 1024;

struct Frame {
    image: DecodedImage,
    damage: Damage,
}

struct Shared {
    frame: Mutex<Frame>,
    damaged: Notify,
    bytes_in: AtomicU64,
}

impl Shared {
    fn frame(&self) -> MutexGuard<'_, Frame> {
        // A panic while the lock was held left at worst a half-drawn frame; keep going.
        self.frame
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A running desktop session. Dropping it ends the session.
pub struct RdpSession {
    shared: Arc<Shared>,
    commands: Option<mpsc::Sender<Command>>,
    ended: watch::Receiver<Option<SessionEnd>>,
    clipboard: mpsc::Receiver<SessionEvent>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RdpSession {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn check_size(width: u16, height: u16) -> Result<(), RdpError> {
    if width == 0 || height == 0 || u32::from(width) * u32::from(height) > MAX_PIXELS {
        return Err(RdpError::Limit(format!(
            "a desktop of {width}x{height} pixels (at most {MAX_PIXELS} pixels)"
        )));
    }
    Ok(())
}

fn to_rect(r: &InclusiveRectangle) -> Rect {
    Rect {
        x: r.left,
        y: r.top,
        width: r.width(),
        height: r.height(),
    }
}

impl RdpSession {
    pub(crate) fn start<S>(
        framed: TokioFramed<S>,
        result: ConnectionResult,
        observer: Option<Arc<dyn Observer>>,
        keyframe_interval: Duration,
        clipboard: Option<(Queue, ClipboardPolicy)>,
    ) -> Result<RdpSession, RdpError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + Sync + 'static,
    {
        let size = result.desktop_size;
        check_size(size.width, size.height)?;
        let drdynvc_channel_id = result
            .static_channels
            .get_channel_id_by_type::<DrdynvcClient>();
        let cliprdr_channel_id = result
            .static_channels
            .get_channel_id_by_type::<CliprdrClient>();
        let activation = Activation {
            width: size.width,
            height: size.height,
            io_channel_id: result.io_channel_id,
            user_channel_id: result.user_channel_id,
            share_id: result.share_id,
            drdynvc_channel_id,
        };
        if let Some(observer) = &observer {
            observer
                .activated(&activation)
                .map_err(RdpError::Recording)?;
        }
        let stage = ActiveStageBuilder {
            static_channels: result.static_channels,
            user_channel_id: result.user_channel_id,
            io_channel_id: result.io_channel_id,
            message_channel_id: result.message_channel_id,
            share_id: result.share_id,
            compression_type: result.compression_type,
            enable_server_pointer: result.enable_server_pointer,
            pointer_software_rendering: result.pointer_software_rendering,
        }
        .build();
        let shared = Arc::new(Shared {
            frame: Mutex::new(Frame {
                image: DecodedImage::new(PixelFormat::RgbA32, size.width, size.height),
                damage: Damage::default(),
            }),
            damaged: Notify::new(),
            bytes_in: AtomicU64::new(0),
        });
        let (commands, command_rx) = mpsc::channel(64);
        let (clipboard_tx, clipboard_rx) = mpsc::channel(CLIPBOARD_EVENTS);
        let (ended_tx, ended) = watch::channel(None);
        let task = Task {
            framed,
            stage,
            shared: shared.clone(),
            activation_factory: result.activation_factory,
            observer,
            input: Database::new(),
            keyframe_interval,
            last_keyframe: Instant::now(),
            dirty_since_keyframe: false,
            drdynvc_channel_id,
            strict: Strict::default(),
            resize_wanted: None,
            activated_at: Instant::now(),
            drawn_since_activation: false,
            clipboard: clipboard.and_then(|(queue, policy)| {
                Some(ClipboardState {
                    channel_id: cliprdr_channel_id?,
                    queue,
                    policy,
                    local_text: None,
                    events: clipboard_tx,
                })
            }),
        };
        let task = tokio::spawn(async move {
            let end = task.run(command_rx).await;
            debug!(?end, "rdp session task ended");
            let _ = ended_tx.send(Some(end));
        });
        Ok(RdpSession {
            shared,
            commands: Some(commands),
            ended,
            clipboard: clipboard_rx,
            task,
        })
    }

    /// Waits until the framebuffer changed or the session ended. Cancel-safe.
    pub async fn next_event(&mut self) -> SessionEvent {
        if let Some(end) = self.ended.borrow().clone() {
            return SessionEvent::Ended(end);
        }
        tokio::select! {
            biased;
            changed = self.ended.changed() => {
                match (changed, self.ended.borrow().clone()) {
                    (_, Some(end)) => SessionEvent::Ended(end),
                    (Err(_), None) => SessionEvent::Ended(SessionEnd::Failed(RdpError::Protocol("the session task stopped".into()))),
                    (Ok(()), None) => SessionEvent::Damaged,
                }
            }
            () = self.shared.damaged.notified() => SessionEvent::Damaged,
            Some(event) = self.clipboard.recv() => event,
        }
    }

    /// The current desktop size.
    pub fn size(&self) -> (u16, u16) {
        let frame = self.shared.frame();
        (frame.image.width(), frame.image.height())
    }

    /// Bytes of server PDUs received so far.
    pub fn bytes_received(&self) -> u64 {
        self.shared.bytes_in.load(Ordering::Relaxed)
    }

    /// A copy of the framebuffer as tightly packed opaque RGBA, with its size.
    pub fn snapshot(&self) -> (u16, u16, Vec<u8>) {
        let frame = self.shared.frame();
        let mut data = frame.image.data().to_vec();
        for pixel in data.chunks_exact_mut(4) {
            pixel[3] = 0xff;
        }
        (frame.image.width(), frame.image.height(), data)
    }

    /// Takes the damage since the last call (or the whole desktop when `full`) and encodes it as one display
    /// update; `None` when nothing changed.
    pub fn take_update(&self, full: bool) -> Result<Option<Vec<u8>>, EncodeError> {
        let (width, height, pieces) = {
            let mut frame = self.shared.frame();
            let (width, height) = (frame.image.width(), frame.image.height());
            if full {
                frame.damage.add_all(width, height);
            }
            let rects = frame.damage.take();
            let pieces: Vec<(Rect, Vec<u8>)> = rects
                .into_iter()
                .filter_map(|r| r.clipped(width, height))
                .map(|r| (r, copy_rect(&frame.image, r)))
                .collect();
            (width, height, pieces)
        };
        if pieces.is_empty() {
            return Ok(None);
        }
        let mut writer = UpdateWriter::new(width, height);
        for (rect, pixels) in pieces {
            let (encoding, data) = encode_rect(rect, &pixels)?;
            writer.push(rect, encoding, &data);
        }
        Ok(Some(writer.finish()))
    }

    /// Sends input events to the target.
    pub async fn input(&self, events: Vec<InputEvent>) -> Result<(), RdpError> {
        self.command(Command::Input(events)).await
    }

    /// Asks the target to change the desktop size (display control channel); a target without it keeps
    /// its size and the browser scales.
    pub async fn resize(&self, size: DesktopSize) -> Result<(), RdpError> {
        self.command(Command::Resize(size)).await
    }

    /// Puts the user's text on the target's clipboard (the target fetches it when someone pastes there).
    /// The caller checks the policy; a session without a clipboard channel ignores it.
    pub async fn set_clipboard(&self, text: String) -> Result<(), RdpError> {
        self.command(Command::Clipboard(text)).await
    }

    async fn command(&self, command: Command) -> Result<(), RdpError> {
        let sent = match &self.commands {
            Some(commands) => commands.send(command).await.is_ok(),
            None => false,
        };
        if sent {
            return Ok(());
        }
        Err(match self.ended.borrow().clone() {
            Some(SessionEnd::Failed(error)) => error,
            _ => RdpError::Closed(String::new()),
        })
    }

    /// Ends the session: says goodbye to the target (at most two seconds), then stops the task.
    pub async fn close(mut self) {
        // Without a command sender the task sends the target its shutdown request and ends.
        self.commands = None;
        let mut ended = self.ended.clone();
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while ended.borrow().is_none() {
                if ended.changed().await.is_err() {
                    break;
                }
            }
        })
        .await;
    }
}

/// Copies one rectangle out of the framebuffer as opaque RGBA rows.
fn copy_rect(image: &DecodedImage, rect: Rect) -> Vec<u8> {
    let stride = image.stride();
    let data = image.data();
    let (x, w) = (usize::from(rect.x) * 4, usize::from(rect.width) * 4);
    let mut out = Vec::with_capacity(w * usize::from(rect.height));
    for row in usize::from(rect.y)..usize::from(rect.y) + usize::from(rect.height) {
        let start = row * stride + x;
        match data.get(start..start + w) {
            Some(line) => out.extend_from_slice(line),
            None => out.resize(out.len() + w, 0),
        }
    }
    for pixel in out.chunks_exact_mut(4) {
        pixel[3] = 0xff;
    }
    out
}

struct Task<S> {
    framed: TokioFramed<S>,
    stage: ActiveStage,
    shared: Arc<Shared>,
    activation_factory: ConnectionActivationFactory,
    observer: Option<Arc<dyn Observer>>,
    input: Database,
    keyframe_interval: Duration,
    last_keyframe: Instant,
    dirty_since_keyframe: bool,
    /// Static channels keep their ids across a reactivation.
    drdynvc_channel_id: Option<u16>,
    strict: Strict,
    clipboard: Option<ClipboardState>,
    /// The size the user asked for last and the target was not yet asked for.
    resize_wanted: Option<DesktopSize>,
    /// When the stage was last (re)activated, and whether a picture came since.
    activated_at: Instant,
    drawn_since_activation: bool,
}

/// The clipboard channel's side of the task.
struct ClipboardState {
    channel_id: u16,
    queue: Queue,
    policy: ClipboardPolicy,
    /// The user's latest text, offered to the target.
    local_text: Option<String>,
    events: mpsc::Sender<SessionEvent>,
}

impl<S> Task<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + Sync + 'static,
{
    async fn run(mut self, mut commands: mpsc::Receiver<Command>) -> SessionEnd {
        loop {
            // A change is captured in a keyframe one interval after the last one, even when the target
            // goes quiet right after it.
            let keyframe_due =
                tokio::time::Instant::from_std(self.last_keyframe + self.keyframe_interval);
            let want_keyframe = self.observer.is_some() && self.dirty_since_keyframe;
            let resize_due = tokio::time::Instant::from_std(self.resize_ready_at());
            let want_resize = self.resize_wanted.is_some();
            let step = tokio::select! {
                () = tokio::time::sleep_until(keyframe_due), if want_keyframe => self.maybe_keyframe(),
                () = tokio::time::sleep_until(resize_due), if want_resize => self.try_resize().await,
                pdu = self.framed.read_pdu() => match pdu {
                    Ok((action, payload)) => self.on_pdu(action, &payload).await,
                    Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => {
                        Err(SessionEnd::Closed("the target closed the connection".into()))
                    }
                    Err(error) => Err(SessionEnd::Failed(RdpError::Protocol(format!("reading from the target: {error}")))),
                },
                command = commands.recv() => match command {
                    Some(Command::Input(events)) => self.on_input(events).await,
                    Some(Command::Resize(size)) => self.on_resize(size).await,
                    Some(Command::Clipboard(text)) => self.on_local_clipboard(text).await,
                    None => {
                        self.goodbye().await;
                        Err(SessionEnd::Closed("the user closed the session".into()))
                    }
                },
            };
            if let Err(end) = step {
                return end;
            }
        }
    }

    async fn write(&mut self, frame: &[u8]) -> Result<(), SessionEnd> {
        if frame.is_empty() {
            return Ok(());
        }
        self.framed.write_all(frame).await.map_err(|e| {
            SessionEnd::Failed(RdpError::Closed(format!(" while the gateway wrote: {e}")))
        })
    }

    async fn on_pdu(&mut self, action: Action, payload: &[u8]) -> Result<(), SessionEnd> {
        self.shared
            .bytes_in
            .fetch_add(payload.len() as u64, Ordering::Relaxed);
        let clipboard_pdu = action == Action::X224 && self.check_clipboard_pdu(payload)?;
        // Clipboard contents are not recorded (their direction and size are, by the relay), so the
        // clipboard channel's PDUs stay out of the recording.
        if let Some(observer) = self.observer.as_ref().filter(|_| !clipboard_pdu) {
            observer
                .server_pdu(action == Action::FastPath, payload)
                .map_err(|e| SessionEnd::Failed(RdpError::Recording(e)))?;
        }
        if action == Action::FastPath {
            let (width, height) = {
                let frame = self.shared.frame();
                (frame.image.width(), frame.image.height())
            };
            self.strict
                .check_fast_path(payload, width, height)
                .map_err(|why| {
                    SessionEnd::Failed(RdpError::Protocol(format!("the target sent {why}")))
                })?;
        }
        let outputs = {
            let mut frame = self.shared.frame();
            let stage = &mut self.stage;
            let received_at = self.framed.last_read_at();
            // ironrdp is meant never to panic on input; should it, only this session ends.
            std::panic::catch_unwind(AssertUnwindSafe(|| {
                stage.process(&mut frame.image, action, payload, received_at)
            }))
            .map_err(|_| {
                SessionEnd::Failed(RdpError::Protocol(
                    "the decoder failed on a PDU from the target".into(),
                ))
            })?
            .map_err(|e| SessionEnd::Failed(RdpError::Protocol(e.report().to_string())))?
        };
        if self.stage.take_bitmap_recovery_request() {
            return Err(SessionEnd::Failed(RdpError::Protocol(
                "the target sent a malformed bitmap".into(),
            )));
        }
        let mut damaged = false;
        for output in outputs {
            match output {
                ActiveStageOutput::ResponseFrame(frame) => self.write(&frame).await?,
                ActiveStageOutput::GraphicsUpdate(region) => {
                    let mut frame = self.shared.frame();
                    let (w, h) = (frame.image.width(), frame.image.height());
                    if let Some(rect) = to_rect(&region).clipped(w, h) {
                        frame.damage.add(rect);
                        damaged = true;
                    }
                }
                ActiveStageOutput::Terminate(reason) => {
                    return Err(SessionEnd::Closed(reason.description()));
                }
                ActiveStageOutput::DeactivateAll => self.reactivate().await?,
                ActiveStageOutput::ServerRedirection(_) => {
                    return Err(SessionEnd::Failed(RdpError::Protocol(
                        "the target redirected the session elsewhere, which the gateway does not follow"
                            .into(),
                    )));
                }
                other => debug!(output = ?std::mem::discriminant(&other), "rdp output ignored"),
            }
        }
        if damaged {
            self.dirty_since_keyframe = true;
            self.drawn_since_activation = true;
            self.shared.damaged.notify_one();
        }
        if clipboard_pdu {
            self.clipboard_step().await?;
        }
        self.maybe_keyframe()
    }

    /// Whether an X.224 frame belongs to the clipboard channel; ends the session when it announces more
    /// than [`MAX_CLIPBOARD_PDU`] (ironrdp would reassemble up to what the target declares).
    fn check_clipboard_pdu(&self, payload: &[u8]) -> Result<bool, SessionEnd> {
        let Some(clipboard) = &self.clipboard else {
            return Ok(false);
        };
        let Ok(data) = ironrdp_pdu::mcs::decode_send_data_indication(payload) else {
            return Ok(false);
        };
        if data.channel_id != clipboard.channel_id {
            return Ok(false);
        }
        // The channel PDU header: total length (u32 LE), then flags.
        let declared = data
            .user_data
            .get(..4)
            .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        if declared > MAX_CLIPBOARD_PDU {
            return Err(SessionEnd::Failed(RdpError::Protocol(format!(
                "the target sent a clipboard message of {declared} bytes (at most {MAX_CLIPBOARD_PDU})"
            ))));
        }
        Ok(true)
    }

    /// Acts on what the clipboard channel asked for while the last PDU was processed.
    async fn clipboard_step(&mut self) -> Result<(), SessionEnd> {
        let Some(clipboard) = &self.clipboard else {
            return Ok(());
        };
        let policy = clipboard.policy;
        for pending in clipboard.queue.drain() {
            let Some(cliprdr) = self.stage.get_svc_processor_mut::<CliprdrClient>() else {
                return Ok(());
            };
            let local_text = self
                .clipboard
                .as_ref()
                .and_then(|c| c.local_text.clone())
                .filter(|_| policy.to_target);
            let messages = match pending {
                Pending::FormatListWanted => {
                    let formats = if local_text.is_some() {
                        clipboard::text_formats()
                    } else {
                        Vec::new()
                    };
                    cliprdr.initiate_copy(&formats)
                }
                Pending::RemoteCopy { has_text } if has_text && policy.to_client => {
                    cliprdr.initiate_paste(ironrdp_cliprdr::pdu::ClipboardFormatId::CF_UNICODETEXT)
                }
                Pending::RemoteCopy { .. } => continue,
                Pending::DataWanted(format) => cliprdr
                    .submit_format_data(clipboard::text_response(format, local_text.as_deref())),
                Pending::Data(text) => {
                    let event = match text {
                        Some(text) if text.len() <= policy.cap() => SessionEvent::Clipboard(text),
                        Some(text) => SessionEvent::ClipboardRefused(format!(
                            "the target's clipboard text ({} bytes) is over the {} byte limit",
                            text.len(),
                            policy.cap()
                        )),
                        None => continue,
                    };
                    if let Some(clipboard) = &self.clipboard {
                        // A viewer that does not keep up loses clipboard events, never the session.
                        let _ = clipboard.events.try_send(event);
                    }
                    continue;
                }
            };
            let messages = match messages {
                Ok(messages) => messages,
                Err(error) => {
                    // The channel refused (e.g. not ready yet); the clipboard is best effort.
                    debug!(error = %error, "clipboard request not sent");
                    continue;
                }
            };
            let frame = self
                .stage
                .process_svc_processor_messages(messages)
                .map_err(|e| SessionEnd::Failed(RdpError::Protocol(e.report().to_string())))?;
            self.write(&frame).await?;
        }
        Ok(())
    }

    /// The user's clipboard changed: remember the text and tell the target text is available.
    async fn on_local_clipboard(&mut self, text: String) -> Result<(), SessionEnd> {
        let Some(clipboard) = self.clipboard.as_mut() else {
            return Ok(());
        };
        if !clipboard.policy.to_target || text.len() > clipboard.policy.cap() {
            return Ok(());
        }
        clipboard.local_text = Some(text);
        let Some(cliprdr) = self.stage.get_svc_processor_mut::<CliprdrClient>() else {
            return Ok(());
        };
        if !cliprdr.is_ready() {
            // The format list goes out when the channel asks for it.
            return Ok(());
        }
        match cliprdr.initiate_copy(&clipboard::text_formats()) {
            Ok(messages) => {
                let frame = self
                    .stage
                    .process_svc_processor_messages(messages)
                    .map_err(|e| SessionEnd::Failed(RdpError::Protocol(e.report().to_string())))?;
                self.write(&frame).await
            }
            Err(error) => {
                debug!(error = %error, "clipboard format list not sent");
                Ok(())
            }
        }
    }

    fn maybe_keyframe(&mut self) -> Result<(), SessionEnd> {
        let Some(observer) = &self.observer else {
            return Ok(());
        };
        if !self.dirty_since_keyframe || self.last_keyframe.elapsed() < self.keyframe_interval {
            return Ok(());
        }
        let frame = self.shared.frame();
        let (width, height) = (frame.image.width(), frame.image.height());
        let rect = Rect {
            x: 0,
            y: 0,
            width,
            height,
        };
        let pixels = copy_rect(&frame.image, rect);
        drop(frame);
        let png = encode_png(width, height, &pixels)
            .map_err(|e| SessionEnd::Failed(RdpError::Recording(format!("keyframe: {e}"))))?;
        observer
            .keyframe(width, height, &png)
            .map_err(|e| SessionEnd::Failed(RdpError::Recording(e)))?;
        self.last_keyframe = Instant::now();
        self.dirty_since_keyframe = false;
        Ok(())
    }

    async fn reactivate(&mut self) -> Result<(), SessionEnd> {
        debug!("deactivation-reactivation sequence");
        let fail = |e: RdpError| SessionEnd::Failed(e);
        let mut sequence = self.activation_factory.create();
        let mut buf = WriteBuf::new();
        let deadline = tokio::time::Instant::now() + REACTIVATION_TIMEOUT;
        let mut skipped = 0usize;
        for _ in 0..MAX_REACTIVATION_STEPS * 2 {
            buf.clear();
            let written = match sequence.next_pdu_hint() {
                Some(hint) => {
                    let pdu = tokio::time::timeout_at(deadline, self.framed.read_by_hint(hint))
                        .await
                        .map_err(|_| fail(RdpError::Timeout("reactivation")))?
                        .map_err(|e| {
                            fail(RdpError::Protocol(format!("reading the reactivation: {e}")))
                        })?;
                    // A step consumes the state even when it refuses a PDU, so keep a copy to go on from.
                    let before = sequence.clone();
                    match sequence.step(&pdu, self.framed.last_read_at(), &mut buf) {
                        Ok(written) => written,
                        // Servers keep sending updates while the client finalizes (xrdp does); the
                        // sequence refuses them, and the full redraw after the reactivation repaints
                        // what they carried.
                        Err(e)
                            if skipped < MAX_REACTIVATION_STEPS
                                && e.report().to_string().contains("unexpected server message") =>
                        {
                            skipped += 1;
                            sequence = before;
                            debug!("pdu skipped during reactivation");
                            continue;
                        }
                        Err(e) => return Err(fail(connector_error(&e))),
                    }
                }
                None => sequence
                    .step_no_input(&mut buf)
                    .map_err(|e| fail(connector_error(&e)))?,
            };
            if let Some(len) = written.size() {
                let reply = buf.filled().get(..len).unwrap_or_default().to_vec();
                self.write(&reply).await?;
            }
            if let ConnectionActivationState::Finalized {
                desktop_size,
                share_id,
                enable_server_pointer,
                pointer_software_rendering,
                static_channel_chunk_size,
                ..
            } = sequence.connection_activation_state()
            {
                check_size(desktop_size.width, desktop_size.height).map_err(fail)?;
                if !self.stage.reactivate(
                    sequence.io_channel_id(),
                    sequence.user_channel_id(),
                    share_id,
                    enable_server_pointer,
                    pointer_software_rendering,
                    static_channel_chunk_size,
                ) {
                    return Err(fail(RdpError::Protocol(
                        "invalid static channel chunk size in reactivation".into(),
                    )));
                }
                let activation = Activation {
                    width: desktop_size.width,
                    height: desktop_size.height,
                    io_channel_id: sequence.io_channel_id(),
                    user_channel_id: sequence.user_channel_id(),
                    share_id,
                    drdynvc_channel_id: self.drdynvc_channel_id,
                };
                if let Some(observer) = &self.observer {
                    observer
                        .activated(&activation)
                        .map_err(|e| fail(RdpError::Recording(e)))?;
                }
                let mut frame = self.shared.frame();
                frame.image =
                    DecodedImage::new(PixelFormat::RgbA32, desktop_size.width, desktop_size.height);
                frame
                    .damage
                    .add_all(desktop_size.width, desktop_size.height);
                drop(frame);
                self.dirty_since_keyframe = true;
                self.activated_at = Instant::now();
                self.drawn_since_activation = false;
                self.shared.damaged.notify_one();
                return Ok(());
            }
        }
        Err(fail(RdpError::Protocol(format!(
            "the reactivation did not finish in {MAX_REACTIVATION_STEPS} steps"
        ))))
    }

    async fn on_input(&mut self, events: Vec<InputEvent>) -> Result<(), SessionEnd> {
        let (width, height) = {
            let frame = self.shared.frame();
            (frame.image.width(), frame.image.height())
        };
        let clamp = |x: u16, y: u16| MousePosition {
            x: x.min(width.saturating_sub(1)),
            y: y.min(height.saturating_sub(1)),
        };
        let mut operations = Vec::with_capacity(events.len() * 2);
        let mut fastpath = Vec::new();
        for event in events {
            match event {
                InputEvent::Key { scancode, down } => {
                    let code = Scancode::from_u16(scancode);
                    operations.push(if down {
                        Operation::KeyPressed(code)
                    } else {
                        Operation::KeyReleased(code)
                    });
                }
                InputEvent::Unicode { ch, down } => operations.push(if down {
                    Operation::UnicodeKeyPressed(ch)
                } else {
                    Operation::UnicodeKeyReleased(ch)
                }),
                InputEvent::MouseMove { x, y } => {
                    operations.push(Operation::MouseMove(clamp(x, y)))
                }
                InputEvent::MouseButton { button, down, x, y } => {
                    operations.push(Operation::MouseMove(clamp(x, y)));
                    if let Some(button) = MouseButton::from_web_button(button) {
                        operations.push(if down {
                            Operation::MouseButtonPressed(button)
                        } else {
                            Operation::MouseButtonReleased(button)
                        });
                    }
                }
                InputEvent::Wheel { vertical, units } => {
                    operations.push(Operation::WheelRotations(WheelRotations {
                        is_vertical: vertical,
                        rotation_units: units,
                    }))
                }
                InputEvent::CtrlAltDel => {
                    let keys = [0x1D, 0x38, 0xE053].map(Scancode::from_u16);
                    operations.extend(keys.iter().map(|k| Operation::KeyPressed(*k)));
                    operations.extend(keys.iter().rev().map(|k| Operation::KeyReleased(*k)));
                }
                InputEvent::ReleaseAll => {
                    fastpath.extend(self.input.apply(std::mem::take(&mut operations)));
                    fastpath.extend(self.input.release_all());
                }
            }
        }
        fastpath.extend(self.input.apply(operations));
        if fastpath.is_empty() {
            return Ok(());
        }
        let outputs = {
            let mut frame = self.shared.frame();
            self.stage
                .process_fastpath_input(&mut frame.image, &fastpath)
                .map_err(|e| SessionEnd::Failed(RdpError::Protocol(e.report().to_string())))?
        };
        for output in outputs {
            if let ActiveStageOutput::ResponseFrame(frame) = output {
                self.write(&frame).await?;
            }
        }
        Ok(())
    }

    /// When a resize may be asked for: [`RESIZE_SETTLE`] after the activation once a picture came, or four
    /// times that for a target that draws nothing.
    fn resize_ready_at(&self) -> Instant {
        let settle = if self.drawn_since_activation {
            RESIZE_SETTLE
        } else {
            RESIZE_SETTLE * 4
        };
        self.activated_at + settle
    }

    /// The user's area changed: remember the size; it is asked for once the desktop has settled.
    async fn on_resize(&mut self, size: DesktopSize) -> Result<(), SessionEnd> {
        self.resize_wanted = Some(size);
        self.try_resize().await
    }

    /// Asks the target for the wanted size, if the desktop has settled since its last activation.
    async fn try_resize(&mut self) -> Result<(), SessionEnd> {
        if Instant::now() < self.resize_ready_at() {
            return Ok(());
        }
        let Some(size) = self.resize_wanted.take() else {
            return Ok(());
        };
        let current = {
            let frame = self.shared.frame();
            (frame.image.width(), frame.image.height())
        };
        if current == (size.width, size.height) {
            return Ok(());
        }
        match self
            .stage
            .encode_resize(u32::from(size.width), u32::from(size.height), None, None)
        {
            Some(Ok(frame)) => self.write(&frame).await,
            Some(Err(error)) => {
                warn!(error = %error.report(), "could not encode a resize");
                Ok(())
            }
            None => {
                debug!("the target has no display control channel; the browser scales");
                Ok(())
            }
        }
    }

    async fn goodbye(&mut self) {
        if let Ok(outputs) = self.stage.graceful_shutdown() {
            for output in outputs {
                if let ActiveStageOutput::ResponseFrame(frame) = output {
                    let _ = tokio::time::timeout(Duration::from_secs(1), self.write(&frame)).await;
                }
            }
        }
    }
}
