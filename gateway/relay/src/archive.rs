//! Read-only access to the stored recordings, for the portal's review API (`sallyport-review --gateway`):
//! the session list, a session's stored chunks and seal, and the ledger's entries, as they are, never decoded
//! or judged here (the reviewer verifies them itself against the recording key).
//!
//! Each call opens its own read-only connection on a blocking thread, so the recorder's writer is never
//! blocked (SQLite WAL) and no request waits on another.

use std::path::PathBuf;

use sallyport_recordings::remote::{
    LEDGER_PART_MAX_ENTRIES, LedgerPart, PART_MAX_BYTES, SessionPart,
};
use sallyport_recordings::{RecordingError, SessionRow, Store};

pub use sallyport_recordings::remote;

/// Why the archive could not answer.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// No session with that id.
    #[error("no recorded session {0}")]
    NoSuchSession(String),
    /// The recordings database failed (internal).
    #[error("the recordings could not be read: {0}")]
    Internal(String),
}

impl From<RecordingError> for ArchiveError {
    fn from(e: RecordingError) -> Self {
        match e {
            RecordingError::NoSuchSession(id) => ArchiveError::NoSuchSession(id),
            other => ArchiveError::Internal(other.to_string()),
        }
    }
}

/// The recordings database, read-only, with the public key its seals are made with.
#[derive(Debug, Clone)]
pub struct Archive {
    path: PathBuf,
    public_key: [u8; 32],
}

impl Archive {
    /// The archive of the recordings database at `path`, sealed with the key whose public half is given.
    pub fn new(path: PathBuf, public_key: [u8; 32]) -> Archive {
        Archive { path, public_key }
    }

    /// The recording public key (Ed25519).
    pub fn public_key(&self) -> [u8; 32] {
        self.public_key
    }

    async fn with_store<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, RecordingError> + Send + 'static,
    ) -> Result<T, ArchiveError> {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let store = Store::open_read_only(&path)?;
            f(&store)
        })
        .await
        .map_err(|e| ArchiveError::Internal(format!("the reading task failed: {e}")))?
        .map_err(ArchiveError::from)
    }

    /// Every session, newest first.
    pub async fn sessions(&self) -> Result<Vec<SessionRow>, ArchiveError> {
        self.with_store(|store| store.sessions()).await
    }

    /// A session's row, seal and stored chunks from `from_seq` on (at most
    /// [`PART_MAX_BYTES`](sallyport_recordings::remote::PART_MAX_BYTES) of chunk data).
    pub async fn part(&self, id: &str, from_seq: u64) -> Result<SessionPart, ArchiveError> {
        let id = id.to_owned();
        self.with_store(move |store| store.session_part(&id, from_seq, PART_MAX_BYTES))
            .await
    }

    /// The ledger's stored entries from `from_seq` on (at most
    /// [`LEDGER_PART_MAX_ENTRIES`](sallyport_recordings::remote::LEDGER_PART_MAX_ENTRIES) of them and
    /// [`PART_MAX_BYTES`](sallyport_recordings::remote::PART_MAX_BYTES) of stored bytes).
    pub async fn ledger(&self, from_seq: u64) -> Result<LedgerPart, ArchiveError> {
        self.with_store(move |store| {
            store.ledger_part(from_seq, LEDGER_PART_MAX_ENTRIES, PART_MAX_BYTES)
        })
        .await
    }
}
