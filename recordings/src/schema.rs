//! The database schema, its migrations (by `PRAGMA user_version`) and how connections are opened.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use crate::error::RecordingError;

/// How long a connection waits for another one's lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Migration `i` takes the database from `user_version` i to i + 1: its SQL, then its part in Rust, if any.
const MIGRATIONS: &[(&str, Option<MigrationStep>)] = &[
    // 1: sessions and their chunks. `chunks` keeps its rowid (its rows hold large blobs, which WITHOUT ROWID tables
    // store badly); the primary key is an index.
    (
        "CREATE TABLE sessions (
        id TEXT PRIMARY KEY NOT NULL,
        user TEXT NOT NULL,
        target TEXT NOT NULL,
        target_addr TEXT NOT NULL,
        protocol TEXT NOT NULL,
        client_addr TEXT NOT NULL,
        started_at_ms INTEGER NOT NULL,
        ended_at_ms INTEGER,
        outcome TEXT,
        chunk_count INTEGER NOT NULL DEFAULT 0,
        bytes_raw INTEGER NOT NULL DEFAULT 0,
        bytes_stored INTEGER NOT NULL DEFAULT 0,
        seal_hash BLOB,
        seal_sig BLOB,
        seal_key BLOB
    ) STRICT;
    CREATE INDEX sessions_by_start ON sessions (started_at_ms);
    CREATE TABLE chunks (
        session_id TEXT NOT NULL REFERENCES sessions (id),
        seq INTEGER NOT NULL,
        t_start_ms INTEGER NOT NULL,
        t_end_ms INTEGER NOT NULL,
        raw_len INTEGER NOT NULL,
        data BLOB NOT NULL,
        hash BLOB NOT NULL,
        PRIMARY KEY (session_id, seq)
    ) STRICT;",
        None,
    ),
    // 2: the ledger (see `ledger/mod.rs`). `chunk_seq` and `digest` repeat a chunk entry's body for joins with
    // `chunks`; verification checks that they agree with it. Sessions already stored enter it as "before the ledger".
    (
        "CREATE TABLE ledger (
        seq INTEGER PRIMARY KEY NOT NULL,
        at_ms INTEGER NOT NULL,
        kind INTEGER NOT NULL,
        session_id TEXT,
        chunk_seq INTEGER,
        digest BLOB,
        body BLOB NOT NULL,
        head BLOB NOT NULL
    ) STRICT;
    CREATE INDEX ledger_by_session ON ledger (session_id, kind, chunk_seq);",
        Some(crate::ledger::backfill_before_ledger),
    ),
];

/// A migration's part that SQL cannot do.
type MigrationStep = fn(&Connection) -> Result<(), RecordingError>;

/// The schema version this build writes.
pub(crate) const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

fn user_version(conn: &Connection) -> Result<i64, RecordingError> {
    Ok(conn.pragma_query_value(None, "user_version", |row| row.get(0))?)
}

/// Opens (creating if needed) a database for writing: WAL, `synchronous=NORMAL` (a power cut may lose the last
/// transactions but never corrupts), a busy timeout, foreign keys, and all migrations applied.
pub(crate) fn open_read_write(path: &Path) -> Result<Connection, RecordingError> {
    let mut conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String =
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(RecordingError::Corrupt(format!(
            "the database refused WAL mode (got {mode})"
        )));
    }
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    migrate(&mut conn)?;
    Ok(conn)
}

/// A fresh, fully migrated database in memory (evidence files are checked in one).
pub(crate) fn open_in_memory() -> Result<Connection, RecordingError> {
    let mut conn = Connection::open_in_memory()?;
    migrate(&mut conn)?;
    Ok(conn)
}

/// Opens an existing, fully migrated database for reading only.
pub(crate) fn open_read_only(path: &Path) -> Result<Connection, RecordingError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let found = user_version(&conn)?;
    if found > SCHEMA_VERSION {
        return Err(RecordingError::SchemaTooNew {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    if found < SCHEMA_VERSION {
        return Err(RecordingError::SchemaTooOld {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(conn)
}

/// Applies the missing migrations, each in its own immediate transaction (so two processes cannot both apply one).
fn migrate(conn: &mut Connection) -> Result<(), RecordingError> {
    loop {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let found = user_version(&tx)?;
        if found > SCHEMA_VERSION {
            return Err(RecordingError::SchemaTooNew {
                found,
                supported: SCHEMA_VERSION,
            });
        }
        let Some((sql, step)) = usize::try_from(found).ok().and_then(|i| MIGRATIONS.get(i)) else {
            return Ok(());
        };
        tx.execute_batch(sql)?;
        if let Some(step) = step {
            step(&tx)?;
        }
        tx.pragma_update(None, "user_version", found + 1)?;
        tx.commit()?;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_idempotent_and_versions_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.db");
        assert!(matches!(
            open_read_only(&path),
            Err(RecordingError::Database(_))
        ));
        drop(open_read_write(&path).unwrap());
        let conn = open_read_write(&path).unwrap();
        assert_eq!(user_version(&conn).unwrap(), SCHEMA_VERSION);
        drop(open_read_only(&path).unwrap());
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        assert!(matches!(
            open_read_only(&path),
            Err(RecordingError::SchemaTooNew { .. })
        ));
        assert!(matches!(
            open_read_write(&path),
            Err(RecordingError::SchemaTooNew { .. })
        ));
        let empty = dir.path().join("empty.db");
        drop(Connection::open(&empty).unwrap());
        assert!(matches!(
            open_read_only(&empty),
            Err(RecordingError::SchemaTooOld { found: 0, .. })
        ));
    }
}
