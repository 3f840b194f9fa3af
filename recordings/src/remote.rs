//! Recordings read from a running gateway: the JSON messages of the gateway's read-only review API
//! (`/api/review/…`, served by the portal, used by `sallyport-review --gateway`) and the reviewer's local
//! [`Mirror`] of what it fetched.
//!
//! The API hands out the stored bytes, not conclusions: a [`SessionPart`] is a session's row, its seal and a
//! run of its chunks exactly as stored (zstd data and chain hash, in hex), and [`ReviewKey`] is the gateway's
//! recording public key. The reviewer writes them into a mirror database of the same schema and runs the
//! same [`Store::verify`] and decoder on it as on a local file, so a gateway (or anything between) that
//! changed a byte is caught by the chain and seal, not trusted.
//!
//! The mirror is the reviewer's own cache file; the gateway's recordings database is never written by a
//! reader. A mirror only grows: chunks are appended in order after the ones it has, and a session row is
//! replaced by the gateway's newer view of it.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::error::RecordingError;
use crate::session::SessionRow;
use crate::store::{Store, load_session};

/// Most stored chunk bytes one [`SessionPart`] carries (the gateway stops adding chunks past it; a single
/// larger chunk still travels alone).
pub const PART_MAX_BYTES: u64 = 8 * 1024 * 1024;

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
        let conn = self.connection();
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

/// The reviewer's local copy of a gateway's recordings: a recordings database of the usual schema that
/// [`Store::open_read_only`] reads like any other.
pub struct Mirror {
    conn: Connection,
}

impl Mirror {
    /// Opens (creating if needed) a mirror database.
    pub fn open(path: &Path) -> Result<Mirror, RecordingError> {
        Ok(Mirror {
            conn: crate::schema::open_read_write(path)?,
        })
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
