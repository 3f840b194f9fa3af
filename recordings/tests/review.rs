//! What the review tool needs from the store: the search index (FTS5 in the bundled SQLite, built incrementally,
//! phrases across chunk boundaries), decoding from any chunk, and evidence files that verify offline and fail after
//! any one-byte change.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use ed25519_dalek::SigningKey;
use sallyport_recordings::{
    Event, Limits, Outcome, ProofCheck, Recorder, SearchIndex, Store, Verification, check_evidence,
    find_moments,
};

fn record(path: &std::path::Path, user: &str, events: &[Event]) -> String {
    let recorder = Recorder::start(path, key(), small_limits()).unwrap();
    let s = recorder.open_session(meta(user)).unwrap();
    let id = s.id().to_owned();
    for e in events {
        s.record(e.clone()).unwrap();
    }
    s.finish(Outcome::Ended).unwrap();
    recorder.shutdown().unwrap();
    id
}

#[test]
fn search_finds_phrases_incrementally_and_across_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let mut events = sample_events(20);
    events.push(Event::Input(b"sudo rm -".to_vec()));
    // Enough output in between that the phrase's two halves land in different 256-byte chunks.
    events.push(Event::Output(vec![b'.'; 300]));
    events.push(Event::Input(b"rf /srv\r".to_vec()));
    events.push(Event::Output(
        b"\x1b[31mPermission\x1b[0m denied\r\n".to_vec(),
    ));
    let first = record(&path, "alice", &events);
    let store = Store::open_read_only(&path).unwrap();
    let index_path = dir.path().join("index.db");
    let mut index = SearchIndex::open(&index_path).unwrap();
    let progress = index.update(&store).unwrap();
    assert_eq!(progress.sessions, 1);
    assert_eq!(
        progress.chunks,
        store.session(&first).unwrap().unwrap().chunk_count
    );
    assert_eq!(index.update(&store).unwrap().chunks, 0, "nothing new");

    let hits = index.search("permission denied", 10).unwrap();
    assert_eq!(hits.len(), 1);
    assert!(!hits[0].input);
    assert!(
        hits[0]
            .snippet
            .iter()
            .any(|(t, m)| *m && t.contains("Permission"))
    );
    let hits = index.search("rm -rf", 10).unwrap();
    assert_eq!(hits.len(), 1, "the phrase spans a chunk boundary");
    assert!(hits[0].input);
    assert!(index.search("absent words", 10).unwrap().is_empty());
    assert!(index.search("-- \"", 10).unwrap().is_empty());
    assert!(index.search("\"quoted", 10).unwrap().is_empty());

    let all = store.events(&first).unwrap();
    let moments = find_moments(&all, "rm -rf");
    assert_eq!(moments.len(), 1);
    assert!(moments[0].input);
    assert!(matches!(&all[moments[0].event].event, Event::Input(b) if b.starts_with(b"rf")));

    // A second session is indexed by the next update only; reopening the index keeps what it had.
    drop(index);
    drop(store);
    record(
        &path,
        "bob",
        &[Event::Output(b"bob ran rm -rf too\r\n".to_vec())],
    );
    let store = Store::open_read_only(&path).unwrap();
    let mut index = SearchIndex::open(&index_path).unwrap();
    assert_eq!(index.update(&store).unwrap().sessions, 1);
    assert_eq!(index.search("rm -rf", 10).unwrap().len(), 2);
    assert_eq!(index.search("rm -rf", 1).unwrap().len(), 1, "limit");
}

#[test]
fn chunks_decode_from_any_sequence_number() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let id = record(&path, "alice", &sample_events(400));
    let store = Store::open_read_only(&path).unwrap();
    let count = store.session(&id).unwrap().unwrap().chunk_count;
    assert!(count > 66, "need chunks past a keyframe, got {count}");
    let mut all = Vec::new();
    store
        .chunks_from(&id, 0, |c| {
            all.push(c);
            true
        })
        .unwrap();
    for from in [1, 63, 64, 65, count - 1] {
        let mut got = Vec::new();
        store
            .chunks_from(&id, from, |c| {
                got.push(c);
                true
            })
            .unwrap();
        assert_eq!(got, all[from as usize..], "from {from}");
    }
}

#[test]
fn evidence_verifies_offline_and_fails_after_any_byte_changes() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let id = record(&path, "alice", &sample_events(10));
    let store = Store::open_read_only(&path).unwrap();
    let bytes = store.export_evidence(&id).unwrap();
    // The fuzz target `evidence_file` starts from such a file (a whole one reaches the chunk decoder).
    if std::env::var_os("UPDATE_FUZZ_SEEDS").is_some() {
        let seeds = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fuzz/seeds/evidence_file");
        std::fs::create_dir_all(&seeds).unwrap();
        std::fs::write(seeds.join("ten_events.json"), &bytes).unwrap();
    }
    let public = key().verifying_key();
    let check = check_evidence(&bytes, Some(&public)).unwrap();
    assert!(check.verification.is_intact(), "{:?}", check.verification);
    assert!(
        matches!(&check.ledger, ProofCheck::Covered { state, .. } if state == "sealed"),
        "{:?}",
        check.ledger
    );
    assert_eq!(check.session, store.session(&id).unwrap().unwrap());
    let own = check_evidence(&bytes, None).unwrap();
    assert_eq!(own.key, public.to_bytes());
    let (copy, copy_id) = Store::from_evidence(&bytes).unwrap();
    assert_eq!(copy_id, id);
    assert_eq!(copy.events(&id).unwrap(), store.events(&id).unwrap());

    let other = SigningKey::from_bytes(&[9; 32]).verifying_key();
    assert!(matches!(
        check_evidence(&bytes, Some(&other)).unwrap().verification,
        Verification::BadSeal { .. }
    ));
    // Every single-byte change, at every offset, fails (by a refused file or a broken chain or seal).
    for i in 0..bytes.len() {
        let mut changed = bytes.clone();
        changed[i] = if changed[i] == b'0' { b'1' } else { b'0' };
        let passed = matches!(check_evidence(&changed, Some(&public)),
            Ok(c) if c.verification.is_intact() && matches!(c.ledger, ProofCheck::Covered { .. }));
        assert!(
            !passed,
            "changing byte {i} ({:?}) went unnoticed: {}",
            bytes[i] as char,
            String::from_utf8_lossy(&bytes[i.saturating_sub(80)..(i + 40).min(bytes.len())])
        );
    }
}

#[test]
fn evidence_of_a_live_session_is_covered_and_of_a_cut_one_fails() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let public = key().verifying_key();
    let limits = Limits {
        checkpoint_interval: std::time::Duration::from_millis(10),
        ..small_limits()
    };
    let recorder = Recorder::start(&path, key(), limits).unwrap();
    let live = recorder.open_session(meta("erin")).unwrap();
    for e in sample_events(20) {
        live.record(e).unwrap();
    }
    std::thread::sleep(std::time::Duration::from_millis(400));
    let bytes = Store::open_read_only(&path)
        .unwrap()
        .export_evidence(live.id())
        .unwrap();
    let check = check_evidence(&bytes, Some(&public)).unwrap();
    assert!(
        matches!(&check.ledger, ProofCheck::Covered { state, .. } if state == "live"),
        "{:?}",
        check.ledger
    );
    live.finish(Outcome::Ended).unwrap();
    recorder.shutdown().unwrap();

    // Cut a finished session in the database, clear its seal, then export: the ledger's seal still names it.
    let id = record(&path, "alice", &sample_events(20));
    let conn = raw(&path);
    conn.execute_batch(&format!(
        "DELETE FROM chunks WHERE session_id = '{id}' AND seq = (SELECT max(seq) FROM chunks WHERE session_id = '{id}');
         UPDATE sessions SET chunk_count = chunk_count - 1, seal_hash = NULL, seal_sig = NULL, seal_key = NULL,
             ended_at_ms = NULL, outcome = NULL,
             bytes_raw = (SELECT sum(raw_len) FROM chunks WHERE session_id = '{id}'),
             bytes_stored = (SELECT sum(length(data)) FROM chunks WHERE session_id = '{id}')
         WHERE id = '{id}';"
    ))
    .unwrap();
    let bytes = Store::open_read_only(&path)
        .unwrap()
        .export_evidence(&id)
        .unwrap();
    let check = check_evidence(&bytes, Some(&public)).unwrap();
    assert!(
        matches!(&check.ledger, ProofCheck::Failed(why) if why.contains("cut short")),
        "{:?}",
        check.ledger
    );
}
