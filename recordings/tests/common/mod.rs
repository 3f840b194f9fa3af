//! Helpers shared by the integration tests: keys, session metadata, a raw connection for tampering, and a
//! deterministic generator.

#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use ed25519_dalek::SigningKey;
use sallyport_recordings::{Event, Limits, Outcome, Recorder, SessionMeta, Store};

pub fn key() -> SigningKey {
    SigningKey::from_bytes(&[42; 32])
}

pub fn meta(user: &str) -> SessionMeta {
    SessionMeta {
        user: user.into(),
        target: "db1".into(),
        target_addr: "10.0.0.5:22".into(),
        protocol: "ssh".into(),
        client_addr: "192.0.2.7:50000".into(),
    }
}

/// Small chunks, so that a few events make several of them. Input is kept whether or not it is echoed: these
/// tests are about the store (`echo.rs` and `tests/secrets.rs` test the gate).
pub fn small_limits() -> Limits {
    Limits {
        chunk_max_bytes: 256,
        chunk_max_age: Duration::from_secs(60),
        withhold_unechoed_input: false,
        ..Limits::default()
    }
}

pub fn db_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("recordings.db")
}

/// A mixed sequence of events, about `n * 30` encoded bytes.
pub fn sample_events(n: usize) -> Vec<Event> {
    let mut events = vec![
        Event::Marker("connected".into()),
        Event::Resize { cols: 80, rows: 24 },
    ];
    for i in 0..n {
        events.push(Event::Input(format!("echo {i}\r").into_bytes()));
        events.push(Event::Output(
            format!("echo {i}\r\n{i}\r\nuser@db1:~$ ").into_bytes(),
        ));
        if i % 10 == 9 {
            events.push(Event::Resize {
                cols: 80 + i as u16,
                rows: 24,
            });
        }
    }
    events.push(Event::Marker("exit status 0".into()));
    events
}

/// Records `events` in one finished session and shuts the recorder down; returns the session id.
pub fn record_session(path: &Path, events: &[Event]) -> String {
    let recorder = Recorder::start(path, key(), small_limits()).unwrap();
    let session = recorder.open_session(meta("alice")).unwrap();
    let id = session.id().to_owned();
    for e in events {
        session.record(e.clone()).unwrap();
    }
    session.finish(Outcome::Ended).unwrap();
    recorder.shutdown().unwrap();
    id
}

/// A plain connection for tampering with the file behind the crate's back.
pub fn raw(path: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).unwrap()
}

pub fn store(path: &Path) -> Store {
    Store::open(path).unwrap()
}

/// xorshift64*: deterministic pseudo-random numbers.
pub struct Prng(pub u64);

impl Prng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Copies a database consistently while a recorder may be writing it (what the disk holds at that moment).
pub fn snapshot(live: &Path, to: &Path) {
    raw(live)
        .execute("VACUUM INTO ?1", [to.to_str().unwrap()])
        .unwrap();
}

/// Records `events` in a session of a running recorder, waits `settle`, and copies the database while the
/// session is still open: what a crash (kill -9) leaves on disk. Returns the session id.
pub fn crashed_copy(
    path: &Path,
    to: &Path,
    user: &str,
    events: &[Event],
    limits: Limits,
    settle: Duration,
) -> String {
    let recorder = Recorder::start(path, key(), limits).unwrap();
    let s = recorder.open_session(meta(user)).unwrap();
    for e in events {
        s.record(e.clone()).unwrap();
    }
    std::thread::sleep(settle);
    snapshot(path, to);
    let id = s.id().to_owned();
    drop(s);
    recorder.shutdown().unwrap();
    id
}
