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
use super::{ENTRY_COLUMNS, stored_entry};
use crate::chain::{self, Hash};
use crate::error::RecordingError;
use crate::session::SessionRow;
use crate::store::{SESSION_COLUMNS, session_row};

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
    before_ledger: std::collections::BTreeSet<String>,
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

    fn find(&mut self, session: Option<&str>, chunk: Option<u64>, entry: Option<u64>, what: String) {
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
enum End {
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
struct Tracked {
    genesis: Option<Hash>,
    before_ledger: Option<(u64, bool)>,
    chunks: u64,
    last_chunk_hash: Option<Hash>,
    end: Option<(u64, End)>,
    first_entry: u64,
    last_entry: u64,
    started_at_ms: u64,
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
    compare_schema(conn, &mut report)?;
    compare_sessions(conn, &mut report, sessions)?;
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
            self.broken(0, format!("an entry has the negative number {}", stored.seq));
            return;
        };
        self.report.entries += 1;
        let after_gap = seq != self.expected_seq;
        if seq > self.expected_seq {
            let what = if seq == self.expected_seq + 1 {
                format!("entry {} is missing (removed)", self.expected_seq)
            } else {
                format!("entries {} to {} are missing (removed)", self.expected_seq, seq - 1)
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

/// Pass 2: the sessions and chunks tables against the ledger.
fn compare_sessions(
    conn: &Connection,
    report: &mut LedgerReport,
    mut tracked: BTreeMap<String, Tracked>,
) -> Result<(), RecordingError> {
    let last_restart = last_restart(conn)?;
    let totals = chunk_totals(conn)?;
    let rows: Vec<(SessionRow, Option<Vec<u8>>)> = {
        let sql = format!("SELECT {SESSION_COLUMNS}, seal_hash FROM sessions ORDER BY started_at_ms, id");
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt.query_map([], |r| Ok((session_row(r)?, r.get(13)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    let mut present = std::collections::BTreeSet::new();
    for (row, seal_hash) in rows {
        present.insert(row.id.clone());
        let id = row.id.clone();
        let (count, raw, stored) = totals.get(&id).copied().unwrap_or_default();
        if (count, raw, stored) != (row.chunk_count, row.bytes_raw, row.bytes_stored) {
            report.find(
                Some(&id),
                None,
                None,
                format!(
                    "the session's totals ({} chunks, {} bytes raw, {} stored) do not match its chunks ({count}, \
                     {raw}, {stored})",
                    row.chunk_count, row.bytes_raw, row.bytes_stored
                ),
            );
        }
        let Some(t) = tracked.remove(&id) else {
            report.find(
                Some(&id),
                None,
                None,
                format!(
                    "the session ({} to {}, started {}) is not in the ledger: it was added behind the gateway's \
                     back, or its ledger entries were removed",
                    row.user,
                    row.target,
                    crate::text::utc(row.started_at_ms)
                ),
            );
            continue;
        };
        if t.genesis != Some(chain::genesis(&row.identity())) {
            report.find(
                Some(&id),
                None,
                None,
                "the session's user, target, addresses, protocol or start time differ from what the ledger \
                 recorded at its start"
                    .into(),
            );
        }
        if t.before_ledger.is_some() {
            report.before_ledger.insert(id.clone());
        }
        let state = judge_end(report, &row, seal_hash.as_deref(), &t, last_restart);
        report.sessions.insert(id, state);
    }
    for (id, t) in tracked {
        report.find(
            Some(&id),
            None,
            Some(t.first_entry),
            format!(
                "the session is in the ledger (entries {} to {}, from {}) but not in the database: it was deleted",
                t.first_entry,
                t.last_entry,
                crate::text::utc(t.started_at_ms)
            ),
        );
    }
    compare_chunks(conn, report, &present)
}

/// The state of one session present in the database, and findings where its row disagrees with the ledger's end.
fn judge_end(
    report: &mut LedgerReport,
    row: &SessionRow,
    seal_hash: Option<&[u8]>,
    t: &Tracked,
    last_restart: Option<u64>,
) -> LedgerState {
    let id = row.id.as_str();
    let mut find = |what: String| report.find(Some(id), None, None, what);
    let (end, recovered) = match &t.end {
        Some((entry, End::Damaged(reason))) => {
            find(format!(
                "crash recovery found the session damaged and did not seal it (entry {entry}): {reason}"
            ));
            return LedgerState::Damaged {
                reason: reason.clone(),
            };
        }
        Some((entry, End::Sealed(end))) => ((entry, end), None),
        Some((
            entry,
            End::Recovered {
                end,
                unvouched_chunks,
                unvouched_ms,
            },
        )) => ((entry, end), Some((*unvouched_chunks, *unvouched_ms))),
        None => {
            if let Some((chunks, sealed)) = t.before_ledger {
                if sealed && !row.sealed {
                    find("the session was sealed when the ledger began, but its seal has been removed".into());
                } else if sealed && row.chunk_count != chunks {
                    find(format!(
                        "the session had {chunks} chunks when the ledger began; it now says {}",
                        row.chunk_count
                    ));
                } else if !sealed && row.sealed {
                    find("the session claims to be sealed, but the ledger never saw it sealed".into());
                }
                return LedgerState::BeforeLedger { sealed };
            }
            if row.sealed {
                find("the session claims to be sealed, but the ledger never sealed it".into());
            } else if row.ended_at_ms.is_some() || row.outcome.is_some() {
                find("the session has an end but no seal".into());
            } else if last_restart.is_some_and(|r| r > t.last_entry) {
                find("the session was left unsealed across a restart of the gateway".into());
            }
            return LedgerState::Live { chunks: t.chunks };
        }
    };
    let ((entry, end), recovered) = (end, recovered);
    if !row.sealed {
        find(format!(
            "the ledger sealed the session (entry {entry}), but its seal has been removed"
        ));
    } else if seal_hash != Some(&end.final_hash[..])
        || row.chunk_count != end.chunk_count
        || row.outcome != Some(end.outcome)
        || row.ended_at_ms != Some(end.ended_at_ms)
    {
        find(format!(
            "the session's seal, end, outcome or chunk count differ from its seal in the ledger (entry {entry}: \
             {} chunks, {}, ended {})",
            end.chunk_count,
            end.outcome.as_str(),
            crate::text::utc(end.ended_at_ms)
        ));
    }
    match recovered {
        Some((unvouched_chunks, unvouched_ms)) => LedgerState::Recovered {
            chunks: end.chunk_count,
            unvouched_chunks,
            unvouched_ms,
        },
        None => LedgerState::Sealed {
            chunks: end.chunk_count,
        },
    }
}

/// Chunks the ledger names that are missing or different, and stored chunks the ledger does not name.
fn compare_chunks(
    conn: &Connection,
    report: &mut LedgerReport,
    present: &std::collections::BTreeSet<String>,
) -> Result<(), RecordingError> {
    let mut stmt = conn.prepare(
        "SELECT l.session_id, l.chunk_seq, l.seq, c.hash IS NULL FROM ledger l
         LEFT JOIN chunks c ON c.session_id = l.session_id AND c.seq = l.chunk_seq
         WHERE l.kind = ?1 AND (c.hash IS NULL OR c.hash IS NOT l.digest)
         ORDER BY l.seq",
    )?;
    let mut rows = stmt.query([entry::KIND_CHUNK])?;
    while let Some(row) = rows.next()? {
        let session: String = row.get(0)?;
        if !present.contains(&session) {
            continue; // Reported once, as a deleted session.
        }
        let chunk = u64::try_from(row.get::<_, i64>(1)?).unwrap_or(0);
        let entry = u64::try_from(row.get::<_, i64>(2)?).unwrap_or(0);
        let what = if row.get(3)? {
            format!("the chunk is in the ledger (entry {entry}) but missing: the session was cut")
        } else {
            format!("the chunk's hash differs from the one the ledger recorded (entry {entry}): it was replaced")
        };
        report.find(Some(&session), Some(chunk), Some(entry), what);
    }
    let mut stmt = conn.prepare(
        "SELECT c.session_id, c.seq FROM chunks c
         LEFT JOIN ledger l ON l.kind = ?1 AND l.session_id = c.session_id AND l.chunk_seq = c.seq
         WHERE l.seq IS NULL ORDER BY c.session_id, c.seq",
    )?;
    let mut rows = stmt.query([entry::KIND_CHUNK])?;
    while let Some(row) = rows.next()? {
        let session: String = row.get(0)?;
        if report.before_ledger.contains(&session) || !report.sessions.contains_key(&session) {
            continue; // Chunks of sessions before the ledger have no entries; unknown sessions are reported.
        }
        let chunk = u64::try_from(row.get::<_, i64>(1)?).unwrap_or(0);
        report.find(
            Some(&session),
            Some(chunk),
            None,
            "the chunk is not in the ledger: it was added to the database afterwards".into(),
        );
    }
    Ok(())
}

/// The schema must be exactly what this version's migrations make: a changed table, an added trigger or view (which
/// could rewrite what is read or written) is a finding.
fn compare_schema(conn: &Connection, report: &mut LedgerReport) -> Result<(), RecordingError> {
    fn schema(conn: &Connection) -> Result<Vec<(String, String, String, Option<String>)>, RecordingError> {
        let mut stmt = conn.prepare(
            "SELECT type, name, tbl_name, sql FROM sqlite_schema ORDER BY type, name, tbl_name, sql",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
    let expected = schema(&crate::schema::open_in_memory()?)?;
    let found = schema(conn)?;
    for extra in found.iter().filter(|item| !expected.contains(item)) {
        report.chain_sound = false;
        report.find(
            None,
            None,
            None,
            format!(
                "the database's schema was changed: {} {:?} (on {:?}) is not what Sallyport creates",
                extra.0, extra.1, extra.2
            ),
        );
    }
    for missing in expected.iter().filter(|item| !found.contains(item)) {
        report.chain_sound = false;
        report.find(
            None,
            None,
            None,
            format!("the database's schema was changed: {} {:?} is missing", missing.0, missing.1),
        );
    }
    Ok(())
}

/// Per session: stored chunks, raw bytes and stored bytes.
fn chunk_totals(conn: &Connection) -> Result<BTreeMap<String, (u64, u64, u64)>, RecordingError> {
    let mut stmt = conn.prepare(
        "SELECT session_id, count(*), sum(raw_len), sum(length(data)) FROM chunks GROUP BY session_id",
    )?;
    let rows = stmt.query_map([], |r| {
        let n = |i: usize| -> rusqlite::Result<u64> { Ok(u64::try_from(r.get::<_, i64>(i)?).unwrap_or(0)) };
        Ok((r.get::<_, String>(0)?, (n(1)?, n(2)?, n(3)?)))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The number of the last restart entry.
fn last_restart(conn: &Connection) -> Result<Option<u64>, RecordingError> {
    let seq: Option<i64> = conn.query_row(
        "SELECT max(seq) FROM ledger WHERE kind = ?1",
        [i64::from(Body::Restart { vouched: 0, contradicted: false }.kind())],
        |r| r.get(0),
    )?;
    Ok(seq.and_then(|s| u64::try_from(s).ok()))
}
