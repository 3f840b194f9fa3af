//! Tampering with the file behind the crate's back: verification names the first changed, missing, moved or
//! foreign chunk, a changed session row, and a seal that does not match.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;

use common::*;
use ed25519_dalek::SigningKey;
use rusqlite::params;
use sallyport_recordings::{Outcome, Recorder, Verification};

/// A finished session with at least five chunks.
fn recorded() -> (tempfile::TempDir, std::path::PathBuf, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let id = record_session(&path, &sample_events(40));
    let chunks = store(&path).session(&id).unwrap().unwrap().chunk_count;
    assert!(chunks >= 5, "need at least 5 chunks, got {chunks}");
    (dir, path, id)
}

fn verify(path: &Path, id: &str) -> Verification {
    store(path).verify(id, &key().verifying_key()).unwrap()
}

fn bad_chunk_seq(v: &Verification) -> u64 {
    match v {
        Verification::BadChunk { seq, .. } => *seq,
        other => panic!("expected BadChunk, got {other:?}"),
    }
}

#[test]
fn a_flipped_byte_names_exactly_that_chunk() {
    let (_dir, path, id) = recorded();
    sallyport_recordings::danger_flip_chunk_byte(&path, &id, 2).unwrap();
    assert_eq!(bad_chunk_seq(&verify(&path, &id)), 2);
}

#[test]
fn a_changed_time_range_names_that_chunk() {
    let (_dir, path, id) = recorded();
    raw(&path)
        .execute(
            "UPDATE chunks SET t_end_ms = t_end_ms + 1000 WHERE session_id = ?1 AND seq = 3",
            [&id],
        )
        .unwrap();
    assert_eq!(bad_chunk_seq(&verify(&path, &id)), 3);
}

#[test]
fn a_deleted_chunk_is_missing() {
    let (_dir, path, id) = recorded();
    raw(&path)
        .execute(
            "DELETE FROM chunks WHERE session_id = ?1 AND seq = 2",
            [&id],
        )
        .unwrap();
    assert_eq!(verify(&path, &id), Verification::MissingChunk { seq: 2 });
    assert!(
        store(&path).events(&id).is_err(),
        "reading across a gap is an error"
    );
}

#[test]
fn a_deleted_last_chunk_is_missing() {
    let (_dir, path, id) = recorded();
    let last = store(&path).session(&id).unwrap().unwrap().chunk_count - 1;
    raw(&path)
        .execute(
            "DELETE FROM chunks WHERE session_id = ?1 AND seq = ?2",
            params![id, last],
        )
        .unwrap();
    assert_eq!(verify(&path, &id), Verification::MissingChunk { seq: last });
    // Hiding the deletion by lowering the count breaks the seal instead.
    raw(&path)
        .execute(
            "UPDATE sessions SET chunk_count = chunk_count - 1 WHERE id = ?1",
            [&id],
        )
        .unwrap();
    assert!(matches!(verify(&path, &id), Verification::BadSeal { .. }));
}

#[test]
fn swapped_chunks_name_the_first() {
    let (_dir, path, id) = recorded();
    let conn = raw(&path);
    // Swap whole rows (data and hash) of chunks 1 and 3 through a free sequence number.
    for (from, to) in [(1, -100), (3, 1), (-100, 3)] {
        conn.execute(
            "UPDATE chunks SET seq = ?3 WHERE session_id = ?1 AND seq = ?2",
            params![id, from, to],
        )
        .unwrap();
    }
    assert_eq!(bad_chunk_seq(&verify(&path, &id)), 1);
}

#[test]
fn swapped_chunk_data_names_the_first() {
    let (_dir, path, id) = recorded();
    let conn = raw(&path);
    conn.execute(
        "UPDATE chunks SET data = CASE seq WHEN 2 THEN (SELECT data FROM chunks WHERE session_id = ?1 AND seq = 4)
                                            ELSE (SELECT data FROM chunks WHERE session_id = ?1 AND seq = 2) END
         WHERE session_id = ?1 AND seq IN (2, 4)",
        [&id],
    )
    .unwrap();
    assert_eq!(bad_chunk_seq(&verify(&path, &id)), 2);
}

#[test]
fn a_chunk_spliced_in_from_another_session_is_named() {
    let (_dir, path, id) = recorded();
    let other = record_session(&path, &sample_events(40));
    raw(&path)
        .execute(
            "UPDATE chunks SET (data, hash, raw_len, t_start_ms, t_end_ms) =
                 (SELECT data, hash, raw_len, t_start_ms, t_end_ms FROM chunks WHERE session_id = ?2 AND seq = 1)
             WHERE session_id = ?1 AND seq = 1",
            params![id, other],
        )
        .unwrap();
    assert_eq!(bad_chunk_seq(&verify(&path, &id)), 1);
}

#[test]
fn a_changed_user_shows_as_chunk_zero_and_says_so() {
    let (_dir, path, id) = recorded();
    raw(&path)
        .execute("UPDATE sessions SET user = 'mallory' WHERE id = ?1", [&id])
        .unwrap();
    match verify(&path, &id) {
        Verification::BadChunk { seq: 0, reason } => {
            assert!(reason.contains("session row"), "{reason}")
        }
        other => panic!("expected chunk 0, got {other:?}"),
    }
}

#[test]
fn a_changed_user_of_a_session_without_chunks_breaks_the_seal() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let id = record_session(&path, &[]);
    raw(&path)
        .execute("UPDATE sessions SET user = 'mallory' WHERE id = ?1", [&id])
        .unwrap();
    match verify(&path, &id) {
        Verification::BadSeal { reason } => assert!(reason.contains("session row"), "{reason}"),
        other => panic!("expected BadSeal, got {other:?}"),
    }
}

#[test]
fn a_changed_outcome_or_end_breaks_the_seal() {
    let (_dir, path, id) = recorded();
    raw(&path)
        .execute(
            "UPDATE sessions SET outcome = 'terminated' WHERE id = ?1",
            [&id],
        )
        .unwrap();
    assert!(matches!(verify(&path, &id), Verification::BadSeal { .. }));
    raw(&path)
        .execute(
            "UPDATE sessions SET outcome = 'ended', ended_at_ms = ended_at_ms + 1 WHERE id = ?1",
            [&id],
        )
        .unwrap();
    assert!(matches!(verify(&path, &id), Verification::BadSeal { .. }));
    raw(&path)
        .execute(
            "UPDATE sessions SET ended_at_ms = ended_at_ms - 1 WHERE id = ?1",
            [&id],
        )
        .unwrap();
    assert!(verify(&path, &id).is_intact());
}

#[test]
fn a_wrong_key_is_a_bad_seal() {
    let (_dir, path, id) = recorded();
    let other = SigningKey::from_bytes(&[9; 32]).verifying_key();
    assert!(matches!(
        store(&path).verify(&id, &other).unwrap(),
        Verification::BadSeal { .. }
    ));
}

#[test]
fn a_seal_made_with_another_key_is_a_bad_seal() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let recorder =
        Recorder::start(&path, SigningKey::from_bytes(&[9; 32]), small_limits()).unwrap();
    let s = recorder.open_session(meta("eve")).unwrap();
    let id = s.id().to_owned();
    s.finish(Outcome::Ended).unwrap();
    recorder.shutdown().unwrap();
    // Even with the public key column rewritten to the expected key, the signature does not verify.
    raw(&path)
        .execute(
            "UPDATE sessions SET seal_key = ?2 WHERE id = ?1",
            params![id, key().verifying_key().to_bytes()],
        )
        .unwrap();
    assert!(matches!(verify(&path, &id), Verification::BadSeal { .. }));
}

#[test]
fn a_removed_seal_is_unsealed_and_a_partial_one_is_bad() {
    let (_dir, path, id) = recorded();
    let chunks = store(&path).session(&id).unwrap().unwrap().chunk_count;
    raw(&path)
        .execute("UPDATE sessions SET seal_sig = NULL WHERE id = ?1", [&id])
        .unwrap();
    assert!(matches!(verify(&path, &id), Verification::BadSeal { .. }));
    raw(&path)
        .execute(
            "UPDATE sessions SET seal_hash = NULL, seal_key = NULL WHERE id = ?1",
            [&id],
        )
        .unwrap();
    assert_eq!(verify(&path, &id), Verification::Unsealed { chunks });
}

#[test]
fn an_appended_chunk_is_named() {
    let (_dir, path, id) = recorded();
    let count = store(&path).session(&id).unwrap().unwrap().chunk_count;
    raw(&path)
        .execute(
            "INSERT INTO chunks (session_id, seq, t_start_ms, t_end_ms, raw_len, data, hash)
             SELECT session_id, ?2, t_start_ms, t_end_ms, raw_len, data, hash FROM chunks WHERE session_id = ?1 AND seq = 0",
            params![id, count],
        )
        .unwrap();
    assert_eq!(bad_chunk_seq(&verify(&path, &id)), count);
}

#[test]
fn garbage_chunk_data_is_an_error_not_a_panic() {
    let (_dir, path, id) = recorded();
    let conn = raw(&path);
    let mut rng = Prng(7);
    for round in 0..50 {
        let len = rng.below(300) as usize;
        let garbage: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let raw_len = if round % 2 == 0 {
            rng.below(1 << 40) as i64
        } else {
            -(rng.below(100) as i64)
        };
        conn.execute(
            "UPDATE chunks SET data = ?2, raw_len = ?3 WHERE session_id = ?1 AND seq = 1",
            params![id, garbage, raw_len],
        )
        .unwrap();
        assert!(store(&path).events(&id).is_err());
        assert_eq!(bad_chunk_seq(&verify(&path, &id)), 1);
    }
}
