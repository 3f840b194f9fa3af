//! The writer thread: owns the one writing SQLite connection and one zstd context, buffers each session's events
//! into chunks, and writes each chunk (with its chain hash) in its own transaction.
//!
//! A chunk is written when its encoded events reach `chunk_max_bytes`, when its first event is `chunk_max_age` old
//! (checked on a tick, so an idle session's last keystrokes still reach the disk), and when the session finishes.
//! A session whose write fails is marked failed: its handle's next `record` returns the error (fail closed), its
//! later events are dropped, and it ends as [`Outcome::Failed`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use rusqlite::{Connection, params};

use crate::chain::{self, ChunkFields, Hash};
use crate::codec::{Compressor, History};
use crate::echo::{EchoGate, Gated};
use crate::error::RecordingError;
use crate::event::{
    Event, KIND_FILE_TRANSFER, KIND_INPUT, KIND_MARKER, KIND_OUTPUT, KIND_RESIZE, MAX_MARKER_BYTES,
    MAX_RECORD_HEADER, desktop_record, put_record, record_len, resize_payload, transfer_payload,
    truncate_utf8,
};
use crate::ledger::{Body, Checkpoint, LedgerWriter, SessionEnd};
use crate::recorder::Limits;
use crate::session::{Identity, Outcome, SessionMeta, unix_now_ms};

/// While the writer is unhealthy (its last write failed), opening a session first proves the database takes this
/// many bytes again, so that a full disk refuses new sessions instead of accepting them and failing them later.
const PROBE_BYTES: i64 = 64 * 1024;

/// A session as the caller opens it.
pub(crate) struct NewSession {
    pub id: String,
    pub meta: SessionMeta,
    pub started_at_ms: u64,
}

/// What the handles send to the writer.
pub(crate) enum Msg {
    Open {
        handle: u64,
        session: NewSession,
        shared: Arc<Shared>,
        reply: SyncSender<Result<(), RecordingError>>,
    },
    Event {
        handle: u64,
        at_ms: u64,
        event: Event,
    },
    Finish {
        handle: u64,
        outcome: Outcome,
        ended_at_ms: u64,
        /// `None` when a dropped handle finishes the session.
        reply: Option<SyncSender<Result<(), RecordingError>>>,
    },
    Shutdown {
        reply: SyncSender<Result<(), RecordingError>>,
    },
}

/// State shared between a session's handle and the writer.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    failure: OnceLock<String>,
}

impl Shared {
    /// Why recording failed, if it has.
    pub(crate) fn failure(&self) -> Option<&str> {
        self.failure.get().map(String::as_str)
    }
}

/// Where the writer reports each checkpoint it signs, and whether it was written with a session's seal (the gateway
/// writes them to the journal, out of the database's reach).
pub type Anchor = Box<dyn FnMut(&Checkpoint, bool) + Send>;

/// Counters of the ledger's cost, shared with [`Recorder::stats`](crate::Recorder::stats).
#[derive(Debug, Default)]
pub(crate) struct SharedStats {
    pub ledger_entries: AtomicU64,
    pub checkpoints: AtomicU64,
    pub ledger_nanos: AtomicU64,
}

/// The writer's I/O half: everything a flush needs besides the session itself.
struct Sink {
    conn: Connection,
    compressor: Compressor,
    /// The last write error, until a write succeeds again.
    unhealthy: Option<String>,
    key: SigningKey,
    ledger: LedgerWriter,
    last_checkpoint: Instant,
    anchor: Anchor,
    stats: Arc<SharedStats>,
}

impl Sink {
    /// Runs `write` in one transaction; on failure the ledger position is what it was before.
    fn transaction<T>(
        &mut self,
        write: impl FnOnce(
            &rusqlite::Transaction<'_>,
            &mut LedgerWriter,
            &SigningKey,
        ) -> Result<T, RecordingError>,
    ) -> Result<T, RecordingError> {
        let mut ledger = self.ledger;
        let tx = self.conn.transaction()?;
        let value = write(&tx, &mut ledger, &self.key)?;
        tx.commit()?;
        let checkpointed = ledger.checkpoints > self.ledger.checkpoints;
        self.stats
            .ledger_entries
            .fetch_add(ledger.entries - self.ledger.entries, Ordering::Relaxed);
        self.stats.checkpoints.fetch_add(
            ledger.checkpoints - self.ledger.checkpoints,
            Ordering::Relaxed,
        );
        self.stats
            .ledger_nanos
            .fetch_add(ledger.nanos - self.ledger.nanos, Ordering::Relaxed);
        self.ledger = ledger;
        if checkpointed {
            self.last_checkpoint = Instant::now();
        }
        Ok(value)
    }

    /// Signs and stores a checkpoint, and hands it to the anchor.
    fn checkpoint(&mut self) -> Result<(), RecordingError> {
        let checkpoint =
            self.transaction(|tx, ledger, key| ledger.checkpoint(tx, key, unix_now_ms()))?;
        (self.anchor)(&checkpoint, false);
        Ok(())
    }
}

/// One open session inside the writer.
struct Live {
    id: String,
    started_at_ms: u64,
    shared: Arc<Shared>,
    prev_hash: Hash,
    next_seq: u64,
    history: History,
    /// Encoded events of the chunk being filled.
    buf: Vec<u8>,
    /// When the writer put the current chunk's first event in `buf`.
    opened_at: Option<Instant>,
    t_start_ms: u64,
    /// The time of the last event in `buf` (and, after a flush, of the last event written).
    last_at_ms: u64,
    /// Holds typed bytes until the target echoes them (see `echo.rs`); `None` when the recorder keeps all input.
    echo: Option<EchoGate>,
}

impl Live {
    fn failed(&self) -> bool {
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

    fn push(&mut self, sink: &mut Sink, limits: &Limits, at_ms: u64, event: Event) {
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
    fn tick_echo(&mut self, sink: &mut Sink, limits: &Limits) {
        let now = unix_now_ms().saturating_sub(self.started_at_ms);
        if let Some(gated) = self.echo.as_mut().map(|gate| gate.tick(now)) {
            self.push_gated(sink, limits, now, gated);
        }
    }

    /// The session ends: what still waits for an echo is withheld.
    fn finish_echo(&mut self, sink: &mut Sink, limits: &Limits) {
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
    fn flush(&mut self, sink: &mut Sink) {
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
    fn write_end(
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

/// The writer thread's state.
pub(crate) struct Writer {
    sink: Sink,
    limits: Limits,
    sessions: HashMap<u64, Live>,
}

impl Writer {
    pub(crate) fn new(
        conn: Connection,
        key: SigningKey,
        limits: Limits,
        anchor: Anchor,
        stats: Arc<SharedStats>,
    ) -> Result<Writer, RecordingError> {
        Ok(Writer {
            sink: Sink {
                ledger: LedgerWriter::load(&conn)?,
                conn,
                compressor: Compressor::new()?,
                unhealthy: None,
                key,
                last_checkpoint: Instant::now(),
                anchor,
                stats,
            },
            limits,
            sessions: HashMap::new(),
        })
    }

    /// The thread's loop; returns after a shutdown message (or when every handle is gone).
    pub(crate) fn run(mut self, rx: Receiver<Msg>) {
        let tick = self.tick();
        let mut next_sweep = Instant::now() + tick;
        loop {
            match rx.recv_timeout(next_sweep.saturating_duration_since(Instant::now())) {
                Ok(Msg::Shutdown { reply }) => {
                    let _ = reply.send(self.finish_all());
                    return;
                }
                Ok(msg) => self.handle(msg),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    let _ = self.finish_all();
                    return;
                }
            }
            let now = Instant::now();
            if now >= next_sweep {
                self.flush_aged(now);
                self.checkpoint_if_due(now);
                next_sweep = now + tick;
            }
        }
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Open {
                handle,
                session,
                shared,
                reply,
            } => {
                let result = self.open(handle, session, shared);
                let _ = reply.send(result);
            }
            Msg::Event {
                handle,
                at_ms,
                event,
            } => {
                if let Some(live) = self.sessions.get_mut(&handle) {
                    live.push(&mut self.sink, &self.limits, at_ms, event);
                }
            }
            Msg::Finish {
                handle,
                outcome,
                ended_at_ms,
                reply,
            } => {
                let result = self.finish(handle, outcome, ended_at_ms);
                if let Some(reply) = reply {
                    let _ = reply.send(result);
                }
            }
            Msg::Shutdown { reply } => {
                // `run` handles this before calling here; answer anyway rather than leave the caller waiting.
                let _ = reply.send(self.finish_all());
            }
        }
    }

    fn open(
        &mut self,
        handle: u64,
        session: NewSession,
        shared: Arc<Shared>,
    ) -> Result<(), RecordingError> {
        let NewSession {
            id,
            meta,
            started_at_ms,
        } = session;
        let genesis = match insert_session(&mut self.sink, &id, &meta, started_at_ms) {
            Ok(genesis) => genesis,
            Err(error) => {
                self.sink.unhealthy = Some(error.to_string());
                return Err(error);
            }
        };
        self.sink.unhealthy = None;
        let live = Live {
            id,
            started_at_ms,
            shared,
            prev_hash: genesis,
            next_seq: 0,
            history: History::default(),
            buf: Vec::new(),
            opened_at: None,
            t_start_ms: 0,
            last_at_ms: 0,
            echo: self.limits.withhold_unechoed_input.then(EchoGate::default),
        };
        self.sessions.insert(handle, live);
        Ok(())
    }

    fn finish(
        &mut self,
        handle: u64,
        outcome: Outcome,
        ended_at_ms: u64,
    ) -> Result<(), RecordingError> {
        let Some(mut live) = self.sessions.remove(&handle) else {
            // Already ended by a shutdown.
            return Err(RecordingError::Stopped);
        };
        live.finish_echo(&mut self.sink, &self.limits);
        live.flush(&mut self.sink);
        let failure = live.shared.failure().map(str::to_owned);
        let outcome = if failure.is_some() {
            Outcome::Failed
        } else {
            outcome
        };
        let written = live.write_end(&mut self.sink, outcome, ended_at_ms);
        match (failure, written) {
            (Some(why), _) => Err(RecordingError::WriteFailed(why)),
            (None, Err(error)) => {
                self.sink.unhealthy = Some(error.to_string());
                Err(error)
            }
            (None, Ok(())) => Ok(()),
        }
    }

    /// Ends every open session as incomplete; returns the first error.
    fn finish_all(&mut self) -> Result<(), RecordingError> {
        let handles: Vec<u64> = self.sessions.keys().copied().collect();
        let mut first_error = Ok(());
        for handle in handles {
            let result = self.finish(handle, Outcome::Incomplete, unix_now_ms());
            if first_error.is_ok() {
                first_error = result;
            }
        }
        first_error
    }

    /// How often the writer looks at aged chunks, waiting input and the checkpoint.
    fn tick(&self) -> Duration {
        (self.limits.chunk_max_age / 4)
            .min(self.limits.checkpoint_interval / 4)
            .clamp(Duration::from_millis(10), Duration::from_millis(200))
    }

    /// A checkpoint at least every `checkpoint_interval` while anything is recorded (due one tick early, so the
    /// interval holds between ticks). A failure is retried at the
    /// next tick; sessions go on (their chunks are in the ledger, and the next checkpoint covers them).
    fn checkpoint_if_due(&mut self, now: Instant) {
        if self.sink.ledger.dirty()
            && now.duration_since(self.sink.last_checkpoint)
                >= self.limits.checkpoint_interval.saturating_sub(self.tick())
            && let Err(error) = self.sink.checkpoint()
        {
            self.sink.unhealthy = Some(error.to_string());
        }
    }

    fn flush_aged(&mut self, now: Instant) {
        let max_age = self.limits.chunk_max_age;
        for live in self.sessions.values_mut() {
            live.tick_echo(&mut self.sink, &self.limits);
            if live
                .opened_at
                .is_some_and(|t| now.duration_since(t) >= max_age)
            {
                live.flush(&mut self.sink);
            }
        }
    }
}

/// Inserts a session row and its ledger entry, and returns the start of its chain; while unhealthy, also proves
/// that the database takes a sizeable write.
fn insert_session(
    sink: &mut Sink,
    id: &str,
    meta: &SessionMeta,
    started_at_ms: u64,
) -> Result<Hash, RecordingError> {
    let probe = sink.unhealthy.is_some();
    sink.transaction(|tx, ledger, _| {
        tx.execute(
        "INSERT INTO sessions (id, user, target, target_addr, protocol, client_addr, started_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            id,
            meta.user,
            meta.target,
            meta.target_addr,
            meta.protocol,
            meta.client_addr,
            started_at_ms
        ],
    )?;
        if probe {
            tx.execute(
                "INSERT INTO chunks (session_id, seq, t_start_ms, t_end_ms, raw_len, data, hash)
             VALUES (?1, -1, 0, 0, 0, zeroblob(?2), zeroblob(32))",
                params![id, PROBE_BYTES],
            )?;
            tx.execute(
                "DELETE FROM chunks WHERE session_id = ?1 AND seq = -1",
                [id],
            )?;
        }
        let genesis = chain::genesis(&Identity {
            id,
            user: &meta.user,
            target: &meta.target,
            target_addr: &meta.target_addr,
            protocol: &meta.protocol,
            client_addr: &meta.client_addr,
            started_at_ms,
        });
        ledger.append(
            tx,
            unix_now_ms(),
            &Body::Start {
                session: id.to_owned(),
                genesis,
            },
        )?;
        Ok(genesis)
    })
}
