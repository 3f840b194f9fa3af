//! Recordings read from a running gateway: the JSON messages of the gateway's read-only review API
//! (`/api/review/…`, served by the portal, used by `sallyport-review --gateway`) and the reviewer's local
//! [`Mirror`] of what it fetched.
//!
//! The API hands out the stored bytes, not conclusions: a [`SessionPart`] is a session's row, its seal and a
//! run of its chunks exactly as stored (zstd data and chain hash, in hex), a [`LedgerPart`] is a run of the
//! ledger's entries exactly as stored, and [`ReviewKey`] is the gateway's recording public key. The reviewer
//! writes them into a mirror database of the same schema and runs the same [`Store::verify`],
//! [`Store::verify_database`] and decoder on it as on a local file, so a gateway (or anything between) that
//! changed a byte, or removed a session the ledger names, is caught by the chain, seal and ledger, not trusted.
//!
//! The mirror is the reviewer's own cache file; the gateway's recordings database is never written by a
//! reader. A mirror only grows: chunks are appended in order after the ones it has, ledger entries after the
//! ones it has (never rewritten), and a session row is replaced by the gateway's newer view of it.
//!
//! A mirror verifies clean only where its ledger and its sessions show the gateway at the same moment: the
//! reviewer fetches the ledger after the sessions and chunks, then fetches again every session the new
//! entries name beyond what the mirror holds ([`Mirror::sessions_behind_ledger`]), and the ledger after them,
//! until the two agree (the gateway writes a chunk, its row's totals and its ledger entry in one transaction).

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::error::RecordingError;
use crate::ledger::{Body, SessionEnd};
use crate::session::{Outcome, SessionRow};
use crate::store::{Store, load_session};
use crate::stored::{CHUNK_COLUMNS, chunk_part, insert_chunk, load_seal, seal_columns, unhex};
pub use crate::stored::{ChunkPart, SealPart};

/// Most stored chunk bytes one [`SessionPart`] carries (the gateway stops adding chunks past it; a single
/// larger chunk still travels alone). Also the most stored bytes of ledger entries in one [`LedgerPart`].
pub const PART_MAX_BYTES: u64 = 8 * 1024 * 1024;

/// Most entries one [`LedgerPart`] carries.
pub const LEDGER_PART_MAX_ENTRIES: usize = 8192;

/// `POST /api/review/login`: the portal account's credentials (and second factor when enrolled).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewLoginRequest {
    /// The portal username.
    pub username: String,
    /// The portal password.
    pub password: String,
    /// The TOTP or a recovery code, for accounts that have one.
    #[serde(default)]
    pub code: Option<String>,
}

/// The answer to a successful login: a bearer token for the other requests (`Authorization: Bearer …`).
/// It lives like a browser login (idle timeout, maximum age) and ends with logout or any change to the account.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewLoginResponse {
    /// The bearer token.
    pub token: String,
    /// The account, as stored.
    pub username: String,
    /// Its role (`admin` or `auditor`).
    pub role: String,
}

impl std::fmt::Debug for ReviewLoginResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReviewLoginResponse")
            .field("token", &"<redacted>")
            .field("username", &self.username)
            .field("role", &self.role)
            .finish()
    }
}

/// A refusal: a stable kind for programs and a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewError {
    /// `bad_credentials`, `code_required`, `bad_code`, `not_reviewer`, `throttled`, `login_required`, ….
    pub error: String,
    /// What to tell the person.
    pub message: String,
}

/// `GET /api/review/key`: the gateway's recording public key (Ed25519, hex), which seals are checked against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewKey {
    /// 32 bytes in hex.
    pub public_key: String,
}

/// `GET /api/review/sessions`: every session, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewSessions {
    /// The sessions.
    pub sessions: Vec<SessionRow>,
}

/// `GET /api/review/sessions/{id}/chunks?from=SEQ`: the session's row and seal as they are now, and its
/// stored chunks from `SEQ` on, at most [`PART_MAX_BYTES`] of them; `more` says whether chunks follow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionPart {
    /// The session row.
    pub session: SessionRow,
    /// Its seal, once sealed.
    pub seal: Option<SealPart>,
    /// Chunks from the asked sequence number on, in order.
    pub chunks: Vec<ChunkPart>,
    /// Whether stored chunks follow the last one here.
    pub more: bool,
}

/// One ledger entry as stored (see `ledger/mod.rs`; hex for binary fields). The numbers are the stored
/// integers as they are, so that a changed one reaches the reviewer's verifier rather than failing the read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerEntryPart {
    /// Its number in the ledger (0, 1, 2, …).
    pub seq: u64,
    /// When it was written (Unix milliseconds).
    pub at_ms: i64,
    /// Its kind number.
    pub kind: i64,
    /// The session it concerns, if any.
    pub session_id: Option<String>,
    /// A chunk entry's chunk number.
    pub chunk_seq: Option<i64>,
    /// A chunk entry's chunk hash.
    pub digest: Option<String>,
    /// The stored body.
    pub body: String,
    /// The stored chain head after it.
    pub head: String,
}

/// `GET /api/review/ledger?from=SEQ`: the ledger's entries from `SEQ` on, in order, at most
/// [`LEDGER_PART_MAX_ENTRIES`] of them and [`PART_MAX_BYTES`] of stored bytes; `more` says whether entries follow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerPart {
    /// Entries from the asked number on, in order.
    pub entries: Vec<LedgerEntryPart>,
    /// Whether stored entries follow the last one here.
    pub more: bool,
}

impl Store {
    /// A session's row, seal and stored chunks from `from_seq` on, up to `max_bytes` of chunk data (at least
    /// one chunk when there is one), as the review API sends them.
    pub fn session_part(
        &self,
        id: &str,
        from_seq: u64,
        max_bytes: u64,
    ) -> Result<SessionPart, RecordingError> {
        // One read transaction: the row, seal and chunks as of one moment, so that the row's totals and seal
        // agree with the chunks sent (the writer changes them together).
        let tx = self.connection().unchecked_transaction()?;
        let conn: &Connection = &tx;
        let Some(session) = load_session(conn, id)? else {
            return Err(RecordingError::NoSuchSession(id.to_owned()));
        };
        let seal = load_seal(conn, id)?;
        let mut stmt = conn.prepare(&format!(
            "SELECT {CHUNK_COLUMNS} FROM chunks WHERE session_id = ?1 AND seq >= ?2 ORDER BY seq"
        ))?;
        let mut rows = stmt.query(params![id, from_seq])?;
        let mut chunks = Vec::new();
        let mut bytes = 0u64;
        let mut more = false;
        while let Some(row) = rows.next()? {
            let chunk = chunk_part(row)?;
            let size = (chunk.data.len() / 2) as u64;
            if !chunks.is_empty() && bytes.saturating_add(size) > max_bytes {
                more = true;
                break;
            }
            bytes = bytes.saturating_add(size);
            chunks.push(chunk);
        }
        Ok(SessionPart {
            session,
            seal,
            chunks,
            more,
        })
    }
}

impl Store {
    /// The ledger's entries from `from_seq` on, at most `max_entries` of them and `max_bytes` of stored bytes (at
    /// least one entry when there is one), as the review API sends them.
    pub fn ledger_part(
        &self,
        from_seq: u64,
        max_entries: usize,
        max_bytes: u64,
    ) -> Result<LedgerPart, RecordingError> {
        let sql = format!(
            "SELECT {} FROM ledger WHERE seq >= ?1 ORDER BY seq",
            crate::ledger::ENTRY_COLUMNS
        );
        let mut stmt = self.connection().prepare(&sql)?;
        let mut rows = stmt.query([i64::try_from(from_seq).unwrap_or(i64::MAX)])?;
        let mut entries = Vec::new();
        let mut bytes = 0u64;
        let mut more = false;
        while let Some(row) = rows.next()? {
            let e = crate::ledger::stored_entry(row)?;
            let size = (e.body.len() + e.head.len() + e.digest.as_ref().map_or(0, Vec::len)) as u64;
            if !entries.is_empty()
                && (entries.len() >= max_entries || bytes.saturating_add(size) > max_bytes)
            {
                more = true;
                break;
            }
            bytes = bytes.saturating_add(size);
            entries.push(LedgerEntryPart {
                seq: u64::try_from(e.seq).map_err(|_| {
                    RecordingError::Corrupt(format!("ledger entry number {} is negative", e.seq))
                })?,
                at_ms: e.at_ms,
                kind: e.kind,
                session_id: e.session_id,
                chunk_seq: e.chunk_seq,
                digest: e.digest.map(hex::encode),
                body: hex::encode(e.body),
                head: hex::encode(e.head),
            });
        }
        Ok(LedgerPart { entries, more })
    }
}

/// The reviewer's local copy of a gateway's recordings: a recordings database of the usual schema that
/// [`Store::open_read_only`] reads like any other.
pub struct Mirror {
    conn: Connection,
}

impl Mirror {
    /// Opens (creating if needed) a mirror database.
    ///
    /// A mirror made before the ledger existed is migrated like any database, and the migration enters its
    /// sessions in a ledger of its own; the mirror's ledger must be the gateway's, so those entries are dropped
    /// and the gateway's ledger is fetched from its start.
    pub fn open(path: &Path) -> Result<Mirror, RecordingError> {
        let before_ledger = path.exists() && {
            let conn =
                Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
            let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
            version == 1
        };
        let conn = crate::schema::open_read_write(path)?;
        if before_ledger {
            conn.execute("DELETE FROM ledger", [])?;
        }
        Ok(Mirror { conn })
    }

    /// The number of the next ledger entry the mirror lacks (0 when it holds none).
    pub fn ledger_next(&self) -> Result<u64, RecordingError> {
        ledger_next(&self.conn)
    }

    /// Appends a ledger part fetched from the gateway: its entries must continue the ones the mirror holds,
    /// number by number, so an entry held is never rewritten and none is skipped. All or nothing: a refused part
    /// adds no entry. The entries are stored as sent, not judged here: the verifier does that. Returns how many
    /// entries were added.
    pub fn apply_ledger(&mut self, part: &LedgerPart) -> Result<u64, RecordingError> {
        let tx = self.conn.transaction()?;
        let first = ledger_next(&tx)?;
        for (next, e) in (first..).zip(&part.entries) {
            if e.seq != next {
                return Err(RecordingError::Corrupt(if e.seq < next {
                    format!(
                        "the gateway sent ledger entry {} again: the mirror holds entries up to {}, and never \
                         rewrites one",
                        e.seq,
                        next - 1
                    )
                } else {
                    format!(
                        "the gateway sent ledger entry {} where entry {next} was expected: entries are missing",
                        e.seq
                    )
                }));
            }
            let seq = i64::try_from(e.seq).map_err(|_| {
                RecordingError::Corrupt(format!("ledger entry number {} is too large", e.seq))
            })?;
            let digest = e
                .digest
                .as_deref()
                .map(|d| unhex(d, "a ledger entry's digest"))
                .transpose()?;
            tx.execute(
                "INSERT INTO ledger (seq, at_ms, kind, session_id, chunk_seq, digest, body, head)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    seq,
                    e.at_ms,
                    e.kind,
                    e.session_id,
                    e.chunk_seq,
                    digest,
                    unhex(&e.body, "a ledger entry's body")?,
                    unhex(&e.head, "a ledger entry's head")?
                ],
            )?;
        }
        tx.commit()?;
        Ok(part.entries.len() as u64)
    }

    /// The sessions that ledger entries from `from_seq` on name beyond what the mirror holds of them: a session
    /// whose row it lacks, a chunk it lacks, a seal its row lacks. The reviewer fetches these again; what the
    /// gateway cannot send (a session deleted or cut behind its back) stays a finding of the verifier.
    pub fn sessions_behind_ledger(&self, from_seq: u64) -> Result<Vec<String>, RecordingError> {
        let end = SessionEnd {
            chunk_count: 0,
            final_hash: [0; 32],
            outcome: Outcome::Ended,
            ended_at_ms: 0,
        };
        let chunk = Body::Chunk {
            session: String::new(),
            seq: 0,
            hash: [0; 32],
        }
        .kind();
        let seal = Body::Seal {
            session: String::new(),
            end: end.clone(),
        }
        .kind();
        let recovered = Body::Recovered {
            session: String::new(),
            end,
            unvouched_chunks: 0,
            unvouched_ms: 0,
        }
        .kind();
        let mut stmt = self.conn.prepare(
            "SELECT DISTINCT l.session_id FROM ledger l
             WHERE l.seq >= ?1 AND l.session_id IS NOT NULL AND (
                 NOT EXISTS (SELECT 1 FROM sessions s WHERE s.id = l.session_id)
                 OR (l.kind = ?2 AND NOT EXISTS
                     (SELECT 1 FROM chunks c WHERE c.session_id = l.session_id AND c.seq = l.chunk_seq))
                 OR (l.kind IN (?3, ?4) AND EXISTS
                     (SELECT 1 FROM sessions s WHERE s.id = l.session_id AND s.seal_sig IS NULL)))
             ORDER BY l.session_id",
        )?;
        let rows = stmt.query_map(
            params![
                i64::try_from(from_seq).unwrap_or(i64::MAX),
                chunk,
                seal,
                recovered
            ],
            |r| r.get(0),
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The session as the mirror has it, and how many chunks it holds.
    pub fn session(&self, id: &str) -> Result<Option<(SessionRow, u64)>, RecordingError> {
        let Some(row) = load_session(&self.conn, id)? else {
            return Ok(None);
        };
        let held: u64 = self.conn.query_row(
            "SELECT COUNT(*) FROM chunks WHERE session_id = ?1",
            [id],
            |r| r.get(0),
        )?;
        Ok(Some((row, held)))
    }

    /// Whether the mirror already holds everything `row` (the gateway's current view) describes.
    pub fn is_current(&self, row: &SessionRow) -> Result<bool, RecordingError> {
        Ok(match self.session(&row.id)? {
            Some((mine, held)) => mine == *row && held == row.chunk_count,
            None => false,
        })
    }

    /// Writes a part fetched from the gateway: the session row and seal as given, and its chunks, which
    /// must continue the ones the mirror holds. Chunks the mirror already has are not fetched again, so a
    /// changed chunk on the gateway after it was mirrored shows only in a fresh mirror; the verifier judges
    /// what the mirror holds. Returns how many chunks were added.
    pub fn apply(&mut self, part: &SessionPart) -> Result<u64, RecordingError> {
        let s = &part.session;
        let (seal_hash, seal_sig, seal_key) = seal_columns(part.seal.as_ref())?;
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO sessions (id, user, target, target_addr, protocol, client_addr, started_at_ms, ended_at_ms,
                 outcome, chunk_count, bytes_raw, bytes_stored, seal_hash, seal_sig, seal_key)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)
             ON CONFLICT (id) DO UPDATE SET user = excluded.user, target = excluded.target,
                 target_addr = excluded.target_addr, protocol = excluded.protocol,
                 client_addr = excluded.client_addr, started_at_ms = excluded.started_at_ms,
                 ended_at_ms = excluded.ended_at_ms, outcome = excluded.outcome,
                 chunk_count = excluded.chunk_count, bytes_raw = excluded.bytes_raw,
                 bytes_stored = excluded.bytes_stored, seal_hash = excluded.seal_hash,
                 seal_sig = excluded.seal_sig, seal_key = excluded.seal_key",
            params![
                s.id,
                s.user,
                s.target,
                s.target_addr,
                s.protocol,
                s.client_addr,
                s.started_at_ms,
                s.ended_at_ms,
                s.outcome,
                s.chunk_count,
                s.bytes_raw,
                s.bytes_stored,
                seal_hash,
                seal_sig,
                seal_key
            ],
        )?;
        let mut next: u64 = tx.query_row(
            "SELECT COUNT(*) FROM chunks WHERE session_id = ?1",
            [&s.id],
            |r| r.get(0),
        )?;
        let mut added = 0;
        for c in &part.chunks {
            if c.seq < next {
                continue;
            }
            if c.seq != next {
                return Err(RecordingError::Corrupt(format!(
                    "the gateway sent chunk {} of session {} where chunk {next} was expected",
                    c.seq, s.id
                )));
            }
            insert_chunk(&tx, &s.id, c)?;
            next += 1;
            added += 1;
        }
        tx.commit()?;
        Ok(added)
    }

    /// How many chunks the mirror holds of a session (0 when it has none).
    pub fn held(&self, id: &str) -> Result<u64, RecordingError> {
        Ok(self
            .conn
            .query_row(
                "SELECT COUNT(*) FROM chunks WHERE session_id = ?1",
                [id],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(0))
    }
}

fn ledger_next(conn: &Connection) -> Result<u64, RecordingError> {
    let last: Option<i64> = conn.query_row("SELECT max(seq) FROM ledger", [], |r| r.get(0))?;
    Ok(last.map_or(0, |seq| u64::try_from(seq).map_or(0, |seq| seq + 1)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
