//! The recording source and the background loader: everything that reads the recordings database (listing,
//! indexing, verification, search, decoding, export) runs here, off the draw path, and answers the UI with
//! [`Loaded`] messages.
//!
//! [`Source`] is synchronous and testable on its own; [`spawn`] runs it on a thread that first lists the sessions,
//! then brings the search index up to date, then verifies sessions newest first, answering requests in between.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::time::{Duration, Instant};

use anyhow::Context;
use ed25519_dalek::VerifyingKey;
use sallyport_recordings::{LedgerReport, SearchIndex, SessionHits, SessionRow, Store, TimedEvent};

use crate::desktop::DesktopReplay;
use crate::model::{Integrity, Loaded, Request};
use crate::remote::Remote;

/// At most this many sessions are listed in search results.
pub const MAX_RESULTS: usize = 1000;

/// Where the recordings come from, and what is derived from them.
pub struct Source {
    store: Store,
    index: SearchIndex,
    key: Option<VerifyingKey>,
    /// Where exports are written.
    export_dir: PathBuf,
    /// With `--gateway`: the gateway the mirror (`db`) is refreshed from.
    remote: Option<(Arc<Remote>, PathBuf)>,
    /// The ledger's audit, made at each refresh (with a key).
    ledger: Option<LedgerReport>,
}

/// The default place of the search index for a database: beside it (`NAME.search`) when that directory is
/// writable, else in the user's cache directory.
pub fn default_index_path(db: &Path) -> PathBuf {
    let beside = db.with_extension("search");
    let dir = db
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let writable = std::fs::metadata(dir).is_ok_and(|m| !m.permissions().readonly())
        && std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&beside)
            .is_ok();
    if writable {
        return beside;
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("sallyport-review");
    let canonical = db.canonicalize().unwrap_or_else(|_| db.to_path_buf());
    // FNV-1a of the path names the file, so two databases never share an index.
    let hash = canonical
        .to_string_lossy()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    cache.join(format!("{hash:016x}.search"))
}

/// Reads the appliance's public key: hex text, or a file holding it.
pub fn read_key(text_or_path: &str) -> anyhow::Result<VerifyingKey> {
    let text = if Path::new(text_or_path).exists() {
        std::fs::read_to_string(text_or_path)
            .with_context(|| format!("reading the key file {text_or_path}"))?
    } else {
        text_or_path.to_owned()
    };
    let bytes = hex::decode(text.trim()).context("the key is not hex")?;
    let bytes = <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| anyhow::anyhow!("the key is not 32 bytes"))?;
    VerifyingKey::from_bytes(&bytes).context("the key is not an Ed25519 public key")
}

impl Source {
    /// Opens a recordings database read-only, with its search index (`index`, or in memory when `None`).
    pub fn open(
        db: &Path,
        index: Option<&Path>,
        key: Option<VerifyingKey>,
    ) -> anyhow::Result<Source> {
        let store = Store::open_read_only(db)
            .with_context(|| format!("opening the recordings database {}", db.display()))?;
        let index = match index {
            Some(path) => SearchIndex::open(path)
                .with_context(|| format!("opening the search index {}", path.display()))?,
            None => SearchIndex::open_in_memory()?,
        };
        Ok(Source {
            store,
            index,
            key,
            export_dir: PathBuf::from("."),
            remote: None,
            ledger: None,
        })
    }

    /// Refreshes the mirror at `db` from `remote` before each listing (the `r` key, and the start).
    pub fn with_remote(mut self, remote: Arc<Remote>, db: PathBuf) -> Source {
        self.remote = Some((remote, db));
        self
    }

    /// The recordings store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The sessions, newest first.
    pub fn sessions(&self) -> anyhow::Result<Vec<SessionRow>> {
        Ok(self.store.sessions()?)
    }

    /// Audits the ledger again (the list's integrity column judges sessions with it).
    pub fn audit_ledger(&mut self) -> anyhow::Result<Option<&LedgerReport>> {
        self.ledger = match &self.key {
            Some(key) => Some(self.store.audit_ledger(key, &[])?),
            None => None,
        };
        Ok(self.ledger.as_ref())
    }

    /// What the ledger says of a session, in a few words (to notice when it changed).
    pub fn ledger_signature(&self, id: &str) -> String {
        match &self.ledger {
            Some(report) => format!("{:?}/{}", report.state(id), report.findings_for(id).count()),
            None => String::new(),
        }
    }

    /// Checks one session's chain and seal, and what the ledger says of it.
    pub fn integrity(&self, id: &str) -> Integrity {
        let Some(key) = &self.key else {
            return Integrity::NoKey;
        };
        match self.store.verify(id, key) {
            Ok(v) => match &self.ledger {
                Some(report) => {
                    let findings: Vec<_> = report.findings_for(id).collect();
                    Integrity::judge(&v, report.state(id), &findings)
                }
                None => Integrity::from_verification(&v),
            },
            Err(e) => Integrity::Error(e.to_string()),
        }
    }

    /// Indexes the chunks the search index has not seen.
    pub fn update_index(&mut self) -> anyhow::Result<sallyport_recordings::IndexProgress> {
        Ok(self.index.update(&self.store)?)
    }

    /// Searches the index.
    pub fn search(&self, text: &str) -> anyhow::Result<(Vec<SessionHits>, Duration)> {
        let started = Instant::now();
        let hits = self.index.search(text, MAX_RESULTS)?;
        Ok((hits, started.elapsed()))
    }

    /// A session's events.
    pub fn events(&self, id: &str) -> anyhow::Result<Vec<TimedEvent>> {
        Ok(self.store.events(id)?)
    }

    /// A desktop session's picture at `at_ms` (replayed from the keyframe before it), as PNG.
    pub fn desktop_frame(&self, id: &str, at_ms: u64) -> anyhow::Result<Vec<u8>> {
        let events = self.events(id)?;
        if !DesktopReplay::is_desktop(&events) {
            anyhow::bail!("session {id} is not a desktop session");
        }
        let frames = sallyport_desktop_replay::DesktopReplay::new(&events);
        let image = crate::desktop::frame_at(&frames, at_ms.min(frames.duration_ms()))
            .map_err(|e| anyhow::anyhow!("session {id} does not replay to {at_ms} ms: {e}"))?;
        crate::desktop::encode_png(&image)
    }

    /// Writes a session as asciicast v2 to `out`.
    pub fn export_asciicast(&self, id: &str, out: &mut impl std::io::Write) -> anyhow::Result<()> {
        let row = self
            .store
            .session(id)?
            .ok_or_else(|| anyhow::anyhow!("no session {id}"))?;
        let events = self.events(id)?;
        crate::asciicast::write(out, &row, &events)?;
        Ok(())
    }

    /// Answers one request.
    pub fn handle(&mut self, request: Request) -> Loaded {
        let result = (|| -> anyhow::Result<Loaded> {
            Ok(match request {
                Request::Refresh => {
                    if let Some((remote, db)) = &self.remote {
                        remote
                            .sync(db)
                            .context("bringing the recordings from the gateway")?;
                    }
                    if let Err(e) = self.audit_ledger() {
                        self.ledger = None;
                        return Ok(Loaded::Error(format!(
                            "the ledger could not be audited: {e:#}"
                        )));
                    }
                    Loaded::Sessions(self.sessions()?)
                }
                Request::Search(query) => {
                    let (hits, elapsed) = self.search(&query)?;
                    Loaded::Results {
                        query,
                        hits,
                        elapsed,
                    }
                }
                Request::Open { id, query } => Loaded::Session {
                    events: self.events(&id).map_err(|e| format!("{e:#}")),
                    id,
                    query,
                },
                Request::ExportAsciicast(id) => {
                    let path = self.export_dir.join(format!("{id}.cast"));
                    let mut file = std::io::BufWriter::new(std::fs::File::create(&path)?);
                    self.export_asciicast(&id, &mut file)?;
                    std::io::Write::flush(&mut file)?;
                    Loaded::Exported(path)
                }
                Request::ExportEvidence(id) => {
                    let path = self.export_dir.join(format!("{id}.evidence.json"));
                    std::fs::write(&path, self.store.export_evidence(&id)?)?;
                    Loaded::Exported(path)
                }
                Request::ExportFrame { id, at_ms } => {
                    let png = self.desktop_frame(&id, at_ms)?;
                    let path = self.export_dir.join(format!("{id}-{at_ms}ms.png"));
                    std::fs::write(&path, png)?;
                    Loaded::Exported(path)
                }
            })
        })();
        result.unwrap_or_else(|e| Loaded::Error(format!("{e:#}")))
    }
}

/// Runs `source` on a background thread. Requests go in; answers, index progress and integrity results come out.
/// The thread ends when the request sender is dropped.
pub fn spawn(mut source: Source) -> anyhow::Result<(Sender<Request>, Receiver<Loaded>)> {
    let (request_tx, request_rx) = mpsc::channel::<Request>();
    let (loaded_tx, loaded_rx) = mpsc::channel::<Loaded>();
    std::thread::Builder::new()
        .name("review-loader".into())
        .spawn(move || run(&mut source, &request_rx, &loaded_tx))
        .context("starting the loader thread")?;
    Ok((request_tx, loaded_rx))
}

fn run(source: &mut Source, requests: &Receiver<Request>, out: &Sender<Loaded>) {
    // What each session looked like when it was last verified (chunk count, sealed, what the ledger said).
    let mut verified: HashMap<String, (u64, bool, String)> = HashMap::new();
    let mut to_verify: VecDeque<String> = VecDeque::new();
    let mut pending = VecDeque::from([Request::Refresh]);
    loop {
        let request = match pending.pop_front() {
            Some(r) => Some(r),
            None => match requests.try_recv() {
                Ok(r) => Some(r),
                Err(TryRecvError::Disconnected) => return,
                Err(TryRecvError::Empty) if to_verify.is_empty() => match requests.recv() {
                    Ok(r) => Some(r),
                    Err(_) => return,
                },
                Err(TryRecvError::Empty) => None,
            },
        };
        if let Some(request) = request {
            let refresh = request == Request::Refresh;
            let answer = source.handle(request);
            if refresh && let Loaded::Sessions(rows) = &answer {
                for row in rows {
                    let state = (
                        row.chunk_count,
                        row.sealed,
                        source.ledger_signature(&row.id),
                    );
                    if verified.get(&row.id) != Some(&state) {
                        verified.insert(row.id.clone(), state);
                        to_verify.push_back(row.id.clone());
                    }
                }
            }
            if out.send(answer).is_err() {
                return;
            }
            if refresh {
                let indexed = match source.update_index() {
                    Ok(progress) => Loaded::Indexed(progress),
                    Err(e) => Loaded::Error(format!("indexing failed: {e:#}")),
                };
                if out.send(indexed).is_err() {
                    return;
                }
            }
            continue;
        }
        if let Some(id) = to_verify.pop_front() {
            let integrity = source.integrity(&id);
            if out.send(Loaded::Integrity(id, integrity)).is_err() {
                return;
            }
        }
    }
}
