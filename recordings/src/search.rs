//! Full-text search over recorded terminal text: a SQLite FTS5 index kept in its own file beside (or away from) the
//! recordings database, and the exact moments a text occurs in a session.
//!
//! The index is derived data, never evidence: it is built by the reader on first open and brought up to date
//! incrementally (only chunks it has not seen), so it works on a read-only database or a copy, and it adds nothing
//! to the gateway's write path. Each chunk gives up to two rows, its output text and its input text (see
//! [`crate::text`]), each starting with the last [`OVERLAP`] bytes of the chunk before it so that a phrase split by a
//! chunk boundary is still found. A hit names a session and a chunk; the player finds the exact moments with
//! [`find_moments`] in the decoded events.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};

use crate::error::RecordingError;
use crate::event::{Event, TimedEvent};
use crate::session::SessionRow;
use crate::store::Store;
use crate::text::TextExtractor;

/// How many bytes of a chunk's text are repeated at the start of the next chunk's row.
pub const OVERLAP: usize = 64;

/// The index layout's version (`PRAGMA user_version`); an index of another version is rebuilt.
const INDEX_VERSION: i64 = 1;

const SCHEMA: &str = "
    CREATE TABLE indexed (
        session_id TEXT PRIMARY KEY NOT NULL,
        chunks INTEGER NOT NULL,
        output_tail TEXT NOT NULL,
        input_tail TEXT NOT NULL
    ) STRICT;
    CREATE VIRTUAL TABLE text USING fts5(
        body, session_id UNINDEXED, seq UNINDEXED, t_ms UNINDEXED, kind UNINDEXED,
        tokenize = 'unicode61'
    );";

/// The search index (see the module documentation).
pub struct SearchIndex {
    conn: Connection,
}

/// What [`SearchIndex::update`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IndexProgress {
    /// Sessions that had new chunks.
    pub sessions: usize,
    /// Chunks indexed.
    pub chunks: u64,
}

/// A session in which a search matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionHits {
    /// The session.
    pub session_id: String,
    /// The start of the first chunk that matched, in milliseconds since the session started.
    pub first_at_ms: u64,
    /// How many chunk texts (output or input) matched.
    pub rows: u64,
    /// Whether the first match was in the user's input (rather than the target's output).
    pub input: bool,
    /// A short excerpt around the first match: `(text, is_match)` pieces.
    pub snippet: Vec<(String, bool)>,
}

/// Whether a search text can be searched: it needs a letter or digit (FTS5 indexes words).
pub fn searchable(text: &str) -> bool {
    text.chars().any(char::is_alphanumeric)
}

/// The FTS5 query for a text: one phrase, so `rm -rf` finds the words `rm` and `rf` next to each other.
fn phrase(text: &str) -> String {
    format!("\"{}\"", text.replace('"', "\"\""))
}

/// Cuts `text` to its last `max` bytes at a character boundary.
fn tail(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

impl SearchIndex {
    /// Opens (creating if needed) the index file. An index written by another version is emptied and rebuilt.
    pub fn open(path: &Path) -> Result<SearchIndex, RecordingError> {
        SearchIndex::setup(Connection::open(path)?)
    }

    /// An index in memory (tests, one-off searches).
    pub fn open_in_memory() -> Result<SearchIndex, RecordingError> {
        SearchIndex::setup(Connection::open_in_memory()?)
    }

    fn setup(conn: Connection) -> Result<SearchIndex, RecordingError> {
        // Derived data: a crash may lose the last update, which the next update redoes.
        conn.pragma_update(None, "synchronous", "OFF")?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version != INDEX_VERSION {
            conn.execute_batch("DROP TABLE IF EXISTS indexed; DROP TABLE IF EXISTS text;")?;
            conn.execute_batch(SCHEMA)?;
            conn.pragma_update(None, "user_version", INDEX_VERSION)?;
        }
        Ok(SearchIndex { conn })
    }

    /// Indexes every chunk of every session that the index has not seen yet.
    pub fn update(&mut self, store: &Store) -> Result<IndexProgress, RecordingError> {
        let mut progress = IndexProgress::default();
        for row in store.sessions()? {
            let added = self.update_session(store, &row)?;
            if added > 0 {
                progress.sessions += 1;
                progress.chunks += added;
            }
        }
        Ok(progress)
    }

    /// Indexes the chunks of one session that the index has not seen yet; returns how many. A chunk that does not
    /// decode (tampered, truncated) ends the session's indexing there; verification reports it.
    pub fn update_session(
        &mut self,
        store: &Store,
        row: &SessionRow,
    ) -> Result<u64, RecordingError> {
        let known: Option<(i64, String, String)> = self
            .conn
            .query_row(
                "SELECT chunks, output_tail, input_tail FROM indexed WHERE session_id = ?1",
                [&row.id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let (done, mut output_tail, mut input_tail) = match known {
            Some((done, o, i)) => (u64::try_from(done).unwrap_or(0), o, i),
            None => (0, String::new(), String::new()),
        };
        if done >= row.chunk_count {
            return Ok(0);
        }
        let tx = self.conn.transaction()?;
        let mut added = 0;
        let mut failure = None;
        {
            let mut insert = tx.prepare(
                "INSERT INTO text (body, session_id, seq, t_ms, kind) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            let read = store.chunks_from(&row.id, done, |chunk| {
                let (mut output, mut input) = (TextExtractor::new(), TextExtractor::new());
                for event in &chunk.events {
                    match &event.event {
                        Event::Output(bytes) => output.feed(bytes),
                        Event::Input(bytes) => input.feed(bytes),
                        Event::Resize { .. }
                        | Event::Marker(_)
                        | Event::Desktop(_)
                        | Event::FileTransfer(_) => {}
                    }
                }
                for (text, prev_tail, kind) in [
                    (output.take(), &mut output_tail, "output"),
                    (input.take(), &mut input_tail, "input"),
                ] {
                    if text.is_empty() {
                        continue;
                    }
                    let body = format!("{prev_tail}\n{text}");
                    if let Err(e) =
                        insert.execute(params![body, row.id, chunk.seq, chunk.t_start_ms, kind])
                    {
                        failure = Some(e);
                        return false;
                    }
                    *prev_tail = tail(&text, OVERLAP).to_owned();
                }
                added += 1;
                true
            });
            if let Some(e) = failure {
                return Err(e.into());
            }
            // An undecodable chunk stops indexing this session; the rest is marked seen so it is not retried on
            // every open.
            if let Err(RecordingError::Database(e)) = read {
                return Err(e.into());
            }
        }
        tx.execute(
            "INSERT INTO indexed (session_id, chunks, output_tail, input_tail) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (session_id) DO UPDATE SET chunks = ?2, output_tail = ?3, input_tail = ?4",
            params![row.id, row.chunk_count, output_tail, input_tail],
        )?;
        tx.commit()?;
        Ok(added)
    }

    /// The sessions whose output or input contains `text` (as a phrase of words, case-insensitively), each with
    /// its first matching chunk; at most `limit` sessions, in no particular order.
    pub fn search(&self, text: &str, limit: usize) -> Result<Vec<SessionHits>, RecordingError> {
        if !searchable(text) {
            return Ok(Vec::new());
        }
        let query = phrase(text);
        let mut stmt = self.conn.prepare(
            "SELECT rowid, session_id, seq, t_ms, kind FROM text WHERE text MATCH ?1 ORDER BY session_id, seq",
        )?;
        let mut rows = stmt.query([&query])?;
        let mut hits: Vec<(i64, SessionHits)> = Vec::new();
        while let Some(r) = rows.next()? {
            let session_id: String = r.get(1)?;
            if let Some((_, last)) = hits.last_mut()
                && last.session_id == session_id
            {
                last.rows += 1;
                continue;
            }
            if hits.len() >= limit {
                break;
            }
            let t_ms: i64 = r.get(3)?;
            let kind: String = r.get(4)?;
            hits.push((
                r.get(0)?,
                SessionHits {
                    session_id,
                    first_at_ms: u64::try_from(t_ms).unwrap_or(0),
                    rows: 1,
                    input: kind == "input",
                    snippet: Vec::new(),
                },
            ));
        }
        // FTS5's snippet() would evaluate the whole query again for every session (a MATCH restricted by rowid
        // is not a rowid lookup), which is minutes for a common word over a thousand sessions; the excerpt is cut
        // here from the row's text instead.
        let needle: Vec<Vec<u8>> = words(text.as_bytes()).into_iter().map(|w| w.0).collect();
        let mut body = self
            .conn
            .prepare("SELECT body FROM text WHERE rowid = ?1")?;
        let mut out = Vec::with_capacity(hits.len());
        for (rowid, mut hit) in hits {
            let text: String = body.query_row([rowid], |r| r.get(0))?;
            hit.snippet = excerpt(&text, &needle);
            out.push(hit);
        }
        Ok(out)
    }
}

/// How many bytes of context an excerpt shows on each side of the match.
const EXCERPT_CONTEXT: usize = 40;

/// The first place in `text` where the `needle` words follow each other, with some context: `(text, is_match)`
/// pieces, newlines shown as spaces.
fn excerpt(text: &str, needle: &[Vec<u8>]) -> Vec<(String, bool)> {
    let found = find_phrase(text, needle);
    let Some((from, to)) = found else {
        return vec![(flatten(&text[..floor(text, EXCERPT_CONTEXT * 2)]), false)];
    };
    let before = floor(text, from.saturating_sub(EXCERPT_CONTEXT));
    let after = floor(text, (to + EXCERPT_CONTEXT).min(text.len()));
    let mut pieces = Vec::new();
    let lead = if before > 0 { "…" } else { "" };
    pieces.push((format!("{lead}{}", flatten(&text[before..from])), false));
    pieces.push((flatten(&text[from..to]), true));
    let tail = if after < text.len() { "…" } else { "" };
    pieces.push((format!("{}{tail}", flatten(&text[to..after])), false));
    pieces.retain(|(t, _)| !t.is_empty());
    pieces
}

/// Whether a byte is part of a word (see [`words`]).
fn word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b >= 0x80
}

/// The byte range of the first place where the `needle` words follow each other in `text`. Candidates are found
/// with a substring search for the first word (fast even in long rows), then checked word by word.
fn find_phrase(text: &str, needle: &[Vec<u8>]) -> Option<(usize, usize)> {
    let first = std::str::from_utf8(needle.first()?).ok()?;
    let lower = text.to_ascii_lowercase();
    let bytes = lower.as_bytes();
    let mut from = 0;
    while let Some(found) = lower.get(from..)?.find(first) {
        let start = from + found;
        from = start + 1;
        while !lower.is_char_boundary(from) {
            from += 1;
        }
        if start > 0 && word_byte(bytes[start - 1]) {
            continue;
        }
        let mut at = start;
        let mut end = start;
        let mut all = true;
        for word in needle {
            while at < bytes.len() && !word_byte(bytes[at]) {
                at += 1;
            }
            let word_end = (at..bytes.len())
                .find(|&i| !word_byte(bytes[i]))
                .unwrap_or(bytes.len());
            if &bytes[at..word_end] != word.as_slice() {
                all = false;
                break;
            }
            end = word_end;
            at = word_end;
        }
        if all {
            return Some((start, end));
        }
    }
    None
}

/// The largest character boundary at or below `at`.
fn floor(text: &str, at: usize) -> usize {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// Newlines as spaces, other control characters dropped.
fn flatten(text: &str) -> String {
    text.chars()
        .filter_map(|c| match c {
            '\n' => Some(' '),
            c if c.is_control() => None,
            c => Some(c),
        })
        .collect()
}

/// A place in a session where a searched text occurs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Moment {
    /// The index of the event that completed the text.
    pub event: usize,
    /// Its time, in milliseconds since the session started.
    pub at_ms: u64,
    /// Whether it was typed by the user (rather than shown by the target).
    pub input: bool,
}

/// Lowercase words and the byte offset where each ends. Words are what FTS5's unicode61 tokenizer takes, roughly:
/// runs of ASCII letters and digits and of non-ASCII bytes.
fn words(bytes: &[u8]) -> Vec<(Vec<u8>, usize)> {
    let mut out = Vec::new();
    let mut current = Vec::new();
    for (i, &b) in bytes.iter().enumerate() {
        if b.is_ascii_alphanumeric() || b >= 0x80 {
            current.push(b.to_ascii_lowercase());
        } else if !current.is_empty() {
            out.push((std::mem::take(&mut current), i));
        }
    }
    if !current.is_empty() {
        out.push((current, bytes.len()));
    }
    out
}

/// Every moment in `events` where `text` occurs as a phrase of words (the same match as the index), in output or
/// input, in time order.
pub fn find_moments(events: &[TimedEvent], text: &str) -> Vec<Moment> {
    let needle: Vec<Vec<u8>> = words(text.as_bytes()).into_iter().map(|(w, _)| w).collect();
    if needle.is_empty() {
        return Vec::new();
    }
    let mut moments = Vec::new();
    for input in [false, true] {
        let mut extractor = TextExtractor::new();
        // (text length after the event, event index), for the events of this stream.
        let mut ends = Vec::new();
        for (i, e) in events.iter().enumerate() {
            match (&e.event, input) {
                (Event::Output(bytes), false) | (Event::Input(bytes), true) => {
                    extractor.feed(bytes);
                    ends.push((extractor.len(), i));
                }
                _ => {}
            }
        }
        let found = words(extractor.bytes());
        let mut next_end = 0;
        for start in 0..found.len() {
            let Some(window) = found.get(start..start + needle.len()) else {
                break;
            };
            if !window.iter().zip(&needle).all(|((w, _), n)| w == n) {
                continue;
            }
            let end = window.last().map_or(0, |(_, e)| *e);
            // The first event whose text reached `end`; it can only move forward as `end` grows (even when
            // backspaces shortened the text in between).
            while next_end < ends.len() && ends[next_end].0 < end {
                next_end += 1;
            }
            let event = ends
                .get(next_end)
                .map_or_else(|| events.len().saturating_sub(1), |(_, i)| *i);
            let at_ms = events.get(event).map_or(0, |e| e.at_ms);
            moments.push(Moment {
                event,
                at_ms,
                input,
            });
        }
    }
    moments.sort_by_key(|m| (m.event, m.input));
    moments.dedup_by_key(|m| m.event);
    moments
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ev(at_ms: u64, event: Event) -> TimedEvent {
        TimedEvent { at_ms, event }
    }

    #[test]
    fn moments_are_found_in_output_and_input() {
        let events = vec![
            ev(0, Event::Output(b"$ ".to_vec())),
            ev(10, Event::Input(b"su".to_vec())),
            ev(20, Event::Input(b"do rm -".to_vec())),
            ev(30, Event::Input(b"rf /tmp/x\r".to_vec())),
            ev(40, Event::Output(b"\x1b[1mrm\x1b[0m -rf done\r\n".to_vec())),
            ev(50, Event::Output(b"nothing\r\n".to_vec())),
        ];
        let m = find_moments(&events, "rm -rf");
        assert_eq!(
            m,
            vec![
                Moment {
                    event: 3,
                    at_ms: 30,
                    input: true
                },
                Moment {
                    event: 4,
                    at_ms: 40,
                    input: false
                },
            ]
        );
        assert_eq!(find_moments(&events, "SUDO").len(), 1);
        assert!(find_moments(&events, "-").is_empty());
        assert!(find_moments(&events, "absent").is_empty());
    }

    #[test]
    fn excerpts_mark_the_first_match() {
        let needle: Vec<Vec<u8>> = vec![b"rm".to_vec(), b"rf".to_vec()];
        assert_eq!(
            excerpt("a\nsudo RM -rf /x\nb", &needle),
            vec![
                ("a sudo ".to_owned(), false),
                ("RM -rf".to_owned(), true),
                (" /x b".to_owned(), false)
            ]
        );
        let long = format!("{} rm rf {}", "é".repeat(40), "z".repeat(100));
        let e = excerpt(&long, &needle);
        assert!(e[0].0.starts_with('…') && e[2].0.ends_with('…'), "{e:?}");
        assert_eq!(e[1], ("rm rf".to_owned(), true));
        assert_eq!(
            excerpt("no match", &needle),
            vec![("no match".to_owned(), false)]
        );
    }

    #[test]
    fn tails_keep_characters_whole() {
        assert_eq!(tail("héllo", 4), "llo");
        assert_eq!(tail("abc", 10), "abc");
    }
}
