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

/// A session's seal as stored (hex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealPart {
    /// The final chain hash the seal covers.
    pub hash: String,
    /// The Ed25519 signature.
    pub signature: String,
    /// The key the gateway says it signed with (the reviewer checks against its own copy).
    pub public_key: String,
}

/// One stored chunk (hex for binary fields).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChunkPart {
    /// Its sequence number.
    pub seq: u64,
    /// Its first event's time (ms since the session started).
    pub t_start_ms: u64,
    /// Its last event's time.
    pub t_end_ms: u64,
    /// Its size before compression.
    pub raw_len: u64,
    /// The stored zstd frame.
    pub data: String,
    /// The stored chain hash.
    pub hash: String,
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

fn unhex(text: &str, what: &str) -> Result<Vec<u8>, RecordingError> {
    hex::decode(text).map_err(|e| RecordingError::Corrupt(format!("{what} is not hex: {e}")))
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
        type Seal = (Option<Vec<u8>>, Option<Vec<u8>>, Option<Vec<u8>>);
        let seal: Seal = conn.query_row(
            "SELECT seal_hash, seal_sig, seal_key FROM sessions WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        let seal = match seal {
            (Some(h), Some(s), Some(k)) => Some(SealPart {
                hash: hex::encode(h),
                signature: hex::encode(s),
                public_key: hex::encode(k),
            }),
            _ => None,
        };
        let mut stmt = conn.prepare(
            "SELECT seq, t_start_ms, t_end_ms, raw_len, data, hash FROM chunks
             WHERE session_id = ?1 AND seq >= ?2 ORDER BY seq",
        )?;
        let mut rows = stmt.query(params![id, from_seq])?;
        let mut chunks = Vec::new();
        let mut bytes = 0u64;
        let mut more = false;
        while let Some(row) = rows.next()? {
            let data = row
                .get_ref(4)?
                .as_blob()
                .map_err(|e| RecordingError::Corrupt(format!("a chunk's data: {e}")))?;
            if !chunks.is_empty() && bytes.saturating_add(data.len() as u64) > max_bytes {
                more = true;
                break;
            }
            bytes = bytes.saturating_add(data.len() as u64);
            chunks.push(ChunkPart {
                seq: row.get(0)?,
                t_start_ms: row.get(1)?,
                t_end_ms: row.get(2)?,
                raw_len: row.get(3)?,
                data: hex::encode(data),
                hash: hex::encode(row.get::<_, Vec<u8>>(5)?),
            });
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
        let (seal_hash, seal_sig, seal_key) = match &part.seal {
            Some(seal) => (
                Some(unhex(&seal.hash, "the seal hash")?),
                Some(unhex(&seal.signature, "the seal signature")?),
                Some(unhex(&seal.public_key, "the seal key")?),
            ),
            None => (None, None, None),
        };
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
            tx.execute(
                "INSERT INTO chunks (session_id, seq, t_start_ms, t_end_ms, raw_len, data, hash)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    s.id,
                    c.seq,
                    c.t_start_ms,
                    c.t_end_ms,
                    c.raw_len,
                    unhex(&c.data, "chunk data")?,
                    unhex(&c.hash, "a chunk hash")?
                ],
            )?;
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
mod tests {
    use super::*;
    use crate::{Event, Limits, Recorder, SessionMeta};
    use ed25519_dalek::SigningKey;

    fn meta() -> SessionMeta {
        SessionMeta {
            user: "alice".into(),
            target: "web".into(),
            target_addr: "10.0.0.5:22".into(),
            protocol: "ssh".into(),
            client_addr: "192.0.2.1:5000".into(),
        }
    }

    /// Brings `mirror` up to `store` as the reviewer does: rows and chunks (one chunk per part), then the ledger
    /// (`per_part` entries per part), then the sessions its new entries name beyond the mirror, until they agree.
    fn sync(store: &Store, mirror: &mut Mirror, per_part: usize) -> u64 {
        let fetch = |mirror: &mut Mirror, id: &str| {
            let mut from = mirror.held(id).unwrap();
            loop {
                let part = store.session_part(id, from, 1).unwrap();
                mirror.apply(&part).unwrap();
                match part.chunks.last() {
                    Some(last) if part.more => from = last.seq + 1,
                    _ => break,
                }
            }
        };
        for row in store.sessions().unwrap() {
            if !mirror.is_current(&row).unwrap() {
                fetch(mirror, &row.id);
            }
        }
        let mut added = 0;
        loop {
            let start = mirror.ledger_next().unwrap();
            loop {
                let part = store
                    .ledger_part(mirror.ledger_next().unwrap(), per_part, u64::MAX)
                    .unwrap();
                assert!(part.entries.len() <= per_part);
                added += mirror.apply_ledger(&part).unwrap();
                if !part.more {
                    break;
                }
            }
            let behind = mirror.sessions_behind_ledger(start).unwrap();
            if behind.is_empty() {
                return added;
            }
            for id in behind {
                fetch(mirror, &id);
            }
        }
    }

    fn settled(store: &Store, id: &str) -> SessionRow {
        let mut last = store.session(id).unwrap().unwrap();
        loop {
            std::thread::sleep(std::time::Duration::from_millis(100));
            let now = store.session(id).unwrap().unwrap();
            if now == last {
                return now;
            }
            last = now;
        }
    }

    #[test]
    fn a_mirror_of_the_ledger_in_parts_verifies_the_whole_database_and_refuses_skips_and_rewrites()
    {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("r.db");
        let key = SigningKey::from_bytes(&[7; 32]);
        let limits = Limits {
            chunk_max_bytes: 256,
            chunk_max_age: std::time::Duration::from_secs(60),
            ..Limits::default()
        };
        let recorder = Recorder::start(&db, key.clone(), limits).unwrap();
        let record = |lines: usize, finish: bool| {
            let session = recorder.open_session(meta()).unwrap();
            for i in 0..lines {
                session
                    .record(Event::Output(
                        format!("line {i} of output, long enough to fill chunks\r\n").into_bytes(),
                    ))
                    .unwrap();
            }
            let id = session.id().to_owned();
            if finish {
                session.finish(crate::Outcome::Ended).unwrap();
                None
            } else {
                Some((id, session))
            }
        };
        record(60, true);
        record(30, true);
        let (live, live_session) = record(40, false).unwrap();
        let (empty, empty_session) = record(0, false).unwrap();
        let store = Store::open_read_only(&db).unwrap();
        assert!(settled(&store, &live).chunk_count >= 3);
        let verifying = key.verifying_key();

        // The ledger first: every session it names is behind the empty mirror, until fetched.
        let mirror_path = dir.path().join("mirror.db");
        let mut mirror = Mirror::open(&mirror_path).unwrap();
        let early = store.ledger_part(0, usize::MAX, u64::MAX).unwrap();
        assert!(!early.more && early.entries.len() > 10);
        mirror.apply_ledger(&early).unwrap();
        let mut behind = mirror.sessions_behind_ledger(0).unwrap();
        behind.sort();
        let mut all: Vec<String> = store
            .sessions()
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        all.sort();
        assert_eq!(behind, all);
        drop(mirror);
        std::fs::remove_file(&mirror_path).unwrap();

        // Part by part, three entries at a time, while two sessions are still open.
        let mut mirror = Mirror::open(&mirror_path).unwrap();
        let added = sync(&store, &mut mirror, 3);
        assert!(added >= early.entries.len() as u64, "{added}");
        assert!(mirror.sessions_behind_ledger(0).unwrap().is_empty());
        let copy = Store::open_read_only(&mirror_path).unwrap();
        let v = copy.verify_database(&verifying, &[]).unwrap();
        assert!(v.is_clean(), "{:#?}", v.ledger.findings);
        assert_eq!(v.sessions.len(), 4);
        assert!(matches!(
            v.ledger.state(&live),
            Some(crate::LedgerState::Live { .. })
        ));
        assert_eq!(
            v.ledger.state(&empty),
            Some(&crate::LedgerState::Live { chunks: 0 })
        );
        assert!(v.ledger.entries >= added);

        // The open sessions end and one more is recorded: the mirror grows by what is new only.
        live_session.finish(crate::Outcome::Ended).unwrap();
        empty_session.finish(crate::Outcome::Ended).unwrap();
        record(10, true);
        recorder.shutdown().unwrap();
        let held = mirror.ledger_next().unwrap();
        let more = sync(&store, &mut mirror, 3);
        assert_eq!(mirror.ledger_next().unwrap(), held + more);
        assert_eq!(sync(&store, &mut mirror, 3), 0);
        let v = copy.verify_database(&verifying, &[]).unwrap();
        assert!(v.is_clean(), "{:#?}", v.ledger.findings);
        assert_eq!(v.sessions.len(), 5);
        assert!(matches!(
            v.ledger.state(&live),
            Some(crate::LedgerState::Sealed { .. })
        ));
        assert_eq!(
            copy.latest_checkpoint().unwrap(),
            store.latest_checkpoint().unwrap()
        );

        // Refused, all or nothing: a part that skips an entry, one that starts before the mirror's end (it would
        // rewrite held entries), one with a gap inside, and one whose last entry is malformed.
        let next = mirror.ledger_next().unwrap();
        let all = store.ledger_part(0, usize::MAX, u64::MAX).unwrap().entries;
        assert_eq!(all.len() as u64, next);
        let mut ahead = all.last().unwrap().clone();
        ahead.seq = next + 1;
        let mut follows = all.last().unwrap().clone();
        follows.seq = next;
        let mut gap = follows.clone();
        gap.seq = next + 2;
        let mut broken = follows.clone();
        broken.seq = next + 1;
        broken.body = "not hex".into();
        for (part, says) in [
            (vec![ahead.clone()], "where entry"),
            (all[all.len() - 2..].to_vec(), "again"),
            (vec![follows.clone(), gap], "where entry"),
            (vec![follows.clone(), broken], "not hex"),
        ] {
            let refused = mirror.apply_ledger(&LedgerPart {
                entries: part,
                more: false,
            });
            assert!(
                matches!(&refused, Err(RecordingError::Corrupt(why)) if why.contains(says)),
                "{refused:?}"
            );
            assert_eq!(mirror.ledger_next().unwrap(), next);
        }
        let held: Vec<LedgerEntryPart> = copy.ledger_part(0, usize::MAX, u64::MAX).unwrap().entries;
        assert_eq!(held, all, "the held entries are untouched");
        // What the gateway sends is stored, not judged: an entry that continues the numbers but not the chain is
        // kept, and the verifier names it.
        assert_eq!(
            mirror
                .apply_ledger(&LedgerPart {
                    entries: vec![follows],
                    more: false,
                })
                .unwrap(),
            1
        );
        let v = copy.verify_database(&verifying, &[]).unwrap();
        assert!(
            v.ledger
                .findings
                .iter()
                .any(|f| f.entry == Some(next) && f.what.contains("changed")),
            "{:#?}",
            v.ledger.findings
        );
    }

    #[test]
    fn a_mirror_made_before_the_ledger_drops_the_entries_its_migration_made_up() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("r.db");
        let key = SigningKey::from_bytes(&[7; 32]);
        let recorder = Recorder::start(&db, key.clone(), Limits::default()).unwrap();
        let session = recorder.open_session(meta()).unwrap();
        session
            .record(Event::Output(b"hello\r\n".to_vec()))
            .unwrap();
        session.finish(crate::Outcome::Ended).unwrap();
        recorder.shutdown().unwrap();
        let store = Store::open_read_only(&db).unwrap();
        let id = store.sessions().unwrap()[0].id.clone();

        // A mirror of the schema before the ledger, holding the session.
        let mirror_path = dir.path().join("mirror.db");
        drop(Mirror::open(&mirror_path).unwrap());
        {
            let conn = Connection::open(&mirror_path).unwrap();
            conn.execute_batch("DROP TABLE ledger; PRAGMA user_version = 1;")
                .unwrap();
        }
        let part = store.session_part(&id, 0, u64::MAX).unwrap();
        {
            let mut old = Mirror {
                conn: Connection::open(&mirror_path).unwrap(),
            };
            old.apply(&part).unwrap();
        }
        // Migrated as a database, it would vouch for the session with an entry of its own.
        let migrated = dir.path().join("migrated.db");
        std::fs::copy(&mirror_path, &migrated).unwrap();
        assert_eq!(store_entries(&Store::open(&migrated).unwrap()), 1);
        let mut mirror = Mirror::open(&mirror_path).unwrap();
        assert_eq!(mirror.ledger_next().unwrap(), 0);
        assert_eq!(sync(&store, &mut mirror, 100), store_entries(&store));
        let copy = Store::open_read_only(&mirror_path).unwrap();
        let v = copy.verify_database(&key.verifying_key(), &[]).unwrap();
        assert!(v.is_clean(), "{:#?}", v.ledger.findings);
    }

    fn store_entries(store: &Store) -> u64 {
        store
            .ledger_part(0, usize::MAX, u64::MAX)
            .unwrap()
            .entries
            .len() as u64
    }

    #[test]
    fn a_mirror_fed_in_parts_verifies_and_replays_like_the_original() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("r.db");
        let key = SigningKey::from_bytes(&[7; 32]);
        let limits = Limits {
            chunk_max_bytes: 64,
            ..Limits::default()
        };
        let recorder = Recorder::start(&db, key.clone(), limits).unwrap();
        let session = recorder.open_session(meta()).unwrap();
        let id = session.id().to_owned();
        for i in 0..40 {
            session
                .record(Event::Output(
                    format!("line {i} of output\r\n").into_bytes(),
                ))
                .unwrap();
        }
        session.finish(crate::Outcome::Ended).unwrap();
        recorder.shutdown().unwrap();

        let store = Store::open_read_only(&db).unwrap();
        let row = store.session(&id).unwrap().unwrap();
        assert!(row.chunk_count > 3, "{}", row.chunk_count);
        let mirror_path = dir.path().join("mirror.db");
        let mut mirror = Mirror::open(&mirror_path).unwrap();
        assert!(!mirror.is_current(&row).unwrap());
        // Small parts, as a large session travels; a repeated part adds nothing.
        let mut from = 0;
        loop {
            let part = store.session_part(&id, from, 1).unwrap();
            assert_eq!(part.chunks.len(), 1);
            assert_eq!(mirror.apply(&part).unwrap(), 1);
            assert_eq!(mirror.apply(&part).unwrap(), 0);
            from += 1;
            if !part.more {
                break;
            }
        }
        assert!(mirror.is_current(&row).unwrap());
        let copy = Store::open_read_only(&mirror_path).unwrap();
        assert!(copy.verify(&id, &key.verifying_key()).unwrap().is_intact());
        assert_eq!(copy.events(&id).unwrap(), store.events(&id).unwrap());

        // A gap is refused.
        let gap = store.session_part(&id, 2, u64::MAX).unwrap();
        let mut fresh = Mirror::open(&dir.path().join("fresh.db")).unwrap();
        assert!(matches!(fresh.apply(&gap), Err(RecordingError::Corrupt(_))));
        // A byte changed on the way is caught by the verifier.
        let mut bad = store.session_part(&id, 0, u64::MAX).unwrap();
        let mut data = hex::decode(&bad.chunks[1].data).unwrap();
        data[0] ^= 1;
        bad.chunks[1].data = hex::encode(data);
        let tampered_path = dir.path().join("tampered.db");
        Mirror::open(&tampered_path).unwrap().apply(&bad).unwrap();
        let tampered = Store::open_read_only(&tampered_path).unwrap();
        assert!(
            !tampered
                .verify(&id, &key.verifying_key())
                .unwrap()
                .is_intact()
        );
    }
}
