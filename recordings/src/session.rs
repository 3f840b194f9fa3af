//! Session-level types: what the caller says about a new session, how it ended, and the stored session row.

use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use serde::{Deserialize, Serialize};

use crate::error::RecordingError;

/// A session's id: 32 lowercase hex characters (128 random bits), made by
/// [`Recorder::open_session`](crate::Recorder::open_session).
pub type SessionId = String;

/// What the gateway knows about a session when it opens. These fields are fixed for the session's life and covered
/// by the start of its hash chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionMeta {
    /// The Sallyport user.
    pub user: String,
    /// The target's configured name.
    pub target: String,
    /// The address actually connected to (after resolution), e.g. `10.0.0.5:22`.
    pub target_addr: String,
    /// The protocol, e.g. `ssh`.
    pub protocol: String,
    /// The user's address as the gateway saw it.
    pub client_addr: String,
}

/// How a session ended. Stored as lowercase text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The session ended normally (either side closed it).
    Ended,
    /// An administrator or policy terminated the session.
    Terminated,
    /// The recording stopped without a proper end: the gateway crashed, shut down, or dropped the session's recorder
    /// without finishing it.
    Incomplete,
    /// The recorder could not write part of the session; data after the last stored chunk is missing.
    Failed,
}

impl Outcome {
    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ended => "ended",
            Outcome::Terminated => "terminated",
            Outcome::Incomplete => "incomplete",
            Outcome::Failed => "failed",
        }
    }

    /// Parses the stored text.
    pub fn parse(text: &str) -> Option<Outcome> {
        match text {
            "ended" => Some(Outcome::Ended),
            "terminated" => Some(Outcome::Terminated),
            "incomplete" => Some(Outcome::Incomplete),
            "failed" => Some(Outcome::Failed),
            _ => None,
        }
    }
}

impl ToSql for Outcome {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for Outcome {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let text = value.as_str()?;
        Outcome::parse(text)
            .ok_or_else(|| FromSqlError::Other(format!("unknown outcome {text:?}").into()))
    }
}

/// A stored session, as listed by [`Store::sessions`](crate::Store::sessions).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRow {
    /// The session's id.
    pub id: SessionId,
    /// The Sallyport user.
    pub user: String,
    /// The target's configured name.
    pub target: String,
    /// The address connected to.
    pub target_addr: String,
    /// The protocol.
    pub protocol: String,
    /// The user's address.
    pub client_addr: String,
    /// When the session started, in Unix milliseconds.
    pub started_at_ms: u64,
    /// When it ended, in Unix milliseconds; `None` while it runs (or after a crash, until recovery).
    pub ended_at_ms: Option<u64>,
    /// How it ended; `None` while it runs.
    pub outcome: Option<Outcome>,
    /// How many chunks are stored.
    pub chunk_count: u64,
    /// Encoded event bytes before compression.
    pub bytes_raw: u64,
    /// Compressed bytes stored.
    pub bytes_stored: u64,
    /// Whether the session carries a seal (it does not say whether the seal is valid: see
    /// [`Store::verify`](crate::Store::verify)).
    pub sealed: bool,
}

/// The fields covered by the chain's genesis hash.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Identity<'a> {
    pub id: &'a str,
    pub user: &'a str,
    pub target: &'a str,
    pub target_addr: &'a str,
    pub protocol: &'a str,
    pub client_addr: &'a str,
    pub started_at_ms: u64,
}

impl SessionRow {
    pub(crate) fn identity(&self) -> Identity<'_> {
        Identity {
            id: &self.id,
            user: &self.user,
            target: &self.target,
            target_addr: &self.target_addr,
            protocol: &self.protocol,
            client_addr: &self.client_addr,
            started_at_ms: self.started_at_ms,
        }
    }
}

/// A fresh session id: 16 bytes from the operating system's generator, hex-encoded.
pub(crate) fn new_session_id() -> Result<SessionId, RecordingError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| RecordingError::Random(e.to_string()))?;
    Ok(hex::encode(bytes))
}

/// Now, in Unix milliseconds (zero if the clock is before 1970).
pub(crate) fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
