//! Secret-aware input: keystrokes are recorded only once the target echoed them. A password typed at a prompt
//! that does not echo (sudo, su, ssh, passwd, a database client) is replaced in the recording by a count.
//!
//! The rule, sans-io (the writer feeds it each session's input and output in order, and the time on its ticks):
//!
//! - Typed bytes wait in order, as runs of printable characters between control bytes. Control bytes and escape
//!   sequences (Enter, Backspace, arrows, Ctrl-C) are not secrets and are not echoed as themselves; they are
//!   recorded as soon as nothing typed before them waits.
//! - An output event echoes a waiting run when its printable characters (escape sequences and control bytes
//!   skipped) hold the whole run, or begin with the run's start and end there (an echo cut in two). A run typed
//!   while the target sat at a prompt (its last output did not end a line: `$ `, `Password: `) must be echoed at
//!   the event's first printable character; a run typed ahead (before the shell printed its prompt) may be echoed
//!   after that prompt, in the first 4 KiB of the event. When a later run is echoed, the runs before it that never
//!   were are withheld: the target read them without echoing (a password, then the next command).
//! - Printable bytes are withheld (recorded only as "N keystrokes withheld") when a later run is echoed instead,
//!   when they waited longer than [`ECHO_WAIT_MS`], when more than [`MAX_WAITING`] bytes wait, and when the
//!   session ends.
//!
//! Its limits: a program that does not echo what is typed (vim's normal mode, less, top) has those keystrokes
//! withheld too (its screen output still shows their effect); a secret typed ahead of a prompt that the output
//! then happens to contain whole, or that output of another program starts with while it is typed at a prompt,
//! is taken for echoed; input the target echoes is recorded even when it is a secret (a password typed where the
//! target shows it).

use std::collections::VecDeque;

/// How long a typed byte may wait for its echo before it is withheld. A round trip through a bastion to a target
/// is well under this; a slower echo costs only the recording of keystrokes that the output shows anyway.
pub(crate) const ECHO_WAIT_MS: u64 = 2000;

/// At most this many typed bytes wait; more are withheld from the front (a paste the target echoes is in its output).
pub(crate) const MAX_WAITING: usize = 4096;

/// A run typed ahead of a prompt is looked for in this much of an output event's printable characters.
const AHEAD_WINDOW: usize = 4096;

/// At most this many waiting runs are tried against one output event.
const MAX_RUNS_TRIED: usize = 8;

/// What the gate lets through, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Gated {
    /// Typed bytes to record, typed at this time.
    Input(u64, Vec<u8>),
    /// This many keystrokes (characters) were withheld.
    Withheld(u64),
}

#[derive(Debug, Clone, Copy)]
struct Waiting {
    byte: u8,
    /// Part of a control byte or an escape sequence.
    control: bool,
    /// Typed while the target sat at a prompt: its echo must come first.
    at_prompt: bool,
    at_ms: u64,
}

/// Where an escape sequence parser is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Escape {
    #[default]
    None,
    /// After ESC.
    Start,
    /// Inside `ESC [` or `ESC O`, until a final byte.
    Csi,
    /// Inside `ESC ]`, until BEL or `ESC \`.
    Osc,
    /// After ESC inside an OSC.
    AfterOscEsc,
}

impl Escape {
    /// Feeds one byte; true when the byte belongs to an escape sequence (or is a control byte).
    fn feed(&mut self, byte: u8) -> bool {
        let (next, control) = match (*self, byte) {
            (Escape::None, 0x1b) => (Escape::Start, true),
            (Escape::None, b) => (Escape::None, b < 0x20 || b == 0x7f),
            (Escape::Start, b'[' | b'O') => (Escape::Csi, true),
            (Escape::Start, b']') => (Escape::Osc, true),
            (Escape::Start, _) => (Escape::None, true),
            (Escape::Csi, 0x40..=0x7e) => (Escape::None, true),
            (Escape::Csi, _) => (Escape::Csi, true),
            (Escape::Osc, 0x07) => (Escape::None, true),
            (Escape::Osc | Escape::AfterOscEsc, 0x1b) => (Escape::AfterOscEsc, true),
            (Escape::AfterOscEsc, b'\\') => (Escape::None, true),
            (Escape::Osc | Escape::AfterOscEsc, _) => (Escape::Osc, true),
        };
        *self = next;
        control
    }
}

/// How far an echo reaches: bytes of the run it covers, and where it ends in the output's printable characters.
#[derive(Debug, Clone, Copy)]
struct Echo {
    consumed: usize,
    output_end: usize,
}

/// One session's gate.
#[derive(Debug, Default)]
pub(crate) struct EchoGate {
    waiting: VecDeque<Waiting>,
    input_escape: Escape,
    output_escape: Escape,
    /// The target's last output did not end a line (it waits at a prompt).
    at_prompt: bool,
    out: Vec<Gated>,
}

impl EchoGate {
    /// Bytes the user typed at `at_ms`.
    pub(crate) fn input(&mut self, at_ms: u64, bytes: &[u8]) -> Vec<Gated> {
        for &byte in bytes {
            let control = self.input_escape.feed(byte);
            self.waiting.push_back(Waiting {
                byte,
                control,
                at_prompt: self.at_prompt,
                at_ms,
            });
        }
        while self.waiting.len() > MAX_WAITING {
            self.withhold_front();
        }
        self.release_controls();
        std::mem::take(&mut self.out)
    }

    /// Bytes the target sent.
    pub(crate) fn output(&mut self, bytes: &[u8]) -> Vec<Gated> {
        if self.waiting.is_empty() {
            self.skim(bytes);
            return Vec::new();
        }
        // Only the start of the event can echo: a run typed at a prompt at its first characters, one typed ahead in
        // its first AHEAD_WINDOW; the rest is skimmed.
        let typed_ahead = self.waiting.iter().any(|w| !w.control && !w.at_prompt);
        let need = self.waiting.len() + if typed_ahead { AHEAD_WINDOW } else { 0 };
        let mut printable = Vec::with_capacity(need.min(bytes.len()));
        let mut scanned = 0;
        for &byte in bytes {
            if printable.len() >= need {
                break;
            }
            scanned += 1;
            if !self.output_escape.feed(byte) {
                printable.push(byte);
                self.at_prompt = true;
            } else if matches!(byte, b'\r' | b'\n') {
                self.at_prompt = false;
            }
        }
        self.skim(&bytes[scanned..]);
        let mut offset = 0;
        while offset < printable.len() && !self.waiting.is_empty() {
            let Some((run, end)) = self.echoed_run(&printable[offset..]) else {
                break;
            };
            self.release_run(run, end.consumed);
            offset += end.output_end;
        }
        std::mem::take(&mut self.out)
    }

    /// The session's clock moved on: bytes that waited too long are withheld.
    pub(crate) fn tick(&mut self, now_ms: u64) -> Vec<Gated> {
        while self
            .waiting
            .front()
            .is_some_and(|w| now_ms.saturating_sub(w.at_ms) >= ECHO_WAIT_MS)
        {
            self.withhold_front();
            self.release_controls();
        }
        std::mem::take(&mut self.out)
    }

    /// The session ends: what still waits is withheld (control bytes recorded).
    pub(crate) fn finish(&mut self) -> Vec<Gated> {
        while !self.waiting.is_empty() {
            self.withhold_front();
            self.release_controls();
        }
        std::mem::take(&mut self.out)
    }

    /// Output while nothing waits: only the escape state and whether the target sits at a prompt matter, so plain
    /// stretches are jumped over (bulk output costs next to nothing here) and only escape sequences are parsed.
    fn skim(&mut self, bytes: &[u8]) {
        let mut rest = bytes;
        while !rest.is_empty() {
            if self.output_escape == Escape::None {
                let plain_end = memchr::memchr(0x1b, rest).unwrap_or(rest.len());
                let plain = &rest[..plain_end];
                if let Some(&last) = plain
                    .iter()
                    .rev()
                    .find(|&&b| (b >= 0x20 && b != 0x7f) || matches!(b, b'\r' | b'\n'))
                {
                    self.at_prompt = !matches!(last, b'\r' | b'\n');
                }
                rest = &rest[plain_end..];
            }
            let mut used = 0;
            for &byte in rest {
                used += 1;
                self.output_escape.feed(byte);
                if self.output_escape == Escape::None {
                    break;
                }
            }
            rest = &rest[used..];
        }
    }

    /// The first waiting run (of the first few) that `output` echoes: its index, and how much of it and of the
    /// output the echo covers.
    fn echoed_run(&self, output: &[u8]) -> Option<(usize, Echo)> {
        let runs = self.runs();
        for (index, run) in runs.iter().enumerate().take(MAX_RUNS_TRIED) {
            let bytes: Vec<u8> = run.iter().map(|&i| self.waiting[i].byte).collect();
            let at_prompt = self.waiting[run[0]].at_prompt;
            // An echo at the event's start: the whole run, or its start cut off by the event's end.
            let common = bytes.iter().zip(output).take_while(|(a, b)| a == b).count();
            if common == bytes.len() || (common > 0 && common == output.len()) {
                return Some((
                    index,
                    Echo {
                        consumed: common,
                        output_end: common,
                    },
                ));
            }
            if at_prompt {
                continue;
            }
            // Typed ahead: the whole run somewhere after a prompt.
            let window = &output[..output.len().min(AHEAD_WINDOW)];
            if let Some(at) = window
                .windows(bytes.len())
                .position(|w| w == bytes.as_slice())
            {
                return Some((
                    index,
                    Echo {
                        consumed: bytes.len(),
                        output_end: at + bytes.len(),
                    },
                ));
            }
        }
        None
    }

    /// The waiting runs of printable bytes, as indices into `waiting`.
    fn runs(&self) -> Vec<Vec<usize>> {
        let mut runs: Vec<Vec<usize>> = Vec::new();
        let mut in_run = false;
        for (i, w) in self.waiting.iter().enumerate() {
            if w.control {
                in_run = false;
                continue;
            }
            match runs.last_mut() {
                Some(run) if in_run => run.push(i),
                _ => {
                    if runs.len() == MAX_RUNS_TRIED {
                        break;
                    }
                    runs.push(vec![i]);
                }
            }
            in_run = true;
        }
        runs
    }

    /// Withholds the runs before run `index`, records `consumed` bytes of it, and the control bytes after them.
    fn release_run(&mut self, index: usize, consumed: usize) {
        for _ in 0..index {
            self.release_controls();
            while self.waiting.front().is_some_and(|w| !w.control) {
                self.withhold_front();
            }
        }
        self.release_controls();
        for _ in 0..consumed {
            self.release_front();
        }
        if self.waiting.front().is_some_and(|w| w.control) {
            self.release_controls();
        }
    }

    fn release_controls(&mut self) {
        while self.waiting.front().is_some_and(|w| w.control) {
            self.release_front();
        }
    }

    fn release_front(&mut self) {
        let Some(w) = self.waiting.pop_front() else {
            return;
        };
        match self.out.last_mut() {
            Some(Gated::Input(at, bytes)) if *at == w.at_ms => bytes.push(w.byte),
            _ => self.out.push(Gated::Input(w.at_ms, vec![w.byte])),
        }
    }

    fn withhold_front(&mut self) {
        let Some(w) = self.waiting.pop_front() else {
            return;
        };
        if w.control {
            // Only reached when more than MAX_WAITING bytes wait; a control byte is no secret.
            match self.out.last_mut() {
                Some(Gated::Input(_, bytes)) => bytes.push(w.byte),
                _ => self.out.push(Gated::Input(w.at_ms, vec![w.byte])),
            }
            return;
        }
        // Count characters, not bytes: UTF-8 continuation bytes belong to the character before them.
        let starts_char = u64::from(w.byte & 0xc0 != 0x80);
        match self.out.last_mut() {
            Some(Gated::Withheld(n)) => *n += starts_char,
            _ => self.out.push(Gated::Withheld(starts_char)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(out: &[Gated]) -> Vec<u8> {
        out.iter()
            .flat_map(|g| match g {
                Gated::Input(_, b) => b.clone(),
                Gated::Withheld(_) => Vec::new(),
            })
            .collect()
    }

    #[test]
    fn an_echoed_command_line_is_recorded_whole_and_in_order() {
        let mut gate = EchoGate::default();
        assert!(gate.input(0, b"sudo -k; sudo true\r").is_empty());
        let out = gate.output(b"sudo -k; sudo true\r\n");
        assert_eq!(out, vec![Gated::Input(0, b"sudo -k; sudo true\r".to_vec())]);
    }

    #[test]
    fn keystrokes_echoed_one_by_one_are_recorded() {
        let mut gate = EchoGate::default();
        let mut recorded = Vec::new();
        for (i, key) in b"ls -la".iter().enumerate() {
            recorded.extend(gate.input(i as u64, &[*key]));
            recorded.extend(gate.output(&[*key]));
        }
        recorded.extend(gate.input(10, b"\r"));
        recorded.extend(gate.output(b"\r\ntotal 0\r\n$ "));
        assert_eq!(inputs(&recorded), b"ls -la\r");
        assert!(!recorded.iter().any(|g| matches!(g, Gated::Withheld(_))));
    }

    #[test]
    fn a_password_at_a_silent_prompt_is_withheld_and_counted_but_enter_is_recorded() {
        let mut gate = EchoGate::default();
        assert!(gate.output(b"[sudo] password for alice: ").is_empty());
        let mut out = gate.input(5, "hünter2".as_bytes());
        out.extend(gate.input(6, b"\r"));
        out.extend(gate.output(b"\r\n"));
        // Nothing echoed it: it is withheld once it waited too long.
        assert!(out.is_empty());
        out.extend(gate.tick(5 + ECHO_WAIT_MS));
        assert_eq!(
            out,
            vec![Gated::Withheld(7), Gated::Input(6, b"\r".to_vec())]
        );
        assert!(gate.finish().is_empty());
    }

    #[test]
    fn a_prompt_that_starts_like_the_password_is_not_taken_for_its_echo() {
        let mut gate = EchoGate::default();
        gate.output(b"[sudo] password for sp-e2e: ");
        let mut out = gate.input(1, b"sp-e2e-pass\r");
        // sudo's newline and the shell's next prompt in one output event.
        out.extend(gate.output(b"\r\nsp-e2e@host:~$ "));
        assert!(out.is_empty(), "{out:?}");
        out.extend(gate.tick(1 + ECHO_WAIT_MS));
        assert_eq!(
            out,
            vec![Gated::Withheld(11), Gated::Input(1, b"\r".to_vec())]
        );
        // A command typed and echoed afterwards is recorded as before.
        let mut out = gate.input(2, b"ls\r");
        out.extend(gate.output(b"ls\r\nfile\r\n"));
        assert_eq!(out, vec![Gated::Input(2, b"ls\r".to_vec())]);
    }

    #[test]
    fn unrelated_output_while_typing_a_password_echoes_nothing() {
        let mut gate = EchoGate::default();
        gate.output(b"Password: ");
        gate.input(0, b"secret");
        // A background job prints a line containing the password's letters, not starting with them.
        assert!(gate.output(b"the secret log line\r\n").is_empty());
        let out = gate.tick(ECHO_WAIT_MS);
        assert_eq!(out, vec![Gated::Withheld(6)]);
    }

    #[test]
    fn control_bytes_and_escape_sequences_are_recorded_at_once() {
        let mut gate = EchoGate::default();
        assert_eq!(
            gate.input(1, b"\x1b[A\x03"),
            vec![Gated::Input(1, b"\x1b[A\x03".to_vec())]
        );
        // An arrow key after a waiting letter waits behind it.
        assert!(gate.input(2, b"x\x1bOB").is_empty());
        // Echo wrapped in colour escapes still counts.
        assert_eq!(
            gate.output(b"\x1b[32mx\x1b[0m"),
            vec![Gated::Input(2, b"x\x1bOB".to_vec())]
        );
    }

    #[test]
    fn a_line_typed_ahead_of_the_prompt_is_recorded_when_echoed_after_it() {
        let mut gate = EchoGate::default();
        gate.output(b"Last login: Tue Dec  1\r\n");
        assert!(gate.input(3, b"echo quic-marker-$((40+2))\r").is_empty());
        assert!(gate.output(b"motd line\r\n").is_empty());
        let out =
            gate.output(b"\x1b[?2004huser@host:~$ echo quic-marker-$((40+2))\r\n\x1b[?2004l\r");
        assert_eq!(
            out,
            vec![Gated::Input(3, b"echo quic-marker-$((40+2))\r".to_vec())]
        );
    }

    #[test]
    fn the_command_after_a_password_is_recorded_and_the_password_withheld() {
        let mut gate = EchoGate::default();
        gate.output(b"[sudo] password for alice: ");
        let mut out = gate.input(1, b"hunter2\r");
        out.extend(gate.output(b"\r\n"));
        out.extend(gate.output(b"alice@db1:~$ "));
        out.extend(gate.input(2, b"echo done\r"));
        out.extend(gate.output(b"echo done\r\n"));
        assert_eq!(
            out,
            vec![
                Gated::Withheld(7),
                Gated::Input(1, b"\r".to_vec()),
                Gated::Input(2, b"echo done\r".to_vec())
            ]
        );
    }

    #[test]
    fn an_echo_cut_in_two_events_is_recorded() {
        let mut gate = EchoGate::default();
        gate.output(b"$ ");
        gate.input(0, b"uptime\r");
        let mut out = gate.output(b"upt");
        out.extend(gate.output(b"ime\r\n 10:00 up"));
        assert_eq!(inputs(&out), b"uptime\r");
    }

    #[test]
    fn skimmed_output_keeps_the_escape_state_and_the_prompt() {
        let mut skimmed = EchoGate::default();
        let mut scanned = EchoGate::default();
        scanned.input(0, b"x");
        for event in [
            &b"plain\r\n"[..],
            b"\x1b[32mgreen\x1b[0m$ ",
            b"\x1b]0;ti",
            b"tle\x07\r\n",
            b"\x1b[",
            b"1mbold",
        ] {
            skimmed.skim(event);
            scanned.output(event);
            assert_eq!(skimmed.output_escape, scanned.output_escape, "{event:?}");
            assert_eq!(skimmed.at_prompt, scanned.at_prompt, "{event:?}");
        }
    }

    #[test]
    fn waiting_is_bounded_and_expires() {
        let mut gate = EchoGate::default();
        let out = gate.input(0, &vec![b'a'; MAX_WAITING + 10]);
        assert_eq!(out, vec![Gated::Withheld(10)]);
        assert!(gate.tick(ECHO_WAIT_MS - 1).is_empty());
        assert_eq!(
            gate.tick(ECHO_WAIT_MS),
            vec![Gated::Withheld(MAX_WAITING as u64)]
        );
        assert!(gate.waiting.is_empty());
    }

    #[test]
    fn an_osc_title_in_the_output_is_not_taken_for_echo() {
        let mut gate = EchoGate::default();
        gate.input(0, b"t");
        assert!(gate.output(b"\x1b]0;title\x07").is_empty());
        assert_eq!(gate.output(b"t"), vec![Gated::Input(0, b"t".to_vec())]);
    }
}
