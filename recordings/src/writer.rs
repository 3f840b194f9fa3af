//! The writer thread: owns the one writing SQLite connection and one zstd context, buffers each session's events
//! into chunks, and writes each chunk (with its chain hash) in its own transaction.
//!
//! A chunk is written when its encoded events reach `chunk_max_bytes`, when its first event is `chunk_max_age` old
//! (checked on a tick, so an idle session's last keystrokes still reach the disk), and when the session finishes.
//! A session whose write fails is marked failed: its handle's next `record` returns the error (fail closed), its
//! later events are dropped, and it ends as [`Outcome::Failed`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use rusqlite::{Connection, params};

use crate::chain::{self, Hash};
use crate::codec::{Compressor, History};
use crate::echo::EchoGate;
use crate::error::RecordingError;
use crate::event::Event;
use crate::ledger::{Body, Checkpoint, LedgerWriter};
use crate::recorder::Limits;
use crate::session::{Identity, Outcome, SessionMeta, unix_now_ms};

mod live;

use live::Live;

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
    /// Events handed to the writer's queue and not yet taken off it (the recording backlog).
    pub queued_events: AtomicU64,
    /// Whether the writer's last write failed (its words in `failure`).
    pub failing: AtomicBool,
    pub failure: Mutex<Option<String>>,
}

impl SharedStats {
    /// Publishes the writer's health after a message, taking the lock only when it changed.
    fn set_health(&self, unhealthy: Option<&String>) {
        if self.failing.load(Ordering::Relaxed) == unhealthy.is_some() {
            return;
        }
        *self
            .failure
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = unhealthy.cloned();
        self.failing.store(unhealthy.is_some(), Ordering::Relaxed);
    }
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
                Ok(msg) => {
                    if matches!(msg, Msg::Event { .. }) {
                        self.sink
                            .stats
                            .queued_events
                            .fetch_sub(1, Ordering::Relaxed);
                    }
                    self.handle(msg);
                    self.sink.stats.set_health(self.sink.unhealthy.as_ref());
                }
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
