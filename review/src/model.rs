//! The messages between the UI and the background loader, and the integrity state of a session.

use std::path::PathBuf;
use std::time::Duration;

use sallyport_recordings::{IndexProgress, SessionHits, SessionRow, TimedEvent, Verification};

/// What the reviewer knows about a session's integrity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Integrity {
    /// Not checked yet.
    Pending,
    /// Chain whole and seal valid.
    Intact,
    /// Chain whole so far, no seal (the session is live, or a crash was not recovered yet).
    Unsealed,
    /// The chain or seal is broken.
    Failed {
        /// A few words for the list ("chunk 2", "seal").
        short: String,
        /// The whole finding.
        detail: String,
    },
    /// No public key to check seals against (see `--key`).
    NoKey,
    /// The check itself failed (database error).
    Error(String),
}

impl Integrity {
    /// The integrity state for a verification result.
    pub fn from_verification(v: &Verification) -> Integrity {
        match v {
            Verification::Intact { .. } => Integrity::Intact,
            Verification::Unsealed { .. } => Integrity::Unsealed,
            Verification::BadChunk { seq, reason } => Integrity::Failed {
                short: format!("chunk {seq}"),
                detail: format!("chunk {seq} is bad: {reason}"),
            },
            Verification::MissingChunk { seq } => Integrity::Failed {
                short: format!("chunk {seq}"),
                detail: format!("chunk {seq} is missing"),
            },
            Verification::BadSeal { reason } => Integrity::Failed {
                short: "seal".into(),
                detail: format!("the seal is bad: {reason}"),
            },
        }
    }

    /// The word shown in the list.
    pub fn label(&self) -> String {
        match self {
            Integrity::Pending => "…".into(),
            Integrity::Intact => "ok".into(),
            Integrity::Unsealed => "unsealed".into(),
            Integrity::Failed { short, .. } => format!("FAILED {short}"),
            Integrity::NoKey => "no key".into(),
            Integrity::Error(_) => "error".into(),
        }
    }
}

/// What the UI asks the loader for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// List sessions again, index and verify what changed.
    Refresh,
    /// Search the index.
    Search(String),
    /// Load a session's events for the player.
    Open {
        /// The session.
        id: String,
        /// The search whose moments the player should offer, if any.
        query: Option<String>,
    },
    /// Write a session as an asciicast v2 file in the current directory.
    ExportAsciicast(String),
    /// Write a session as an evidence file in the current directory.
    ExportEvidence(String),
    /// Write the desktop keyframe shown at a moment as a PNG in the current directory.
    ExportFrame {
        /// The session.
        id: String,
        /// The moment (the keyframe at or before it is written).
        at_ms: u64,
    },
}

/// What the loader tells the UI.
#[derive(Debug)]
pub enum Loaded {
    /// The sessions, newest first.
    Sessions(Vec<SessionRow>),
    /// One session's integrity.
    Integrity(String, Integrity),
    /// The search index was brought up to date.
    Indexed(IndexProgress),
    /// Search results.
    Results {
        /// The searched text.
        query: String,
        /// Sessions with hits.
        hits: Vec<SessionHits>,
        /// How long the search took.
        elapsed: Duration,
    },
    /// A session's events.
    Session {
        /// The session.
        id: String,
        /// Its events, or why they could not be read.
        events: Result<Vec<TimedEvent>, String>,
        /// The search to offer moments of.
        query: Option<String>,
    },
    /// A file was written.
    Exported(PathBuf),
    /// Something failed; shown on the status line.
    Error(String),
}
