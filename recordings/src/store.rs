//! The read side of the recordings database, and crash recovery: list sessions, decode their events, verify them,
//! and seal sessions that a crash left open.

use std::path::Path;

use ed25519_dalek::{SigningKey, VerifyingKey};
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::chain::{self, Hash};
use crate::codec::{Decompressor, History, KEYFRAME_INTERVAL};
use crate::error::RecordingError;
use crate::event::{TimedEvent, decode_events};
use crate::ledger::{Checkpoint, LedgerReport, Recovery};
use crate::session::SessionRow;
use crate::{schema, verify};

/// One stored chunk of a session, decoded (see [`Store::chunks_from`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedChunk {
    /// Its sequence number.
    pub seq: u64,
    /// Its first event's time, in milliseconds since the session started.
    pub t_start_ms: u64,
    /// Its last event's time, in milliseconds since the session started.
    pub t_end_ms: u64,
    /// Its events.
    pub events: Vec<TimedEvent>,
}

/// A connection to the recordings database for reading (and for recovery at startup).
///
/// It may be used while a [`Recorder`](crate::Recorder) writes the same file: SQLite's WAL lets readers see every
/// committed chunk without blocking the writer.
pub struct Store {
    conn: Connection,
}

/// The columns of [`SessionRow`], in the order [`session_row`] reads them.
pub(crate) const SESSION_COLUMNS: &str = "id, user, target, target_addr, protocol, client_addr, started_at_ms, \
     ended_at_ms, outcome, chunk_count, bytes_raw, bytes_stored, seal_sig IS NOT NULL";

/// Reads a row selected with [`SESSION_COLUMNS`].
pub(crate) fn session_row(row: &Row<'_>) -> rusqlite::Result<SessionRow> {
    Ok(SessionRow {
        id: row.get(0)?,
        user: row.get(1)?,
        target: row.get(2)?,
        target_addr: row.get(3)?,
        protocol: row.get(4)?,
        client_addr: row.get(5)?,
        started_at_ms: row.get(6)?,
        ended_at_ms: row.get(7)?,
        outcome: row.get(8)?,
        chunk_count: row.get(9)?,
        bytes_raw: row.get(10)?,
        bytes_stored: row.get(11)?,
        sealed: row.get(12)?,
    })
}

/// Reads one session row.
pub(crate) fn load_session(
    conn: &Connection,
    id: &str,
) -> Result<Option<SessionRow>, RecordingError> {
    let sql = format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?1");
    Ok(conn.query_row(&sql, [id], session_row).optional()?)
}

impl Store {
    /// Opens (creating if needed) the database read-write and applies migrations.
    pub fn open(path: &Path) -> Result<Store, RecordingError> {
        Ok(Store {
            conn: schema::open_read_write(path)?,
        })
    }

    /// Opens an existing database read-only (the review TUI, auditors' tools).
    pub fn open_read_only(path: &Path) -> Result<Store, RecordingError> {
        Ok(Store {
            conn: schema::open_read_only(path)?,
        })
    }

    /// A store over an already opened connection (an evidence file loaded in memory).
    pub(crate) fn from_connection(conn: Connection) -> Store {
        Store { conn }
    }

    /// The underlying connection.
    pub(crate) fn connection(&self) -> &Connection {
        &self.conn
    }

    /// All sessions, newest first.
    pub fn sessions(&self) -> Result<Vec<SessionRow>, RecordingError> {
        let sql = format!("SELECT {SESSION_COLUMNS} FROM sessions ORDER BY started_at_ms DESC, id");
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map([], session_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One session, if it exists.
    pub fn session(&self, id: &str) -> Result<Option<SessionRow>, RecordingError> {
        load_session(&self.conn, id)
    }

    /// All events of a session, decoded chunk by chunk in order. A missing chunk or one that does not decode is an
    /// error ([`verify`](Store::verify) says which chunk was tampered with; this only reads).
    pub fn events(&self, id: &str) -> Result<Vec<TimedEvent>, RecordingError> {
        let mut events = Vec::new();
        self.chunks_from(id, 0, |chunk| {
            events.extend(chunk.events);
            true
        })?;
        Ok(events)
    }

    /// Decodes a session's chunks from `from_seq` on, in order, handing each to `f` until it returns false.
    /// Decoding starts at the keyframe at or before `from_seq` (a chunk may refer to the ones before it), so this
    /// costs at most 63 extra chunks. A gap or a chunk that does not decode is an error.
    pub fn chunks_from(
        &self,
        id: &str,
        from_seq: u64,
        mut f: impl FnMut(DecodedChunk) -> bool,
    ) -> Result<(), RecordingError> {
        if load_session(&self.conn, id)?.is_none() {
            return Err(RecordingError::NoSuchSession(id.to_owned()));
        }
        let start = from_seq - from_seq % KEYFRAME_INTERVAL;
        let mut stmt = self.conn.prepare(
            "SELECT seq, t_start_ms, t_end_ms, raw_len, data FROM chunks
             WHERE session_id = ?1 AND seq >= ?2 ORDER BY seq",
        )?;
        let mut rows = stmt.query(params![id, start])?;
        let mut decompressor = Decompressor::new()?;
        let mut history = History::default();
        let mut expected: u64 = start;
        while let Some(row) = rows.next()? {
            let seq: i64 = row.get(0)?;
            if u64::try_from(seq).ok() != Some(expected) {
                return Err(RecordingError::Corrupt(format!(
                    "expected chunk {expected}, found chunk {seq}"
                )));
            }
            let number = |column: usize| -> Result<u64, RecordingError> {
                let value: i64 = row.get(column)?;
                u64::try_from(value).map_err(|_| {
                    RecordingError::Corrupt(format!("chunk {seq} has a negative field"))
                })
            };
            let (t_start_ms, t_end_ms, raw_len) = (number(1)?, number(2)?, number(3)?);
            let data = row
                .get_ref(4)?
                .as_blob()
                .map_err(|e| RecordingError::Corrupt(format!("chunk {seq}: {e}")))?;
            history.start_chunk(expected);
            let raw = decompressor
                .decompress(data, raw_len, history.dict())
                .map_err(|e| RecordingError::Corrupt(format!("chunk {seq}: {e}")))?;
            let events = decode_events(&raw)
                .map_err(|e| RecordingError::Corrupt(format!("chunk {seq}: {e}")))?;
            history.end_chunk(&raw);
            if expected >= from_seq {
                let chunk = DecodedChunk {
                    seq: expected,
                    t_start_ms,
                    t_end_ms,
                    events,
                };
                if !f(chunk) {
                    return Ok(());
                }
            }
            expected += 1;
        }
        Ok(())
    }

    /// Checks a session's chain and seal against the appliance's public key.
    pub fn verify(
        &self,
        id: &str,
        key: &VerifyingKey,
    ) -> Result<verify::Verification, RecordingError> {
        verify::verify(&self.conn, id, key)
    }

    /// Recovers after a crash (see `ledger/recover.rs`): audits the ledger, records the gateway's restart, seals the
    /// sessions a crash left open as far as the ledger vouches for them, and marks those that disagree with it as
    /// damaged without sealing them.
    ///
    /// Call this at startup, before [`Recorder::start`](crate::Recorder::start): a session that a running recorder
    /// is still writing also has no end, and would be sealed under its feet.
    pub fn recover_unfinished(&self, key: &SigningKey) -> Result<Recovery, RecordingError> {
        crate::ledger::recover(&self.conn, key)
    }

    /// Audits the ledger (chain, checkpoints, and every session and chunk against it) with the recording public key,
    /// and each checkpoint in `kept` (kept elsewhere by an auditor, or read from the journal) against it.
    pub fn audit_ledger(
        &self,
        key: &VerifyingKey,
        kept: &[Checkpoint],
    ) -> Result<LedgerReport, RecordingError> {
        crate::ledger::audit(&self.conn, key, kept)
    }

    /// The newest checkpoint stored (not verified: [`audit_ledger`](Self::audit_ledger) does that), to keep
    /// elsewhere.
    pub fn latest_checkpoint(&self) -> Result<Option<Checkpoint>, RecordingError> {
        crate::ledger::latest_checkpoint(&self.conn)
    }

    /// Runs SQLite's `PRAGMA integrity_check`; true when the file is sound.
    pub fn integrity_check(&self) -> Result<bool, RecordingError> {
        let mut stmt = self.conn.prepare("PRAGMA integrity_check")?;
        let results: Vec<String> = stmt
            .query_map([], |row| row.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(results == ["ok"])
    }
}

/// The chain hash and end offset (ms since start) of the row's last chunk, or genesis and zero when it has none.
/// A missing or malformed last chunk yields a zero hash, which [`verify`](crate::Store::verify) later reports.
pub(crate) fn last_chunk(
    conn: &Connection,
    row: &SessionRow,
) -> Result<(Hash, u64), RecordingError> {
    let Some(last_seq) = row.chunk_count.checked_sub(1) else {
        return Ok((chain::genesis(&row.identity()), 0));
    };
    let found: Option<(Vec<u8>, i64)> = conn
        .query_row(
            "SELECT hash, t_end_ms FROM chunks WHERE session_id = ?1 AND seq = ?2",
            params![row.id, last_seq],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    Ok(match found {
        Some((hash, t_end)) => (
            Hash::try_from(hash.as_slice()).unwrap_or([0; 32]),
            u64::try_from(t_end).unwrap_or(0),
        ),
        None => ([0; 32], 0),
    })
}
