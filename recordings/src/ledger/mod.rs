//! The ledger: one append-only, hash-chained log in the recordings database of every session start, chunk, seal,
//! recovery and gateway restart, with signed checkpoints of its head.
//!
//! A session's own chain (see `chain.rs`) shows what changed inside it; the ledger shows what was removed around it:
//! a deleted session, a shortened one, a cleared seal, a row that was never recorded. A checkpoint is the unit of
//! trust: the writer signs the head at least every second while anything is recorded and at every seal, so nothing a
//! checkpoint covers can be removed, shortened, reordered or un-sealed without [`audit`] naming it.
//!
//! Why a plain chain rather than a Merkle tree: every reader here verifies the whole ledger anyway (an auditor's
//! `--verify`, recovery at start), so logarithmic proofs buy nothing for them; a checkpoint follows every seal in
//! the same transaction, so an evidence file ties its session to a checkpoint with a segment of one or two entries;
//! and appending costs one hash and one row, with no tree state to keep or get wrong.

mod audit;
mod compare;
mod entry;
mod proof;
mod recover;

use ed25519_dalek::SigningKey;
use rusqlite::{Connection, OptionalExtension, params};

pub(crate) use audit::audit;
pub use audit::{Finding, LedgerReport, LedgerState};
pub use entry::Checkpoint;
pub(crate) use entry::{Body, SessionEnd};
pub use proof::ProofCheck;
pub(crate) use proof::{LedgerProof, check as check_proof, export as export_proof};
pub(crate) use recover::recover;
pub use recover::{RecoveredSession, Recovery};

use crate::chain::Hash;
use crate::error::RecordingError;

/// Decodes an entry body, for the fuzz target of the ledger's parsers: `Ok` with the entry's kind number.
pub fn decode_entry(bytes: &[u8]) -> Result<u8, String> {
    Body::decode(bytes).map(|body| body.kind())
}

/// The writer's position in the ledger. `Copy`, so a failed transaction restores the state from before it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LedgerWriter {
    next_seq: u64,
    head: Hash,
    /// Entries were appended since the last checkpoint.
    dirty: bool,
    /// Time spent appending and signing, for the benchmarks and metrics.
    pub nanos: u64,
    /// Entries appended by this writer (checkpoints included).
    pub entries: u64,
    /// Checkpoints signed by this writer.
    pub checkpoints: u64,
}

impl LedgerWriter {
    /// The position after the last stored entry.
    pub(crate) fn load(conn: &Connection) -> Result<LedgerWriter, RecordingError> {
        let last: Option<(i64, i64, Vec<u8>)> = conn
            .query_row(
                "SELECT seq, kind, head FROM ledger ORDER BY seq DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let (next_seq, head, dirty) = match last {
            None => (0, entry::start_head(), false),
            Some((seq, kind, head)) => {
                let seq = u64::try_from(seq).map_err(|_| {
                    RecordingError::Corrupt("a ledger entry number is negative".into())
                })?;
                let head = Hash::try_from(head.as_slice()).map_err(|_| {
                    RecordingError::Corrupt(format!("ledger entry {seq}'s hash is not 32 bytes"))
                })?;
                (seq + 1, head, kind != i64::from(entry::KIND_CHECKPOINT))
            }
        };
        Ok(LedgerWriter {
            next_seq,
            head,
            dirty,
            nanos: 0,
            entries: 0,
            checkpoints: 0,
        })
    }

    /// Whether entries were appended since the last checkpoint.
    pub(crate) fn dirty(&self) -> bool {
        self.dirty
    }

    /// Appends an entry inside the caller's transaction.
    pub(crate) fn append(
        &mut self,
        conn: &Connection,
        at_ms: u64,
        body: &Body,
    ) -> Result<(), RecordingError> {
        let started = std::time::Instant::now();
        let bytes = body.encode();
        let seq = self.next_seq;
        let head = entry::next_head(&self.head, &entry::leaf(seq, at_ms, &bytes));
        // A chunk's number and hash are also columns, so that verification compares them with the chunks table
        // in SQL; verification checks that they say what the body says.
        let (chunk_seq, digest) = match body {
            Body::Chunk { seq, hash, .. } => (Some(*seq), Some(&hash[..])),
            _ => (None, None),
        };
        conn.prepare_cached(
            "INSERT INTO ledger (seq, at_ms, kind, session_id, chunk_seq, digest, body, head)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?
        .execute(params![
            seq,
            at_ms,
            body.kind(),
            body.session(),
            chunk_seq,
            digest,
            bytes,
            &head[..]
        ])?;
        self.next_seq = seq + 1;
        self.head = head;
        self.dirty = !matches!(body, Body::Checkpoint(_));
        self.entries += 1;
        self.nanos += u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        Ok(())
    }

    /// Signs the head and appends the checkpoint inside the caller's transaction.
    pub(crate) fn checkpoint(
        &mut self,
        conn: &Connection,
        key: &SigningKey,
        at_ms: u64,
    ) -> Result<Checkpoint, RecordingError> {
        let started = std::time::Instant::now();
        let checkpoint = Checkpoint::sign(key, self.next_seq, self.head, at_ms);
        self.nanos += u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.append(conn, at_ms, &Body::Checkpoint(checkpoint.clone()))?;
        self.checkpoints += 1;
        Ok(checkpoint)
    }
}

/// One stored entry as read back, before it is trusted.
#[derive(Debug, Clone)]
pub(crate) struct StoredEntry {
    pub seq: i64,
    pub at_ms: i64,
    pub kind: i64,
    pub session_id: Option<String>,
    pub chunk_seq: Option<i64>,
    pub digest: Option<Vec<u8>>,
    pub body: Vec<u8>,
    pub head: Vec<u8>,
}

/// The columns [`StoredEntry`] is read from.
pub(crate) const ENTRY_COLUMNS: &str =
    "seq, at_ms, kind, session_id, chunk_seq, digest, body, head";

pub(crate) fn stored_entry(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredEntry> {
    Ok(StoredEntry {
        seq: row.get(0)?,
        at_ms: row.get(1)?,
        kind: row.get(2)?,
        session_id: row.get(3)?,
        chunk_seq: row.get(4)?,
        digest: row.get(5)?,
        body: row.get(6)?,
        head: row.get(7)?,
    })
}

/// The migration's part in Rust: every session already stored enters the ledger as recorded before it.
pub(crate) fn backfill_before_ledger(conn: &Connection) -> Result<(), RecordingError> {
    let rows = {
        let sql = format!(
            "SELECT {} FROM sessions ORDER BY started_at_ms, id",
            crate::store::SESSION_COLUMNS
        );
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt.query_map([], crate::store::session_row)?;
        rows.collect::<Result<Vec<_>, _>>()?
    };
    let mut ledger = LedgerWriter::load(conn)?;
    let now = crate::session::unix_now_ms();
    for row in rows {
        let body = Body::BeforeLedger {
            genesis: crate::chain::genesis(&row.identity()),
            chunk_count: row.chunk_count,
            sealed: row.sealed,
            session: row.id,
        };
        ledger.append(conn, now, &body)?;
    }
    Ok(())
}

/// The newest checkpoint entry, decoded but not verified.
pub(crate) fn latest_checkpoint(conn: &Connection) -> Result<Option<Checkpoint>, RecordingError> {
    let body: Option<Vec<u8>> = conn
        .query_row(
            "SELECT body FROM ledger WHERE kind = ?1 ORDER BY seq DESC LIMIT 1",
            [entry::KIND_CHECKPOINT],
            |r| r.get(0),
        )
        .optional()?;
    match body.map(|b| Body::decode(&b)) {
        None => Ok(None),
        Some(Ok(Body::Checkpoint(c))) => Ok(Some(c)),
        Some(Ok(_)) => Err(RecordingError::Corrupt(
            "the newest checkpoint entry is not a checkpoint".into(),
        )),
        Some(Err(why)) => Err(RecordingError::Corrupt(format!(
            "the newest checkpoint does not parse: {why}"
        ))),
    }
}

/// For the fuzz target of the ledger's parsers: stores `entries` (time, body bytes as given, hostile) as a ledger
/// with a correct chain in a fresh in-memory database, audits it with a fixed key and returns the number of
/// findings. The kind and session columns come from the body when it parses.
#[doc(hidden)]
pub fn audit_entries_for_fuzzing(entries: &[(u64, Vec<u8>)]) -> Result<usize, RecordingError> {
    let conn = crate::schema::open_in_memory()?;
    let mut head = entry::start_head();
    for (seq, (at_ms, bytes)) in entries.iter().enumerate() {
        let seq = seq as u64;
        let at_ms = *at_ms & (i64::MAX as u64);
        head = entry::next_head(&head, &entry::leaf(seq, at_ms, bytes));
        let parsed = Body::decode(bytes).ok();
        let kind = parsed.as_ref().map_or(0, Body::kind);
        let session = parsed.as_ref().and_then(|b| b.session().map(str::to_owned));
        let (chunk_seq, digest) = match &parsed {
            Some(Body::Chunk { seq, hash, .. }) => (i64::try_from(*seq).ok(), Some(hash.to_vec())),
            _ => (None, None),
        };
        conn.execute(
            "INSERT INTO ledger (seq, at_ms, kind, session_id, chunk_seq, digest, body, head)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                seq,
                at_ms,
                kind,
                session,
                chunk_seq,
                digest,
                bytes,
                &head[..]
            ],
        )?;
    }
    let key = SigningKey::from_bytes(&[7; 32]).verifying_key();
    Ok(audit(&conn, &key, &[])?.findings.len())
}
