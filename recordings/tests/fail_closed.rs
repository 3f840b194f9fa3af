//! Failing closed: when the database stops taking writes, recording sessions get errors, new sessions are refused,
//! and what was stored stays verifiable.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use sallyport_recordings::{
    Event, Limits, Outcome, Recorder, RecordingError, TryRecordError, Verification,
};

#[test]
fn a_full_database_fails_the_session_and_refuses_new_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let limits = Limits {
        chunk_max_bytes: 16 * 1024,
        max_db_pages: Some(64), // 256 KiB with 4 KiB pages.
        ..Limits::default()
    };
    let recorder = Recorder::start(&path, key(), limits).unwrap();
    let session = recorder.open_session(meta("alice")).unwrap();
    let id = session.id().to_owned();

    // Incompressible output, until the recorder says no (bounded in count and time).
    let mut rng = Prng(1);
    let started = Instant::now();
    let mut error = None;
    for _ in 0..10_000 {
        let block: Vec<u8> = (0..8 * 1024).map(|_| rng.next() as u8).collect();
        if let Err(e) = session.record(Event::Output(block)) {
            error = Some(e);
            break;
        }
        if started.elapsed() > Duration::from_secs(20) {
            break;
        }
    }
    let error = error.expect("recording into a full database must fail");
    assert!(matches!(error, RecordingError::WriteFailed(_)), "{error:?}");
    assert!(matches!(
        session.try_record(Event::Input(b"x".to_vec())),
        Err(TryRecordError::Failed(_))
    ));

    // New sessions are refused while the database takes no writes.
    let refused = recorder.open_session(meta("bob"));
    assert!(refused.is_err(), "a new session must be refused");
    // The dashboard hears it in words, and the queue is drained (the refusal came back through it).
    let health = recorder.health();
    assert!(health.failing.is_some(), "{health:?}");
    assert_eq!(health.queued_events, 0, "{health:?}");
    assert_eq!(health.queue_capacity, Limits::default().channel_capacity);

    // Finishing reports the failure and stores the session as failed, sealed over what was written.
    assert!(matches!(
        session.finish(Outcome::Ended),
        Err(RecordingError::WriteFailed(_))
    ));
    recorder.shutdown().unwrap();

    let store = store(&path);
    let row = store.session(&id).unwrap().unwrap();
    assert_eq!(row.outcome, Some(Outcome::Failed));
    assert!(row.chunk_count > 0);
    assert_eq!(
        store.verify(&id, &key().verifying_key()).unwrap(),
        Verification::Intact {
            chunks: row.chunk_count
        }
    );
    assert_eq!(
        store.sessions().unwrap().len(),
        1,
        "the refused session left no row"
    );
    assert!(store.integrity_check().unwrap());
}

#[test]
fn a_healthy_recorder_reports_its_backlog_drained() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = Recorder::start(&db_path(&dir), key(), Limits::default()).unwrap();
    let session = recorder.open_session(meta("alice")).unwrap();
    for _ in 0..100 {
        session
            .record(Event::Output(b"hello\r\n".to_vec()))
            .unwrap();
    }
    let health = recorder.health();
    assert!(health.queued_events <= 100, "{health:?}");
    // Finishing waits for the writer, which took every event off the queue before it.
    session.finish(Outcome::Ended).unwrap();
    let health = recorder.health();
    assert_eq!(health.queued_events, 0, "{health:?}");
    assert_eq!(health.failing, None);
    recorder.shutdown().unwrap();
}
