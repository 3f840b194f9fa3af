//! One open session inside the writer: buffers its events into chunks (through the echo gate, when there is one)
//! and writes each chunk, and at the end the seal, through the writer's [`Sink`].

use std::sync::Arc;
use std::time::Instant;

use rusqlite::params;

use super::{Shared, Sink};
use crate::chain::{self, ChunkFields, Hash};
use crate::codec::History;
use crate::echo::{EchoGate, Gated};
use crate::error::RecordingError;
use crate::event::{
    Event, KIND_FILE_TRANSFER, KIND_INPUT, KIND_MARKER, KIND_OUTPUT, KIND_RESIZE, MAX_MARKER_BYTES,
    MAX_RECORD_HEADER, desktop_record, put_record, record_len, resize_payload, transfer_payload,
    truncate_utf8,
};
use crate::ledger::{Body, SessionEnd};
use crate::recorder::Limits;
use crate::session::{Outcome, unix_now_ms};

/// One open session inside the writer.
pub(super) struct Live {
    pub(super) id: String,
    pub(super) started_at_ms: u64,
    pub(super) shared: Arc<Shared>,
    pub(super) prev_hash: Hash,
    pub(super) next_seq: u64,
    pub(super) history: History,
    /// Encoded events of the chunk being filled.
    pub(super) buf: Vec<u8>,
    /// When the writer put the current chunk's first event in `buf`.
    pub(super) opened_at: Option<Instant>,
    pub(super) t_start_ms: u64,
    /// The time of the last event in `buf` (and, after a flush, of the last event written).
    pub(super) last_at_ms: u64,
    /// Holds typed bytes until the target echoes them (see `echo.rs`); `None` when the recorder keeps all input.
    pub(super) echo: Option<EchoGate>,
}

impl Live {
    pub(super) fn failed(&self) -> bool {
        self.shared.failure().is_some()
    }

    fn fail(&mut self, sink: &mut Sink, error: &RecordingError) {
        let why = error.to_string();
        let why = match std::error::Error::source(error) {
            Some(source) => format!("{why}: {source}"),
            None => why,
        };
        sink.unhealthy = Some(why.clone());
        let _ = self.shared.failure.set(why);
        self.buf = Vec::new();
        self.opened_at = None;
    }

    pub(super) fn push(&mut self, sink: &mut Sink, limits: &Limits, at_ms: u64, event: Event) {
        // Concurrent callers may stamp events slightly out of order; the stream stays monotonic.
        let at_ms = at_ms.max(self.last_at_ms);
        match event {
            Event::Output(data) => {
                if let Some(gated) = self.echo.as_mut().map(|gate| gate.output(&data)) {
                    self.push_gated(sink, limits, at_ms, gated);
                }
                self.push_data(sink, limits, at_ms, KIND_OUTPUT, &data);
            }
            Event::Input(data) => match self.echo.as_mut().map(|gate| gate.input(at_ms, &data)) {
                Some(gated) => self.push_gated(sink, limits, at_ms, gated),
                None => self.push_data(sink, limits, at_ms, KIND_INPUT, &data),
            },
            Event::Resize { cols, rows } => {
                self.push_record(
                    sink,
                    limits,
                    at_ms,
                    KIND_RESIZE,
                    &resize_payload(cols, rows),
                );
            }
            Event::Marker(text) => {
                let text = truncate_utf8(&text, MAX_MARKER_BYTES);
                self.push_record(sink, limits, at_ms, KIND_MARKER, text.as_bytes());
            }
            // Desktop records are never split: a reader needs each PDU and keyframe whole. The gateway
            // bounds them (a PDU is at most 64 KiB, a keyframe at most 4 MiB), below a chunk's raw limit.
            Event::Desktop(desktop) => {
                let (kind, payload) = desktop_record(&desktop);
                self.push_record(sink, limits, at_ms, kind, &payload);
            }
            Event::FileTransfer(transfer) => {
                let payload = transfer_payload(&transfer);
                self.push_record(sink, limits, at_ms, KIND_FILE_TRANSFER, &payload);
            }
        }
    }

    /// Records what the echo gate let through: echoed input at the time it was typed, withheld input as a count.
    fn push_gated(&mut self, sink: &mut Sink, limits: &Limits, at_ms: u64, gated: Vec<Gated>) {
        for item in gated {
            match item {
                Gated::Input(typed_at, bytes) => {
                    let typed_at = typed_at.max(self.last_at_ms);
                    self.push_data(sink, limits, typed_at, KIND_INPUT, &bytes);
                }
                Gated::Withheld(keystrokes) => {
                    let text = format!(
                        "input withheld: {keystrokes} keystrokes the target did not echo (a password or another \
                         secret) are not recorded"
                    );
                    let at_ms = at_ms.max(self.last_at_ms);
                    self.push_record(sink, limits, at_ms, KIND_MARKER, text.as_bytes());
                }
            }
        }
    }

    /// Withholds typed bytes that waited too long for their echo.
    pub(super) fn tick_echo(&mut self, sink: &mut Sink, limits: &Limits) {
        let now = unix_now_ms().saturating_sub(self.started_at_ms);
        if let Some(gated) = self.echo.as_mut().map(|gate| gate.tick(now)) {
            self.push_gated(sink, limits, now, gated);
        }
    }

    /// The session ends: what still waits for an echo is withheld.
    pub(super) fn finish_echo(&mut self, sink: &mut Sink, limits: &Limits) {
        let now = unix_now_ms().saturating_sub(self.started_at_ms);
        if let Some(gated) = self.echo.as_mut().map(EchoGate::finish) {
            self.push_gated(sink, limits, now, gated);
        }
    }

    /// Splits data that would not fit one chunk into several records of the same kind and time.
    fn push_data(&mut self, sink: &mut Sink, limits: &Limits, at_ms: u64, kind: u8, data: &[u8]) {
        if data.is_empty() {
            self.push_record(sink, limits, at_ms, kind, data);
            return;
        }
        for piece in data.chunks(limits.chunk_max_bytes - MAX_RECORD_HEADER) {
            self.push_record(sink, limits, at_ms, kind, piece);
        }
    }

    fn push_record(
        &mut self,
        sink: &mut Sink,
        limits: &Limits,
        at_ms: u64,
        kind: u8,
        payload: &[u8],
    ) {
        if self.failed() {
            return;
        }
        if !self.buf.is_empty()
            && self.buf.len() + record_len(at_ms - self.last_at_ms, payload.len())
                > limits.chunk_max_bytes
        {
            self.flush(sink);
            if self.failed() {
                return;
            }
        }
        let time_field = if self.buf.is_empty() {
            self.opened_at = Some(Instant::now());
            self.t_start_ms = at_ms;
            at_ms
        } else {
            at_ms - self.last_at_ms
        };
        put_record(&mut self.buf, time_field, kind, payload);
        self.last_at_ms = at_ms;
        if self.buf.len() >= limits.chunk_max_bytes {
            self.flush(sink);
        }
    }

    /// Writes the buffered chunk, if any. A failure marks the session failed.
    pub(super) fn flush(&mut self, sink: &mut Sink) {
        if self.buf.is_empty() || self.failed() {
            return;
        }
        let raw = std::mem::take(&mut self.buf);
        self.opened_at = None;
        if let Err(error) = self.write_chunk(sink, &raw) {
            self.fail(sink, &error);
        }
    }

    fn write_chunk(&mut self, sink: &mut Sink, raw: &[u8]) -> Result<(), RecordingError> {
        let seq = self.next_seq;
        self.history.start_chunk(seq);
        let data = sink.compressor.compress(raw, self.history.dict())?;
        let fields = ChunkFields {
            seq,
            t_start_ms: self.t_start_ms,
            t_end_ms: self.last_at_ms,
            raw_len: raw.len() as u64,
            data: &data,
        };
        let hash = chain::chunk_hash(&self.prev_hash, &fields);
        let id = &self.id;
        sink.transaction(|tx, ledger, _| {
        tx.prepare_cached(
            "INSERT INTO chunks (session_id, seq, t_start_ms, t_end_ms, raw_len, data, hash)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![
            id,
            seq,
            fields.t_start_ms,
            fields.t_end_ms,
            fields.raw_len,
            data,
            &hash[..]
        ])?;
        tx.prepare_cached(
            "UPDATE sessions SET chunk_count = ?2, bytes_raw = bytes_raw + ?3, bytes_stored = bytes_stored + ?4
             WHERE id = ?1",
        )?
        .execute(params![id, seq + 1, fields.raw_len, data.len() as u64])?;
        ledger.append(
            tx,
            unix_now_ms(),
            &Body::Chunk {
                session: id.clone(),
                seq,
                hash,
            },
        )
        })?;
        sink.unhealthy = None;
        self.prev_hash = hash;
        self.next_seq = seq + 1;
        self.history.end_chunk(raw);
        Ok(())
    }

    /// Writes the end and the seal. The session's last chunk must already be flushed.
    /// The seal, its ledger entry and a checkpoint go in one transaction, so a seal is never without the
    /// checkpoint that vouches for it.
    pub(super) fn write_end(
        &self,
        sink: &mut Sink,
        outcome: Outcome,
        ended_at_ms: u64,
    ) -> Result<(), RecordingError> {
        let ended_at_ms = ended_at_ms.max(self.started_at_ms.saturating_add(self.last_at_ms));
        let checkpoint = sink.transaction(|tx, ledger, key| {
            let seal = chain::seal(
                key,
                &chain::SealFields {
                    id: &self.id,
                    final_hash: &self.prev_hash,
                    chunk_count: self.next_seq,
                    outcome,
                    ended_at_ms,
                },
            );
            tx.execute(
                "UPDATE sessions SET ended_at_ms = ?2, outcome = ?3, seal_hash = ?4, seal_sig = ?5, seal_key = ?6
                 WHERE id = ?1",
                params![self.id, ended_at_ms, outcome, &seal.hash[..], &seal.signature[..], &seal.public_key[..]],
            )?;
            let now = unix_now_ms();
            let end = SessionEnd {
                chunk_count: self.next_seq,
                final_hash: self.prev_hash,
                outcome,
                ended_at_ms,
            };
            ledger.append(tx, now, &Body::Seal { session: self.id.clone(), end })?;
            ledger.checkpoint(tx, key, now)
        })?;
        (sink.anchor)(&checkpoint, true);
        Ok(())
    }
}
