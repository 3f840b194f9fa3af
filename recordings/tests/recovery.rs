//! Crash recovery: sessions left without an end are marked incomplete and sealed at the next start.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use sallyport_recordings::{Event, Outcome, Verification};

/// Makes a finished session look like one whose process was killed: no end, no outcome, no seal.
fn unfinish(path: &std::path::Path, id: &str) {
    raw(path)
        .execute(
            "UPDATE sessions SET ended_at_ms = NULL, outcome = NULL, seal_hash = NULL, seal_sig = NULL,
             seal_key = NULL WHERE id = ?1",
            [id],
        )
        .unwrap();
}

#[test]
fn a_crashed_session_is_recovered_incomplete_sealed_and_intact() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let events = sample_events(30);
    let crashed = record_session(&path, &events);
    let finished = record_session(&path, &events);
    unfinish(&path, &crashed);

    let store = store(&path);
    let chunks = store.session(&crashed).unwrap().unwrap().chunk_count;
    assert_eq!(
        store.verify(&crashed, &key().verifying_key()).unwrap(),
        Verification::Unsealed { chunks }
    );

    assert_eq!(
        store.recover_unfinished(&key()).unwrap(),
        vec![crashed.clone()]
    );
    let row = store.session(&crashed).unwrap().unwrap();
    assert_eq!(row.outcome, Some(Outcome::Incomplete));
    assert!(row.sealed);
    let last_event_ms = store.events(&crashed).unwrap().last().unwrap().at_ms;
    assert_eq!(
        row.ended_at_ms,
        Some(row.started_at_ms + last_event_ms),
        "ends where its last chunk ends"
    );
    assert_eq!(
        store.verify(&crashed, &key().verifying_key()).unwrap(),
        Verification::Intact { chunks }
    );
    let back: Vec<Event> = store
        .events(&crashed)
        .unwrap()
        .into_iter()
        .map(|e| e.event)
        .collect();
    assert_eq!(back, events);

    // The finished session is untouched, and a second recovery finds nothing.
    assert_eq!(
        store.session(&finished).unwrap().unwrap().outcome,
        Some(Outcome::Ended)
    );
    assert!(store.recover_unfinished(&key()).unwrap().is_empty());
}

#[test]
fn a_crashed_session_without_chunks_ends_at_its_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let id = record_session(&path, &[]);
    unfinish(&path, &id);
    let store = store(&path);
    assert_eq!(store.recover_unfinished(&key()).unwrap(), vec![id.clone()]);
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
    let path = db_path(&dir);
    let id = record_session(&path, &sample_events(30));
    unfinish(&path, &id);
    raw(&path)
        .execute(
            "UPDATE chunks SET t_start_ms = t_start_ms + 1 WHERE session_id = ?1 AND seq = 1",
            [&id],
        )
        .unwrap();
    let store = store(&path);
    assert_eq!(store.recover_unfinished(&key()).unwrap(), vec![id.clone()]);
    assert!(matches!(
        store.verify(&id, &key().verifying_key()).unwrap(),
        Verification::BadChunk { seq: 1, .. }
    ));
}
