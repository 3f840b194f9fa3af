//! `cargo xtask bench review` (the binary built with `--features bench`, run as `sallyport-review bench`): the
//! reviewer's figures from synthetic recordings written by the real recorder. Search over 1,000 sessions of
//! about 100 KB each (index built on first open, reported apart), listing and drawing 10,000 sessions, and
//! seeking to the middle of a one-hour session. Figures are printed, never asserted against a time.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use ed25519_dalek::SigningKey;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use sallyport_recordings::{
    Event, Limits, Outcome, Recorder, SearchIndex, SessionMeta, Store, TimedEvent,
};

use crate::app::{App, Input};
use crate::loader::Source;
use crate::model::Loaded;
use crate::replay::Replay as _;
use crate::replay::TerminalReplay;

/// A scratch directory removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> anyhow::Result<Scratch> {
        let dir = std::env::temp_dir().join(format!(
            "sallyport-review-bench-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn key() -> SigningKey {
    SigningKey::from_bytes(&[42; 32])
}

fn meta(user: String, target: String) -> SessionMeta {
    SessionMeta {
        user,
        target,
        target_addr: "10.0.0.5:22".into(),
        protocol: "ssh".into(),
        client_addr: "192.0.2.7:50000".into(),
    }
}

/// Writes `count` finished sessions, the output of session `i` being `output(i)`.
fn record(path: &Path, count: usize, output: impl Fn(usize) -> String) -> anyhow::Result<()> {
    let recorder = Recorder::start(path, key(), Limits::default())?;
    for i in 0..count {
        let session =
            recorder.open_session(meta(format!("user{}", i % 7), format!("host{}", i % 13)))?;
        session.record(Event::Output(output(i).into_bytes()))?;
        session.finish(Outcome::Ended)?;
    }
    recorder.shutdown()?;
    Ok(())
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times.get(times.len() / 2).copied().unwrap_or_default()
}

/// Runs every benchmark and prints its figures.
pub fn run() -> anyhow::Result<()> {
    search()?;
    list_and_seek()
}

fn search() -> anyhow::Result<()> {
    let scratch = Scratch::new("search")?;
    let path = scratch.0.join("recordings.db");
    let started = Instant::now();
    // 1,250 lines of 80 bytes per session (100 KB), with words that vary between sessions; every hundredth
    // session holds the `rm -rf` a reviewer looks for.
    record(&path, 1000, |i| {
        let mut out = String::with_capacity(100_000);
        for line in 0..1250 {
            let text = format!(
                "s{i} l{line} -rw-r--r-- 1 www-data www-data {} file{}.log",
                line * 37 % 9999,
                (line * i) % 997
            );
            out.push_str(&format!("{text:<78}\r\n"));
        }
        if i % 100 == 42 {
            out.push_str("root@host:~# sudo rm -rf /var/lib/important\r\n");
        }
        out
    })?;
    let recorded = started.elapsed();
    let store = Store::open_read_only(&path)?;
    let started = Instant::now();
    let mut index = SearchIndex::open(&scratch.0.join("recordings.search"))?;
    index.update(&store)?;
    let indexed = started.elapsed();
    let mut all = Vec::new();
    for query in [
        "rm -rf",
        "important",
        "www-data",
        "file512",
        "absent words",
        "s999 l1249",
    ] {
        let mut times = Vec::new();
        for _ in 0..5 {
            let started = Instant::now();
            let hits = index.search(query, 1000)?;
            times.push(started.elapsed());
            if query == "rm -rf" {
                ensure!(
                    hits.len() == 10,
                    "`rm -rf` is in 10 sessions, search found {}",
                    hits.len()
                );
            }
        }
        println!(
            "  search {query:?}: median of 5 {:?}",
            median(times.clone())
        );
        all.extend(times);
    }
    let worst = all.iter().max().copied().unwrap_or_default();
    println!(
        "search over 1,000 sessions x 100 KB: recorded in {recorded:.1?}, first-open index {indexed:.1?}, search median {:?}, worst {worst:?}",
        median(all)
    );
    Ok(())
}

fn list_and_seek() -> anyhow::Result<()> {
    let scratch = Scratch::new("list")?;
    let path = scratch.0.join("recordings.db");
    record(&path, 10_000, |i| format!("session {i}\r\n"))?;
    let started = Instant::now();
    let source = Source::open(&path, None, Some(key().verifying_key()))?;
    let rows = source.sessions()?;
    let mut app = App::new("recordings.db".into(), 0);
    app.update(Input::Loaded(Loaded::Sessions(rows)));
    let mut terminal = Terminal::new(TestBackend::new(120, 40))?;
    terminal.draw(|frame| app.draw(frame))?;
    let listed = started.elapsed();
    ensure!(
        app.visible_sessions() == 10_000,
        "listed {} sessions of 10,000",
        app.visible_sessions()
    );

    // One hour: a screenful of `top`-like output every second and a keystroke in between (about 7 MB).
    let mut events = vec![TimedEvent {
        at_ms: 0,
        event: Event::Resize {
            cols: 120,
            rows: 40,
        },
    }];
    for second in 0..3600u64 {
        let mut frame = String::from("\x1b[H\x1b[2J");
        for row in 0..38 {
            frame.push_str(&format!(
                "\x1b[{};1H{second:>6} {row:>3} \x1b[32mproc{}\x1b[0m {}",
                row + 1,
                row * second % 977,
                "x".repeat(80)
            ));
        }
        events.push(TimedEvent {
            at_ms: second * 1000,
            event: Event::Output(frame.into_bytes()),
        });
        events.push(TimedEvent {
            at_ms: second * 1000 + 500,
            event: Event::Input(b"j".to_vec()),
        });
    }
    let started = Instant::now();
    let mut replay = TerminalReplay::new(events);
    replay.seek_ms(1_800_000);
    let cold = started.elapsed();
    if !replay.screen().contents().contains("1800") {
        bail!("the seek did not land in the middle of the hour");
    }
    replay.seek_ms(3_599_000);
    let started = Instant::now();
    replay.seek_ms(1_800_000);
    let warm = started.elapsed();
    println!(
        "10,000 sessions listed and drawn in {listed:.1?}; seek to the middle of one hour: {cold:.1?} cold, {warm:.1?} back from the end"
    );
    Ok(())
}
