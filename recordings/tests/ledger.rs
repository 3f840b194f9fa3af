//! The ledger against someone who can write the database file but holds no key: a database with finished
//! sessions, a session recovered after a crash and a live one, and more than thirty ways of cutting it (seals
//! cleared, sessions shortened with and without recovery, deleted, inserted, totals changed, ledger entries removed,
//! changed, reordered, checkpoints forged or re-signed with another key, the file rolled back against a kept
//! checkpoint), then a thousand random single-byte changes anywhere in the file. Each is detected and named; an
//! untouched copy verifies clean.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use ed25519_dalek::{Signer, SigningKey};
use rusqlite::params;
use sallyport_recordings::{
    Checkpoint, DatabaseVerification, Event, LedgerState, Limits, Outcome, Recorder, Store,
};
use sha2::{Digest, Sha256};

fn limits() -> Limits {
    Limits {
        checkpoint_interval: Duration::from_millis(10),
        ..small_limits()
    }
}

/// The fixture: its file, the sessions by user, and the newest checkpoint of a first snapshot of it (for rollback).
struct Fixture {
    _dir: tempfile::TempDir,
    path: PathBuf,
    ids: BTreeMap<&'static str, String>,
    older: PathBuf,
}

fn finished(path: &Path, user: &str, events: &[Event]) -> String {
    let recorder = Recorder::start(path, key(), limits()).unwrap();
    let s = recorder.open_session(meta(user)).unwrap();
    let id = s.id().to_owned();
    for e in events {
        s.record(e.clone()).unwrap();
    }
    s.finish(Outcome::Ended).unwrap();
    recorder.shutdown().unwrap();
    id
}

/// A session open in a running recorder when the copy is taken, after a checkpoint covered its chunks.
fn open_copy(path: &Path, to: &Path, user: &str) -> String {
    crashed_copy(
        path,
        to,
        user,
        &sample_events(30),
        limits(),
        Duration::from_millis(400),
    )
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work.db");
    let mut ids = BTreeMap::new();
    for user in ["alice", "bob", "carol"] {
        ids.insert(user, finished(&work, user, &sample_events(40)));
    }
    // dave's session is open when the "crash" copy is taken; the copy is recovered like a restarted gateway would.
    let crashed = dir.path().join("crashed.db");
    ids.insert("dave", open_copy(&work, &crashed, "dave"));
    let recovery = Store::open(&crashed)
        .unwrap()
        .recover_unfinished(&key())
        .unwrap();
    assert!(recovery.findings.is_empty(), "{:?}", recovery.findings);
    assert_eq!(recovery.recovered.len(), 1);
    let older = dir.path().join("older.db");
    snapshot(&crashed, &older);
    // erin's session is live when the fixture is taken.
    let path = dir.path().join("fixture.db");
    ids.insert("erin", open_copy(&crashed, &path, "erin"));
    Fixture {
        _dir: dir,
        path,
        ids,
        older,
    }
}

fn verify_db(path: &Path, kept: &[Checkpoint]) -> DatabaseVerification {
    Store::open_read_only(path)
        .unwrap()
        .verify_database(&key().verifying_key(), kept)
        .unwrap()
}

#[test]
fn an_untouched_database_verifies_clean_with_every_state() {
    let f = fixture();
    let v = verify_db(&f.path, &[]);
    assert!(v.is_clean(), "{:#?}", v.ledger.findings);
    assert!(v.ledger.checkpoints >= 5, "{}", v.ledger.checkpoints);
    for user in ["alice", "bob", "carol"] {
        assert!(matches!(
            v.ledger.state(&f.ids[user]),
            Some(LedgerState::Sealed { chunks }) if *chunks >= 5
        ));
    }
    match v.ledger.state(&f.ids["dave"]) {
        Some(LedgerState::Recovered { unvouched_ms, .. }) => {
            assert!(*unvouched_ms < 1000, "{unvouched_ms}")
        }
        other => panic!("dave: {other:?}"),
    }
    assert!(matches!(
        v.ledger.state(&f.ids["erin"]),
        Some(LedgerState::Live { .. })
    ));
    // The newest checkpoint, kept elsewhere, agrees with the database it came from.
    let kept = Store::open_read_only(&f.path)
        .unwrap()
        .latest_checkpoint()
        .unwrap()
        .unwrap();
    let kept = Checkpoint::from_file(&kept.to_file()).unwrap();
    let v = verify_db(&f.path, &[kept]);
    assert!(v.is_clean(), "{:#?}", v.ledger.findings);
    assert_eq!(v.ledger.kept_checked, 1);
}

/// What a mutation must be caught as.
#[derive(Debug, Clone, Copy)]
enum Named {
    /// A finding or a failed check naming this user's session.
    Session(&'static str),
    /// A finding naming a ledger entry (a checkpoint is an entry).
    Entry,
    /// A finding naming the session with this id.
    Id(&'static str),
}

/// The attacker's tools: a plain connection, and the ledger's documented hashing to rewrite stored heads.
struct Attack {
    conn: rusqlite::Connection,
}

impl Attack {
    fn sql(&self, sql: &str, id: &str) {
        self.conn.execute(sql, [id]).unwrap();
    }

    fn recompute_heads(&self) {
        let rows: Vec<(i64, i64, Vec<u8>)> = {
            let mut stmt = self
                .conn
                .prepare("SELECT seq, at_ms, body FROM ledger ORDER BY seq")
                .unwrap();
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        };
        let mut head: [u8; 32] = Sha256::digest(b"sallyport-ledger-v1").into();
        for (seq, at, body) in rows {
            let mut leaf = Sha256::new();
            leaf.update(b"sallyport-ledger-entry-v1");
            leaf.update((seq as u64).to_be_bytes());
            leaf.update((at as u64).to_be_bytes());
            leaf.update(&body);
            let leaf: [u8; 32] = leaf.finalize().into();
            let mut next = Sha256::new();
            next.update(head);
            next.update(leaf);
            head = next.finalize().into();
            self.conn
                .execute(
                    "UPDATE ledger SET head = ?2 WHERE seq = ?1",
                    params![seq, &head[..]],
                )
                .unwrap();
        }
    }

    /// Re-signs every checkpoint with `other` over recomputed heads (kind 6: size, head, at, key, signature).
    fn resign_checkpoints(&self, other: &SigningKey) {
        let rows: Vec<(i64, i64, i64)> = {
            let mut stmt = self
                .conn
                .prepare("SELECT seq, at_ms, kind FROM ledger ORDER BY seq")
                .unwrap();
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        };
        for (seq, at, kind) in rows {
            self.recompute_heads();
            if kind != 6 {
                continue;
            }
            let head: Vec<u8> = if seq == 0 {
                Sha256::digest(b"sallyport-ledger-v1").to_vec()
            } else {
                self.conn
                    .query_row("SELECT head FROM ledger WHERE seq = ?1", [seq - 1], |r| {
                        r.get(0)
                    })
                    .unwrap()
            };
            let mut message = b"sallyport-checkpoint-v1".to_vec();
            message.extend_from_slice(&(seq as u64).to_be_bytes());
            message.extend_from_slice(&head);
            message.extend_from_slice(&(at as u64).to_be_bytes());
            let mut body = vec![6u8];
            body.extend_from_slice(&(seq as u64).to_be_bytes());
            body.extend_from_slice(&head);
            body.extend_from_slice(&(at as u64).to_be_bytes());
            body.extend_from_slice(&other.verifying_key().to_bytes());
            body.extend_from_slice(&other.sign(&message).to_bytes());
            self.conn
                .execute(
                    "UPDATE ledger SET body = ?2 WHERE seq = ?1",
                    params![seq, body],
                )
                .unwrap();
        }
        self.recompute_heads();
    }

    fn last_seq(&self, kind: i64, session: Option<&str>) -> i64 {
        self.conn
            .query_row(
                "SELECT max(seq) FROM ledger WHERE kind = ?1 AND (?2 IS NULL OR session_id = ?2)",
                params![kind, session],
                |r| r.get(0),
            )
            .unwrap()
    }

    /// Closes the gap a removed entry left, as an attacker hiding it would.
    fn renumber_after(&self, removed: i64) {
        self.conn
            .execute(
                "UPDATE ledger SET seq = seq + 999999 WHERE seq > ?1",
                [removed],
            )
            .unwrap();
        self.conn
            .execute(
                "UPDATE ledger SET seq = seq - 1000000 WHERE seq > ?1",
                [removed],
            )
            .unwrap();
    }

    fn fix_totals(&self, id: &str) {
        self.sql(
            "UPDATE sessions SET chunk_count = (SELECT count(*) FROM chunks WHERE session_id = ?1),
                 bytes_raw = (SELECT coalesce(sum(raw_len), 0) FROM chunks WHERE session_id = ?1),
                 bytes_stored = (SELECT coalesce(sum(length(data)), 0) FROM chunks WHERE session_id = ?1)
             WHERE id = ?1",
            id,
        );
    }
}

/// Applies one attack to a copy, given the sessions by user.
type Mutate = Box<dyn Fn(&Attack, &BTreeMap<&'static str, String>)>;
/// A named attack and what it must be caught as.
type Mutation = (&'static str, Named, Mutate);

const CLEAR_SEAL: &str =
    "UPDATE sessions SET seal_hash = NULL, seal_sig = NULL, seal_key = NULL WHERE id = ?1";
const CLEAR_END: &str = "UPDATE sessions SET ended_at_ms = NULL, outcome = NULL WHERE id = ?1";
const DROP_LAST_TWO: &str = "DELETE FROM chunks WHERE session_id = ?1 AND seq >= (SELECT max(seq) - 1 FROM chunks WHERE session_id = ?1)";

fn mutations() -> Vec<Mutation> {
    use Named::*;
    let m = |name, named, f: Mutate| (name, named, f);
    vec![
        m(
            "seal cleared",
            Session("alice"),
            Box::new(|a, ids| a.sql(CLEAR_SEAL, &ids["alice"])),
        ),
        m(
            "seal and end cleared: looks live",
            Session("alice"),
            Box::new(|a, ids| {
                a.sql(CLEAR_SEAL, &ids["alice"]);
                a.sql(CLEAR_END, &ids["alice"]);
            }),
        ),
        m(
            "seal of the recovered session cleared",
            Session("dave"),
            Box::new(|a, ids| a.sql(CLEAR_SEAL, &ids["dave"])),
        ),
        m(
            "truncated, count and totals fixed",
            Session("bob"),
            Box::new(|a, ids| {
                a.sql(DROP_LAST_TWO, &ids["bob"]);
                a.fix_totals(&ids["bob"]);
            }),
        ),
        m(
            "truncated and made to look crashed",
            Session("bob"),
            Box::new(|a, ids| {
                a.sql(DROP_LAST_TWO, &ids["bob"]);
                a.fix_totals(&ids["bob"]);
                a.sql(CLEAR_SEAL, &ids["bob"]);
                a.sql(CLEAR_END, &ids["bob"]);
            }),
        ),
        m(
            "live session truncated",
            Session("erin"),
            Box::new(|a, ids| {
                a.sql(DROP_LAST_TWO, &ids["erin"]);
                a.fix_totals(&ids["erin"]);
            }),
        ),
        m(
            "whole session deleted",
            Session("carol"),
            Box::new(|a, ids| {
                a.sql("DELETE FROM chunks WHERE session_id = ?1", &ids["carol"]);
                a.sql("DELETE FROM sessions WHERE id = ?1", &ids["carol"]);
            }),
        ),
        m(
            "live session deleted",
            Session("erin"),
            Box::new(|a, ids| {
                a.sql("DELETE FROM chunks WHERE session_id = ?1", &ids["erin"]);
                a.sql("DELETE FROM sessions WHERE id = ?1", &ids["erin"]);
            }),
        ),
        m(
            "raw byte total changed",
            Session("alice"),
            Box::new(|a, ids| {
                a.sql(
                    "UPDATE sessions SET bytes_raw = bytes_raw + 1 WHERE id = ?1",
                    &ids["alice"],
                )
            }),
        ),
        m(
            "stored byte total changed",
            Session("bob"),
            Box::new(|a, ids| {
                a.sql(
                    "UPDATE sessions SET bytes_stored = bytes_stored - 7 WHERE id = ?1",
                    &ids["bob"],
                )
            }),
        ),
        m(
            "live chunk count raised",
            Session("erin"),
            Box::new(|a, ids| {
                a.sql(
                    "UPDATE sessions SET chunk_count = chunk_count + 1 WHERE id = ?1",
                    &ids["erin"],
                )
            }),
        ),
        m(
            "a session inserted",
            Id("ffffffffffffffffffffffffffffffff"),
            Box::new(|a, ids| {
                a.sql("INSERT INTO sessions SELECT 'ffffffffffffffffffffffffffffffff', user, target, target_addr, protocol, client_addr, started_at_ms, ended_at_ms, outcome, chunk_count, bytes_raw, bytes_stored, seal_hash, seal_sig, seal_key FROM sessions WHERE id = ?1", &ids["carol"]);
            }),
        ),
        m(
            "a chunk appended to the live session",
            Session("erin"),
            Box::new(|a, ids| {
                a.sql("INSERT INTO chunks SELECT session_id, seq + 1000, t_start_ms, t_end_ms, raw_len, data, hash FROM chunks WHERE session_id = ?1 AND seq = 0", &ids["erin"]);
                a.fix_totals(&ids["erin"]);
            }),
        ),
        m(
            "a chunk replaced with another session's",
            Session("alice"),
            Box::new(|a, ids| {
                a.conn.execute("UPDATE chunks SET (data, hash, raw_len) = (SELECT data, hash, raw_len FROM chunks WHERE session_id = ?2 AND seq = 1) WHERE session_id = ?1 AND seq = 1", params![ids["alice"], ids["bob"]]).unwrap();
            }),
        ),
        m(
            "chunk data changed",
            Session("carol"),
            Box::new(|a, ids| {
                a.sql("UPDATE chunks SET data = zeroblob(length(data)) WHERE session_id = ?1 AND seq = 2", &ids["carol"]);
            }),
        ),
        m(
            "two chunks swapped",
            Session("alice"),
            Box::new(|a, ids| {
                for (from, to) in [(1, -100), (2, 1), (-100, 2)] {
                    a.conn
                        .execute(
                            "UPDATE chunks SET seq = ?3 WHERE session_id = ?1 AND seq = ?2",
                            params![ids["alice"], from, to],
                        )
                        .unwrap();
                }
            }),
        ),
        m(
            "user of a finished session changed",
            Session("bob"),
            Box::new(|a, ids| {
                a.sql(
                    "UPDATE sessions SET user = 'mallory' WHERE id = ?1",
                    &ids["bob"],
                )
            }),
        ),
        m(
            "target of the live session changed",
            Session("erin"),
            Box::new(|a, ids| {
                a.sql(
                    "UPDATE sessions SET target = 'elsewhere' WHERE id = ?1",
                    &ids["erin"],
                )
            }),
        ),
        m(
            "outcome changed",
            Session("carol"),
            Box::new(|a, ids| {
                a.sql(
                    "UPDATE sessions SET outcome = 'terminated' WHERE id = ?1",
                    &ids["carol"],
                )
            }),
        ),
        m(
            "end time changed",
            Session("alice"),
            Box::new(|a, ids| {
                a.sql(
                    "UPDATE sessions SET ended_at_ms = ended_at_ms - 60000 WHERE id = ?1",
                    &ids["alice"],
                )
            }),
        ),
        m(
            "seal copied from another session",
            Session("alice"),
            Box::new(|a, ids| {
                a.conn.execute("UPDATE sessions SET (seal_hash, seal_sig, seal_key, chunk_count, ended_at_ms) = (SELECT seal_hash, seal_sig, seal_key, chunk_count, ended_at_ms FROM sessions WHERE id = ?2) WHERE id = ?1", params![ids["alice"], ids["bob"]]).unwrap();
            }),
        ),
        m(
            "a ledger entry removed",
            Entry,
            Box::new(|a, ids| {
                let seq = a.last_seq(2, Some(&ids["alice"]));
                a.conn
                    .execute("DELETE FROM ledger WHERE seq = ?1", [seq])
                    .unwrap();
            }),
        ),
        m(
            "a ledger entry removed and the heads recomputed",
            Entry,
            Box::new(|a, ids| {
                let seq = a.last_seq(2, Some(&ids["bob"]));
                a.conn
                    .execute("DELETE FROM ledger WHERE seq = ?1", [seq])
                    .unwrap();
                a.renumber_after(seq);
                a.recompute_heads();
            }),
        ),
        m(
            "a ledger entry's body changed",
            Entry,
            Box::new(|a, ids| {
                let seq = a.last_seq(3, Some(&ids["carol"]));
                a.conn.execute("UPDATE ledger SET body = CAST(substr(body, 1, 10) || x'00' || substr(body, 12) AS BLOB) WHERE seq = ?1", [seq]).unwrap();
            }),
        ),
        m(
            "a ledger entry's body changed and the heads recomputed",
            Entry,
            Box::new(|a, ids| {
                let seq = a.last_seq(2, Some(&ids["alice"]));
                a.conn.execute("UPDATE ledger SET body = CAST(substr(body, 1, length(body) - 1) || x'ff' AS BLOB), digest = NULL WHERE seq = ?1", [seq]).unwrap();
                a.recompute_heads();
            }),
        ),
        m(
            "a chunk's ledger columns changed",
            Entry,
            Box::new(|a, ids| {
                let seq = a.last_seq(2, Some(&ids["bob"]));
                a.conn
                    .execute(
                        "UPDATE ledger SET chunk_seq = chunk_seq + 50 WHERE seq = ?1",
                        [seq],
                    )
                    .unwrap();
            }),
        ),
        m(
            "an entry's kind column changed",
            Entry,
            Box::new(|a, ids| {
                let seq = a.last_seq(1, Some(&ids["carol"]));
                a.conn
                    .execute("UPDATE ledger SET kind = 8 WHERE seq = ?1", [seq])
                    .unwrap();
            }),
        ),
        m(
            "two ledger entries swapped",
            Entry,
            Box::new(|a, _| {
                a.conn.execute_batch("UPDATE ledger SET seq = -1 WHERE seq = 3; UPDATE ledger SET seq = 3 WHERE seq = 4; UPDATE ledger SET seq = 4 WHERE seq = -1;").unwrap();
            }),
        ),
        m(
            "the checkpoint after a seal removed",
            Entry,
            Box::new(|a, ids| {
                let seal = a.last_seq(3, Some(&ids["alice"]));
                a.conn
                    .execute("DELETE FROM ledger WHERE seq = ?1", [seal + 1])
                    .unwrap();
                a.renumber_after(seal + 1);
                a.recompute_heads();
            }),
        ),
        m(
            "the restart entry removed",
            Entry,
            Box::new(|a, _| {
                let seq = a.last_seq(7, None);
                a.conn
                    .execute("DELETE FROM ledger WHERE seq = ?1", [seq])
                    .unwrap();
            }),
        ),
        m(
            "the recovery entry's loss bound changed",
            Entry,
            Box::new(|a, ids| {
                let seq = a.last_seq(4, Some(&ids["dave"]));
                a.conn.execute("UPDATE ledger SET body = CAST(substr(body, 1, length(body) - 8) || x'00000000000f423f' AS BLOB) WHERE seq = ?1", [seq]).unwrap();
                a.recompute_heads();
            }),
        ),
        m(
            "a checkpoint's signature forged",
            Entry,
            Box::new(|a, _| {
                let seq = a.last_seq(6, None);
                a.conn.execute("UPDATE ledger SET body = CAST(substr(body, 1, length(body) - 64) || randomblob(64) AS BLOB) WHERE seq = ?1", [seq]).unwrap();
                a.recompute_heads();
            }),
        ),
        m(
            "every checkpoint re-signed with another key",
            Entry,
            Box::new(|a, _| a.resign_checkpoints(&SigningKey::from_bytes(&[9; 32]))),
        ),
        m(
            "the ledger's tail cut (the live session's entries)",
            Session("erin"),
            Box::new(|a, ids| {
                let first: i64 = a
                    .conn
                    .query_row(
                        "SELECT min(seq) FROM ledger WHERE session_id = ?1",
                        [&ids["erin"]],
                        |r| r.get(0),
                    )
                    .unwrap();
                a.conn
                    .execute("DELETE FROM ledger WHERE seq >= ?1", [first])
                    .unwrap();
            }),
        ),
        m(
            "the whole ledger deleted",
            Session("alice"),
            Box::new(|a, _| {
                a.conn.execute("DELETE FROM ledger", []).unwrap();
            }),
        ),
        m(
            "a session and its ledger entries deleted, heads recomputed",
            Entry,
            Box::new(|a, ids| {
                a.sql("DELETE FROM chunks WHERE session_id = ?1", &ids["bob"]);
                a.sql("DELETE FROM sessions WHERE id = ?1", &ids["bob"]);
                a.sql("DELETE FROM ledger WHERE session_id = ?1", &ids["bob"]);
                a.recompute_heads();
            }),
        ),
    ]
}

fn detected(v: &DatabaseVerification, ids: &BTreeMap<&'static str, String>, named: Named) -> bool {
    match named {
        Named::Session(user) => {
            let id = &ids[user];
            v.ledger.findings_for(id).next().is_some()
                || v.sessions.iter().any(|(row, _)| row.id == *id) && !v.session_ok(id)
        }
        Named::Entry => v.ledger.findings.iter().any(|f| f.entry.is_some()),
        Named::Id(id) => v.ledger.findings_for(id).next().is_some(),
    }
}

#[test]
fn every_mutation_is_detected_and_named() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let mutations = mutations();
    assert!(mutations.len() >= 30, "{} mutations", mutations.len());
    for (i, (name, named, mutate)) in mutations.iter().enumerate() {
        let copy = dir.path().join(format!("m{i}.db"));
        std::fs::copy(&f.path, &copy).unwrap();
        mutate(&Attack { conn: raw(&copy) }, &f.ids);
        let v = verify_db(&copy, &[]);
        assert!(!v.is_clean(), "{name}: not detected");
        assert!(
            detected(&v, &f.ids, *named),
            "{name}: not named as {named:?}: {:#?}",
            v.ledger.findings
        );
        eprintln!(
            "{name}: {}",
            v.ledger
                .findings
                .first()
                .map(ToString::to_string)
                .unwrap_or_default()
        );
    }
}

#[test]
fn recovery_of_a_cut_session_reports_it_and_never_seals_it_intact() {
    let f = fixture();
    let copy = f._dir.path().join("cut.db");
    std::fs::copy(&f.path, &copy).unwrap();
    let a = Attack { conn: raw(&copy) };
    a.sql(DROP_LAST_TWO, &f.ids["bob"]);
    a.fix_totals(&f.ids["bob"]);
    a.sql(CLEAR_SEAL, &f.ids["bob"]);
    a.sql(CLEAR_END, &f.ids["bob"]);
    drop(a);
    let recovery = Store::open(&copy)
        .unwrap()
        .recover_unfinished(&key())
        .unwrap();
    assert!(
        recovery.damaged.iter().any(|(id, _)| *id == f.ids["bob"]),
        "{recovery:?}"
    );
    // erin was live in the copy: a restart recovers her honestly.
    assert!(
        recovery.recovered.iter().any(|r| r.id == f.ids["erin"]),
        "{recovery:?}"
    );
    let v = verify_db(&copy, &[]);
    assert!(!v.session_ok(&f.ids["bob"]));
    assert!(
        v.ledger
            .findings_for(&f.ids["bob"])
            .any(|f| f.what.contains("seal has been removed"))
    );
    // A second restart changes nothing about it.
    let again = Store::open(&copy)
        .unwrap()
        .recover_unfinished(&key())
        .unwrap();
    assert!(again.recovered.is_empty());
    assert!(!verify_db(&copy, &[]).session_ok(&f.ids["bob"]));
}

#[test]
fn a_rolled_back_file_fails_against_a_kept_checkpoint() {
    let f = fixture();
    let kept = Store::open_read_only(&f.path)
        .unwrap()
        .latest_checkpoint()
        .unwrap()
        .unwrap();
    // The older copy is whole in itself...
    assert!(verify_db(&f.older, &[]).is_clean());
    // ...but the checkpoint kept from the newer one shows it was rolled back.
    let v = verify_db(&f.older, std::slice::from_ref(&kept));
    assert!(
        v.ledger
            .findings
            .iter()
            .any(|f| f.what.contains("rolled back")),
        "{:#?}",
        v.ledger.findings
    );
    // A kept checkpoint with a changed head, or signed by another key, is refused too.
    let changed = Checkpoint {
        head: [0; 32],
        ..kept.clone()
    };
    assert!(!verify_db(&f.path, &[changed]).is_clean());
    let other = SigningKey::from_bytes(&[9; 32]);
    let foreign = Checkpoint {
        signature: other.sign(b"x").to_bytes(),
        ..kept
    };
    assert!(!verify_db(&f.path, &[foreign]).is_clean());
}

/// Every table's rows, as SQLite reads them: a flip that leaves this unchanged changed no stored value.
fn dump(path: &Path) -> Option<Vec<String>> {
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .ok()?;
    let mut out = Vec::new();
    for table in ["sqlite_schema", "sessions", "chunks", "ledger"] {
        let mut stmt = conn.prepare(&format!("SELECT * FROM {table}")).ok()?;
        let columns = stmt.column_count();
        let mut rows = stmt.query([]).ok()?;
        while let Some(row) = rows.next().ok()? {
            let mut line = String::new();
            for i in 0..columns {
                line.push_str(&format!("{:?}|", row.get_ref(i).ok()?));
            }
            out.push(line);
        }
    }
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .ok()?;
    out.push(format!("user_version {version}"));
    Some(out)
}

#[test]
fn a_thousand_random_byte_changes_are_each_detected_or_change_nothing_stored() {
    let f = fixture();
    let original = std::fs::read(&f.path).unwrap();
    let clean = dump(&f.path).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("flip.db");
    let mut rng = Prng(0x5a11_9047);
    let (mut detected, mut inert) = (0, 0);
    for round in 0..1000 {
        let mut bytes = original.clone();
        let at = rng.below(bytes.len() as u64) as usize;
        let flip = (rng.below(255) + 1) as u8;
        bytes[at] ^= flip;
        std::fs::write(&copy, &bytes).unwrap();
        let changed = dump(&copy).as_ref() != Some(&clean);
        let caught = match Store::open_read_only(&copy) {
            Err(_) => true,
            Ok(store) => {
                !store.integrity_check().unwrap_or(false)
                    || match store.verify_database(&key().verifying_key(), &[]) {
                        Err(_) => true,
                        Ok(v) => !v.is_clean(),
                    }
            }
        };
        if caught {
            detected += 1;
        } else {
            if changed {
                let now = dump(&copy).unwrap_or_default();
                let diff: Vec<_> = now.iter().filter(|l| !clean.contains(l)).collect();
                panic!(
                    "round {round}: byte {at} ^ {flip:#x} changed stored data undetected: {diff:?}"
                );
            }
            inert += 1;
        }
    }
    eprintln!(
        "{detected} of 1000 flips detected; {inert} changed no stored value (free space inside pages)"
    );
    // The flips did reach stored data (a third to a half of this file is records, the rest page headroom).
    assert!(
        detected >= 200,
        "only {detected} of 1000 flips touched anything SQLite reads"
    );
}
