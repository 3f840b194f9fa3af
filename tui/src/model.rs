//! The messages between the UI and the background loader, and the integrity state of a session.

use std::path::PathBuf;
use std::time::Duration;

use sallyport_recordings::{
    Finding, IndexProgress, LedgerState, SessionHits, SessionRow, TimedEvent, Verification,
};

/// What the reviewer knows about a session's integrity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Integrity {
    /// Not checked yet.
    Pending,
    /// Chain whole and seal valid.
    Intact,
    /// Chain whole so far, no seal (the session is live, or a crash was not recovered yet).
    Unsealed,
    /// Chain whole and sealed by crash recovery: the ledger says how much of its end no checkpoint covered.
    Recovered {
        /// What the ledger says, in words.
        detail: String,
    },
    /// Chain whole and seal valid, recorded before the ledger existed (no ledger vouches for it).
    BeforeLedger,
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

    /// The verdict on a session: its own chain and seal, what the ledger says of it, and the findings about it.
    pub fn judge(
        v: &Verification,
        ledger: Option<&LedgerState>,
        findings: &[&Finding],
    ) -> Integrity {
        if let Some(first) = findings.first() {
            let short = match (first.chunk, first.entry) {
                (Some(chunk), _) => format!("chunk {chunk}"),
                _ => "ledger".to_owned(),
            };
            let detail = findings
                .iter()
                .map(|f| f.to_string())
                .collect::<Vec<_>>()
                .join("; ");
            return Integrity::Failed { short, detail };
        }
        match (Integrity::from_verification(v), ledger) {
            (Integrity::Intact, Some(state @ LedgerState::Recovered { .. })) => {
                Integrity::Recovered {
                    detail: state.to_string(),
                }
            }
            (Integrity::Intact, Some(LedgerState::BeforeLedger { .. })) => Integrity::BeforeLedger,
            (
                Integrity::Unsealed,
                Some(LedgerState::Live { .. } | LedgerState::BeforeLedger { sealed: false }) | None,
            ) => Integrity::Unsealed,
            (Integrity::Unsealed, Some(state)) => Integrity::Failed {
                short: "seal".into(),
                detail: format!("the session has no seal, but the ledger says it is {state}"),
            },
            (other, _) => other,
        }
    }

    /// Whether the verdict is a failure (for exit codes).
    pub fn failed(&self) -> bool {
        matches!(self, Integrity::Failed { .. } | Integrity::Error(_))
    }

    /// The word shown in the list.
    pub fn label(&self) -> String {
        match self {
            Integrity::Pending => "…".into(),
            Integrity::Intact => "ok".into(),
            Integrity::Unsealed => "unsealed".into(),
            Integrity::Recovered { .. } => "recovered".into(),
            Integrity::BeforeLedger => "ok (pre-ledger)".into(),
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
