//! The relay's [`DesktopConnector`] over this crate: how the broker opens RDP desktops, and how a
//! session's server PDUs and keyframes reach its recording.

use std::time::Duration;

use sallyport_core::display::{DesktopSize, InputEvent};
use sallyport_core::errors::ErrorKind;
use sallyport_core::frames::Credential;
use sallyport_recordings::{Event, TryRecordError};
use sallyport_relay::{
    BoxFuture, DesktopChannel, DesktopConnect, DesktopConnector, DesktopEvent, DesktopOpened,
    DesktopTargetEvent, EventSink, TargetError,
};

use crate::session::{Activation, Observer, RdpSession, SessionEnd, SessionEvent};
use crate::{ConnectRequest, RdpError, connect};

/// Keyframes larger than this are not recorded (a chunk holds at most 8 MiB of raw events); seeking then
/// starts from the previous one.
pub const MAX_KEYFRAME: usize = 4 * 1024 * 1024;

/// Opens RDP desktops for the broker.
#[derive(Debug, Clone)]
pub struct RdpConnector {
    /// How often a session records a keyframe of its framebuffer (when something changed).
    pub keyframe_interval: Duration,
}

impl Default for RdpConnector {
    fn default() -> Self {
        RdpConnector {
            keyframe_interval: Duration::from_secs(10),
        }
    }
}

/// Maps an RDP failure to what the user is told, keeping the detail for logs.
fn target_error(error: &RdpError) -> TargetError {
    let kind = match error {
        RdpError::Unreachable(_) | RdpError::Closed(_) => ErrorKind::TargetUnreachable,
        RdpError::Timeout(_) => ErrorKind::TargetTimeout,
        RdpError::KeyChanged(_) => ErrorKind::HostKeyChanged,
        RdpError::AuthFailed(_) => ErrorKind::TargetAuthFailed,
        RdpError::StandardSecurity
        | RdpError::Tls(_)
        | RdpError::Protocol(_)
        | RdpError::Limit(_) => ErrorKind::TargetProtocol,
        RdpError::Recording(_) => ErrorKind::RecordingUnavailable,
    };
    TargetError {
        kind,
        detail: error.to_string(),
    }
}

/// Records a session's server side into its recording, fail closed.
struct RecordingObserver {
    sink: EventSink,
}

impl RecordingObserver {
    fn record(&self, event: DesktopEvent) -> Result<(), String> {
        match self.sink.try_record(Event::Desktop(event)) {
            Ok(()) => Ok(()),
            // A full queue (slow disk) slows the session rather than growing memory.
            Err(TryRecordError::Full(event)) => {
                let multi_thread = tokio::runtime::Handle::try_current().is_ok_and(|h| {
                    h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread
                });
                if multi_thread {
                    tokio::task::block_in_place(|| self.sink.record(event))
                } else {
                    self.sink.record(event)
                }
                .map_err(|e| e.to_string())
            }
            Err(TryRecordError::Failed(error)) => Err(error.to_string()),
        }
    }
}

impl Observer for RecordingObserver {
    fn activated(&self, a: &Activation) -> Result<(), String> {
        self.record(DesktopEvent::Activation {
            width: a.width,
            height: a.height,
            io_channel_id: a.io_channel_id,
            user_channel_id: a.user_channel_id,
            share_id: a.share_id,
            drdynvc_channel_id: a.drdynvc_channel_id,
        })
    }

    fn server_pdu(&self, fast_path: bool, pdu: &[u8]) -> Result<(), String> {
        self.record(DesktopEvent::ServerPdu {
            fast_path,
            data: pdu.to_vec(),
        })
    }

    fn keyframe(&self, width: u16, height: u16, png: &[u8]) -> Result<(), String> {
        if png.len() > MAX_KEYFRAME {
            tracing::debug!(bytes = png.len(), "keyframe too large to record, skipped");
            return Ok(());
        }
        self.record(DesktopEvent::Keyframe {
            width,
            height,
            png: png.to_vec(),
        })
    }
}

impl DesktopConnector for RdpConnector {
    fn connect(
        &self,
        request: DesktopConnect,
    ) -> BoxFuture<'_, Result<DesktopOpened, TargetError>> {
        Box::pin(async move {
            let password = match request.credential {
                Credential::Password(password) => password,
                Credential::PrivateKey { .. } => {
                    return Err(TargetError {
                        kind: ErrorKind::BadRequest,
                        detail: "RDP targets take a password, not a private key".into(),
                    });
                }
            };
            let connected = connect(ConnectRequest {
                addr: request.addr,
                username: request.username,
                password,
                domain: request.domain,
                pinned_key: request.pinned_key,
                size: request.size,
                timeout: request.timeout,
                observer: Some(std::sync::Arc::new(RecordingObserver {
                    sink: request.recording,
                })),
                keyframe_interval: self.keyframe_interval,
                clipboard: request.clipboard,
            })
            .await
            .map_err(|e| target_error(&e))?;
            Ok(DesktopOpened {
                key: connected.key.to_pin(),
                key_fingerprint: connected.key.fingerprint(),
                channel: Box::new(RdpChannel {
                    session: Some(connected.session),
                }),
            })
        })
    }
}

/// An RDP session as the relay's [`DesktopChannel`].
struct RdpChannel {
    session: Option<RdpSession>,
}

fn gone() -> TargetError {
    target_error(&RdpError::Closed(String::new()))
}

impl DesktopChannel for RdpChannel {
    fn next_event(&mut self) -> BoxFuture<'_, DesktopTargetEvent> {
        Box::pin(async move {
            let Some(session) = self.session.as_mut() else {
                return DesktopTargetEvent::Failed(gone());
            };
            match session.next_event().await {
                SessionEvent::Damaged => DesktopTargetEvent::Damaged,
                SessionEvent::Clipboard(text) => DesktopTargetEvent::Clipboard(text),
                SessionEvent::ClipboardRefused(why) => DesktopTargetEvent::ClipboardRefused(why),
                SessionEvent::Ended(SessionEnd::Closed(reason)) => {
                    DesktopTargetEvent::Closed(reason)
                }
                SessionEvent::Ended(SessionEnd::Failed(error)) => {
                    tracing::warn!(error = %error, "rdp session failed");
                    DesktopTargetEvent::Failed(target_error(&error))
                }
            }
        })
    }

    fn take_update(&mut self, full: bool) -> Result<Option<Vec<u8>>, TargetError> {
        let session = self.session.as_ref().ok_or_else(gone)?;
        session.take_update(full).map_err(|e| TargetError {
            kind: ErrorKind::Internal,
            detail: format!("encoding a display update: {e}"),
        })
    }

    fn input(&mut self, events: Vec<InputEvent>) -> BoxFuture<'_, Result<(), TargetError>> {
        Box::pin(async move {
            let session = self.session.as_ref().ok_or_else(gone)?;
            session.input(events).await.map_err(|e| target_error(&e))
        })
    }

    fn resize(&mut self, size: DesktopSize) -> BoxFuture<'_, Result<(), TargetError>> {
        Box::pin(async move {
            let session = self.session.as_ref().ok_or_else(gone)?;
            session.resize(size).await.map_err(|e| target_error(&e))
        })
    }

    fn set_clipboard(&mut self, text: String) -> BoxFuture<'_, Result<(), TargetError>> {
        Box::pin(async move {
            let session = self.session.as_ref().ok_or_else(gone)?;
            session
                .set_clipboard(text)
                .await
                .map_err(|e| target_error(&e))
        })
    }

    fn bytes_received(&self) -> u64 {
        self.session.as_ref().map_or(0, RdpSession::bytes_received)
    }

    fn close(mut self: Box<Self>) -> BoxFuture<'static, ()> {
        let session = self.session.take();
        Box::pin(async move {
            if let Some(session) = session {
                session.close().await;
            }
        })
    }
}
