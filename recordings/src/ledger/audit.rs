//! Verification of the ledger against itself, its checkpoints and the sessions and chunks it names.
//!
//! One pass over the ledger checks the chain (each stored head against its entry and the one before it, which
//! localizes a change to one entry), every checkpoint (its signature, its key, and the head recomputed from the real
//! entries, which catches a change even when the attacker rewrote the stored heads), and the rules the writer keeps:
//! numbers without gaps, a checkpoint right after every seal, a session's chunks in order and its seal agreeing with
//! them, a restart stating what the last checkpoint covered. A second pass compares the sessions table and the chunks
//! table with what the ledger says, mostly in SQL so that memory stays per session, not per chunk.

use std::collections::BTreeMap;
use std::fmt;

use ed25519_dalek::VerifyingKey;
use rusqlite::Connection;

use super::entry::{self, Body, Checkpoint, SessionEnd};
use super::{ENTRY_COLUMNS, compare, stored_entry};
use crate::chain::Hash;
use crate::error::RecordingError;

/// Something verification found wrong, named by what it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The session it concerns, if any.
    pub session: Option<String>,
    /// The chunk of that session, if any.
    pub chunk: Option<u64>,
    /// The ledger entry (a checkpoint is an entry), if any.
    pub entry: Option<u64>,
    /// What is wrong, in words.
    pub what: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.session, self.chunk, self.entry) {
            (Some(s), Some(c), _) => write!(f, "session {s} chunk {c}: ")?,
            (Some(s), None, _) => write!(f, "session {s}: ")?,
            (None, _, Some(e)) => write!(f, "ledger entry {e}: ")?,
            (None, _, None) => write!(f, "ledger: ")?,
        }
        f.write_str(&self.what)
    }
}

/// What the ledger says about one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LedgerState {
    /// Recorded before the ledger existed: only its own chain and seal vouch for it.
    BeforeLedger {
        /// Whether it was sealed when the ledger began.
        sealed: bool,
    },
    /// Started and not ended: still recording (or the gateway has not restarted since a crash).
    Live {
        /// Chunks the ledger holds for it.
        chunks: u64,
    },
    /// Sealed by the gateway when it ended.
    Sealed {
        /// Chunks the seal covers.
        chunks: u64,
    },
    /// Sealed by crash recovery.
    Recovered {
        /// Chunks the seal covers.
        chunks: u64,
        /// Of those, how many were written after the last checkpoint before the crash.
        unvouched_chunks: u64,
        /// How much of the recording (its last milliseconds) was written after that checkpoint.
        unvouched_ms: u64,
    },
    /// Crash recovery found it disagreeing with the ledger and did not seal it.
    Damaged {
        /// What recovery found.
        reason: String,
    },
}

impl fmt::Display for LedgerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LedgerState::BeforeLedger { .. } => f.write_str("recorded before the ledger"),
            LedgerState::Live { .. } => f.write_str("live (in the ledger, not sealed yet)"),
            LedgerState::Sealed { .. } => f.write_str("sealed in the ledger"),
            LedgerState::Recovered {
                unvouched_ms,
                unvouched_chunks,
                ..
            } => write!(
                f,
                "recovered after a crash, {unvouched_ms} ms after the last checkpoint \
                 ({unvouched_chunks} chunks written after it)"
            ),
            LedgerState::Damaged { reason } => write!(f, "damaged: {reason}"),
        }
    }
}

/// The result of [`Store::audit_ledger`](crate::Store::audit_ledger).
#[derive(Debug, Clone, Default)]
pub struct LedgerReport {
    /// Entries read.
    pub entries: u64,
    /// Checkpoints checked and valid.
    pub checkpoints: u64,
    /// The last valid checkpoint with nothing contradicted before it.
    pub last_checkpoint: Option<Checkpoint>,
    /// Entries covered by that checkpoint (it included); the rest were written after it.
    pub vouched: u64,
    /// Kept checkpoints (from elsewhere) checked against this ledger.
    pub kept_checked: u64,
    /// Everything wrong, in the order found.
    pub findings: Vec<Finding>,
    /// Every session the ledger or the database names, with what the ledger says of it.
    pub sessions: BTreeMap<String, LedgerState>,
    /// No finding about the chain or a checkpoint: recovery may sign on top of it.
    pub(crate) chain_sound: bool,
    /// Sessions recorded before the ledger (their chunks have no entries), whatever happened to them since.
    pub(super) before_ledger: std::collections::BTreeSet<String>,
}

impl LedgerReport {
    /// What the ledger says of a session (`None`: the ledger does not know it).
    pub fn state(&self, id: &str) -> Option<&LedgerState> {
        self.sessions.get(id)
    }

    /// The findings about one session.
    pub fn findings_for<'a>(&'a self, id: &'a str) -> impl Iterator<Item = &'a Finding> + 'a {
        self.findings
            .iter()
            .filter(move |f| f.session.as_deref() == Some(id))
    }

    /// The findings about no session in particular (the chain, checkpoints, restarts).
    pub fn ledger_findings(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.session.is_none())
    }

    /// Whether nothing was found.
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }

    pub(super) fn find(
        &mut self,
        session: Option<&str>,
        chunk: Option<u64>,
        entry: Option<u64>,
        what: String,
    ) {
        self.findings.push(Finding {
            session: session.map(str::to_owned),
            chunk,
            entry,
            what,
        });
    }
}

/// How a session ended, per the ledger.
#[derive(Debug, Clone)]
pub(super) enum End {
    Sealed(SessionEnd),
    Recovered {
        end: SessionEnd,
        unvouched_chunks: u64,
        unvouched_ms: u64,
    },
    Damaged(String),
}

/// What pass 1 keeps of each session: a few fields, never its chunks.
#[derive(Debug, Clone, Default)]
pub(super) struct Tracked {
    pub(super) genesis: Option<Hash>,
    pub(super) before_ledger: Option<(u64, bool)>,
    pub(super) chunks: u64,
    last_chunk_hash: Option<Hash>,
    pub(super) end: Option<(u64, End)>,
    pub(super) first_entry: u64,
    pub(super) last_entry: u64,
    pub(super) started_at_ms: u64,
}

/// Pass 1's running state.
struct Walk<'k> {
    key: &'k VerifyingKey,
    kept: Vec<Checkpoint>,
    report: LedgerReport,
    sessions: BTreeMap<String, Tracked>,
    expected_seq: u64,
    /// The head over the entries as they are, from the start: what a checkpoint must have signed.
    real_head: Hash,
    /// The stored head of the entry before, for localizing a change to one entry.
    prev_stored: Hash,
    /// The previous entry ended a session, so this one must be a checkpoint.
    needs_checkpoint: Option<(u64, String)>,
    /// The last valid checkpoint's entry number.
    last_valid: Option<u64>,
    /// A checkpoint has failed: later ones are counted, not each reported.
    failed_checkpoints: u64,
    last_restart: Option<u64>,
}

/// Audits the ledger of the database behind `conn` with the recording public key, and checks each kept checkpoint
/// (written elsewhere, e.g. from the journal) against it.
pub(crate) fn audit(
    conn: &Connection,
    key: &VerifyingKey,
    kept: &[Checkpoint],
) -> Result<LedgerReport, RecordingError> {
    let mut walk = Walk {
        key,
        kept: kept.to_vec(),
        report: LedgerReport {
            chain_sound: true,
            ..LedgerReport::default()
        },
        sessions: BTreeMap::new(),
        expected_seq: 0,
        real_head: entry::start_head(),
        prev_stored: entry::start_head(),
        needs_checkpoint: None,
        last_valid: None,
        failed_checkpoints: 0,
        last_restart: None,
    };
    {
        let sql = format!("SELECT {ENTRY_COLUMNS} FROM ledger ORDER BY seq");
        let mut stmt = conn.prepare(&sql)?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            walk.entry(stored_entry(row)?);
        }
    }
    walk.finish();
    let Walk {
        mut report,
        sessions,
        ..
    } = walk;
    compare::compare_schema(conn, &mut report)?;
    compare::compare_sessions(conn, &mut report, sessions)?;
    Ok(report)
}

impl Walk<'_> {
    fn find(&mut self, entry: u64, session: Option<&str>, what: String) {
        self.report.find(session, None, Some(entry), what);
    }

    fn broken(&mut self, entry: u64, what: String) {
        self.report.chain_sound = false;
        self.find(entry, None, what);
    }

    fn entry(&mut self, stored: super::StoredEntry) {
        let Ok(seq) = u64::try_from(stored.seq) else {
            self.broken(
                0,
                format!("an entry has the negative number {}", stored.seq),
            );
            return;
        };
        self.report.entries += 1;
        let after_gap = seq != self.expected_seq;
        if seq > self.expected_seq {
            let what = if seq == self.expected_seq + 1 {
                format!("entry {} is missing (removed)", self.expected_seq)
            } else {
                format!(
                    "entries {} to {} are missing (removed)",
                    self.expected_seq,
                    seq - 1
                )
            };
            self.broken(self.expected_seq, what);
        }
        self.expected_seq = seq + 1;
        let at_ms = u64::try_from(stored.at_ms).unwrap_or(0);
        let leaf = entry::leaf(seq, at_ms, &stored.body);
        let before_real = self.real_head;
        self.real_head = entry::next_head(&self.real_head, &leaf);
        let local = entry::next_head(&self.prev_stored, &leaf);
        match Hash::try_from(stored.head.as_slice()) {
            Ok(head) => {
                if head != local && !after_gap {
                    self.broken(
                        seq,
                        "the entry was changed: its stored hash does not match its contents and the entry before it"
                            .into(),
                    );
                }
                self.prev_stored = head;
            }
            Err(_) => {
                self.broken(seq, "the stored hash is not 32 bytes".into());
                self.prev_stored = local;
            }
        }
        let body = match Body::decode(&stored.body) {
            Ok(body) => body,
            Err(why) => {
                self.broken(seq, format!("the entry does not parse: {why}"));
                return;
            }
        };
        self.check_columns(seq, &stored, &body);
        if let Some((sealed_at, session)) = self.needs_checkpoint.take()
            && !matches!(body, Body::Checkpoint(_))
        {
            self.broken(
                sealed_at,
                format!(
                    "the checkpoint written with the end of session {session} (entry {sealed_at}) is missing"
                ),
            );
        }
        if body.ends_session() {
            self.needs_checkpoint = body.session().map(|s| (seq, s.to_owned()));
        }
        match body {
            Body::Checkpoint(checkpoint) => self.checkpoint(seq, at_ms, before_real, checkpoint),
            Body::Restart { vouched, .. } => {
                let expected = self.last_valid.map_or(0, |c| c + 1);
                if vouched != expected {
                    self.broken(
                        seq,
                        format!(
                            "the gateway's restart says {vouched} entries were covered by a checkpoint, but the \
                             last valid checkpoint before it covers {expected}"
                        ),
                    );
                }
                self.last_restart = Some(seq);
            }
            other => self.session_entry(seq, at_ms, other),
        }
        self.check_kept(seq, &before_real);
    }

    /// The kind, session and chunk columns must say what the body says (queries rely on them).
    fn check_columns(&mut self, seq: u64, stored: &super::StoredEntry, body: &Body) {
        let (chunk_seq, digest) = match body {
            Body::Chunk { seq, hash, .. } => (i64::try_from(*seq).ok(), Some(hash.to_vec())),
            _ => (None, None),
        };
        if stored.kind != i64::from(body.kind())
            || stored.session_id.as_deref() != body.session()
            || stored.chunk_seq != chunk_seq
            || stored.digest != digest
        {
            self.broken(
                seq,
                "the entry's kind, session or chunk columns were changed: they disagree with its contents".into(),
            );
        }
    }

    fn checkpoint(&mut self, seq: u64, at_ms: u64, real_before: Hash, c: Checkpoint) {
        let problem = if c.size != seq || c.at_ms != at_ms {
            Some("the checkpoint's size or time disagree with its place in the ledger".to_owned())
        } else if c.key != self.key.to_bytes() {
            Some(format!(
                "the checkpoint was signed with key {}, not the recording key",
                hex::encode(c.key)
            ))
        } else if !c.signed_by(self.key) {
            Some("the checkpoint's signature is not valid: it was forged or changed".to_owned())
        } else if c.head != real_before {
            Some(match self.last_valid {
                Some(last) => format!(
                    "the ledger before this checkpoint is not what was signed: an entry after the checkpoint at \
                     entry {last} was changed, removed or inserted"
                ),
                None => "the ledger before this checkpoint is not what was signed: an entry before it was changed, \
                         removed or inserted"
                    .to_owned(),
            })
        } else {
            None
        };
        match problem {
            None if self.report.chain_sound => {
                self.report.checkpoints += 1;
                self.last_valid = Some(seq);
                self.report.vouched = seq + 1;
                self.report.last_checkpoint = Some(c);
            }
            // A valid signature over a head that follows a broken stretch vouches only for what came after it.
            None => self.report.checkpoints += 1,
            Some(what) if self.failed_checkpoints == 0 => {
                self.failed_checkpoints = 1;
                self.broken(seq, what);
            }
            Some(_) => self.failed_checkpoints += 1,
        }
    }

    fn check_kept(&mut self, seq: u64, real_before: &Hash) {
        let key = *self.key;
        let mut found = Vec::new();
        self.kept.retain(|kept| {
            if kept.size != seq {
                return true;
            }
            found.push(kept.clone());
            false
        });
        for kept in found {
            self.report.kept_checked += 1;
            if !kept.signed_by(&key) {
                self.broken(
                    seq,
                    "the kept checkpoint for this entry is not signed by the recording key".into(),
                );
            } else if kept.head != *real_before {
                self.broken(
                    seq,
                    format!(
                        "the ledger differs from the checkpoint kept from {}: history before entry {seq} was \
                         rewritten",
                        crate::text::utc(kept.at_ms)
                    ),
                );
            }
        }
    }

    fn session_entry(&mut self, seq: u64, at_ms: u64, body: Body) {
        let Some(id) = body.session().map(str::to_owned) else {
            return;
        };
        let known = self.sessions.contains_key(&id);
        if self.sessions.get(&id).is_some_and(|t| t.end.is_some()) {
            let what = "the ledger has entries for the session after its end".to_owned();
            self.find(seq, Some(&id), what);
            return;
        }
        let opens = matches!(body, Body::Start { .. } | Body::BeforeLedger { .. });
        if opens && known {
            self.find(seq, Some(&id), "the session enters the ledger twice".into());
            return;
        }
        if !opens && !known {
            self.find(
                seq,
                Some(&id),
                "the ledger names the session before its start".into(),
            );
            return;
        }
        let tracked = self.sessions.entry(id.clone()).or_default();
        tracked.last_entry = seq;
        let problem = match body {
            Body::Start { genesis, .. } => {
                *tracked = Tracked {
                    genesis: Some(genesis),
                    first_entry: seq,
                    last_entry: seq,
                    started_at_ms: at_ms,
                    ..Tracked::default()
                };
                None
            }
            Body::BeforeLedger {
                genesis,
                chunk_count,
                sealed,
                ..
            } => {
                *tracked = Tracked {
                    genesis: Some(genesis),
                    before_ledger: Some((chunk_count, sealed)),
                    first_entry: seq,
                    last_entry: seq,
                    started_at_ms: at_ms,
                    ..Tracked::default()
                };
                None
            }
            Body::Chunk {
                seq: chunk, hash, ..
            } => {
                if tracked.before_ledger.is_some() {
                    Some("a session recorded before the ledger has a chunk entry".to_owned())
                } else if chunk != tracked.chunks {
                    Some(format!(
                        "the ledger's chunk {chunk} follows chunk {} of the session",
                        tracked.chunks.wrapping_sub(1) as i64
                    ))
                } else {
                    tracked.chunks += 1;
                    tracked.last_chunk_hash = Some(hash);
                    None
                }
            }
            Body::Seal { end, .. } => {
                let problem = seal_problem(tracked, &end);
                tracked.end = Some((seq, End::Sealed(end)));
                problem
            }
            Body::Recovered {
                end,
                unvouched_chunks,
                unvouched_ms,
                ..
            } => {
                let problem = seal_problem(tracked, &end);
                tracked.end = Some((
                    seq,
                    End::Recovered {
                        end,
                        unvouched_chunks,
                        unvouched_ms,
                    },
                ));
                problem
            }
            Body::Damaged { reason, .. } => {
                tracked.end = Some((seq, End::Damaged(reason)));
                None
            }
            Body::Checkpoint(_) | Body::Restart { .. } => None,
        };
        if let Some(what) = problem {
            self.find(seq, Some(&id), what);
        }
    }

    fn finish(&mut self) {
        if let Some((sealed_at, session)) = self.needs_checkpoint.take() {
            self.broken(
                sealed_at,
                format!("the checkpoint written with the end of session {session} is missing"),
            );
        }
        if self.failed_checkpoints > 1 {
            let later = self.failed_checkpoints - 1;
            self.report.find(
                None,
                None,
                None,
                format!("{later} later checkpoints do not match the ledger either"),
            );
        }
        for kept in std::mem::take(&mut self.kept) {
            self.report.chain_sound = false;
            self.report.find(
                None,
                None,
                Some(kept.size),
                format!(
                    "the ledger ends at entry {}, but a checkpoint kept from {} covers {} entries: the database \
                     was rolled back or its ledger cut",
                    self.expected_seq,
                    crate::text::utc(kept.at_ms),
                    kept.size
                ),
            );
        }
    }
}

/// Whether a session's end in the ledger agrees with the ledger's own chunk entries.
fn seal_problem(tracked: &Tracked, end: &SessionEnd) -> Option<String> {
    if tracked.before_ledger.is_some() {
        return None;
    }
    let final_hash = tracked.last_chunk_hash.or(tracked.genesis);
    (end.chunk_count != tracked.chunks || Some(end.final_hash) != final_hash).then(|| {
        format!(
            "the ledger's seal covers {} chunks, but the ledger holds {} for the session",
            end.chunk_count, tracked.chunks
        )
    })
}
