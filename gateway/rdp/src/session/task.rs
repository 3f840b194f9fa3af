//! The session task's loop: it owns the connection and the ironrdp stage, decodes every server PDU into
//! the shared framebuffer (after the strict checks and the observer), sends input and resizes, and takes
//! keyframes when the [`Pacer`] says so.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ironrdp_connector::connection_activation::ConnectionActivationFactory;
use ironrdp_input::Database;
use ironrdp_pdu::Action;
use ironrdp_session::{ActiveStage, ActiveStageOutput};
use ironrdp_tokio::{FramedWrite, TokioFramed};
use sallyport_core::display::{DesktopSize, InputEvent, Rect};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::clipboard_channel::ClipboardState;
use super::{Command, Observer, SessionEnd, Shared, copy_rect, to_rect};
use crate::encode::encode_png;
use crate::error::RdpError;
use crate::input::to_fast_path;
use crate::pacer::Pacer;
use crate::strict::Strict;

/// Largest clipboard channel message the gateway reassembles from the target: the cap's worth of UTF-16
/// and headers, whatever length a target declares.
const MAX_CLIPBOARD_PDU: u32 = 8 * 1024 * 1024;

/// The task's state; its fields are the session's, shared with the sibling modules that extend it.
pub(super) struct Task<S> {
    pub(super) framed: TokioFramed<S>,
    pub(super) stage: ActiveStage,
    pub(super) shared: Arc<Shared>,
    pub(super) activation_factory: ConnectionActivationFactory,
    pub(super) observer: Option<Arc<dyn Observer>>,
    /// The keys and buttons the user holds.
    pub(super) input: Database,
    /// Static channels keep their ids across a reactivation.
    pub(super) drdynvc_channel_id: Option<u16>,
    pub(super) strict: Strict,
    pub(super) clipboard: Option<ClipboardState>,
    /// When to keyframe and when a wanted resize may go out.
    pub(super) pacer: Pacer,
}

impl<S> Task<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + Sync + 'static,
{
    pub(super) async fn run(mut self, mut commands: mpsc::Receiver<Command>) -> SessionEnd {
        loop {
            // A disabled branch's sleep is built but never polled, so its instant does not matter.
            let now = Instant::now();
            let keyframe_due = self
                .pacer
                .keyframe_due_at()
                .filter(|_| self.observer.is_some());
            let resize_due = self.pacer.resize_due_at();
            let sleep = |due: Option<Instant>| tokio::time::sleep_until(due.unwrap_or(now).into());
            let step = tokio::select! {
                () = sleep(keyframe_due), if keyframe_due.is_some() => self.maybe_keyframe(),
                () = sleep(resize_due), if resize_due.is_some() => self.try_resize().await,
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

    pub(super) async fn write(&mut self, frame: &[u8]) -> Result<(), SessionEnd> {
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
            let (width, height) = self.shared.size();
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
            self.pacer.drawn();
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

    fn maybe_keyframe(&mut self) -> Result<(), SessionEnd> {
        let Some(observer) = &self.observer else {
            return Ok(());
        };
        if !self.pacer.keyframe_due(Instant::now()) {
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
        self.pacer.keyframe_taken(Instant::now());
        Ok(())
    }

    async fn on_input(&mut self, events: Vec<InputEvent>) -> Result<(), SessionEnd> {
        let (width, height) = self.shared.size();
        let fastpath = to_fast_path(&mut self.input, events, width, height);
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

    /// The user's area changed: remember the size; it is asked for once the desktop has settled.
    async fn on_resize(&mut self, size: DesktopSize) -> Result<(), SessionEnd> {
        self.pacer.want_resize(size);
        self.try_resize().await
    }

    /// Asks the target for the wanted size, if the desktop has settled since its last activation.
    async fn try_resize(&mut self) -> Result<(), SessionEnd> {
        let Some(size) = self.pacer.take_resize(Instant::now()) else {
            return Ok(());
        };
        let current = self.shared.size();
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
