//! The terminal replay engine, without any I/O: a recorded session's events fed through a VT emulator (vt100), with
//! checkpoints of the emulated screen so that seeking backwards does not replay from the start.
//!
//! Recorded bytes only ever reach the emulator; what the reviewer sees is drawn from the emulator's cells
//! (see `screen_view.rs`). Sizes from the recording are clamped, so a hostile resize cannot allocate gigabytes.

use sallyport_recordings::{Event, TimedEvent};

/// What the player needs of a replay, terminal or desktop: a cursor over the session's events.
pub trait Replay {
    /// The recorded events.
    fn events(&self) -> &[TimedEvent];
    /// How many events have been applied.
    fn applied(&self) -> usize;
    /// The replayed screen's size: columns and rows for a terminal, pixels for a desktop.
    fn size(&self) -> (u16, u16);
    /// The last gateway marker applied.
    fn marker(&self) -> Option<&str>;
    /// Brings the replay to the state after the first `applied` events.
    fn seek_to_event(&mut self, applied: usize);

    /// The time of the last event.
    fn duration_ms(&self) -> u64 {
        self.events().last().map_or(0, |e| e.at_ms)
    }

    /// The time of the next event to apply, if any.
    fn next_at_ms(&self) -> Option<u64> {
        self.events().get(self.applied()).map(|e| e.at_ms)
    }

    /// Brings the replay to the state at `ms`: every event at or before it applied.
    fn seek_ms(&mut self, ms: u64) {
        let applied = self.events().partition_point(|e| e.at_ms <= ms);
        self.seek_to_event(applied);
    }
}

/// The largest emulated screen; recorded resizes beyond it are clamped.
pub const MAX_COLS: u16 = 500;
/// The largest emulated screen height.
pub const MAX_ROWS: u16 = 250;
/// A checkpoint is kept after this many output bytes since the last one.
const CHECKPOINT_BYTES: usize = 256 * 1024;

/// A copy of the emulator's screen before event `next`.
struct Checkpoint {
    next: usize,
    screen: vt100::Screen,
    marker: Option<String>,
}

/// A recorded terminal session being replayed.
pub struct TerminalReplay {
    events: Vec<TimedEvent>,
    parser: vt100::Parser,
    /// The index of the next event to apply.
    next: usize,
    checkpoints: Vec<Checkpoint>,
    bytes_since_checkpoint: usize,
    /// The last gateway marker seen ("connected", "session ended: ...").
    marker: Option<String>,
}

/// A recording's terminal size (columns, rows) at its start: its first resize before any output, 80×24 without one.
pub(crate) fn initial_size(events: &[TimedEvent]) -> (u16, u16) {
    events
        .iter()
        .take_while(|e| !matches!(e.event, Event::Output(_)))
        .find_map(|e| match e.event {
            Event::Resize { cols, rows } => Some((cols, rows)),
            _ => None,
        })
        .unwrap_or((80, 24))
}

/// A size clamped to what the emulator accepts.
fn clamp_size(cols: u16, rows: u16) -> (std::num::NonZeroU16, std::num::NonZeroU16) {
    let clamp = |v: u16, max: u16| {
        std::num::NonZeroU16::new(v.clamp(1, max)).unwrap_or(std::num::NonZeroU16::MIN)
    };
    (clamp(rows, MAX_ROWS), clamp(cols, MAX_COLS))
}

impl TerminalReplay {
    /// Starts a replay at the session's beginning. The initial size is the first recorded resize (80×24 when the
    /// recording has none before its first output).
    pub fn new(events: Vec<TimedEvent>) -> TerminalReplay {
        let (cols, rows) = initial_size(&events);
        let (rows, cols) = clamp_size(cols, rows);
        let parser = vt100::Parser::new(rows, cols, 0);
        let start = Checkpoint {
            next: 0,
            screen: parser.screen().clone(),
            marker: None,
        };
        TerminalReplay {
            events,
            parser,
            next: 0,
            checkpoints: vec![start],
            bytes_since_checkpoint: 0,
            marker: None,
        }
    }

    /// The emulated screen after the applied events.
    pub fn screen(&self) -> &vt100::Screen {
        self.parser.screen()
    }

    /// Applies the next event; false at the end.
    pub fn step(&mut self) -> bool {
        let Some(event) = self.events.get(self.next) else {
            return false;
        };
        match &event.event {
            Event::Output(bytes) => {
                self.parser.process(bytes);
                self.bytes_since_checkpoint += bytes.len();
            }
            Event::Resize { cols, rows } => {
                let (rows, cols) = clamp_size(*cols, *rows);
                self.parser.set_size(rows, cols);
            }
            Event::Marker(text) => self.marker = Some(text.clone()),
            // Shown where markers are (the player's status line, through `clean`).
            Event::FileTransfer(transfer) => self.marker = Some(transfer.to_string()),
            Event::Input(_) | Event::Desktop(_) => {}
        }
        self.next += 1;
        if self.bytes_since_checkpoint >= CHECKPOINT_BYTES
            && self.checkpoints.last().is_some_and(|c| c.next < self.next)
        {
            self.checkpoints.push(Checkpoint {
                next: self.next,
                screen: self.parser.screen().clone(),
                marker: self.marker.clone(),
            });
            self.bytes_since_checkpoint = 0;
        }
        true
    }
}

impl Replay for TerminalReplay {
    fn events(&self) -> &[TimedEvent] {
        &self.events
    }

    fn applied(&self) -> usize {
        self.next
    }

    fn size(&self) -> (u16, u16) {
        let (rows, cols) = self.parser.screen().size();
        (cols.get(), rows.get())
    }

    fn marker(&self) -> Option<&str> {
        self.marker.as_deref()
    }

    fn seek_to_event(&mut self, applied: usize) {
        let applied = applied.min(self.events.len());
        if applied < self.next {
            let Some(checkpoint) = self.checkpoints.iter().rev().find(|c| c.next <= applied) else {
                return;
            };
            *self.parser.screen_mut() = checkpoint.screen.clone();
            self.next = checkpoint.next;
            self.marker = checkpoint.marker.clone();
            // Checkpoints past this one are still valid; do not record duplicates while replaying forward.
            self.bytes_since_checkpoint = 0;
        }
        while self.next < applied && self.step() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(at_ms: u64, event: Event) -> TimedEvent {
        TimedEvent { at_ms, event }
    }

    fn out(at_ms: u64, text: &str) -> TimedEvent {
        ev(at_ms, Event::Output(text.as_bytes().to_vec()))
    }

    fn first_line(r: &TerminalReplay) -> String {
        r.screen()
            .contents()
            .lines()
            .next()
            .unwrap_or("")
            .to_owned()
    }

    #[test]
    fn seeking_back_and_forth_gives_the_same_screens() {
        let mut events = vec![ev(0, Event::Resize { cols: 40, rows: 10 })];
        for i in 0..2000u64 {
            // About 300 bytes each, so checkpoints are taken along the way.
            events.push(out(
                i * 10,
                &format!("\x1b[H\x1b[2Jstep {i} {}", "x".repeat(280)),
            ));
        }
        let mut r = TerminalReplay::new(events);
        assert_eq!(r.size(), (40, 10));
        r.seek_ms(19_990);
        assert!(r.checkpoints.len() > 1);
        assert!(first_line(&r).starts_with("step 1999"));
        for ms in [5_000, 100, 12_340, 0, 19_990, 7_770] {
            r.seek_ms(ms);
            let expect = format!("step {}", ms / 10);
            assert!(
                first_line(&r).starts_with(&expect),
                "{ms}: {}",
                first_line(&r)
            );
        }
    }

    #[test]
    fn huge_resizes_are_clamped() {
        let mut r = TerminalReplay::new(vec![
            ev(
                0,
                Event::Resize {
                    cols: u16::MAX,
                    rows: u16::MAX,
                },
            ),
            ev(1, Event::Resize { cols: 0, rows: 0 }),
        ]);
        assert_eq!(r.size(), (MAX_COLS, MAX_ROWS));
        r.seek_ms(1);
        assert_eq!(r.size(), (1, 1));
    }
}
