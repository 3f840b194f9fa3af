//! Plain text from recorded terminal bytes, for searching: escape sequences are dropped, line ends become `\n`,
//! backspaces delete, and what is left is valid UTF-8 without control characters.
//!
//! The extractor is a small state machine fed event by event, so a sequence split across two events (or chunks) is
//! still recognised. It does not emulate a terminal (cursor movement is ignored); it only needs to keep the words a
//! person would search for together.

/// Where the extractor is inside an escape sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum State {
    #[default]
    Ground,
    /// After ESC.
    Escape,
    /// After ESC and an intermediate byte (charset designations such as `ESC ( B`).
    EscapeIntermediate,
    /// Inside `ESC [` parameters.
    Csi,
    /// Inside an OSC, DCS, SOS, PM or APC string, until BEL or ST.
    String,
    /// After ESC inside a string (an ST is `ESC \`).
    StringEscape,
}

/// Turns a terminal byte stream into searchable text.
#[derive(Debug, Clone, Default)]
pub struct TextExtractor {
    state: State,
    out: Vec<u8>,
}

impl TextExtractor {
    /// A fresh extractor.
    pub fn new() -> TextExtractor {
        TextExtractor::default()
    }

    /// Feeds recorded bytes (output or input).
    pub fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.byte(b);
        }
    }

    fn byte(&mut self, b: u8) {
        self.state = match self.state {
            State::Ground => {
                self.ground(b);
                if b == 0x1b {
                    State::Escape
                } else {
                    State::Ground
                }
            }
            State::Escape => match b {
                b'[' => State::Csi,
                b']' | b'P' | b'X' | b'^' | b'_' => State::String,
                0x20..=0x2f => State::EscapeIntermediate,
                0x1b => State::Escape,
                _ => State::Ground,
            },
            State::EscapeIntermediate => match b {
                0x20..=0x2f => State::EscapeIntermediate,
                _ => State::Ground,
            },
            State::Csi => match b {
                0x20..=0x3f => State::Csi,
                0x1b => State::Escape,
                // A final byte, or anything malformed, ends the sequence.
                _ => State::Ground,
            },
            State::String => match b {
                0x07 => State::Ground,
                0x1b => State::StringEscape,
                _ => State::String,
            },
            State::StringEscape => match b {
                b'\\' => State::Ground,
                0x1b => State::StringEscape,
                _ => State::String,
            },
        };
    }

    /// A byte outside escape sequences.
    fn ground(&mut self, b: u8) {
        match b {
            b'\r' | b'\n' => {
                if self.out.last().is_some_and(|&l| l != b'\n') {
                    self.out.push(b'\n');
                }
            }
            b'\t' => self.out.push(b' '),
            0x08 | 0x7f => self.backspace(),
            0x00..=0x1f => {}
            _ => self.out.push(b),
        }
    }

    /// Deletes the last character of the current line (a whole UTF-8 sequence).
    fn backspace(&mut self) {
        if self.out.last().is_none_or(|&l| l == b'\n') {
            return;
        }
        while let Some(&l) = self.out.last() {
            self.out.pop();
            if l & 0xc0 != 0x80 {
                break;
            }
        }
    }

    /// The bytes of text so far (not yet checked as UTF-8); its length only grows, except by backspaces.
    pub fn len(&self) -> usize {
        self.out.len()
    }

    /// Whether no text has been extracted yet.
    pub fn is_empty(&self) -> bool {
        self.out.is_empty()
    }

    /// The text so far, as bytes that are mostly UTF-8 (for searching with byte offsets).
    pub fn bytes(&self) -> &[u8] {
        &self.out
    }

    /// Takes the text so far, leaving the extractor empty (its escape state is kept).
    pub fn take(&mut self) -> String {
        let bytes = std::mem::take(&mut self.out);
        clean(&String::from_utf8_lossy(&bytes))
    }
}

/// Removes control characters other than `\n` (C1 controls such as U+009B included).
fn clean(text: &str) -> String {
    text.chars()
        .filter(|&c| c == '\n' || !c.is_control())
        .collect()
}

/// The plain text of some terminal bytes (see [`TextExtractor`]).
pub fn plain_text(bytes: &[u8]) -> String {
    let mut x = TextExtractor::new();
    x.feed(bytes);
    x.take()
}

/// Unix milliseconds as `YYYY-MM-DD HH:MM:SS UTC`, for findings and markers.
pub fn utc(unix_ms: u64) -> String {
    let nanos = i128::from(unix_ms) * 1_000_000;
    match time::OffsetDateTime::from_unix_timestamp_nanos(nanos) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => format!("{unix_ms} ms after 1970"),
    }
}

#[cfg(test)]
mod tests {
    use super::plain_text;

    fn check(input: &[u8], expect: &str) {
        assert_eq!(plain_text(input), expect, "{input:?}");
    }

    #[test]
    fn text_is_extracted() {
        check(b"hello\r\nworld", "hello\nworld");
        check(b"\x1b[1;31mred\x1b[0m plain", "red plain");
        check(b"\x1b]0;title\x07after", "after");
        check(b"\x1b]52;c;aGVsbG8=\x1b\\after", "after");
        check(b"\x1bP1$r0m\x1b\\x", "x");
        check(b"\x1b(Bok", "ok");
        check(b"sudp\x7fo ls", "sudo ls");
        check(b"sudp\x08 \x08o", "sudo");
        check("h\u{e9}\x08llo".as_bytes(), "hllo");
        check(b"a\tb\x00c\x07d", "a bcd");
        check("x\u{9b}31my".as_bytes(), "x31my");
        check(b"\r\n\r\nfirst\r\n\r\n\r\nsecond", "first\nsecond");
        check(b"\xff\xfebad", "\u{fffd}\u{fffd}bad");
    }

    #[test]
    fn sequences_split_across_feeds_are_recognised() {
        let mut x = super::TextExtractor::new();
        x.feed(b"rm \x1b[3");
        x.feed(b"1m-rf\x1b]0;ti");
        x.feed(b"tle\x1b");
        x.feed(b"\\ /");
        assert_eq!(x.take(), "rm -rf /");
    }
}
