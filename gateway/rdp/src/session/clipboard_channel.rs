//! The clipboard channel's side of the session task: what the channel asked for after a PDU (format
//! lists, data requests, the target's text for the user) and the user's text offered to the target,
//! both within the session's clipboard policy.

use ironrdp_cliprdr::CliprdrClient;
use sallyport_core::display::ClipboardPolicy;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tracing::debug;

use super::task::Task;
use super::{SessionEnd, SessionEvent};
use crate::clipboard::{self, Pending, Queue};
use crate::error::RdpError;

/// The clipboard channel's side of the task.
pub(super) struct ClipboardState {
    pub(super) channel_id: u16,
    pub(super) queue: Queue,
    pub(super) policy: ClipboardPolicy,
    /// The user's latest text, offered to the target.
    pub(super) local_text: Option<String>,
    pub(super) events: mpsc::Sender<SessionEvent>,
}

impl<S> Task<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + Sync + 'static,
{
    /// Acts on what the clipboard channel asked for while the last PDU was processed.
    pub(super) async fn clipboard_step(&mut self) -> Result<(), SessionEnd> {
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
            self.send_clipboard_messages(messages).await?;
        }
        Ok(())
    }

    /// The user's clipboard changed: remember the text and tell the target text is available.
    pub(super) async fn on_local_clipboard(&mut self, text: String) -> Result<(), SessionEnd> {
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
            Ok(messages) => self.send_clipboard_messages(messages).await,
            Err(error) => {
                debug!(error = %error, "clipboard format list not sent");
                Ok(())
            }
        }
    }

    /// Frames the clipboard channel's messages and sends them to the target.
    async fn send_clipboard_messages(
        &mut self,
        messages: ironrdp_cliprdr::CliprdrSvcMessages<ironrdp_cliprdr::Client>,
    ) -> Result<(), SessionEnd> {
        let frame = self
            .stage
            .process_svc_processor_messages(messages)
            .map_err(|e| SessionEnd::Failed(RdpError::Protocol(e.report().to_string())))?;
        self.write(&frame).await
    }
}
