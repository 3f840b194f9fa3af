//! The recordings database at start: crash recovery with the ledger (what it sealed, what it found damaged, and any
//! tampering the audit saw, all audited), and the recorder started with the journal as the ledger's anchor.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use ed25519_dalek::SigningKey;
use sallyport_recordings::{Checkpoint, Limits, Recorder, Store};
use sallyport_state::{AuditEvent, StateDb};
use tracing::{error, info, warn};

/// Checkpoints go to the journal at every seal and at least this often while anything is recorded, so that a copy
/// of the ledger's head lives where whoever can rewrite the database file cannot reach it.
const ANCHOR_INTERVAL: Duration = Duration::from_secs(60);

fn audit(state: &StateDb, kind: &str, session_id: Option<&str>, detail: String) {
    let event = AuditEvent {
        kind: kind.to_owned(),
        actor: None,
        client_addr: None,
        target: None,
        session_id: session_id.map(str::to_owned),
        detail: Some(detail),
    };
    if let Err(e) = state.audit(sallyport_relay::now_ms(), &event) {
        warn!(error = %e, "could not store an audit event");
    }
}

/// Recovers what a crash left open (see `sallyport_recordings::ledger`) and reports it.
pub fn recover(state: &StateDb, path: &Path, key: &SigningKey) -> anyhow::Result<()> {
    let recovery = Store::open(path)
        .and_then(|store| store.recover_unfinished(key))
        .context("recovering unfinished recordings")?;
    for finding in &recovery.findings {
        error!(target: "audit", kind = "recording_tampered", %finding, "the recordings ledger shows tampering");
        audit(
            state,
            "recording_tampered",
            finding.session.as_deref(),
            finding.to_string(),
        );
    }
    for session in &recovery.recovered {
        let detail = format!(
            "recovered after a crash, {} ms after the last checkpoint ({} chunks written after it)",
            session.unvouched_ms, session.unvouched_chunks
        );
        warn!(target: "audit", kind = "recording_recovered", session_id = %session.id, %detail, "a session left unfinished by a crash was sealed");
        audit(state, "recording_recovered", Some(&session.id), detail);
    }
    for (id, reason) in &recovery.damaged {
        error!(target: "audit", kind = "recording_damaged", session_id = %id, %reason, "a session left unfinished disagrees with the ledger and was not sealed");
        audit(state, "recording_damaged", Some(id), reason.clone());
    }
    Ok(())
}

/// Starts the recorder; checkpoints are written to the journal as `ledger_checkpoint` lines holding the file an
/// auditor can check a database against (`sallyport-review verify --checkpoint FILE DB`).
pub fn start_recorder(path: &Path, key: SigningKey, limits: Limits) -> anyhow::Result<Recorder> {
    let mut last: Option<std::time::Instant> = None;
    let anchor = Box::new(move |checkpoint: &Checkpoint, at_seal: bool| {
        if at_seal || last.is_none_or(|at| at.elapsed() >= ANCHOR_INTERVAL) {
            last = Some(std::time::Instant::now());
            info!(target: "audit", kind = "ledger_checkpoint", checkpoint = %checkpoint.to_file(), "recordings ledger checkpoint");
        }
    });
    Recorder::start_anchored(path, key, limits, anchor).context("starting the recorder")
}
