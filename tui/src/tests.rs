//! Snapshot tests of every screen on ratatui's TestBackend, driven through `App::update` as the event loop drives
//! it; search, verification and export run against real recordings written by `sallyport-recordings`. Hostile
//! recordings are replayed through the real crossterm backend into a buffer to prove no recorded escape sequence
//! reaches the reviewer's terminal.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use ed25519_dalek::SigningKey;
use insta::assert_snapshot;
use ratatui::Terminal;
use ratatui::backend::{CrosstermBackend, TestBackend};
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::layout::Rect;
use ratatui::{TerminalOptions, Viewport};
use sallyport_recordings::{Event, Limits, Outcome, Recorder, SessionMeta, SessionRow, TimedEvent};

use crate::app::{App, Input, UiEvent};
use crate::loader::Source;
use crate::model::{Integrity, Loaded, Request};
use crate::replay::{Replay, TerminalReplay};

/// 2026-03-02 09:15:00 UTC.
const T0: u64 = 1_772_442_900_000;

fn key() -> SigningKey {
    SigningKey::from_bytes(&[42; 32])
}

fn row(id: &str, user: &str, target: &str, start: u64, outcome: Option<Outcome>) -> SessionRow {
    SessionRow {
        id: id.into(),
        user: user.into(),
        target: target.into(),
        target_addr: "10.0.0.5:22".into(),
        protocol: "ssh".into(),
        client_addr: "192.0.2.7:50123".into(),
        started_at_ms: start,
        ended_at_ms: outcome.map(|_| start + 754_000),
        outcome,
        chunk_count: 3,
        bytes_raw: 48_213,
        bytes_stored: 9_000,
        sealed: outcome.is_some(),
    }
}

fn sample_rows() -> Vec<SessionRow> {
    vec![
        row("s5", "alice", "db1", T0 + 4 * 3_600_000, None),
        row(
            "s4",
            "bob",
            "web-frontend-01",
            T0 + 3 * 3_600_000,
            Some(Outcome::Terminated),
        ),
        row(
            "s3",
            "alice",
            "db2",
            T0 + 2 * 3_600_000,
            Some(Outcome::Ended),
        ),
        row(
            "s2",
            "carol",
            "db1",
            T0 + 3_600_000 - 86_400_000,
            Some(Outcome::Failed),
        ),
        row(
            "s1",
            "mallory",
            "bastion\x1b]0;pwned\x07",
            T0 - 2 * 86_400_000,
            Some(Outcome::Incomplete),
        ),
    ]
}

fn app_with(rows: Vec<SessionRow>) -> App {
    let mut app = App::new(
        "/var/lib/sallyport/recordings.db".into(),
        T0 + 4 * 3_600_000 + 95_000,
    );
    let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
    app.update(Input::Loaded(Loaded::Sessions(rows)));
    let states = [
        Integrity::Unsealed,
        Integrity::Intact,
        Integrity::Intact,
        Integrity::Failed {
            short: "chunk 2".into(),
            detail: "chunk 2 is bad: the stored hash does not match".into(),
        },
        Integrity::Pending,
    ];
    for (id, state) in ids.into_iter().zip(states) {
        app.update(Input::Loaded(Loaded::Integrity(id, state)));
    }
    app
}

fn press(app: &mut App, code: KeyCode) -> Vec<Request> {
    app.update(Input::Ui(UiEvent::Key(KeyEvent::new(
        code,
        KeyModifiers::NONE,
    ))))
}

fn type_text(app: &mut App, text: &str) {
    for c in text.chars() {
        press(app, KeyCode::Char(c));
    }
}

fn render(app: &mut App, width: u16, height: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|f| app.draw(f)).unwrap();
    terminal.backend().to_string()
}

#[test]
fn list_in_80x24_and_wide() {
    let mut app = app_with(sample_rows());
    assert_snapshot!("list_80x24", render(&mut app, 80, 24));
    assert_snapshot!("list_140x16", render(&mut app, 140, 16));
}

#[test]
fn list_filters_and_sort() {
    let mut app = app_with(sample_rows());
    press(&mut app, KeyCode::Char('f'));
    type_text(&mut app, "user:alice from:2026-03-02");
    assert_snapshot!("filter_prompt", render(&mut app, 80, 12));
    press(&mut app, KeyCode::Enter);
    assert_eq!(app.visible_sessions(), 2);
    assert_snapshot!("list_filtered", render(&mut app, 80, 12));
    press(&mut app, KeyCode::Esc);
    assert_eq!(app.visible_sessions(), 5);
    // Sort by duration, then by user ascending.
    press(&mut app, KeyCode::Char('s'));
    press(&mut app, KeyCode::Char('s'));
    press(&mut app, KeyCode::Char('r'));
    assert_snapshot!("list_sorted_by_user", render(&mut app, 80, 12));
    press(&mut app, KeyCode::Char('f'));
    type_text(&mut app, "from:someday");
    press(&mut app, KeyCode::Enter);
    assert!(app.status().contains("not a date"), "{}", app.status());
}

fn ev(at_ms: u64, event: Event) -> TimedEvent {
    TimedEvent { at_ms, event }
}

fn out(at_ms: u64, text: &str) -> TimedEvent {
    ev(at_ms, Event::Output(text.as_bytes().to_vec()))
}

fn input(at_ms: u64, text: &str) -> TimedEvent {
    ev(at_ms, Event::Input(text.as_bytes().to_vec()))
}

/// A shell session with colors, a full-screen program on the alternate screen, and a long idle gap.
fn shell_events() -> Vec<TimedEvent> {
    vec![
        ev(0, Event::Marker("connected".into())),
        ev(0, Event::Resize { cols: 60, rows: 12 }),
        out(100, "\x1b]0;alice@db1: ~\x07alice@db1:~$ "),
        input(1_000, "l"),
        out(1_010, "l"),
        input(1_100, "s\r"),
        out(
            1_110,
            "s\r\n\x1b[1;34mbin\x1b[0m  \x1b[1;32mdeploy.sh\x1b[0m  notes.txt\r\nalice@db1:~$ ",
        ),
        input(3_000, "sudo rm -rf /srv/old\r"),
        out(3_010, "sudo rm -rf /srv/old\r\n"),
        out(3_500, "[sudo] password for alice: "),
        out(4_000, "\r\nalice@db1:~$ "),
        input(5_000, "top\r"),
        out(
            5_010,
            "top\r\n\x1b[?1049h\x1b[H\x1b[2J\x1b[7m  PID USER      %CPU COMMAND                                  \x1b[0m\r\n    1 root       0.3 systemd\r\n  812 alice     12.5 \x1b[31mpostgres\x1b[0m\r\n",
        ),
        out(35_000, "\x1b[?1049l\r\nalice@db1:~$ "),
        input(36_000, "exit\r"),
        out(36_010, "exit\r\nlogout\r\n"),
        ev(36_020, Event::Marker("session ended: exit status 0".into())),
    ]
}

fn open_player(app: &mut App, id: &str, events: Vec<TimedEvent>, query: Option<&str>) {
    app.update(Input::Loaded(Loaded::Session {
        id: id.into(),
        events: Ok(events),
        query: query.map(str::to_owned),
    }));
}

#[test]
fn player_at_several_points() {
    let mut app = app_with(sample_rows());
    let asked = press(&mut app, KeyCode::Enter);
    assert_eq!(
        asked,
        vec![Request::Open {
            id: "s5".into(),
            query: None
        }]
    );
    open_player(&mut app, "s3", shell_events(), None);
    assert_snapshot!("player_start", render(&mut app, 80, 24));
    // Play at 16×: the idle gap while top runs is skipped, so 3 s of real time reach the end.
    for _ in 0..5 {
        press(&mut app, KeyCode::Char('+'));
    }
    press(&mut app, KeyCode::Char(' '));
    app.update(Input::Tick(Duration::from_millis(200)));
    let p = app.player().unwrap();
    assert!(p.playing());
    assert!(p.screen_text().contains("deploy.sh"), "{}", p.screen_text());
    app.update(Input::Tick(Duration::from_millis(150)));
    assert!(app.player().unwrap().screen_text().contains("postgres"));
    for _ in 0..10 {
        app.update(Input::Tick(Duration::from_millis(100)));
    }
    assert!(!app.player().unwrap().playing(), "ended");
    assert_snapshot!("player_end", render(&mut app, 80, 24));
    // Seek into the full-screen program, and step back one event before it started.
    press(&mut app, KeyCode::Char('5'));
    assert_snapshot!("player_alternate_screen", render(&mut app, 80, 24));
    press(&mut app, KeyCode::Char(','));
    assert!(!app.player().unwrap().screen_text().contains("postgres"));
    assert_snapshot!("player_before_top", render(&mut app, 80, 24));
    press(&mut app, KeyCode::Esc);
    assert!(app.player().is_none());
}

#[test]
fn player_jumps_to_search_hits() {
    let mut app = app_with(sample_rows());
    open_player(&mut app, "s3", shell_events(), Some("rm -rf"));
    let p = app.player().unwrap();
    assert_eq!(p.moments().len(), 2, "typed and echoed");
    assert!(p.screen_text().contains("sudo rm -rf"));
    assert!(
        !p.screen_text().contains("password"),
        "shown right at the hit"
    );
    press(&mut app, KeyCode::Char('n'));
    assert_snapshot!("player_at_hit", render(&mut app, 80, 24));
}

/// A database with three recorded sessions (alice runs `sudo rm -rf`, bob does not, carol's output mentions it).
fn recorded_db(dir: &Path) -> (PathBuf, Vec<String>) {
    let path = dir.join("recordings.db");
    let limits = Limits {
        chunk_max_bytes: 256,
        ..Limits::default()
    };
    let recorder = Recorder::start(&path, key(), limits).unwrap();
    let mut ids = Vec::new();
    for (user, target, events) in [
        ("alice", "db1", shell_events()),
        (
            "bob",
            "web",
            vec![out(5, "bob@web:~$ uptime\r\n 10:00 up 3 days\r\n")],
        ),
        (
            "carol",
            "db2",
            vec![out(7, "history | grep rm\r\n  12  rm -rf build\r\n")],
        ),
    ] {
        let s = recorder
            .open_session(SessionMeta {
                user: user.into(),
                target: target.into(),
                target_addr: "10.0.0.5:22".into(),
                protocol: "ssh".into(),
                client_addr: "192.0.2.7:50000".into(),
            })
            .unwrap();
        for e in events {
            s.record(e.event).unwrap();
        }
        ids.push(s.id().to_owned());
        s.finish(Outcome::Ended).unwrap();
    }
    recorder.shutdown().unwrap();
    (path, ids)
}

/// The rows of a real database with fixed start times, so snapshots do not depend on the clock.
fn fixed_rows(source: &Source) -> Vec<SessionRow> {
    let mut rows = source.sessions().unwrap();
    rows.sort_by(|a, b| a.user.cmp(&b.user));
    for (i, r) in rows.iter_mut().enumerate() {
        r.started_at_ms = T0 + i as u64 * 600_000;
        r.ended_at_ms = Some(r.started_at_ms + 36_020);
    }
    rows.reverse();
    rows
}

#[test]
fn search_results_from_a_real_index() {
    let dir = tempfile::tempdir().unwrap();
    let (db, ids) = recorded_db(dir.path());
    let mut source = Source::open(&db, None, Some(key().verifying_key())).unwrap();
    source.update_index().unwrap();
    let mut app = App::new("recordings.db".into(), T0 + 3_600_000);
    app.update(Input::Loaded(Loaded::Sessions(fixed_rows(&source))));
    press(&mut app, KeyCode::Char('/'));
    type_text(&mut app, "rm -rf");
    let asked = press(&mut app, KeyCode::Enter);
    assert_eq!(asked, vec![Request::Search("rm -rf".into())]);
    let Loaded::Results { query, hits, .. } = source.handle(asked[0].clone()) else {
        panic!("no results");
    };
    assert_eq!(hits.len(), 2);
    app.update(Input::Loaded(Loaded::Results {
        query,
        hits,
        elapsed: Duration::from_micros(1_234),
    }));
    assert_snapshot!("search_results", render(&mut app, 100, 10));
    // Carol's session is newer; the second hit is alice's, which asks for her session with the query.
    press(&mut app, KeyCode::Down);
    let asked = press(&mut app, KeyCode::Enter);
    assert_eq!(
        asked,
        vec![Request::Open {
            id: ids[0].clone(),
            query: Some("rm -rf".into())
        }]
    );
    let loaded = source.handle(asked[0].clone());
    app.update(Input::Loaded(loaded));
    let p = app.player().unwrap();
    assert!(p.screen_text().contains("sudo rm -rf /srv/old"));
    press(&mut app, KeyCode::Esc);
    assert_eq!(app.screen, crate::app::Screen::Results);
    // A search without words is refused before it reaches the loader.
    press(&mut app, KeyCode::Char('/'));
    type_text(&mut app, "--");
    assert!(press(&mut app, KeyCode::Enter).is_empty());
}

#[test]
fn verify_failure_is_shown_in_the_list_and_in_detail() {
    let dir = tempfile::tempdir().unwrap();
    let (db, ids) = recorded_db(dir.path());
    sallyport_recordings::danger_flip_chunk_byte(&db, &ids[0], 1).unwrap();
    let source = Source::open(&db, None, Some(key().verifying_key())).unwrap();
    let mut app = App::new("recordings.db".into(), T0 + 3_600_000);
    app.update(Input::Loaded(Loaded::Sessions(fixed_rows(&source))));
    for id in &ids {
        app.update(Input::Loaded(Loaded::Integrity(
            id.clone(),
            source.integrity(id),
        )));
    }
    assert_snapshot!("list_with_failed", render(&mut app, 80, 10));
    press(&mut app, KeyCode::Down);
    press(&mut app, KeyCode::Down);
    press(&mut app, KeyCode::Char('v'));
    assert_snapshot!("verify_failure", render(&mut app, 80, 14));
    // Any key closes the popup.
    press(&mut app, KeyCode::Char('x'));
    assert!(!render(&mut app, 80, 14).contains("FAILED chunk 2 is"));
}

#[test]
fn the_integrity_column_shows_what_the_ledger_says() {
    let dir = tempfile::tempdir().unwrap();
    let (db, ids) = recorded_db(dir.path());
    // A session open when the file is copied (a crash), recovered at the next start.
    let crashed = dir.path().join("crashed.db");
    let recorder = Recorder::start(&db, key(), Limits::default()).unwrap();
    let open = recorder
        .open_session(SessionMeta {
            user: "dave".into(),
            target: "db3".into(),
            target_addr: "10.0.0.5:22".into(),
            protocol: "ssh".into(),
            client_addr: "192.0.2.7:50000".into(),
        })
        .unwrap();
    open.record(Event::Output(b"dave@db3:~$ ".to_vec()))
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute("VACUUM INTO ?1", [crashed.to_str().unwrap()])
        .unwrap();
    drop(open);
    recorder.shutdown().unwrap();
    sallyport_recordings::Store::open(&crashed)
        .unwrap()
        .recover_unfinished(&key())
        .unwrap();
    // Bob's seal cleared behind the gateway's back: his own chain alone would call him "unsealed".
    rusqlite::Connection::open(&crashed)
        .unwrap()
        .execute(
            "UPDATE sessions SET seal_hash = NULL, seal_sig = NULL, seal_key = NULL, ended_at_ms = NULL, outcome = NULL WHERE id = ?1",
            [&ids[1]],
        )
        .unwrap();
    let mut source = Source::open(&crashed, None, Some(key().verifying_key())).unwrap();
    source.audit_ledger().unwrap();
    let mut app = App::new("recordings.db".into(), T0 + 3_600_000);
    let rows = fixed_rows(&source);
    let dave = rows.iter().find(|r| r.user == "dave").unwrap().id.clone();
    app.update(Input::Loaded(Loaded::Sessions(rows.clone())));
    for row in &rows {
        app.update(Input::Loaded(Loaded::Integrity(
            row.id.clone(),
            source.integrity(&row.id),
        )));
    }
    assert!(matches!(
        source.integrity(&dave),
        Integrity::Recovered { .. }
    ));
    assert!(matches!(source.integrity(&ids[0]), Integrity::Intact));
    match source.integrity(&ids[1]) {
        Integrity::Failed { detail, .. } => {
            assert!(detail.contains("seal has been removed"), "{detail}")
        }
        other => panic!("bob: {other:?}"),
    }
    let list = render(&mut app, 100, 10);
    assert!(
        list.contains("recovered") && list.contains("FAILED ledger"),
        "{list}"
    );
}

#[test]
fn help_on_each_screen() {
    let mut app = app_with(sample_rows());
    press(&mut app, KeyCode::Char('?'));
    assert_snapshot!("help_list", render(&mut app, 80, 24));
    press(&mut app, KeyCode::Char('?'));
    open_player(&mut app, "s3", shell_events(), None);
    press(&mut app, KeyCode::Char('?'));
    assert_snapshot!("help_player", render(&mut app, 80, 24));
}

/// Escape sequences that must never reach the reviewer's terminal: OSC (titles, clipboard, hyperlinks), DCS, APC,
/// PM, SOS, 8-bit CSI and OSC, BEL.
fn assert_no_hostile_sequences(bytes: &[u8]) {
    for bad in [
        &b"\x1b]"[..],
        b"\x1bP",
        b"\x1b_",
        b"\x1b^",
        b"\x1bX",
        b"\x07",
        "\u{9b}".as_bytes(),
        "\u{9d}".as_bytes(),
    ] {
        assert!(
            !bytes.windows(bad.len()).any(|w| w == bad),
            "{bad:?} reached the terminal"
        );
    }
}

/// A writer whose bytes the test can read after the backend took it.
#[derive(Clone, Default)]
struct Captured(std::rc::Rc<std::cell::RefCell<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Draws the app through the real crossterm backend and checks every byte it wrote.
fn draw_to_bytes(app: &mut App) {
    let captured = Captured::default();
    let mut terminal = Terminal::with_options(
        CrosstermBackend::new(captured.clone()),
        TerminalOptions {
            viewport: Viewport::Fixed(Rect::new(0, 0, 100, 30)),
        },
    )
    .unwrap();
    terminal.draw(|f| app.draw(f)).unwrap();
    let bytes = captured.0.borrow();
    assert!(bytes.len() > 200, "something was drawn");
    assert_no_hostile_sequences(&bytes);
}

fn hostile_events() -> Vec<TimedEvent> {
    let mut bomb = Vec::new();
    bomb.extend_from_slice(b"\x1b]0;owned title\x07\x1b]52;c;cm0gLXJmIC8K\x07\x1bP+q544e\x1b\\");
    bomb.extend_from_slice(b"\x1b]8;;https://evil.example\x1b\\link\x1b]8;;\x1b\\");
    bomb.extend_from_slice("\u{9b}31m\u{9d}0;c1 title\u{9c}".as_bytes());
    bomb.extend_from_slice(b"\x1b[?1049h\x1b[?1000h\x1b[?2004h\x1b[?25l\x1b[6n\x1b[c\x1b[21t");
    bomb.extend(std::iter::repeat_n(b'\x1b', 10_000));
    bomb.extend_from_slice(b"\x1b[");
    bomb.extend(std::iter::repeat_n(b'9', 100_000));
    bomb.extend_from_slice(b"m\x1b[999999999;999999999H\x1b[9999999L");
    bomb.extend((0u8..=255).cycle().take(50_000));
    vec![
        ev(
            0,
            Event::Resize {
                cols: u16::MAX,
                rows: u16::MAX,
            },
        ),
        ev(1, Event::Output(bomb)),
        ev(2, Event::Resize { cols: 0, rows: 0 }),
        ev(3, Event::Output(b"\x1b]2;again\x07tail \x07\x07".to_vec())),
        ev(4, Event::Resize { cols: 80, rows: 24 }),
        out(5, "still \x1b[1malive\x1b[0m"),
    ]
}

#[test]
fn hostile_recordings_never_reach_the_terminal() {
    let mut app = app_with(sample_rows());
    open_player(&mut app, "s1", hostile_events(), Some("alive"));
    for seek in ['0', '2', '5', '9'] {
        press(&mut app, KeyCode::Char(seek));
        draw_to_bytes(&mut app);
        press(&mut app, KeyCode::End);
        draw_to_bytes(&mut app);
    }
    assert!(app.player().unwrap().screen_text().contains("still alive"));
    // The list, with an escape sequence in a target's name, goes through the same path.
    press(&mut app, KeyCode::Esc);
    draw_to_bytes(&mut app);
}

#[test]
fn truncated_and_garbage_chunks_are_errors_not_crashes() {
    let dir = tempfile::tempdir().unwrap();
    let (db, ids) = recorded_db(dir.path());
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute(
        "UPDATE chunks SET data = substr(data, 1, 5) WHERE session_id = ?1 AND seq = 1",
        [&ids[0]],
    )
    .unwrap();
    conn.execute(
        "UPDATE chunks SET data = x'28b52ffd0058ffffffffffffffff' WHERE session_id = ?1",
        [&ids[1]],
    )
    .unwrap();
    conn.execute(
        "UPDATE chunks SET raw_len = 9000000000 WHERE session_id = ?1",
        [&ids[2]],
    )
    .unwrap();
    drop(conn);
    let mut source = Source::open(&db, None, Some(key().verifying_key())).unwrap();
    source.update_index().unwrap();
    let mut app = App::new("recordings.db".into(), T0);
    app.update(Input::Loaded(source.handle(Request::Refresh)));
    for id in &ids {
        assert!(matches!(source.integrity(id), Integrity::Failed { .. }));
        let loaded = source.handle(Request::Open {
            id: id.clone(),
            query: None,
        });
        assert!(
            matches!(&loaded, Loaded::Session { events: Err(_), .. }),
            "{loaded:?}"
        );
        app.update(Input::Loaded(loaded));
        assert!(
            app.status().starts_with("cannot replay"),
            "{}",
            app.status()
        );
        assert!(app.player().is_none());
    }
}

#[test]
fn asciicast_is_valid_v2_and_replays_to_the_same_screen() {
    let dir = tempfile::tempdir().unwrap();
    let (db, ids) = recorded_db(dir.path());
    let source = Source::open(&db, None, None).unwrap();
    let mut cast = Vec::new();
    source.export_asciicast(&ids[0], &mut cast).unwrap();
    let text = String::from_utf8(cast).unwrap();
    let mut lines = text.lines();
    let header: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(header["version"], 2);
    assert_eq!(header["width"], 60);
    assert_eq!(header["height"], 12);
    assert!(header["timestamp"].as_u64().unwrap() > 1_700_000_000);
    let mut parser = vt100::Parser::new(
        std::num::NonZeroU16::new(12).unwrap(),
        std::num::NonZeroU16::new(60).unwrap(),
        0,
    );
    let mut last_time = 0.0;
    let mut codes = std::collections::BTreeSet::new();
    for line in lines {
        let event: serde_json::Value = serde_json::from_str(line).unwrap();
        let event = event.as_array().expect("an event is an array");
        assert_eq!(event.len(), 3, "{line}");
        let time = event[0].as_f64().expect("time is a number");
        assert!(time >= last_time, "times never go back");
        last_time = time;
        let code = event[1].as_str().unwrap();
        let data = event[2].as_str().expect("data is a string");
        codes.insert(code.to_owned());
        match code {
            "o" => parser.process(data.as_bytes()),
            "i" | "m" => {}
            "r" => assert!(data.split_once('x').is_some(), "{data}"),
            other => panic!("unknown event code {other}"),
        }
    }
    assert_eq!(codes.into_iter().collect::<Vec<_>>(), ["i", "m", "o", "r"]);
    let mut replay = TerminalReplay::new(source.events(&ids[0]).unwrap());
    replay.seek_ms(u64::MAX);
    assert_eq!(parser.screen().contents(), replay.screen().contents());
    assert!(parser.screen().contents().contains("logout"));
    // asciinema, when installed, reads it too.
    let path = dir.path().join("s.cast");
    std::fs::write(&path, &text).unwrap();
    if let Ok(output) = std::process::Command::new("asciinema")
        .arg("cat")
        .arg(&path)
        .output()
    {
        assert!(output.status.success(), "asciinema cat failed: {output:?}");
        assert!(String::from_utf8_lossy(&output.stdout).contains("logout"));
    }
}

/// A PNG of `width`×`height` whose left half is `left` and right half `right` (RGB).
fn two_colour_png(width: u32, height: u32, left: [u8; 3], right: [u8; 3]) -> Vec<u8> {
    let mut pixels = Vec::new();
    for _ in 0..height {
        for x in 0..width {
            pixels.extend(if x < width / 2 { left } else { right });
            pixels.push(u8::MAX);
        }
    }
    // RGBA, as the gateway writes its keyframes from the framebuffer.
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Rgba);
    encoder.set_depth(png::BitDepth::Eight);
    encoder
        .write_header()
        .unwrap()
        .write_image_data(&pixels)
        .unwrap();
    out
}

/// The colours of the half-block cells in the rendered player (top and bottom of each cell).
fn desktop_colours(app: &mut App, width: u16, height: u16) -> Vec<ratatui::style::Color> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|f| app.draw(f)).unwrap();
    terminal
        .backend()
        .buffer()
        .content()
        .iter()
        .filter(|c| c.symbol() == "▀")
        .flat_map(|c| [c.fg, c.bg])
        .collect()
}

#[test]
fn desktop_recordings_replay_seek_and_export_the_picture_as_png() {
    use ratatui::style::Color;
    use sallyport_recordings::DesktopEvent;

    let red = two_colour_png(64, 40, [255, 0, 0], [255, 0, 0]);
    let blue_green = two_colour_png(64, 40, [0, 0, 255], [0, 255, 0]);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("recordings.db");
    let recorder = Recorder::start(&db, key(), Limits::default()).unwrap();
    let session = recorder
        .open_session(SessionMeta {
            user: "dora".into(),
            target: "desk".into(),
            target_addr: "10.0.0.9:3389".into(),
            protocol: "rdp".into(),
            client_addr: "192.0.2.7:50000".into(),
        })
        .unwrap();
    let keyframe = |png: &[u8]| {
        Event::Desktop(DesktopEvent::Keyframe {
            width: 64,
            height: 40,
            png: png.to_vec(),
        })
    };
    let resize = Event::Desktop(DesktopEvent::Resize {
        width: 64,
        height: 40,
    });
    let events = vec![
        TimedEvent {
            at_ms: 0,
            event: Event::Desktop(DesktopEvent::Activation {
                width: 64,
                height: 40,
                io_channel_id: 1003,
                user_channel_id: 1007,
                share_id: 0x1_03ea,
                drdynvc_channel_id: None,
            }),
        },
        TimedEvent {
            at_ms: 100,
            event: resize.clone(),
        },
        TimedEvent {
            at_ms: 500,
            event: keyframe(&red),
        },
        TimedEvent {
            at_ms: 1_000,
            event: resize.clone(),
        },
        TimedEvent {
            at_ms: 2_000,
            event: keyframe(&blue_green),
        },
        TimedEvent {
            at_ms: 3_000,
            event: resize,
        },
    ];
    for e in &events {
        // Apart in recorded time too, so that the two keyframes have different timestamps on disk.
        std::thread::sleep(Duration::from_millis(5));
        session.record(e.event.clone()).unwrap();
    }
    let id = session.id().to_owned();
    session.finish(Outcome::Ended).unwrap();
    recorder.shutdown().unwrap();

    let source = Source::open(&db, None, Some(key().verifying_key())).unwrap();
    let mut app = App::new("recordings.db".into(), T0 + 3_600_000);
    app.update(Input::Loaded(Loaded::Sessions(fixed_rows(&source))));
    // The recorder timestamps events itself; the player gets the fixed times above.
    assert_eq!(source.events(&id).unwrap().len(), events.len());
    open_player(&mut app, &id, events, None);
    assert!(
        desktop_colours(&mut app, 80, 24).is_empty(),
        "no keyframe at the start"
    );
    assert_snapshot!("player_desktop_before_keyframe", render(&mut app, 80, 24));

    // The middle (1.5 s) shows the keyframe from 0.5 s: all red.
    press(&mut app, KeyCode::Char('5'));
    let colours = desktop_colours(&mut app, 80, 24);
    assert!(!colours.is_empty(), "{:?}", render(&mut app, 80, 24));
    assert!(
        colours.iter().all(|c| *c == Color::Rgb(255, 0, 0)),
        "{colours:?}"
    );
    assert_snapshot!("player_desktop_middle", render(&mut app, 80, 24));

    // The end shows the second keyframe, blue on the left and green on the right, in proportion.
    press(&mut app, KeyCode::End);
    let colours = desktop_colours(&mut app, 80, 24);
    let blue = colours
        .iter()
        .filter(|c| **c == Color::Rgb(0, 0, 255))
        .count();
    let green = colours
        .iter()
        .filter(|c| **c == Color::Rgb(0, 255, 0))
        .count();
    assert!(
        blue > 0 && green > 0 && blue.abs_diff(green) <= colours.len() / 10,
        "{blue} blue, {green} green of {}",
        colours.len()
    );

    // p asks for the picture shown to be exported.
    let asked = press(&mut app, KeyCode::Char('p'));
    assert_eq!(
        asked,
        vec![Request::ExportFrame {
            id: id.clone(),
            at_ms: 3_000
        }]
    );
    // The loader replays the same picture by the recorded times and writes it as PNG: the red keyframe's
    // pixels at its own moment, the blue and green one's at the end.
    let red_at = source.events(&id).unwrap()[2].at_ms;
    assert_eq!(
        png_pixels(&source.desktop_frame(&id, red_at).unwrap()),
        png_pixels(&red)
    );
    assert_eq!(
        png_pixels(&source.desktop_frame(&id, u64::MAX).unwrap()),
        png_pixels(&blue_green)
    );
}

/// The RGB pixels of a PNG.
fn png_pixels(bytes: &[u8]) -> Vec<[u8; 3]> {
    let mut reader = png::Decoder::new(std::io::Cursor::new(bytes))
        .read_info()
        .unwrap();
    let mut buffer = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buffer).unwrap();
    let step = info.color_type.samples();
    buffer[..info.buffer_size()]
        .chunks_exact(step)
        .map(|p| [p[0], p[1], p[2]])
        .collect()
}

#[test]
fn a_forged_keyframe_is_an_error_on_screen_not_a_crash() {
    let events = vec![
        TimedEvent {
            at_ms: 0,
            event: Event::Desktop(sallyport_recordings::DesktopEvent::Activation {
                width: 64,
                height: 40,
                io_channel_id: 1003,
                user_channel_id: 1007,
                share_id: 0x1_03ea,
                drdynvc_channel_id: None,
            }),
        },
        TimedEvent {
            at_ms: 10,
            event: Event::Desktop(sallyport_recordings::DesktopEvent::Keyframe {
                width: 64,
                height: 40,
                png: b"\x89PNG not really".to_vec(),
            }),
        },
    ];
    let mut replay = crate::desktop::DesktopReplay::new(events);
    replay.seek_ms(u64::MAX);
    assert!(
        matches!(replay.frame(), Some(Err(_))),
        "a forged keyframe must not replay"
    );
}

#[test]
fn with_a_graphics_protocol_the_desktop_is_left_to_the_picture_and_half_blocks_stay_the_fallback() {
    use crate::graphics::Protocol;
    use sallyport_recordings::DesktopEvent;

    let events = vec![
        TimedEvent {
            at_ms: 0,
            event: Event::Desktop(DesktopEvent::Activation {
                width: 64,
                height: 40,
                io_channel_id: 1003,
                user_channel_id: 1007,
                share_id: 0x1_03ea,
                drdynvc_channel_id: None,
            }),
        },
        TimedEvent {
            at_ms: 500,
            event: Event::Desktop(DesktopEvent::Keyframe {
                width: 64,
                height: 40,
                png: two_colour_png(64, 40, [0, 0, 255], [0, 255, 0]),
            }),
        },
    ];
    let shown = |graphics: Option<Protocol>| {
        let mut app = App::new("recordings.db".into(), T0 + 3_600_000);
        if let Some(graphics) = graphics {
            app.set_graphics(graphics);
        }
        app.update(Input::Loaded(Loaded::Sessions(vec![row(
            "d1",
            "dora",
            "desk",
            T0,
            Some(Outcome::Ended),
        )])));
        open_player(&mut app, "d1", events.clone(), None);
        press(&mut app, KeyCode::End);
        let screen = render(&mut app, 80, 24);
        let graphic = app
            .graphic()
            .map(|(area, image, at_ms)| (area, image.width, image.height, at_ms));
        (screen, graphic)
    };
    // The default: half-blocks, and nothing for the event loop to draw.
    let (screen, graphic) = shown(None);
    assert!(screen.contains('▀'), "{screen}");
    assert_eq!(graphic, None);
    for protocol in [Protocol::Kitty, Protocol::Sixel, Protocol::Iterm2] {
        let (screen, graphic) = shown(Some(protocol));
        assert!(!screen.contains('▀'), "{protocol:?}: {screen}");
        let (area, width, height, at_ms) = graphic.unwrap();
        assert_eq!((width, height, at_ms), (64, 40, 500));
        // Inside the frame around the desktop (row 2 is its top border), in the picture's proportions.
        assert_eq!((area.x, area.y), (1, 3));
        assert_eq!((area.width, area.height), (54, 17));
    }
}
