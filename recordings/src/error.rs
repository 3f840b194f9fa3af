//! The crate's error types: one enum for everything that can fail, and the result of a non-blocking record.

use crate::event::Event;

/// Everything that can go wrong while writing or reading recordings. Every failure is internal to the gateway
/// (its database, its disk, its writer thread); no peer input reaches these paths except through the recorded bytes,
/// which are stored opaquely.
#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    /// SQLite refused an operation (including a full disk or the configured page cap).
    #[error("recordings database error")]
    Database(#[from] rusqlite::Error),
    /// The database was written by a newer Sallyport.
    #[error(
        "recordings database schema version {found} is newer than this build supports ({supported})"
    )]
    SchemaTooNew {
        /// The database's `user_version`.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
    /// A read-only open found a database that still needs migrations (or is not a recordings database at all).
    #[error(
        "recordings database schema version {found} needs migration to {supported}; open it read-write first"
    )]
    SchemaTooOld {
        /// The database's `user_version`.
        found: i64,
        /// The version this build needs.
        supported: i64,
    },
    /// zstd failed to compress a chunk.
    #[error("chunk compression failed: {0}")]
    Compression(String),
    /// Stored data does not decode: a chunk, an event or a session field is malformed.
    #[error("corrupt recording: {0}")]
    Corrupt(String),
    /// The writer could not store this session's data; the session must end (fail closed).
    #[error("recording failed, the session cannot continue: {0}")]
    WriteFailed(String),
    /// The writer thread has stopped (the recorder was shut down).
    #[error("the recorder has stopped")]
    Stopped,
    /// The writer thread could not be started.
    #[error("could not start the recorder thread")]
    Thread(#[source] std::io::Error),
    /// The writer thread panicked.
    #[error("the recorder thread panicked")]
    ThreadPanicked,
    /// No session with this id.
    #[error("no recorded session {0}")]
    NoSuchSession(String),
    /// The operating system's random number generator failed.
    #[error("system randomness unavailable: {0}")]
    Random(String),
}

/// Why [`SessionRecorder::try_record`](crate::SessionRecorder::try_record) did not take an event.
#[derive(Debug, thiserror::Error)]
pub enum TryRecordError {
    /// The writer's queue is full; here is the event back. Retry later or block with `record`.
    #[error("the recorder's queue is full")]
    Full(Event),
    /// Recording has failed; the session must end.
    #[error(transparent)]
    Failed(RecordingError),
}
