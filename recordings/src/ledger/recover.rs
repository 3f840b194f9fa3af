//! Crash recovery with the ledger: at start, before the recorder runs, the gateway audits the ledger, notes its
//! restart, and seals each session a crash left open, but only as far as the ledger vouches for it.
//!
//! - A session whose stored chunks, identity or end agree with the ledger is sealed over exactly the chunks the
//!   ledger holds, as "recovered after a crash", stating how many chunks and milliseconds were written after the
//!   last checkpoint (those are in the ledger but no signature made before the crash covers them).
//! - A session that disagrees with the ledger (a chunk cut, replaced or added, its row changed), one the ledger does
//!   not know, and every open session when the ledger itself contradicts its checkpoints, is marked "damaged" in the
//!   ledger with the reason and left unsealed: recovery never re-signs what the ledger contradicts.
//! - Sessions recorded before the ledger are sealed over what is stored, as before the ledger existed.

use ed25519_dalek::SigningKey;
use rusqlite::{Connection, params};

use super::LedgerWriter;
use super::audit::{Finding, LedgerState, audit};
use super::entry::{Body, SessionEnd};
use crate::chain::{self, Hash};
use crate::error::RecordingError;
use crate::session::{Outcome, SessionId, unix_now_ms};
use crate::store::{last_chunk, load_session};

/// A session that recovery sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveredSession {
    /// The session.
    pub id: SessionId,
    /// Chunks written after the last checkpoint before the crash.
    pub unvouched_chunks: u64,
    /// How much of the recording's end (milliseconds) came after that checkpoint.
    pub unvouched_ms: u64,
}

/// What [`Store::recover_unfinished`](crate::Store::recover_unfinished) did and found.
#[derive(Debug, Clone, Default)]
pub struct Recovery {
    /// Sessions sealed as recovered after a crash.
    pub recovered: Vec<RecoveredSession>,
    /// Sessions left unsealed and marked damaged, with the reason.
    pub damaged: Vec<(SessionId, String)>,
    /// What the audit before recovery found (tampering to report; recovery repaired none of it).
    pub findings: Vec<Finding>,
}

pub(crate) fn recover(conn: &Connection, key: &SigningKey) -> Result<Recovery, RecordingError> {
    let report = audit(conn, &key.verifying_key(), &[])?;
    let mut ledger = LedgerWriter::load(conn)?;
    let tx = conn.unchecked_transaction()?;
    ledger.append(
        &tx,
        unix_now_ms(),
        &Body::Restart {
            vouched: report.vouched,
            contradicted: !report.chain_sound,
        },
    )?;
    ledger.checkpoint(&tx, key, unix_now_ms())?;
    tx.commit()?;

    let open: Vec<String> = {
        let mut stmt =
            conn.prepare("SELECT id FROM sessions WHERE ended_at_ms IS NULL ORDER BY id")?;
        stmt.query_map([], |row| row.get(0))?
            .collect::<Result<_, _>>()?
    };
    let last_checkpoint_ms = report.last_checkpoint.as_ref().map(|c| c.at_ms);
    let mut recovery = Recovery::default();
    for id in open {
        let damage = match report.state(&id) {
            None => Some("the session is not in the ledger".to_owned()),
            Some(LedgerState::Sealed { .. } | LedgerState::Recovered { .. }) => {
                // Its seal was removed after the ledger sealed it; the audit reports that.
                recovery
                    .damaged
                    .push((id.clone(), "its seal was removed".into()));
                continue;
            }
            Some(LedgerState::Damaged { .. }) => continue,
            Some(LedgerState::BeforeLedger { .. }) => None,
            Some(LedgerState::Live { .. }) if !report.chain_sound => Some(
                "the ledger does not match its checkpoints, so recovery signs nothing in it"
                    .to_owned(),
            ),
            Some(LedgerState::Live { .. }) => {
                report.findings_for(&id).next().map(|f| match f.chunk {
                    Some(chunk) => format!("chunk {chunk}: {}", f.what),
                    None => f.what.clone(),
                })
            }
        };
        let tx = conn.unchecked_transaction()?;
        let mut staged = ledger;
        let now = unix_now_ms();
        match damage {
            Some(reason) => {
                staged.append(
                    &tx,
                    now,
                    &Body::Damaged {
                        session: id.clone(),
                        reason: reason.clone(),
                    },
                )?;
                recovery.damaged.push((id.clone(), reason));
            }
            None => {
                let before_ledger =
                    matches!(report.state(&id), Some(LedgerState::BeforeLedger { .. }));
                let Some(sealed) = seal_open_session(&tx, key, &id)? else {
                    continue;
                };
                let (unvouched_chunks, unvouched_ms) = if before_ledger {
                    (0, 0)
                } else {
                    unvouched(&tx, &id, report.vouched, last_checkpoint_ms)?
                };
                staged.append(
                    &tx,
                    now,
                    &Body::Recovered {
                        session: id.clone(),
                        end: sealed,
                        unvouched_chunks,
                        unvouched_ms,
                    },
                )?;
                recovery.recovered.push(super::RecoveredSession {
                    id: id.clone(),
                    unvouched_chunks,
                    unvouched_ms,
                });
            }
        }
        staged.checkpoint(&tx, key, now)?;
        tx.commit()?;
        ledger = staged;
    }
    recovery.findings = report.findings;
    Ok(recovery)
}

/// Seals a session over its stored chunks as incomplete; `None` if it is gone or already ended.
fn seal_open_session(
    conn: &Connection,
    key: &SigningKey,
    id: &str,
) -> Result<Option<SessionEnd>, RecordingError> {
    let Some(row) = load_session(conn, id)? else {
        return Ok(None);
    };
    let (final_hash, end_offset): (Hash, u64) = last_chunk(conn, &row)?;
    let ended_at_ms = row.started_at_ms.saturating_add(end_offset);
    let seal = chain::seal(
        key,
        &chain::SealFields {
            id: &row.id,
            final_hash: &final_hash,
            chunk_count: row.chunk_count,
            outcome: Outcome::Incomplete,
            ended_at_ms,
        },
    );
    let changed = conn.execute(
        "UPDATE sessions SET ended_at_ms = ?2, outcome = ?3, seal_hash = ?4, seal_sig = ?5, seal_key = ?6
         WHERE id = ?1 AND ended_at_ms IS NULL",
        params![
            row.id,
            ended_at_ms,
            Outcome::Incomplete,
            &seal.hash[..],
            &seal.signature[..],
            &seal.public_key[..]
        ],
    )?;
    Ok((changed == 1).then_some(SessionEnd {
        chunk_count: row.chunk_count,
        final_hash,
        outcome: Outcome::Incomplete,
        ended_at_ms,
    }))
}

/// How many of a session's chunk entries came after the vouched prefix, and how long after the last checkpoint the
/// last of them was written.
fn unvouched(
    conn: &Connection,
    id: &str,
    vouched: u64,
    last_checkpoint_ms: Option<u64>,
) -> Result<(u64, u64), RecordingError> {
    let (count, last_at): (i64, Option<i64>) = conn.query_row(
        "SELECT count(*), max(at_ms) FROM ledger WHERE session_id = ?1 AND kind = ?2 AND seq >= ?3",
        params![id, super::entry::KIND_CHUNK, vouched],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let count = u64::try_from(count).unwrap_or(0);
    let last_at = last_at.and_then(|t| u64::try_from(t).ok()).unwrap_or(0);
    let ms = match last_checkpoint_ms {
        Some(at) if count > 0 => last_at.saturating_sub(at),
        // Without any checkpoint, the whole session is unvouched.
        None if count > 0 => last_at.saturating_sub(first_entry_ms(conn, id)?),
        _ => 0,
    };
    Ok((count, ms))
}

fn first_entry_ms(conn: &Connection, id: &str) -> Result<u64, RecordingError> {
    let at: Option<i64> = conn.query_row(
        "SELECT min(at_ms) FROM ledger WHERE session_id = ?1",
        [id],
        |r| r.get(0),
    )?;
    Ok(at.and_then(|t| u64::try_from(t).ok()).unwrap_or(0))
}
