//! Writing and reading back: events survive chunking and compression, sessions end and seal in every way they can.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use sallyport_recordings::{Event, Limits, Outcome, Recorder, Store, TryRecordError, Verification};

#[test]
fn events_round_trip_across_chunks_and_verify_intact() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let events = sample_events(60);
    let id = record_session(&path, &events);

    let store = Store::open_read_only(&path).unwrap();
    let back = store.events(&id).unwrap();
    let kinds: Vec<Event> = back.iter().map(|e| e.event.clone()).collect();
    assert_eq!(kinds, events);
    assert!(back.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));

    let row = store.session(&id).unwrap().unwrap();
    assert!(
        row.chunk_count >= 5,
        "small limits should make several chunks, got {}",
        row.chunk_count
    );
    assert_eq!(row.outcome, Some(Outcome::Ended));
    assert!(row.sealed);
    assert_eq!((row.user.as_str(), row.protocol.as_str()), ("alice", "ssh"));
    assert!(row.ended_at_ms.unwrap() >= row.started_at_ms);
    assert!(row.bytes_stored > 0 && row.bytes_raw > 0);
    assert_eq!(id.len(), 32);
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));

    assert_eq!(
        store.verify(&id, &key().verifying_key()).unwrap(),
        Verification::Intact {
            chunks: row.chunk_count
        }
    );
    assert!(store.integrity_check().unwrap());
}

#[test]
fn a_large_event_is_split_across_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let big: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    let id = record_session(
        &path,
        &[Event::Output(big.clone()), Event::Input(Vec::new())],
    );
    let store = store(&path);
    let back = store.events(&id).unwrap();
    let mut joined = Vec::new();
    for e in &back[..back.len() - 1] {
        match &e.event {
            Event::Output(piece) => joined.extend_from_slice(piece),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(joined, big);
    assert_eq!(back.last().unwrap().event, Event::Input(Vec::new()));
    assert!(store.session(&id).unwrap().unwrap().chunk_count >= 40);
    assert!(
        store
            .verify(&id, &key().verifying_key())
            .unwrap()
            .is_intact()
    );
}

#[test]
fn an_idle_session_reaches_the_disk_within_the_chunk_age() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let limits = Limits {
        chunk_max_age: Duration::from_millis(100),
        withhold_unechoed_input: false,
        ..Limits::default()
    };
    let recorder = Recorder::start(&path, key(), limits).unwrap();
    let session = recorder.open_session(meta("bob")).unwrap();
    session.record(Event::Input(b"l".to_vec())).unwrap();
    let store = Store::open_read_only(&path).unwrap();
    // No more events and no finish: only the writer's tick can write the chunk.
    let mut written = false;
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(20));
        if store.session(session.id()).unwrap().unwrap().chunk_count == 1 {
            written = true;
            break;
        }
    }
    assert!(written, "the aged chunk was not written within a second");
    assert_eq!(
        store.events(session.id()).unwrap()[0].event,
        Event::Input(b"l".to_vec())
    );
    assert_eq!(
        store.verify(session.id(), &key().verifying_key()).unwrap(),
        Verification::Unsealed { chunks: 1 }
    );
    session.finish(Outcome::Terminated).unwrap();
    recorder.shutdown().unwrap();
}

#[test]
fn a_dropped_session_recorder_ends_incomplete_and_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let recorder = Recorder::start(&path, key(), small_limits()).unwrap();
    let session = recorder.open_session(meta("carol")).unwrap();
    let id = session.id().to_owned();
    let events = sample_events(20);
    for e in &events {
        session.record(e.clone()).unwrap();
    }
    drop(session);
    recorder.shutdown().unwrap();

    let store = store(&path);
    let row = store.session(&id).unwrap().unwrap();
    assert_eq!(row.outcome, Some(Outcome::Incomplete));
    assert!(row.sealed);
    let back: Vec<Event> = store
        .events(&id)
        .unwrap()
        .into_iter()
        .map(|e| e.event)
        .collect();
    assert_eq!(back, events, "no data may be lost");
    assert!(
        store
            .verify(&id, &key().verifying_key())
            .unwrap()
            .is_intact()
    );
}

#[test]
fn shutdown_ends_open_sessions_and_later_records_fail() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let recorder = Recorder::start(&path, key(), small_limits()).unwrap();
    let session = recorder.open_session(meta("dave")).unwrap();
    session.record(Event::Output(b"hello".to_vec())).unwrap();
    // Dropping the last Recorder handle shuts the writer down, like `shutdown`.
    drop(recorder);
    assert!(session.record(Event::Output(b"late".to_vec())).is_err());
    let id = session.id().to_owned();
    assert!(session.finish(Outcome::Ended).is_err());

    let store = store(&path);
    let row = store.session(&id).unwrap().unwrap();
    assert_eq!(row.outcome, Some(Outcome::Incomplete));
    assert_eq!(
        store.events(&id).unwrap()[0].event,
        Event::Output(b"hello".to_vec())
    );
    assert!(
        store
            .verify(&id, &key().verifying_key())
            .unwrap()
            .is_intact()
    );
}

#[test]
fn sessions_are_listed_newest_first_and_a_session_without_events_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let recorder = Recorder::start(&path, key(), Limits::default()).unwrap();
    let mut ids = Vec::new();
    for user in ["u1", "u2", "u3"] {
        let s = recorder.open_session(meta(user)).unwrap();
        ids.push(s.id().to_owned());
        s.finish(Outcome::Ended).unwrap();
        std::thread::sleep(Duration::from_millis(3));
    }
    let store = store(&path);
    let listed: Vec<String> = store
        .sessions()
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    ids.reverse();
    assert_eq!(listed, ids);
    assert_eq!(
        store.verify(&ids[0], &key().verifying_key()).unwrap(),
        Verification::Intact { chunks: 0 }
    );
    assert!(store.events(&ids[0]).unwrap().is_empty());
    assert!(store.session("nope").unwrap().is_none());
    assert!(store.events("nope").is_err());
    recorder.shutdown().unwrap();
}

#[test]
fn many_threads_record_many_sessions_concurrently() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let recorder = Recorder::start(
        &path,
        key(),
        Limits {
            channel_capacity: 8,
            ..small_limits()
        },
    )
    .unwrap();
    let events = sample_events(30);
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let recorder = recorder.clone();
            let events = events.clone();
            std::thread::spawn(move || {
                let s = recorder.open_session(meta(&format!("user{i}"))).unwrap();
                for e in events {
                    s.record(e).unwrap();
                }
                let id = s.id().to_owned();
                s.finish(Outcome::Ended).unwrap();
                id
            })
        })
        .collect();
    let ids: Vec<String> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    recorder.shutdown().unwrap();
    let store = store(&path);
    for id in ids {
        let back: Vec<Event> = store
            .events(&id)
            .unwrap()
            .into_iter()
            .map(|e| e.event)
            .collect();
        assert_eq!(back, events);
        assert!(
            store
                .verify(&id, &key().verifying_key())
                .unwrap()
                .is_intact()
        );
    }
}

#[test]
fn a_full_queue_gives_the_event_back_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let limits = Limits {
        channel_capacity: 1,
        ..small_limits()
    };
    let recorder = Recorder::start(&path, key(), limits).unwrap();
    let session = recorder.open_session(meta("frank")).unwrap();
    let id = session.id().to_owned();

    // Another connection holds the write lock, so the writer's next chunk waits (within its busy timeout).
    let blocker = raw(&path);
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let mut sent = vec![Event::Output(vec![b'a'; 300])]; // More than a chunk: the writer starts a write and waits.
    session.record(sent[0].clone()).unwrap();
    let mut full = None;
    for i in 0..200 {
        let event = Event::Input(format!("{i}").into_bytes());
        match session.try_record(event) {
            Ok(()) => sent.push(Event::Input(format!("{i}").into_bytes())),
            Err(TryRecordError::Full(back)) => {
                full = Some(back);
                break;
            }
            Err(TryRecordError::Failed(e)) => panic!("unexpected failure {e}"),
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let back = full.expect("the queue of one should fill while the writer waits");
    blocker.execute_batch("COMMIT").unwrap();
    // Retry with the blocking call, as a caller would.
    session.record(back.clone()).unwrap();
    sent.push(back);
    session.finish(Outcome::Ended).unwrap();
    recorder.shutdown().unwrap();

    let store = store(&path);
    let mut got: Vec<Event> = Vec::new();
    for e in store.events(&id).unwrap() {
        match (got.last_mut(), e.event) {
            // The long output was split into pieces; join them back.
            (Some(Event::Output(prev)), Event::Output(more)) => prev.extend(more),
            (_, event) => got.push(event),
        }
    }
    assert_eq!(got, sent);
    assert!(
        store
            .verify(&id, &key().verifying_key())
            .unwrap()
            .is_intact()
    );
}

#[test]
fn a_long_marker_is_cut_at_a_character_boundary() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let id = record_session(&path, &[Event::Marker("é".repeat(5000))]);
    let events = store(&path).events(&id).unwrap();
    match &events[0].event {
        Event::Marker(text) => assert_eq!(text, &"é".repeat(2048)),
        other => panic!("unexpected {other:?}"),
    }
}
