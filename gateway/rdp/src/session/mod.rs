//! A connected RDP session: one task owns the connection and the ironrdp `ActiveStage`, decodes every
//! server PDU into the gateway's framebuffer and accumulates the damage; the handle ([`RdpSession`]) sends
//! input and resizes to that task and takes display updates out of the framebuffer when its viewer is ready
//! for one, so a slow viewer gets fewer, fresher frames and memory stays bounded (one framebuffer, at most
//! [`MAX_RECTS`](sallyport_core::display::MAX_RECTS) damaged rectangles).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ironrdp_cliprdr::CliprdrClient;
use ironrdp_connector::ConnectionResult;
use ironrdp_dvc::DrdynvcClient;
use ironrdp_graphics::image_processing::PixelFormat;
use ironrdp_input::Database;
use ironrdp_pdu::geometry::{InclusiveRectangle, Rectangle as _};
use ironrdp_session::ActiveStageBuilder;
use ironrdp_session::image::DecodedImage;
use ironrdp_tokio::TokioFramed;
use sallyport_core::display::{
    ClipboardPolicy, Damage, DesktopSize, InputEvent, Rect, UpdateWriter,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Notify, mpsc, watch};
use tracing::debug;

use crate::clipboard::Queue;
use crate::encode::{EncodeError, encode_rect};
use crate::error::RdpError;
use crate::pacer::Pacer;
use crate::strict::Strict;
use clipboard_channel::ClipboardState;
use task::Task;

/// Most pixels a target may make the gateway hold for one desktop (64 MiB of RGBA, e.g. two 4K screens).
pub const MAX_PIXELS: u32 = 16 * 1024 * 1024;

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

/// Most clipboard events waiting for the handle; more are dropped (the newest copy wins next time).
const CLIPBOARD_EVENTS: usize = 4;

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

    /// The framebuffer's current size.
    fn size(&self) -> (u16, u16) {
        let frame = self.frame();
        (frame.image.width(), frame.image.height())
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
            drdynvc_channel_id,
            strict: Strict::default(),
            pacer: Pacer::new(Instant::now(), keyframe_interval),
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
        self.shared.size()
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

mod clipboard_channel;
mod reactivation;
mod task;
