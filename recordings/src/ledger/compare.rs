//! Pass 2 of the audit: the sessions table, the chunks table and the schema against what pass 1 read from the
//! ledger, mostly in SQL so that memory stays per session, not per chunk.

use std::collections::{BTreeMap, BTreeSet};

use rusqlite::Connection;

use super::audit::{End, LedgerReport, LedgerState, Tracked};
use super::entry::{self, Body};
use crate::chain;
use crate::error::RecordingError;
use crate::session::SessionRow;
use crate::store::{SESSION_COLUMNS, session_row};

/// A schema row: type, name, table, SQL.
type SchemaRow = (String, String, String, Option<String>);

/// Pass 2: the sessions and chunks tables against the ledger.
pub(super) fn compare_sessions(
    conn: &Connection,
    report: &mut LedgerReport,
    mut tracked: BTreeMap<String, Tracked>,
) -> Result<(), RecordingError> {
    let last_restart = last_restart(conn)?;
    let totals = chunk_totals(conn)?;
    let rows: Vec<(SessionRow, Option<Vec<u8>>)> = {
        let sql =
            format!("SELECT {SESSION_COLUMNS}, seal_hash FROM sessions ORDER BY started_at_ms, id");
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt.query_map([], |r| Ok((session_row(r)?, r.get(13)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    let mut present = BTreeSet::new();
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
                    find(
                        "the session claims to be sealed, but the ledger never saw it sealed"
                            .into(),
                    );
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
    present: &BTreeSet<String>,
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
            format!(
                "the chunk's hash differs from the one the ledger recorded (entry {entry}): it was replaced"
            )
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
pub(super) fn compare_schema(
    conn: &Connection,
    report: &mut LedgerReport,
) -> Result<(), RecordingError> {
    fn schema(conn: &Connection) -> Result<Vec<SchemaRow>, RecordingError> {
        let mut stmt = conn.prepare(
            "SELECT type, name, tbl_name, sql FROM sqlite_schema ORDER BY type, name, tbl_name, sql",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
    let expected = schema(&crate::schema::open_in_memory()?)?;
    let found = schema(conn)?;
    let extra = found.iter().filter(|item| !expected.contains(item));
    let missing = expected.iter().filter(|item| !found.contains(item));
    let changes = extra
        .map(|(kind, name, table, _)| {
            format!("{kind} {name:?} (on {table:?}) is not what Sallyport creates")
        })
        .chain(missing.map(|(kind, name, _, _)| format!("{kind} {name:?} is missing")));
    for change in changes {
        report.chain_sound = false;
        report.find(
            None,
            None,
            None,
            format!("the database's schema was changed: {change}"),
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
        let n = |i: usize| -> rusqlite::Result<u64> {
            Ok(u64::try_from(r.get::<_, i64>(i)?).unwrap_or(0))
        };
        Ok((r.get::<_, String>(0)?, (n(1)?, n(2)?, n(3)?)))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The number of the last restart entry.
fn last_restart(conn: &Connection) -> Result<Option<u64>, RecordingError> {
    let seq: Option<i64> = conn.query_row(
        "SELECT max(seq) FROM ledger WHERE kind = ?1",
        [i64::from(
            Body::Restart {
                vouched: 0,
                contradicted: false,
            }
            .kind(),
        )],
        |r| r.get(0),
    )?;
    Ok(seq.and_then(|s| u64::try_from(s).ok()))
}
