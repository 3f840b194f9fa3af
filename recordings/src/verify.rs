//! Verification of a stored session: recompute its hash chain from the stored chunks, and check its seal.
//!
//! The chain localizes tampering: the first chunk whose stored hash differs from the recomputed one is named,
//! whether its bytes were changed, it was swapped with another, or it came from elsewhere. A gap in the sequence
//! numbers is a missing chunk. A change to the session row's identity fields changes the chain's start, so it shows as
//! chunk 0 (or, with no chunks, as a seal mismatch); a change to its end, outcome or chunk count breaks the seal.

use ed25519_dalek::VerifyingKey;
use rusqlite::{Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use crate::chain::{self, ChunkFields, Hash};
use crate::error::RecordingError;
use crate::store::load_session;

/// The result of [`Store::verify`](crate::Store::verify).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verification {
    /// The chain is whole and the seal is valid for the expected key.
    Intact {
        /// How many chunks were checked.
        chunks: u64,
    },
    /// The chain is whole but the session has no seal yet (it is still running, or a crash has not been recovered).
    Unsealed {
        /// How many chunks were checked.
        chunks: u64,
    },
    /// The first chunk whose stored hash does not match the chain.
    BadChunk {
        /// Its sequence number.
        seq: u64,
        /// What is wrong, for a human.
        reason: String,
    },
    /// The first sequence number with no chunk, though later chunks (or the session's chunk count) say it existed.
    MissingChunk {
        /// The missing sequence number.
        seq: u64,
    },
    /// The chain is whole but the seal is absent in part, made with another key, or does not match the session.
    BadSeal {
        /// What is wrong, for a human.
        reason: String,
    },
}

impl Verification {
    /// Whether the recording is whole and validly sealed.
    pub fn is_intact(&self) -> bool {
        matches!(self, Verification::Intact { .. })
    }
}

/// Converts a stored integer that must not be negative.
fn non_negative(value: i64, what: &str) -> Result<u64, String> {
    u64::try_from(value).map_err(|_| format!("{what} is negative ({value})"))
}

/// The walk over the chunks: either the recomputed final hash and count, or the first problem.
fn walk_chain(
    conn: &Connection,
    id: &str,
    genesis: Hash,
) -> Result<Result<(Hash, u64), Verification>, RecordingError> {
    let mut stmt = conn.prepare(
        "SELECT seq, t_start_ms, t_end_ms, raw_len, data, hash FROM chunks WHERE session_id = ?1 ORDER BY seq",
    )?;
    let mut rows = stmt.query([id])?;
    let mut prev = genesis;
    let mut expected: u64 = 0;
    while let Some(row) = rows.next()? {
        let bad = |reason: String| {
            Ok(Err(Verification::BadChunk {
                seq: expected,
                reason,
            }))
        };
        let seq: i64 = row.get(0)?;
        let seq = match non_negative(seq, "the sequence number") {
            Ok(seq) => seq,
            Err(reason) => return bad(format!("a chunk was inserted: {reason}")),
        };
        if seq > expected {
            return Ok(Err(Verification::MissingChunk { seq: expected }));
        }
        let fields = (|| -> Result<_, String> {
            let t_start_ms =
                non_negative(row.get(1).map_err(|e| e.to_string())?, "the start time")?;
            let t_end_ms = non_negative(row.get(2).map_err(|e| e.to_string())?, "the end time")?;
            let raw_len = non_negative(row.get(3).map_err(|e| e.to_string())?, "the raw length")?;
            Ok((t_start_ms, t_end_ms, raw_len))
        })();
        let (t_start_ms, t_end_ms, raw_len) = match fields {
            Ok(f) => f,
            Err(reason) => return bad(reason),
        };
        let (Ok(data), Ok(stored)) = (row.get_ref(4)?.as_blob(), row.get_ref(5)?.as_blob()) else {
            return bad("the data or hash is not a blob".into());
        };
        let computed = chain::chunk_hash(
            &prev,
            &ChunkFields {
                seq,
                t_start_ms,
                t_end_ms,
                raw_len,
                data,
            },
        );
        if stored != computed {
            let reason = if seq == 0 {
                "chunk 0 does not continue the chain's start: its contents or the session row's identity fields \
                 (id, user, target, target address, protocol, client address, start time) were changed"
            } else {
                "the stored hash does not match the chunk's contents and the chunk before it: the chunk was \
                 changed, moved or spliced in"
            };
            return bad(reason.into());
        }
        prev = computed;
        expected += 1;
    }
    Ok(Ok((prev, expected)))
}

/// The seal columns of a session row: chain hash, signature, public key.
type SealColumns = (Option<Vec<u8>>, Option<Vec<u8>>, Option<Vec<u8>>);

pub(crate) fn verify(
    conn: &Connection,
    id: &str,
    key: &VerifyingKey,
) -> Result<Verification, RecordingError> {
    let Some(row) = load_session(conn, id)? else {
        return Err(RecordingError::NoSuchSession(id.to_owned()));
    };
    let (final_hash, chunks) = match walk_chain(conn, id, chain::genesis(&row.identity()))? {
        Ok(walked) => walked,
        Err(problem) => return Ok(problem),
    };
    if chunks < row.chunk_count {
        return Ok(Verification::MissingChunk { seq: chunks });
    }
    if chunks > row.chunk_count {
        return Ok(Verification::BadChunk {
            seq: row.chunk_count,
            reason: format!(
                "the session says it has {} chunks, but more are stored",
                row.chunk_count
            ),
        });
    }
    let seal: Option<SealColumns> = conn
        .query_row(
            "SELECT seal_hash, seal_sig, seal_key FROM sessions WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let bad_seal = |reason: &str| {
        Ok(Verification::BadSeal {
            reason: reason.to_owned(),
        })
    };
    let (seal_hash, seal_sig, seal_key) = match seal {
        None | Some((None, None, None)) => return Ok(Verification::Unsealed { chunks }),
        Some((Some(h), Some(s), Some(k))) => (h, s, k),
        Some(_) => return bad_seal("the seal is only partly present"),
    };
    let (Ok(seal_hash), Ok(signature), Ok(public_key)) = (
        Hash::try_from(seal_hash.as_slice()),
        <[u8; 64]>::try_from(seal_sig.as_slice()),
        <[u8; 32]>::try_from(seal_key.as_slice()),
    ) else {
        return bad_seal("the seal's fields have the wrong sizes");
    };
    if public_key != key.to_bytes() {
        return Ok(Verification::BadSeal {
            reason: format!(
                "sealed with key {}, not the expected key",
                hex::encode(public_key)
            ),
        });
    }
    let (Some(ended_at_ms), Some(outcome)) = (row.ended_at_ms, row.outcome) else {
        return bad_seal("the session is sealed but has no end time or outcome");
    };
    if seal_hash != final_hash {
        return bad_seal(if chunks == 0 {
            "the seal does not match the chain's start: the session row's identity fields were changed"
        } else {
            "the seal's chain hash does not match the stored chunks"
        });
    }
    let fields = chain::SealFields {
        id,
        final_hash: &final_hash,
        chunk_count: chunks,
        outcome,
        ended_at_ms,
    };
    if !chain::check_signature(key, &fields, &signature) {
        return bad_seal(
            "the signature does not match: the session's end time, outcome or chunk count was changed, or the seal \
             was forged",
        );
    }
    Ok(Verification::Intact { chunks })
}

/// Everything an auditor's `--verify` checks in one database: the ledger and every session's own chain and seal.
#[derive(Debug, Clone)]
pub struct DatabaseVerification {
    /// The ledger's audit (its findings name sessions, chunks and entries).
    pub ledger: crate::ledger::LedgerReport,
    /// Every session with the check of its own chain and seal, newest first.
    pub sessions: Vec<(crate::session::SessionRow, Verification)>,
}

impl DatabaseVerification {
    /// Whether a session passes: its chain and seal hold (or it is live, unsealed, and the ledger agrees), and
    /// nothing was found about it.
    pub fn session_ok(&self, id: &str) -> bool {
        let Some((_, verification)) = self.sessions.iter().find(|(row, _)| row.id == id) else {
            return false;
        };
        let own = match verification {
            Verification::Intact { .. } => true,
            Verification::Unsealed { .. } => matches!(
                self.ledger.state(id),
                Some(crate::ledger::LedgerState::Live { .. })
                    | Some(crate::ledger::LedgerState::BeforeLedger { sealed: false })
            ),
            _ => false,
        };
        own && self.ledger.findings_for(id).next().is_none()
    }

    /// Whether nothing at all was found.
    pub fn is_clean(&self) -> bool {
        self.ledger.is_clean()
            && self
                .sessions
                .iter()
                .all(|(row, _)| self.session_ok(&row.id))
    }
}

impl crate::Store {
    /// Verifies the whole database (see [`DatabaseVerification`]) with the recording public key, and against each
    /// checkpoint kept elsewhere.
    pub fn verify_database(
        &self,
        key: &VerifyingKey,
        kept: &[crate::ledger::Checkpoint],
    ) -> Result<DatabaseVerification, RecordingError> {
        let ledger = self.audit_ledger(key, kept)?;
        let mut sessions = Vec::new();
        for row in self.sessions()? {
            let verification = verify(self.connection(), &row.id, key)?;
            sessions.push((row, verification));
        }
        Ok(DatabaseVerification { ledger, sessions })
    }
}
