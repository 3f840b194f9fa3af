//! Compression on a realistic terminal trace: typing echoed character by character, prompts, and `ls -l` output.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use sallyport_recordings::{Event, Limits, Outcome, Recorder};

/// A shell session: commands typed one key at a time (each key sent as input and echoed as output), then the
/// command's output in a few writes, then the prompt again.
fn trace() -> Vec<Event> {
    let mut rng = Prng(0xfeed);
    let names = [
        "main.rs",
        "lib.rs",
        "Cargo.toml",
        "README.md",
        "config.toml",
        "server.log",
        "notes.txt",
        "build.sh",
    ];
    let dirs = [
        "src",
        "tests",
        "docs",
        "target/debug",
        "/var/log",
        "/etc/nginx",
    ];
    let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun"];
    let mut events = vec![
        Event::Resize {
            cols: 120,
            rows: 40,
        },
        Event::Marker("connected".into()),
    ];
    let mut lines = 0;
    while lines < 4000 {
        let prompt = format!(
            "\x1b[32mops@web-{:02}\x1b[0m:\x1b[34m~/app\x1b[0m$ ",
            rng.below(3)
        );
        events.push(Event::Output(prompt.into_bytes()));
        let command = format!("ls -l {}", dirs[rng.below(dirs.len() as u64) as usize]);
        for key in command.bytes().chain([b'\r']) {
            events.push(Event::Input(vec![key]));
            events.push(Event::Output(if key == b'\r' {
                b"\r\n".to_vec()
            } else {
                vec![key]
            }));
        }
        let count = 5 + rng.below(40);
        let mut out = format!("total {}\r\n", rng.below(9000));
        for _ in 0..count {
            out.push_str(&format!(
                "-rw-r--r-- 1 ops ops {:>8} {} {:>2} {:02}:{:02} {}{}\r\n",
                rng.below(200_000),
                months[rng.below(months.len() as u64) as usize],
                1 + rng.below(28),
                rng.below(24),
                rng.below(60),
                if rng.below(3) == 0 { "old_" } else { "" },
                names[rng.below(names.len() as u64) as usize],
            ));
            lines += 1;
            if out.len() > 1024 {
                events.push(Event::Output(std::mem::take(&mut out).into_bytes()));
            }
        }
        events.push(Event::Output(out.into_bytes()));
    }
    events.push(Event::Marker("exit status 0".into()));
    events
}

#[test]
fn a_terminal_trace_is_stored_in_under_a_quarter_of_its_size() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let events = trace();
    let payload: usize = events
        .iter()
        .map(|e| match e {
            Event::Output(d) | Event::Input(d) => d.len(),
            Event::Marker(m) => m.len(),
            Event::Resize { .. } => 4,
            Event::Desktop(_) | Event::FileTransfer(_) => 0,
        })
        .sum();
    // Chunks far smaller than the default, as seconds of interactive use make them.
    let limits = Limits {
        chunk_max_bytes: 4 * 1024,
        ..Limits::default()
    };
    let recorder = Recorder::start(&path, key(), limits).unwrap();
    let session = recorder.open_session(meta("ops")).unwrap();
    let id = session.id().to_owned();
    for e in &events {
        session.record(e.clone()).unwrap();
    }
    session.finish(Outcome::Ended).unwrap();
    recorder.shutdown().unwrap();

    let store = store(&path);
    let row = store.session(&id).unwrap().unwrap();
    let ratio = row.bytes_stored as f64 / payload as f64;
    eprintln!(
        "payload {payload} B, encoded {} B, stored {} B in {} chunks: {:.1}% of the payload",
        row.bytes_raw,
        row.bytes_stored,
        row.chunk_count,
        ratio * 100.0
    );
    assert!(row.chunk_count > 50, "the trace should span many chunks");
    assert!(
        ratio < 0.25,
        "stored {:.1}% of the terminal bytes",
        ratio * 100.0
    );
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
