//! The ledger's part of an evidence file: the session's last ledger entry, the entries after it up to the checkpoint
//! that covers it (as leaf hashes only: other sessions' entries say nothing about them but that they exist), and that
//! checkpoint. An offline verifier recomputes the head from the entry to the checkpoint and checks the signature, so
//! it sees that the session, as exported, is what the ledger held when the checkpoint was signed: not cut short.

use ed25519_dalek::VerifyingKey;
use rusqlite::{Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use super::entry::{self, Body, KIND_CHECKPOINT};
use crate::chain::{self, Hash};
use crate::error::RecordingError;
use crate::session::SessionRow;

/// At most this many entries lie between a session's last entry and its checkpoint in a proof (checkpoints come every
/// second while anything is recorded, so a real gap is far smaller).
const MAX_BETWEEN: usize = 100_000;

/// One stored entry, as the proof carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProofEntry {
    seq: u64,
    at_ms: u64,
    body: String,
}

/// See the module documentation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LedgerProof {
    prev_head: String,
    entry: ProofEntry,
    between: Vec<String>,
    checkpoint: Option<ProofEntry>,
}

/// What the ledger proof of an evidence file shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProofCheck {
    /// A checkpoint signed with the key covers the session as exported.
    Covered {
        /// When that checkpoint was signed (Unix milliseconds).
        checkpoint_at_ms: u64,
        /// What the session's last ledger entry says (sealed, recovered, live, before the ledger).
        state: String,
    },
    /// The session's last entry was not covered by a checkpoint yet when it was exported (a live session in its
    /// last second).
    NotCovered,
    /// The file carries no ledger proof (an evidence file from before the ledger).
    Absent,
    /// The proof does not hold.
    Failed(String),
}

fn entry_of(seq: i64, at_ms: i64, body: Vec<u8>) -> ProofEntry {
    ProofEntry {
        seq: u64::try_from(seq).unwrap_or(0),
        at_ms: u64::try_from(at_ms).unwrap_or(0),
        body: hex::encode(body),
    }
}

/// The proof for a session, from the stored ledger (`None` when the ledger does not name it).
pub(crate) fn export(
    conn: &Connection,
    session: &str,
) -> Result<Option<LedgerProof>, RecordingError> {
    let last: Option<(i64, i64, Vec<u8>)> = conn
        .query_row(
            "SELECT seq, at_ms, body FROM ledger WHERE session_id = ?1 ORDER BY seq DESC LIMIT 1",
            [session],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let Some((seq, at_ms, body)) = last else {
        return Ok(None);
    };
    let prev_head: Vec<u8> = if seq == 0 {
        entry::start_head().to_vec()
    } else {
        conn.query_row("SELECT head FROM ledger WHERE seq = ?1", [seq - 1], |r| {
            r.get(0)
        })
        .optional()?
        .unwrap_or_default()
    };
    let mut stmt =
        conn.prepare("SELECT seq, at_ms, kind, body FROM ledger WHERE seq > ?1 ORDER BY seq")?;
    let mut rows = stmt.query([seq])?;
    let mut between = Vec::new();
    let mut checkpoint = None;
    while let Some(row) = rows.next()? {
        let (s, at, kind, body): (i64, i64, i64, Vec<u8>) =
            (row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?);
        if kind == i64::from(KIND_CHECKPOINT) {
            checkpoint = Some(entry_of(s, at, body));
            break;
        }
        if between.len() >= MAX_BETWEEN {
            break;
        }
        let leaf = entry::leaf(
            u64::try_from(s).unwrap_or(0),
            u64::try_from(at).unwrap_or(0),
            &body,
        );
        between.push(hex::encode(leaf));
    }
    Ok(Some(LedgerProof {
        prev_head: hex::encode(prev_head),
        entry: entry_of(seq, at_ms, body),
        between: if checkpoint.is_some() {
            between
        } else {
            Vec::new()
        },
        checkpoint,
    }))
}

fn unhex<const N: usize>(text: &str, what: &str) -> Result<[u8; N], String> {
    let bytes = hex::decode(text).map_err(|e| format!("the {what} is not hex: {e}"))?;
    <[u8; N]>::try_from(bytes.as_slice()).map_err(|_| format!("the {what} is not {N} bytes"))
}

fn decode(entry: &ProofEntry) -> Result<(Vec<u8>, Body), String> {
    let bytes = hex::decode(&entry.body).map_err(|e| format!("an entry is not hex: {e}"))?;
    let body = Body::decode(&bytes)?;
    Ok((bytes, body))
}

/// Checks a proof against the session as the evidence file holds it (its row, seal hash and final chunk hash).
pub(crate) fn check(
    proof: &LedgerProof,
    row: &SessionRow,
    seal_hash: Option<&Hash>,
    last_chunk_hash: Option<&Hash>,
    key: &VerifyingKey,
) -> ProofCheck {
    match check_inner(proof, row, seal_hash, last_chunk_hash, key) {
        Ok(check) => check,
        Err(why) => ProofCheck::Failed(why),
    }
}

fn check_inner(
    proof: &LedgerProof,
    row: &SessionRow,
    seal_hash: Option<&Hash>,
    last_chunk_hash: Option<&Hash>,
    key: &VerifyingKey,
) -> Result<ProofCheck, String> {
    let (bytes, body) = decode(&proof.entry)?;
    if body.session() != Some(row.id.as_str()) {
        return Err("the ledger entry is about another session".into());
    }
    let genesis = chain::genesis(&row.identity());
    let matches_end = |end: &entry::SessionEnd| {
        end.chunk_count == row.chunk_count
            && Some(&end.final_hash) == seal_hash
            && Some(end.outcome) == row.outcome
            && Some(end.ended_at_ms) == row.ended_at_ms
    };
    let state = match &body {
        Body::Seal { end, .. } if matches_end(end) => "sealed".to_owned(),
        Body::Recovered {
            end, unvouched_ms, ..
        } if matches_end(end) => {
            format!("recovered after a crash, {unvouched_ms} ms after the last checkpoint")
        }
        Body::Chunk { seq, hash, .. }
            if row.chunk_count == seq + 1
                && Some(hash) == last_chunk_hash
                && seal_hash.is_none() =>
        {
            "live".to_owned()
        }
        Body::Start { genesis: g, .. }
            if *g == genesis && row.chunk_count == 0 && seal_hash.is_none() =>
        {
            "live".to_owned()
        }
        Body::BeforeLedger { genesis: g, .. } if *g == genesis => {
            "recorded before the ledger".to_owned()
        }
        Body::Damaged { reason, .. } => {
            return Err(format!("the ledger marks the session damaged: {reason}"));
        }
        _ => {
            return Err(
                "the session's last ledger entry does not match the exported session: it was cut short or changed"
                    .into(),
            );
        }
    };
    let Some(checkpoint) = &proof.checkpoint else {
        return Ok(ProofCheck::NotCovered);
    };
    let mut head = entry::next_head(
        &unhex(&proof.prev_head, "previous head")?,
        &entry::leaf(proof.entry.seq, proof.entry.at_ms, &bytes),
    );
    for leaf in &proof.between {
        head = entry::next_head(&head, &unhex(leaf, "leaf")?);
    }
    let (_, body) = decode(checkpoint)?;
    let Body::Checkpoint(c) = body else {
        return Err("the proof's checkpoint is not a checkpoint".into());
    };
    let expected_seq = proof.entry.seq + 1 + proof.between.len() as u64;
    if checkpoint.seq != expected_seq || c.size != expected_seq || c.at_ms != checkpoint.at_ms {
        return Err("the proof's checkpoint is not where the entries say it is".into());
    }
    // The head before the entry comes from the exporting database: it is vouched for only through the signature.
    if c.head != head {
        return Err("the checkpoint did not sign these entries: the proof was changed".into());
    }
    if c.key != key.to_bytes() || !c.signed_by(key) {
        return Err("the checkpoint's signature is not the recording key's".into());
    }
    Ok(ProofCheck::Covered {
        checkpoint_at_ms: c.at_ms,
        state,
    })
}
