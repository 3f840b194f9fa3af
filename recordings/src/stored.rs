//! A stored session's seal and chunks in hex, as both the evidence file and the review API carry them
//! ([`SealPart`], [`ChunkPart`]), and their reading from and writing back to a recordings database: an
//! exported file or a fetched part goes back in exactly as it came out.

use rusqlite::{Connection, Row};
use serde::{Deserialize, Serialize};

use crate::error::RecordingError;

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

/// The columns [`chunk_part`] reads, in its order.
pub(crate) const CHUNK_COLUMNS: &str = "seq, t_start_ms, t_end_ms, raw_len, data, hash";

/// A chunk row of [`CHUNK_COLUMNS`] in hex.
pub(crate) fn chunk_part(row: &Row<'_>) -> Result<ChunkPart, RecordingError> {
    let data = row
        .get_ref(4)?
        .as_blob()
        .map_err(|e| RecordingError::Corrupt(format!("a chunk's data: {e}")))?;
    Ok(ChunkPart {
        seq: row.get(0)?,
        t_start_ms: row.get(1)?,
        t_end_ms: row.get(2)?,
        raw_len: row.get(3)?,
        data: hex::encode(data),
        hash: hex::encode(row.get::<_, Vec<u8>>(5)?),
    })
}

/// Stores a chunk of session `session_id` as it was read.
pub(crate) fn insert_chunk(
    conn: &Connection,
    session_id: &str,
    chunk: &ChunkPart,
) -> Result<(), RecordingError> {
    conn.execute(
        "INSERT INTO chunks (session_id, seq, t_start_ms, t_end_ms, raw_len, data, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        rusqlite::params![
            session_id,
            chunk.seq,
            chunk.t_start_ms,
            chunk.t_end_ms,
            chunk.raw_len,
            unhex(&chunk.data, "chunk data")?,
            unhex(&chunk.hash, "a chunk hash")?
        ],
    )?;
    Ok(())
}

/// The seal of stored session `id`, if it is sealed.
pub(crate) fn load_seal(conn: &Connection, id: &str) -> Result<Option<SealPart>, RecordingError> {
    let columns: SealColumns = conn.query_row(
        "SELECT seal_hash, seal_sig, seal_key FROM sessions WHERE id = ?1",
        [id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    Ok(match columns {
        (Some(h), Some(s), Some(k)) => Some(SealPart {
            hash: hex::encode(h),
            signature: hex::encode(s),
            public_key: hex::encode(k),
        }),
        _ => None,
    })
}

/// The sessions table's `seal_hash`, `seal_sig` and `seal_key` for `seal` (all null without one).
pub(crate) type SealColumns = (Option<Vec<u8>>, Option<Vec<u8>>, Option<Vec<u8>>);

/// The seal's columns, from its hex.
pub(crate) fn seal_columns(seal: Option<&SealPart>) -> Result<SealColumns, RecordingError> {
    Ok(match seal {
        Some(seal) => (
            Some(unhex(&seal.hash, "the seal hash")?),
            Some(unhex(&seal.signature, "the seal signature")?),
            Some(unhex(&seal.public_key, "the seal key")?),
        ),
        None => (None, None, None),
    })
}

/// Hex to bytes; `what` names the field in the error.
pub(crate) fn unhex(text: &str, what: &str) -> Result<Vec<u8>, RecordingError> {
    hex::decode(text).map_err(|e| RecordingError::Corrupt(format!("{what} is not hex: {e}")))
}
