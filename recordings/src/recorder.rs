//! The recording handles the gateway holds: [`Recorder`] (one per process) and [`SessionRecorder`] (one per session).
//! They only stamp times and pass messages; the writer thread in `writer.rs` does all I/O.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;

use crate::error::{RecordingError, TryRecordError};
use crate::event::Event;
use crate::schema;
use crate::session::{Outcome, SessionMeta, new_session_id, unix_now_ms};
use crate::writer::{Anchor, Msg, NewSession, Shared, SharedStats, Writer};

/// Tuning of the writer. Values outside sane bounds are clamped (see each field).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// A chunk is written once its encoded events reach this size. Clamped to 256 B ..= 4 MiB. Default 256 KiB.
    pub chunk_max_bytes: usize,
    /// A chunk is written once its first event is this old, even if no more events arrive; this bounds what a crash
    /// loses. Clamped to 10 ms ..= 60 s. Default 1 s.
    pub chunk_max_age: Duration,
    /// How many messages may wait for the writer before `record` blocks (backpressure). At least 1. Default 4096.
    pub channel_capacity: usize,
    /// A safety cap on the database's size, in pages (`PRAGMA max_page_count`); writes beyond it fail, which ends
    /// the affected sessions. `None` leaves SQLite's default. Default `None`.
    pub max_db_pages: Option<u64>,
    /// While anything is recorded, the ledger's head is signed at least this often (and at every seal); this bounds
    /// what a crash leaves unvouched. Clamped to 10 ms ..= 1 s. Default 1 s.
    pub checkpoint_interval: Duration,
    /// Typed input is recorded only once the target echoed it; input it never echoed (a password) is recorded as a
    /// count of withheld keystrokes (see `echo.rs`). Default true.
    pub withhold_unechoed_input: bool,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            chunk_max_bytes: 256 * 1024,
            chunk_max_age: Duration::from_secs(1),
            channel_capacity: 4096,
            max_db_pages: None,
            checkpoint_interval: Duration::from_secs(1),
            withhold_unechoed_input: true,
        }
    }
}

impl Limits {
    pub(crate) fn clamped(&self) -> Limits {
        Limits {
            chunk_max_bytes: self.chunk_max_bytes.clamp(256, 4 * 1024 * 1024),
            chunk_max_age: self
                .chunk_max_age
                .clamp(Duration::from_millis(10), Duration::from_secs(60)),
            channel_capacity: self.channel_capacity.max(1),
            max_db_pages: self.max_db_pages,
            checkpoint_interval: self
                .checkpoint_interval
                .clamp(Duration::from_millis(10), Duration::from_secs(1)),
            withhold_unechoed_input: self.withhold_unechoed_input,
        }
    }
}

/// The process's recorder: a handle to one background thread that owns the one writing SQLite connection.
///
/// Cloning is cheap. The thread stops on [`shutdown`](Recorder::shutdown) or when the last handle is dropped; it
/// then flushes every open session, marks it [`Outcome::Incomplete`] and seals it.
#[derive(Clone)]
pub struct Recorder {
    inner: Arc<Inner>,
}

struct Inner {
    tx: SyncSender<Msg>,
    stats: Arc<SharedStats>,
    queue_capacity: usize,
    thread: Mutex<Option<JoinHandle<()>>>,
    next_handle: AtomicU64,
}

impl Inner {
    fn stop(&self) -> Result<(), RecordingError> {
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        let Some(thread) = thread else { return Ok(()) };
        let (reply, answer) = mpsc::sync_channel(1);
        let result = match self.tx.send(Msg::Shutdown { reply }) {
            Ok(()) => answer.recv().unwrap_or(Err(RecordingError::Stopped)),
            Err(_) => Err(RecordingError::Stopped),
        };
        thread.join().map_err(|_| RecordingError::ThreadPanicked)?;
        result
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Nobody is left to hear about a failed final flush; the sessions' own handles already reported failures.
        let _ = self.stop();
    }
}

impl Recorder {
    /// Opens (creating if needed) the database at `db_path`, applies migrations, and starts the writer thread.
    /// `signing_key` seals finished sessions.
    pub fn start(
        db_path: &Path,
        signing_key: SigningKey,
        limits: Limits,
    ) -> Result<Recorder, RecordingError> {
        Recorder::start_anchored(db_path, signing_key, limits, Box::new(|_, _| {}))
    }

    /// Like [`start`](Self::start), and hands every checkpoint the writer signs to `anchor` (the gateway writes
    /// them to the journal, where whoever can rewrite the database cannot rewrite them).
    pub fn start_anchored(
        db_path: &Path,
        signing_key: SigningKey,
        limits: Limits,
        anchor: Anchor,
    ) -> Result<Recorder, RecordingError> {
        let limits = limits.clamped();
        let stats = Arc::new(SharedStats::default());
        let conn = schema::open_read_write(db_path)?;
        if let Some(pages) = limits.max_db_pages {
            conn.pragma_update(None, "max_page_count", pages)?;
        }
        let limits_capacity = limits.channel_capacity;
        let (tx, rx) = mpsc::sync_channel(limits.channel_capacity);
        let writer = Writer::new(conn, signing_key, limits, anchor, Arc::clone(&stats))?;
        let thread = std::thread::Builder::new()
            .name("sallyport-recorder".into())
            .spawn(move || writer.run(rx))
            .map_err(RecordingError::Thread)?;
        Ok(Recorder {
            inner: Arc::new(Inner {
                tx,
                stats,
                queue_capacity: limits_capacity,
                thread: Mutex::new(Some(thread)),
                next_handle: AtomicU64::new(0),
            }),
        })
    }

    /// Starts recording a session: stores its row and waits for the writer to confirm. An error means the session
    /// must be refused (fail closed).
    pub fn open_session(&self, meta: SessionMeta) -> Result<SessionRecorder, RecordingError> {
        let id = new_session_id()?;
        let started_at_ms = unix_now_ms();
        let opened = Instant::now();
        let handle = self.inner.next_handle.fetch_add(1, Ordering::Relaxed);
        let shared = Arc::new(Shared::default());
        let (reply, answer) = mpsc::sync_channel(1);
        let session = NewSession {
            id: id.clone(),
            meta,
            started_at_ms,
        };
        self.inner
            .tx
            .send(Msg::Open {
                handle,
                session,
                shared: Arc::clone(&shared),
                reply,
            })
            .map_err(|_| RecordingError::Stopped)?;
        answer.recv().map_err(|_| RecordingError::Stopped)??;
        Ok(SessionRecorder {
            handle,
            id,
            started_at_ms,
            opened,
            tx: self.inner.tx.clone(),
            stats: Arc::clone(&self.inner.stats),
            shared,
            finished: false,
        })
    }

    /// What the ledger has cost so far.
    pub fn stats(&self) -> RecorderStats {
        let stats = &self.inner.stats;
        RecorderStats {
            ledger_entries: stats.ledger_entries.load(Ordering::Relaxed),
            checkpoints: stats.checkpoints.load(Ordering::Relaxed),
            ledger_seconds: stats.ledger_nanos.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }

    /// The writer's backlog and health now: for the admin dashboard.
    pub fn health(&self) -> RecorderHealth {
        let stats = &self.inner.stats;
        RecorderHealth {
            queued_events: stats.queued_events.load(Ordering::Relaxed),
            queue_capacity: self.inner.queue_capacity,
            failing: stats
                .failing
                .load(Ordering::Relaxed)
                .then(|| {
                    stats
                        .failure
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .clone()
                })
                .flatten(),
        }
    }

    /// Stops the writer: flushes every session, ends the open ones as [`Outcome::Incomplete`] and seals them, and
    /// waits for the thread. Other clones of this handle, and session handles, get [`RecordingError::Stopped`]
    /// afterwards. An error reports a failed final write.
    pub fn shutdown(self) -> Result<(), RecordingError> {
        self.inner.stop()
    }
}

/// The ledger's cost, from [`Recorder::stats`]: for metrics and benchmarks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RecorderStats {
    /// Ledger entries written (checkpoints included).
    pub ledger_entries: u64,
    /// Checkpoints signed.
    pub checkpoints: u64,
    /// Time the writer spent hashing, signing and inserting ledger entries.
    pub ledger_seconds: f64,
}

/// The writer's backlog and health, from [`Recorder::health`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecorderHealth {
    /// Events handed to the writer and not yet taken up by it.
    pub queued_events: u64,
    /// How many events the queue holds before recording waits (sessions then slow down).
    pub queue_capacity: usize,
    /// The writer's last write failed, with these words (sessions are refused or ended until a write
    /// succeeds again).
    pub failing: Option<String>,
}

/// The recorder of one session. Send it to (or share it with) the task that relays the session.
///
/// Dropping it without [`finish`](SessionRecorder::finish) ends the recording as [`Outcome::Incomplete`], keeping
/// every event recorded so far.
pub struct SessionRecorder {
    handle: u64,
    id: String,
    started_at_ms: u64,
    opened: Instant,
    tx: SyncSender<Msg>,
    stats: Arc<SharedStats>,
    shared: Arc<Shared>,
    finished: bool,
}

impl SessionRecorder {
    /// The session's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// When the session started, in Unix milliseconds.
    pub fn started_at_ms(&self) -> u64 {
        self.started_at_ms
    }

    /// Records an event, stamped with the time since the session opened. Blocks while the writer's queue is full.
    /// An error means recording has failed and the session must end.
    pub fn record(&self, event: Event) -> Result<(), RecordingError> {
        self.sink().record(event)
    }

    /// Records an event without blocking: a full queue gives the event back.
    pub fn try_record(&self, event: Event) -> Result<(), TryRecordError> {
        self.sink().try_record(event)
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// A handle that records into this session from another thread or task (a protocol's decoder task).
    /// Events it sends after [`finish`](Self::finish) are dropped.
    pub fn sink(&self) -> EventSink {
        EventSink {
            handle: self.handle,
            opened: self.opened,
            tx: self.tx.clone(),
            stats: self.stats.clone(),
            shared: self.shared.clone(),
        }
    }

    /// Ends the recording: writes the last chunk, the end time and `outcome`, and seals it; waits for the writer.
    /// If recording had failed earlier, the session is stored as [`Outcome::Failed`] and that failure is returned.
    pub fn finish(mut self, outcome: Outcome) -> Result<(), RecordingError> {
        self.finished = true;
        let (reply, answer) = mpsc::sync_channel(1);
        let msg = Msg::Finish {
            handle: self.handle,
            outcome,
            ended_at_ms: self.started_at_ms.saturating_add(self.elapsed_ms()),
            reply: Some(reply),
        };
        self.tx.send(msg).map_err(|_| RecordingError::Stopped)?;
        answer.recv().map_err(|_| RecordingError::Stopped)?
    }
}

/// Records events of one session; made by [`SessionRecorder::sink`], cheap to clone.
#[derive(Clone)]
pub struct EventSink {
    handle: u64,
    opened: Instant,
    tx: SyncSender<Msg>,
    /// Counts the events in the writer's queue (counted before sending, so the writer never takes
    /// one off before it was counted).
    stats: Arc<SharedStats>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for EventSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventSink")
            .field("handle", &self.handle)
            .finish_non_exhaustive()
    }
}

impl EventSink {
    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn check(&self) -> Result<(), RecordingError> {
        match self.shared.failure() {
            Some(why) => Err(RecordingError::WriteFailed(why.to_owned())),
            None => Ok(()),
        }
    }

    /// Records an event, stamped with the time since the session opened. Blocks while the writer's queue is full.
    /// An error means recording has failed and the session must end.
    pub fn record(&self, event: Event) -> Result<(), RecordingError> {
        self.check()?;
        let msg = Msg::Event {
            handle: self.handle,
            at_ms: self.elapsed_ms(),
            event,
        };
        self.stats.queued_events.fetch_add(1, Ordering::Relaxed);
        self.tx.send(msg).map_err(|_| {
            self.stats.queued_events.fetch_sub(1, Ordering::Relaxed);
            RecordingError::Stopped
        })
    }

    /// Records an event without blocking: a full queue gives the event back.
    pub fn try_record(&self, event: Event) -> Result<(), TryRecordError> {
        self.check().map_err(TryRecordError::Failed)?;
        let msg = Msg::Event {
            handle: self.handle,
            at_ms: self.elapsed_ms(),
            event,
        };
        self.stats.queued_events.fetch_add(1, Ordering::Relaxed);
        let sent = self.tx.try_send(msg);
        if sent.is_err() {
            self.stats.queued_events.fetch_sub(1, Ordering::Relaxed);
        }
        match sent {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(Msg::Event { event, .. })) => Err(TryRecordError::Full(event)),
            Err(_) => Err(TryRecordError::Failed(RecordingError::Stopped)),
        }
    }
}

impl Drop for SessionRecorder {
    fn drop(&mut self) {
        if !self.finished {
            let msg = Msg::Finish {
                handle: self.handle,
                outcome: Outcome::Incomplete,
                ended_at_ms: self.started_at_ms.saturating_add(self.elapsed_ms()),
                reply: None,
            };
            // A stopped writer has already ended this session as incomplete.
            let _ = self.tx.send(msg);
        }
    }
}

impl std::fmt::Debug for SessionRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionRecorder")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder").finish_non_exhaustive()
    }
}
