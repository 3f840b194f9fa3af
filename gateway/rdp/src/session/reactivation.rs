//! The deactivation-reactivation sequence inside a running session: the target re-runs the capability
//! exchange (a resize, a reconnect on its side); the framebuffer starts afresh at the new size.

use std::time::{Duration, Instant};

use ironrdp_connector::Sequence as _;
use ironrdp_connector::connection_activation::ConnectionActivationState;
use ironrdp_core::WriteBuf;
use ironrdp_graphics::image_processing::PixelFormat;
use ironrdp_session::image::DecodedImage;
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::debug;

use super::task::Task;
use super::{Activation, SessionEnd, check_size};
use crate::connect::connector_error;
use crate::error::RdpError;

/// Most steps a deactivation-reactivation sequence may take before it counts as a protocol violation.
const MAX_REACTIVATION_STEPS: usize = 64;
/// How long a reactivation may take.
const REACTIVATION_TIMEOUT: Duration = Duration::from_secs(20);

impl<S> Task<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + Sync + 'static,
{
    pub(super) async fn reactivate(&mut self) -> Result<(), SessionEnd> {
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
                self.pacer.reactivated(Instant::now());
                self.shared.damaged.notify_one();
                return Ok(());
            }
        }
        Err(fail(RdpError::Protocol(format!(
            "the reactivation did not finish in {MAX_REACTIVATION_STEPS} steps"
        ))))
    }
}
