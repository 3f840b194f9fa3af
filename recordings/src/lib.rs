//! Sallyport's session recordings: the on-disk format, the SQLite store, the background writer, the reader, and the
//! hash chain and Ed25519 seal that make recordings tamper-evident. This crate is synchronous: it never uses tokio
//! or async, and it never touches the network; its only I/O is one SQLite database file.
//!
//! # Writing
//!
//! The gateway starts one [`Recorder`] (a background thread owning the one writing connection) after calling
//! [`Store::recover_unfinished`] to seal sessions a crash left open. Each session gets a [`SessionRecorder`] from
//! [`Recorder::open_session`], which fails closed: if the row cannot be written, the session must be refused.
//! [`SessionRecorder::record`] stamps each [`Event`] and queues it (blocking when the queue is full); once a write
//! fails, it returns errors and the session must end. [`SessionRecorder::finish`] writes the end and the seal.
//!
//! # Format
//!
//! A session is a row in `sessions` and a sequence of rows in `chunks` (seq 0, 1, 2, ...). A chunk holds at most
//! `chunk_max_bytes` of encoded events or `chunk_max_age` of time, as one zstd frame that may use the session's
//! previous 32 KiB of raw bytes as a dictionary (see `codec.rs`); events are compact binary records (see
//! `event.rs`). Each chunk's SHA-256 is chained to the one before it, starting from a digest of the session row's
//! identity; the seal signs the final hash with the end time, outcome and chunk count (see `chain.rs`).
//!
//! # Reading
//!
//! [`Store`] lists sessions, decodes their events and [verifies](Store::verify) them, read-only or read-write.
//!
//! # Reviewing
//!
//! [`SearchIndex`] is a full-text index (SQLite FTS5) of the recorded terminal text, kept in its own file and
//! updated incrementally by the reader; [`find_moments`] finds where a text occurs in a session's events.
//! [`Store::export_evidence`] writes one session as a self-contained evidence file that [`check_evidence`] verifies
//! offline.
//!
//! # Remote review
//!
//! [`remote`] holds the messages of the gateway's read-only review API and the reviewer's [`remote::Mirror`]: the
//! stored chunks and seal travel as they are, and the reviewer verifies its copy itself.

mod chain;
mod codec;
mod echo;
mod error;
mod event;
mod evidence;
pub mod ledger;
mod recorder;
pub mod remote;
mod schema;
mod search;
mod session;
mod store;
mod stored;
#[cfg(feature = "danger-tamper")]
mod tamper;
pub mod text;
mod verify;
mod writer;

pub use error::{RecordingError, TryRecordError};
pub use event::{
    DesktopEvent, Event, FileTransfer, TimedEvent, TransferDirection, TransferProtocol,
};
pub use evidence::{EvidenceCheck, check_evidence};
pub use ledger::{
    Checkpoint, Finding, LedgerReport, LedgerState, ProofCheck, RecoveredSession, Recovery,
};
pub use recorder::{EventSink, Limits, Recorder, RecorderHealth, RecorderStats, SessionRecorder};
pub use search::{
    IndexProgress, Moment, OVERLAP, SearchIndex, SessionHits, find_moments, searchable,
};
pub use session::{Outcome, SessionId, SessionMeta, SessionRow};
pub use store::{DecodedChunk, Store};
#[cfg(feature = "danger-tamper")]
pub use tamper::danger_flip_chunk_byte;
pub use verify::{DatabaseVerification, Verification};
pub use writer::Anchor;
