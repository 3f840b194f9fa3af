//! Tests of `remote`.

use super::*;
use crate::{Event, Limits, Recorder, SessionMeta};
use ed25519_dalek::SigningKey;

fn meta() -> SessionMeta {
    SessionMeta {
        user: "alice".into(),
        target: "web".into(),
        target_addr: "10.0.0.5:22".into(),
        protocol: "ssh".into(),
        client_addr: "192.0.2.1:5000".into(),
    }
}

/// Brings `mirror` up to `store` as the reviewer does: rows and chunks (one chunk per part), then the ledger
/// (`per_part` entries per part), then the sessions its new entries name beyond the mirror, until they agree.
fn sync(store: &Store, mirror: &mut Mirror, per_part: usize) -> u64 {
    let fetch = |mirror: &mut Mirror, id: &str| {
        let mut from = mirror.held(id).unwrap();
        loop {
            let part = store.session_part(id, from, 1).unwrap();
            mirror.apply(&part).unwrap();
            match part.chunks.last() {
                Some(last) if part.more => from = last.seq + 1,
                _ => break,
            }
        }
    };
    for row in store.sessions().unwrap() {
        if !mirror.is_current(&row).unwrap() {
            fetch(mirror, &row.id);
        }
    }
    let mut added = 0;
    loop {
        let start = mirror.ledger_next().unwrap();
        loop {
            let part = store
                .ledger_part(mirror.ledger_next().unwrap(), per_part, u64::MAX)
                .unwrap();
            assert!(part.entries.len() <= per_part);
            added += mirror.apply_ledger(&part).unwrap();
            if !part.more {
                break;
            }
        }
        let behind = mirror.sessions_behind_ledger(start).unwrap();
        if behind.is_empty() {
            return added;
        }
        for id in behind {
            fetch(mirror, &id);
        }
    }
}

fn settled(store: &Store, id: &str) -> SessionRow {
    let mut last = store.session(id).unwrap().unwrap();
    loop {
        std::thread::sleep(std::time::Duration::from_millis(100));
        let now = store.session(id).unwrap().unwrap();
        if now == last {
            return now;
        }
        last = now;
    }
}

#[test]
fn a_mirror_of_the_ledger_in_parts_verifies_the_whole_database_and_refuses_skips_and_rewrites() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r.db");
    let key = SigningKey::from_bytes(&[7; 32]);
    let limits = Limits {
        chunk_max_bytes: 256,
        chunk_max_age: std::time::Duration::from_secs(60),
        ..Limits::default()
    };
    let recorder = Recorder::start(&db, key.clone(), limits).unwrap();
    let record = |lines: usize, finish: bool| {
        let session = recorder.open_session(meta()).unwrap();
        for i in 0..lines {
            session
                .record(Event::Output(
                    format!("line {i} of output, long enough to fill chunks\r\n").into_bytes(),
                ))
                .unwrap();
        }
        let id = session.id().to_owned();
        if finish {
            session.finish(crate::Outcome::Ended).unwrap();
            None
        } else {
            Some((id, session))
        }
    };
    record(60, true);
    record(30, true);
    let (live, live_session) = record(40, false).unwrap();
    let (empty, empty_session) = record(0, false).unwrap();
    let store = Store::open_read_only(&db).unwrap();
    assert!(settled(&store, &live).chunk_count >= 3);
    let verifying = key.verifying_key();

    // The ledger first: every session it names is behind the empty mirror, until fetched.
    let mirror_path = dir.path().join("mirror.db");
    let mut mirror = Mirror::open(&mirror_path).unwrap();
    let early = store.ledger_part(0, usize::MAX, u64::MAX).unwrap();
    assert!(!early.more && early.entries.len() > 10);
    mirror.apply_ledger(&early).unwrap();
    let mut behind = mirror.sessions_behind_ledger(0).unwrap();
    behind.sort();
    let mut all: Vec<String> = store
        .sessions()
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    all.sort();
    assert_eq!(behind, all);
    drop(mirror);
    std::fs::remove_file(&mirror_path).unwrap();

    // Part by part, three entries at a time, while two sessions are still open.
    let mut mirror = Mirror::open(&mirror_path).unwrap();
    let added = sync(&store, &mut mirror, 3);
    assert!(added >= early.entries.len() as u64, "{added}");
    assert!(mirror.sessions_behind_ledger(0).unwrap().is_empty());
    let copy = Store::open_read_only(&mirror_path).unwrap();
    let v = copy.verify_database(&verifying, &[]).unwrap();
    assert!(v.is_clean(), "{:#?}", v.ledger.findings);
    assert_eq!(v.sessions.len(), 4);
    assert!(matches!(
        v.ledger.state(&live),
        Some(crate::LedgerState::Live { .. })
    ));
    assert_eq!(
        v.ledger.state(&empty),
        Some(&crate::LedgerState::Live { chunks: 0 })
    );
    assert!(v.ledger.entries >= added);

    // The open sessions end and one more is recorded: the mirror grows by what is new only.
    live_session.finish(crate::Outcome::Ended).unwrap();
    empty_session.finish(crate::Outcome::Ended).unwrap();
    record(10, true);
    recorder.shutdown().unwrap();
    let held = mirror.ledger_next().unwrap();
    let more = sync(&store, &mut mirror, 3);
    assert_eq!(mirror.ledger_next().unwrap(), held + more);
    assert_eq!(sync(&store, &mut mirror, 3), 0);
    let v = copy.verify_database(&verifying, &[]).unwrap();
    assert!(v.is_clean(), "{:#?}", v.ledger.findings);
    assert_eq!(v.sessions.len(), 5);
    assert!(matches!(
        v.ledger.state(&live),
        Some(crate::LedgerState::Sealed { .. })
    ));
    assert_eq!(
        copy.latest_checkpoint().unwrap(),
        store.latest_checkpoint().unwrap()
    );

    // Refused, all or nothing: a part that skips an entry, one that starts before the mirror's end (it would
    // rewrite held entries), one with a gap inside, and one whose last entry is malformed.
    let next = mirror.ledger_next().unwrap();
    let all = store.ledger_part(0, usize::MAX, u64::MAX).unwrap().entries;
    assert_eq!(all.len() as u64, next);
    let mut ahead = all.last().unwrap().clone();
    ahead.seq = next + 1;
    let mut follows = all.last().unwrap().clone();
    follows.seq = next;
    let mut gap = follows.clone();
    gap.seq = next + 2;
    let mut broken = follows.clone();
    broken.seq = next + 1;
    broken.body = "not hex".into();
    for (part, says) in [
        (vec![ahead.clone()], "where entry"),
        (all[all.len() - 2..].to_vec(), "again"),
        (vec![follows.clone(), gap], "where entry"),
        (vec![follows.clone(), broken], "not hex"),
    ] {
        let refused = mirror.apply_ledger(&LedgerPart {
            entries: part,
            more: false,
        });
        assert!(
            matches!(&refused, Err(RecordingError::Corrupt(why)) if why.contains(says)),
            "{refused:?}"
        );
        assert_eq!(mirror.ledger_next().unwrap(), next);
    }
    let held: Vec<LedgerEntryPart> = copy.ledger_part(0, usize::MAX, u64::MAX).unwrap().entries;
    assert_eq!(held, all, "the held entries are untouched");
    // What the gateway sends is stored, not judged: an entry that continues the numbers but not the chain is
    // kept, and the verifier names it.
    assert_eq!(
        mirror
            .apply_ledger(&LedgerPart {
                entries: vec![follows],
                more: false,
            })
            .unwrap(),
        1
    );
    let v = copy.verify_database(&verifying, &[]).unwrap();
    assert!(
        v.ledger
            .findings
            .iter()
            .any(|f| f.entry == Some(next) && f.what.contains("changed")),
        "{:#?}",
        v.ledger.findings
    );
}

#[test]
fn a_mirror_made_before_the_ledger_drops_the_entries_its_migration_made_up() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r.db");
    let key = SigningKey::from_bytes(&[7; 32]);
    let recorder = Recorder::start(&db, key.clone(), Limits::default()).unwrap();
    let session = recorder.open_session(meta()).unwrap();
    session
        .record(Event::Output(b"hello\r\n".to_vec()))
        .unwrap();
    session.finish(crate::Outcome::Ended).unwrap();
    recorder.shutdown().unwrap();
    let store = Store::open_read_only(&db).unwrap();
    let id = store.sessions().unwrap()[0].id.clone();

    // A mirror of the schema before the ledger, holding the session.
    let mirror_path = dir.path().join("mirror.db");
    drop(Mirror::open(&mirror_path).unwrap());
    {
        let conn = Connection::open(&mirror_path).unwrap();
        conn.execute_batch("DROP TABLE ledger; PRAGMA user_version = 1;")
            .unwrap();
    }
    let part = store.session_part(&id, 0, u64::MAX).unwrap();
    {
        let mut old = Mirror {
            conn: Connection::open(&mirror_path).unwrap(),
        };
        old.apply(&part).unwrap();
    }
    // Migrated as a database, it would vouch for the session with an entry of its own.
    let migrated = dir.path().join("migrated.db");
    std::fs::copy(&mirror_path, &migrated).unwrap();
    assert_eq!(store_entries(&Store::open(&migrated).unwrap()), 1);
    let mut mirror = Mirror::open(&mirror_path).unwrap();
    assert_eq!(mirror.ledger_next().unwrap(), 0);
    assert_eq!(sync(&store, &mut mirror, 100), store_entries(&store));
    let copy = Store::open_read_only(&mirror_path).unwrap();
    let v = copy.verify_database(&key.verifying_key(), &[]).unwrap();
    assert!(v.is_clean(), "{:#?}", v.ledger.findings);
}

fn store_entries(store: &Store) -> u64 {
    store
        .ledger_part(0, usize::MAX, u64::MAX)
        .unwrap()
        .entries
        .len() as u64
}

#[test]
fn a_mirror_fed_in_parts_verifies_and_replays_like_the_original() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r.db");
    let key = SigningKey::from_bytes(&[7; 32]);
    let limits = Limits {
        chunk_max_bytes: 64,
        ..Limits::default()
    };
    let recorder = Recorder::start(&db, key.clone(), limits).unwrap();
    let session = recorder.open_session(meta()).unwrap();
    let id = session.id().to_owned();
    for i in 0..40 {
        session
            .record(Event::Output(
                format!("line {i} of output\r\n").into_bytes(),
            ))
            .unwrap();
    }
    session.finish(crate::Outcome::Ended).unwrap();
    recorder.shutdown().unwrap();

    let store = Store::open_read_only(&db).unwrap();
    let row = store.session(&id).unwrap().unwrap();
    assert!(row.chunk_count > 3, "{}", row.chunk_count);
    let mirror_path = dir.path().join("mirror.db");
    let mut mirror = Mirror::open(&mirror_path).unwrap();
    assert!(!mirror.is_current(&row).unwrap());
    // Small parts, as a large session travels; a repeated part adds nothing.
    let mut from = 0;
    loop {
        let part = store.session_part(&id, from, 1).unwrap();
        assert_eq!(part.chunks.len(), 1);
        assert_eq!(mirror.apply(&part).unwrap(), 1);
        assert_eq!(mirror.apply(&part).unwrap(), 0);
        from += 1;
        if !part.more {
            break;
        }
    }
    assert!(mirror.is_current(&row).unwrap());
    let copy = Store::open_read_only(&mirror_path).unwrap();
    assert!(copy.verify(&id, &key.verifying_key()).unwrap().is_intact());
    assert_eq!(copy.events(&id).unwrap(), store.events(&id).unwrap());

    // A gap is refused.
    let gap = store.session_part(&id, 2, u64::MAX).unwrap();
    let mut fresh = Mirror::open(&dir.path().join("fresh.db")).unwrap();
    assert!(matches!(fresh.apply(&gap), Err(RecordingError::Corrupt(_))));
    // A byte changed on the way is caught by the verifier.
    let mut bad = store.session_part(&id, 0, u64::MAX).unwrap();
    let mut data = hex::decode(&bad.chunks[1].data).unwrap();
    data[0] ^= 1;
    bad.chunks[1].data = hex::encode(data);
    let tampered_path = dir.path().join("tampered.db");
    Mirror::open(&tampered_path).unwrap().apply(&bad).unwrap();
    let tampered = Store::open_read_only(&tampered_path).unwrap();
    assert!(
        !tampered
            .verify(&id, &key.verifying_key())
            .unwrap()
            .is_intact()
    );
}
