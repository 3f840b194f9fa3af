//! Crash recovery: a copy of the database taken while a session is open (what kill -9 leaves on disk) is recovered
//! at the next start: sealed as incomplete over what the ledger holds, with the part written after the last
//! checkpoint stated; databases from before the ledger migrate and keep verifying.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use sallyport_recordings::{Event, LedgerState, Limits, Outcome, Store, Verification};

fn checkpointing(interval_ms: u64) -> Limits {
    Limits {
        checkpoint_interval: Duration::from_millis(interval_ms),
        ..small_limits()
    }
}

/// Chunk entries of a session after the last checkpoint entry, counted in SQL, independently of the crate.
fn chunks_after_last_checkpoint(path: &Path, id: &str) -> u64 {
    raw(path)
        .query_row(
            "SELECT count(*) FROM ledger WHERE session_id = ?1 AND kind = 2
               AND seq > (SELECT coalesce(max(seq), -1) FROM ledger WHERE kind = 6)",
            [id],
            |r| r.get::<_, i64>(0),
        )
        .unwrap() as u64
}

#[test]
fn a_crashed_session_is_recovered_incomplete_sealed_and_intact() {
    let dir = tempfile::tempdir().unwrap();
    let work = db_path(&dir);
    let finished = record_session(&work, &sample_events(30));
    let crashed_db = dir.path().join("crashed.db");
    let events = sample_events(30);
    let crashed = crashed_copy(
        &work,
        &crashed_db,
        "bob",
        &events,
        checkpointing(10),
        Duration::from_millis(300),
    );

    let store = Store::open(&crashed_db).unwrap();
    let chunks = store.session(&crashed).unwrap().unwrap().chunk_count;
    assert!(chunks >= 3, "{chunks}");
    assert_eq!(
        store.verify(&crashed, &key().verifying_key()).unwrap(),
        Verification::Unsealed { chunks }
    );

    let recovery = store.recover_unfinished(&key()).unwrap();
    assert!(recovery.findings.is_empty(), "{:?}", recovery.findings);
    assert!(recovery.damaged.is_empty(), "{:?}", recovery.damaged);
    assert_eq!(recovery.recovered.len(), 1);
    assert_eq!(recovery.recovered[0].id, crashed);
    assert_eq!(
        recovery.recovered[0].unvouched_chunks, 0,
        "a checkpoint covered every chunk"
    );
    let row = store.session(&crashed).unwrap().unwrap();
    assert_eq!(row.outcome, Some(Outcome::Incomplete));
    assert!(row.sealed);
    let back = store.events(&crashed).unwrap();
    assert_eq!(
        row.ended_at_ms,
        Some(row.started_at_ms + back.last().unwrap().at_ms),
        "ends where its last chunk ends"
    );
    assert_eq!(
        store.verify(&crashed, &key().verifying_key()).unwrap(),
        Verification::Intact { chunks }
    );
    // What reached the disk is what was recorded, in order (the chunk still filling in memory is lost).
    let back: Vec<Event> = back.into_iter().map(|e| e.event).collect();
    assert!(!back.is_empty() && events.starts_with(&back));

    let v = store.verify_database(&key().verifying_key(), &[]).unwrap();
    assert!(v.is_clean(), "{:#?}", v.ledger.findings);
    assert!(matches!(
        v.ledger.state(&crashed),
        Some(LedgerState::Recovered {
            unvouched_chunks: 0,
            ..
        })
    ));
    assert!(matches!(
        v.ledger.state(&finished),
        Some(LedgerState::Sealed { .. })
    ));
    // A second start finds nothing to recover.
    let again = store.recover_unfinished(&key()).unwrap();
    assert!(again.recovered.is_empty() && again.damaged.is_empty() && again.findings.is_empty());
}

#[test]
fn chunks_written_after_the_last_checkpoint_are_stated_as_unvouched() {
    let dir = tempfile::tempdir().unwrap();
    let work = db_path(&dir);
    let copy = dir.path().join("crashed.db");
    // A checkpoint at most every second, and the copy taken right after the chunks were written.
    let id = crashed_copy(
        &work,
        &copy,
        "carol",
        &sample_events(30),
        checkpointing(1000),
        Duration::ZERO,
    );
    let after = chunks_after_last_checkpoint(&copy, &id);
    let store = Store::open(&copy).unwrap();
    let recovery = store.recover_unfinished(&key()).unwrap();
    assert_eq!(recovery.recovered.len(), 1, "{recovery:?}");
    let recovered = &recovery.recovered[0];
    assert_eq!(recovered.unvouched_chunks, after);
    assert!(recovered.unvouched_ms < 5000, "{recovered:?}");
    let v = store.verify_database(&key().verifying_key(), &[]).unwrap();
    assert!(v.is_clean(), "{:#?}", v.ledger.findings);
    let state = v.ledger.state(&id).unwrap().to_string();
    assert!(state.starts_with("recovered after a crash"), "{state}");
}

#[test]
fn a_crashed_session_without_chunks_ends_at_its_start() {
    let dir = tempfile::tempdir().unwrap();
    let work = db_path(&dir);
    let copy = dir.path().join("crashed.db");
    let id = crashed_copy(
        &work,
        &copy,
        "dave",
        &[],
        small_limits(),
        Duration::from_millis(50),
    );
    let store = Store::open(&copy).unwrap();
    let recovery = store.recover_unfinished(&key()).unwrap();
    assert_eq!(recovery.recovered.len(), 1);
    let row = store.session(&id).unwrap().unwrap();
    assert_eq!(row.ended_at_ms, Some(row.started_at_ms));
    assert_eq!(
        store.verify(&id, &key().verifying_key()).unwrap(),
        Verification::Intact { chunks: 0 }
    );
}

#[test]
fn recovery_seals_what_is_stored_and_verification_still_sees_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let work = db_path(&dir);
    let copy = dir.path().join("crashed.db");
    let id = crashed_copy(
        &work,
        &copy,
        "erin",
        &sample_events(30),
        checkpointing(10),
        Duration::from_millis(300),
    );
    raw(&copy)
        .execute(
            "UPDATE chunks SET t_start_ms = t_start_ms + 1 WHERE session_id = ?1 AND seq = 1",
            [&id],
        )
        .unwrap();
    let store = Store::open(&copy).unwrap();
    store.recover_unfinished(&key()).unwrap();
    assert!(matches!(
        store.verify(&id, &key().verifying_key()).unwrap(),
        Verification::BadChunk { seq: 1, .. }
    ));
}

/// A database as a build before the ledger wrote it: the same tables, schema version 1.
fn before_the_ledger(path: &Path) {
    raw(path)
        .execute_batch("DROP TABLE ledger; PRAGMA user_version = 1;")
        .unwrap();
}

#[test]
fn a_database_from_before_the_ledger_migrates_and_keeps_verifying() {
    let dir = tempfile::tempdir().unwrap();
    let work = db_path(&dir);
    let old_a = record_session(&work, &sample_events(20));
    let old_b = record_session(&work, &sample_events(20));
    let copy = dir.path().join("old.db");
    let open = crashed_copy(
        &work,
        &copy,
        "frank",
        &sample_events(20),
        small_limits(),
        Duration::from_millis(50),
    );
    before_the_ledger(&copy);

    // The first start migrates (every stored session enters the ledger as before it) and recovers.
    let store = Store::open(&copy).unwrap();
    let recovery = store.recover_unfinished(&key()).unwrap();
    assert!(recovery.findings.is_empty(), "{:?}", recovery.findings);
    assert_eq!(recovery.recovered.len(), 1);
    assert_eq!(recovery.recovered[0].id, open);
    let new = {
        drop(store);
        record_session(&copy, &sample_events(5))
    };
    let store = Store::open(&copy).unwrap();
    let v = store.verify_database(&key().verifying_key(), &[]).unwrap();
    assert!(v.is_clean(), "{:#?}", v.ledger.findings);
    for id in [&old_a, &old_b] {
        assert_eq!(
            v.ledger.state(id),
            Some(&LedgerState::BeforeLedger { sealed: true })
        );
    }
    assert!(matches!(
        v.ledger.state(&open),
        Some(LedgerState::Recovered { .. })
    ));
    assert!(matches!(
        v.ledger.state(&new),
        Some(LedgerState::Sealed { .. })
    ));
    drop(store);

    // From the migration on, an old session cannot be deleted or un-sealed quietly either.
    let deleted = dir.path().join("deleted.db");
    std::fs::copy(&copy, &deleted).unwrap();
    raw(&deleted)
        .execute_batch(&format!(
            "DELETE FROM chunks WHERE session_id = '{old_a}'; DELETE FROM sessions WHERE id = '{old_a}';"
        ))
        .unwrap();
    let v = Store::open_read_only(&deleted)
        .unwrap()
        .verify_database(&key().verifying_key(), &[])
        .unwrap();
    assert!(
        v.ledger
            .findings_for(&old_a)
            .any(|f| f.what.contains("deleted")),
        "{:#?}",
        v.ledger.findings
    );
    raw(&copy)
        .execute(
            "UPDATE sessions SET seal_hash = NULL, seal_sig = NULL, seal_key = NULL WHERE id = ?1",
            [&old_b],
        )
        .unwrap();
    let v = Store::open_read_only(&copy)
        .unwrap()
        .verify_database(&key().verifying_key(), &[])
        .unwrap();
    assert!(
        v.ledger
            .findings_for(&old_b)
            .any(|f| f.what.contains("seal has been removed"))
    );
}
