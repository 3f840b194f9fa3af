//! Evidence files: one session, its stored chunks, its chain hashes and its seal, in a self-contained file that can
//! be checked offline on another machine.
//!
//! The file is canonical JSON (`sallyport-evidence-v2`, fields in a fixed order, binary fields as lowercase hex, one
//! trailing newline; `-v1` files, which carry no ledger proof, are still read). Checking it loads it into an in-memory recordings database and runs the same verification as
//! [`Store::verify`], so every field is covered: the identity fields by the chain's start, the chunks by the chain,
//! the end, outcome and chunk count by the seal, and the byte totals by recomputing them. A file that is not byte for
//! byte the canonical form of what it says is refused, so no byte of it can change without the check failing.
//!
//! Since v2 the file also carries the session's ledger proof (see `ledger/proof.rs`): its last ledger entry and the
//! checkpoint that covers it, so the offline check also shows that the session was not cut short before export.

use ed25519_dalek::VerifyingKey;
use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};

use crate::error::RecordingError;
use crate::ledger::{LedgerProof, ProofCheck};
use crate::session::{Outcome, SessionRow};
use crate::store::{Store, load_session};
use crate::stored::{
    CHUNK_COLUMNS, ChunkPart, SealPart, chunk_part, insert_chunk, load_seal, seal_columns, unhex,
};
use crate::verify::{self, Verification};

/// The format's name, the file's first field.
const FORMAT: &str = "sallyport-evidence-v2";
/// The format before the ledger, still read.
const FORMAT_V1: &str = "sallyport-evidence-v1";

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    format: String,
    session: SessionFields,
    seal: Option<SealPart>,
    chunks: Vec<ChunkPart>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ledger: Option<LedgerProof>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SessionFields {
    id: String,
    user: String,
    target: String,
    target_addr: String,
    protocol: String,
    client_addr: String,
    started_at_ms: u64,
    ended_at_ms: Option<u64>,
    outcome: Option<Outcome>,
    chunk_count: u64,
    bytes_raw: u64,
    bytes_stored: u64,
}

/// What [`check_evidence`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvidenceCheck {
    /// The session as the file describes it.
    pub session: SessionRow,
    /// The key the seal was checked against (the expected key, or the file's own when none was given).
    pub key: [u8; 32],
    /// The result of the chain and seal check.
    pub verification: Verification,
    /// What the file's ledger proof shows.
    pub ledger: ProofCheck,
}

impl Store {
    /// Exports a session as an evidence file (see the module documentation).
    pub fn export_evidence(&self, id: &str) -> Result<Vec<u8>, RecordingError> {
        let conn = self.connection();
        let Some(row) = load_session(conn, id)? else {
            return Err(RecordingError::NoSuchSession(id.to_owned()));
        };
        let seal = load_seal(conn, id)?;
        let mut stmt = conn.prepare(&format!(
            "SELECT {CHUNK_COLUMNS} FROM chunks WHERE session_id = ?1 ORDER BY seq"
        ))?;
        let mut rows = stmt.query([id])?;
        let mut chunks = Vec::new();
        while let Some(row) = rows.next()? {
            chunks.push(chunk_part(row)?);
        }
        let ledger = crate::ledger::export_proof(conn, id)?;
        let file = File {
            format: FORMAT.to_owned(),
            session: SessionFields {
                id: row.id,
                user: row.user,
                target: row.target,
                target_addr: row.target_addr,
                protocol: row.protocol,
                client_addr: row.client_addr,
                started_at_ms: row.started_at_ms,
                ended_at_ms: row.ended_at_ms,
                outcome: row.outcome,
                chunk_count: row.chunk_count,
                bytes_raw: row.bytes_raw,
                bytes_stored: row.bytes_stored,
            },
            seal,
            chunks,
            ledger,
        };
        canonical(&file)
    }

    /// Opens an evidence file as a read-only store in memory (to replay it), with the session's id. The file is
    /// parsed but not checked: call [`check_evidence`] for that.
    pub fn from_evidence(bytes: &[u8]) -> Result<(Store, String), RecordingError> {
        let file = parse(bytes)?;
        let conn = load(&file)?;
        Ok((Store::from_connection(conn), file.session.id))
    }
}

fn canonical(file: &File) -> Result<Vec<u8>, RecordingError> {
    let mut bytes = serde_json::to_vec_pretty(file)
        .map_err(|e| RecordingError::Corrupt(format!("cannot encode the evidence: {e}")))?;
    bytes.push(b'\n');
    Ok(bytes)
}

fn parse(bytes: &[u8]) -> Result<File, RecordingError> {
    let file: File = serde_json::from_slice(bytes)
        .map_err(|e| RecordingError::Corrupt(format!("not an evidence file: {e}")))?;
    if file.format != FORMAT && !(file.format == FORMAT_V1 && file.ledger.is_none()) {
        return Err(RecordingError::Corrupt(format!(
            "unknown evidence format {:?}",
            file.format
        )));
    }
    Ok(file)
}

/// Loads a parsed file into a fresh in-memory recordings database.
fn load(file: &File) -> Result<Connection, RecordingError> {
    let conn = crate::schema::open_in_memory()?;
    let s = &file.session;
    let (seal_hash, seal_sig, seal_key) = seal_columns(file.seal.as_ref())?;
    conn.execute(
        "INSERT INTO sessions (id, user, target, target_addr, protocol, client_addr, started_at_ms, ended_at_ms,
             outcome, chunk_count, bytes_raw, bytes_stored, seal_hash, seal_sig, seal_key)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
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
    for c in &file.chunks {
        insert_chunk(&conn, &s.id, c)?;
    }
    Ok(conn)
}

/// Checks an evidence file offline: its form, its byte totals, its chain, and its seal against `expected_key` (or,
/// without one, against the key in the file, which proves only that the file is whole: compare the returned key
/// with the appliance's). Structural problems (not an evidence file, not canonical) are errors; a broken chain or
/// seal is a [`Verification`] that is not intact.
pub fn check_evidence(
    bytes: &[u8],
    expected_key: Option<&VerifyingKey>,
) -> Result<EvidenceCheck, RecordingError> {
    let file = parse(bytes)?;
    if canonical(&file)? != bytes {
        return Err(RecordingError::Corrupt(
            "the evidence file is not in its canonical form: it was edited after export".into(),
        ));
    }
    let s = &file.session;
    let mut raw_total: u64 = 0;
    let mut stored_total: u64 = 0;
    for c in &file.chunks {
        raw_total = raw_total.saturating_add(c.raw_len);
        stored_total = stored_total.saturating_add((c.data.len() / 2) as u64);
    }
    let conn = load(&file)?;
    let key = match expected_key {
        Some(key) => *key,
        None => {
            let text = file.seal.as_ref().map(|seal| seal.public_key.as_str());
            let bytes = unhex(text.unwrap_or(""), "the seal key")?;
            let bytes = <[u8; 32]>::try_from(bytes.as_slice()).unwrap_or([0; 32]);
            VerifyingKey::from_bytes(&bytes).map_err(|_| {
                RecordingError::Corrupt("the file has no valid seal key to check against".into())
            })?
        }
    };
    let mut verification = verify::verify(&conn, &s.id, &key)?;
    if verification.is_intact() && (raw_total != s.bytes_raw || stored_total != s.bytes_stored) {
        verification = Verification::BadSeal {
            reason: format!(
                "the byte totals ({} raw, {} stored) do not match the chunks ({raw_total} raw, {stored_total} \
                 stored)",
                s.bytes_raw, s.bytes_stored
            ),
        };
    }
    let Some(session) = load_session(&conn, &s.id)? else {
        return Err(RecordingError::NoSuchSession(s.id.clone()));
    };
    let ledger = match &file.ledger {
        None => ProofCheck::Absent,
        Some(proof) => {
            let seal_hash = file
                .seal
                .as_ref()
                .and_then(|seal| hex::decode(&seal.hash).ok())
                .and_then(|h| <[u8; 32]>::try_from(h.as_slice()).ok());
            let last_chunk_hash = file
                .chunks
                .last()
                .and_then(|c| hex::decode(&c.hash).ok())
                .and_then(|h| <[u8; 32]>::try_from(h.as_slice()).ok());
            crate::ledger::check_proof(
                proof,
                &session,
                seal_hash.as_ref(),
                last_chunk_hash.as_ref(),
                &key,
            )
        }
    };
    Ok(EvidenceCheck {
        session,
        key: key.to_bytes(),
        verification,
        ledger,
    })
}
