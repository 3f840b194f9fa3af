//! Clipboard text between the user and the target over the CLIPRDR static channel (ironrdp-cliprdr): the
//! gateway acts as the client's clipboard. Text only (`CF_UNICODETEXT`): the gateway never offers or
//! fetches files, pictures or any other format, so nothing but text can cross, and only the ways the
//! [`ClipboardPolicy`] allows.
//!
//! ironrdp calls the backend from inside `ActiveStage::process`, where the session cannot answer; the
//! backend only queues what happened ([`Pending`]) and the session task acts on the queue right after
//! (see `session.rs`), so every answer goes out through the same writer as everything else.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use ironrdp_cliprdr::backend::CliprdrBackend;
use ironrdp_cliprdr::pdu::{
    ClipboardFormat, ClipboardFormatId, ClipboardGeneralCapabilityFlags, FileContentsRequest,
    FileContentsResponse, FormatDataRequest, FormatDataResponse, LockDataId,
    OwnedFormatDataResponse,
};
use sallyport_core::display::ClipboardPolicy;

/// Most clipboard events queued between two PDUs; a target flooding format lists loses the oldest.
const MAX_PENDING: usize = 16;

/// What the clipboard channel asked of the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Pending {
    /// The channel is initialized and wants the client's format list.
    FormatListWanted,
    /// The target's clipboard changed; `has_text` when it offers text.
    RemoteCopy { has_text: bool },
    /// The target pastes and wants the user's text in this format.
    DataWanted(ClipboardFormatId),
    /// The target's text arrived (`None` when it failed or was not text).
    Data(Option<String>),
}

/// The queue the backend fills and the session drains.
#[derive(Debug, Clone, Default)]
pub(crate) struct Queue(Arc<Mutex<VecDeque<Pending>>>);

impl Queue {
    fn push(&self, event: Pending) {
        let mut queue = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if queue.len() >= MAX_PENDING {
            queue.pop_front();
        }
        queue.push_back(event);
    }

    /// Everything queued since the last call.
    pub(crate) fn drain(&self) -> Vec<Pending> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
            .collect()
    }
}

/// The ironrdp backend: queues, never blocks, never touches the network.
#[derive(Debug)]
pub(crate) struct Backend {
    queue: Queue,
    max_bytes: usize,
}

impl Backend {
    pub(crate) fn new(queue: Queue, policy: ClipboardPolicy) -> Backend {
        Backend {
            queue,
            max_bytes: policy.cap(),
        }
    }
}

ironrdp_core::impl_as_any!(Backend);

/// The one format the gateway offers.
pub(crate) fn text_formats() -> Vec<ClipboardFormat> {
    vec![ClipboardFormat::new(ClipboardFormatId::CF_UNICODETEXT)]
}

/// The user's text as the target asked for it: UTF-16 text, or a failure for any other format.
pub(crate) fn text_response(
    format: ClipboardFormatId,
    text: Option<&str>,
) -> OwnedFormatDataResponse {
    match text {
        Some(text) if format == ClipboardFormatId::CF_UNICODETEXT => {
            OwnedFormatDataResponse::new_unicode_string(text)
        }
        _ => OwnedFormatDataResponse::new_error(),
    }
}

impl CliprdrBackend for Backend {
    fn temporary_directory(&self) -> &str {
        // Files never cross; the channel still sends a directory name in its initialization.
        ".cliprdr"
    }

    fn client_capabilities(&self) -> ClipboardGeneralCapabilityFlags {
        // Long format names only: no file streams, no clipboard locking.
        ClipboardGeneralCapabilityFlags::USE_LONG_FORMAT_NAMES
    }

    fn on_ready(&mut self) {}

    fn on_request_format_list(&mut self) {
        self.queue.push(Pending::FormatListWanted);
    }

    fn on_process_negotiated_capabilities(&mut self, _: ClipboardGeneralCapabilityFlags) {}

    fn on_remote_copy(&mut self, available_formats: &[ClipboardFormat]) {
        let has_text = available_formats
            .iter()
            .any(|f| f.id == ClipboardFormatId::CF_UNICODETEXT);
        self.queue.push(Pending::RemoteCopy { has_text });
    }

    fn on_format_data_request(&mut self, request: FormatDataRequest) {
        self.queue.push(Pending::DataWanted(request.format));
    }

    fn on_format_data_response(&mut self, response: FormatDataResponse<'_>) {
        // UTF-16 is at least two bytes per UTF-8 byte's worth of text; anything far over the cap is
        // dropped before it is decoded.
        let text = if response.is_error() || response.data().len() > self.max_bytes * 4 + 2 {
            None
        } else {
            response.to_unicode_string().ok()
        };
        self.queue.push(Pending::Data(text));
    }

    fn on_file_contents_request(&mut self, _: FileContentsRequest) {
        // Never offered; the channel answers a failure itself.
    }

    fn on_file_contents_response(&mut self, _: FileContentsResponse<'_>) {}

    fn on_lock(&mut self, _: LockDataId) {}

    fn on_unlock(&mut self, _: LockDataId) {}
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn only_unicode_text_is_answered() {
        let ok = text_response(ClipboardFormatId::CF_UNICODETEXT, Some("héllo"));
        assert!(!ok.is_error());
        assert_eq!(ok.to_unicode_string().unwrap(), "héllo");
        assert!(text_response(ClipboardFormatId::CF_TEXT, Some("x")).is_error());
        assert!(text_response(ClipboardFormatId::CF_UNICODETEXT, None).is_error());
    }

    #[test]
    fn the_queue_is_bounded() {
        let queue = Queue::default();
        for _ in 0..100 {
            queue.push(Pending::FormatListWanted);
        }
        queue.push(Pending::Data(None));
        let drained = queue.drain();
        assert_eq!(drained.len(), MAX_PENDING);
        assert_eq!(drained.last(), Some(&Pending::Data(None)));
        assert!(queue.drain().is_empty());
    }
}
