//! Secret-aware input through the real recorder: a command line the target echoes is recorded as typed, a password
//! at a prompt that does not echo is replaced by a count, and the search index never finds it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use sallyport_recordings::{Event, Limits, Outcome, Recorder, SearchIndex, Store};

const PASSWORD: &str = "Tr0ub4dor&3-horse";

#[test]
fn a_password_at_a_silent_prompt_is_withheld_and_never_found() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let recorder = Recorder::start(&path, key(), Limits::default()).unwrap();
    let s = recorder.open_session(meta("alice")).unwrap();
    let id = s.id().to_owned();
    let script: Vec<Event> = vec![
        Event::Output(b"alice@db1:~$ ".to_vec()),
        // Typed one key at a time, each echoed by the shell.
        Event::Input(b"s".to_vec()),
        Event::Output(b"s".to_vec()),
        Event::Input(b"udo -k; sudo true".to_vec()),
        Event::Output(b"udo -k; sudo true".to_vec()),
        Event::Input(b"\r".to_vec()),
        Event::Output(b"\r\n[sudo] password for alice: ".to_vec()),
        // The password is not echoed; Enter makes sudo print a newline.
        Event::Input(PASSWORD.as_bytes().to_vec()),
        Event::Input(b"\r".to_vec()),
        Event::Output(b"\r\nalice@db1:~$ ".to_vec()),
    ];
    for e in script {
        s.record(e).unwrap();
    }
    s.finish(Outcome::Ended).unwrap();
    recorder.shutdown().unwrap();

    let store = Store::open_read_only(&path).unwrap();
    let events = store.events(&id).unwrap();
    let mut input = Vec::new();
    for e in &events {
        let bytes: &[u8] = match &e.event {
            Event::Input(b) => {
                input.extend_from_slice(b);
                b
            }
            Event::Output(b) => b,
            Event::Marker(m) => m.as_bytes(),
            _ => &[],
        };
        assert!(
            !bytes
                .windows(5)
                .any(|w| PASSWORD.as_bytes().windows(5).any(|p| p == w)),
            "a piece of the password was recorded: {:?}",
            e.event
        );
    }
    assert_eq!(
        input, b"sudo -k; sudo true\r\r",
        "the command line and both Enters are recorded"
    );
    let withheld: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.event {
            Event::Marker(m) if m.starts_with("input withheld:") => Some(m.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(withheld.len(), 1, "{events:?}");
    assert!(
        withheld[0].contains(&format!("{} keystrokes", PASSWORD.chars().count())),
        "{}",
        withheld[0]
    );

    let mut index = SearchIndex::open_in_memory().unwrap();
    index.update(&store).unwrap();
    assert!(index.search(PASSWORD, 10).unwrap().is_empty());
    assert!(index.search("Tr0ub4dor", 10).unwrap().is_empty());
    assert_eq!(index.search("sudo true", 10).unwrap().len(), 1);
    assert!(
        store
            .verify(&id, &key().verifying_key())
            .unwrap()
            .is_intact()
    );
}
