//! Export of a terminal session as asciicast v2 (newline-delimited JSON: a header, then `[time, code, data]`
//! events), which asciinema plays. Output becomes `o`, input `i`, resizes `r` (`COLSxROWS`), gateway markers `m`.
//!
//! asciicast carries text, so recorded bytes are decoded as UTF-8 as a stream (a character split across two events
//! is kept whole); bytes that are not UTF-8 become U+FFFD.

use std::io::{self, Write};

use sallyport_recordings::{Event, SessionRow, TimedEvent};
use serde_json::json;

/// Decodes a byte stream as UTF-8, carrying an incomplete character over to the next piece.
#[derive(Default)]
struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        // Keep back at most three bytes of an incomplete character at the end.
        let valid_up_to = match std::str::from_utf8(&self.pending) {
            Ok(_) => self.pending.len(),
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(_) => self.pending.len(),
        };
        let rest = self.pending.split_off(valid_up_to);
        let text = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending = rest;
        text
    }
}

/// Writes `events` of `session` as asciicast v2.
pub fn write(out: &mut impl Write, session: &SessionRow, events: &[TimedEvent]) -> io::Result<()> {
    let (cols, rows) = crate::replay::initial_size(events);
    let header = json!({
        "version": 2,
        "width": cols,
        "height": rows,
        "timestamp": session.started_at_ms / 1000,
        "title": format!("{}@{} ({}, session {})", session.user, session.target, session.protocol, session.id),
        "env": {"TERM": "xterm-256color"},
    });
    writeln!(out, "{header}")?;
    let (mut output, mut input) = (Utf8Stream::default(), Utf8Stream::default());
    for e in events {
        let time = e.at_ms as f64 / 1000.0;
        let (code, data) = match &e.event {
            Event::Output(bytes) => ("o", output.push(bytes)),
            Event::Input(bytes) => ("i", input.push(bytes)),
            Event::Resize { cols, rows } => ("r", format!("{cols}x{rows}")),
            Event::Marker(text) => ("m", text.clone()),
            // asciicast has no event for files: a marker keeps the transfer visible in players.
            Event::FileTransfer(transfer) => ("m", transfer.to_string()),
            Event::Desktop(_) => continue,
        };
        if data.is_empty() && code != "m" {
            continue;
        }
        writeln!(out, "{}", json!([time, code, data]))?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn split_characters_stay_whole() {
        let mut s = Utf8Stream::default();
        let bytes = "é€".as_bytes();
        assert_eq!(s.push(&bytes[..1]), "");
        assert_eq!(s.push(&bytes[1..3]), "é");
        assert_eq!(s.push(&bytes[3..]), "€");
        assert_eq!(s.push(b"\xffa"), "\u{fffd}a");
    }
}
