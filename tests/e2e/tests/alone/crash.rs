//! Crash safety: SIGKILL the gateway during a busy session, restart it, and find both databases
//! consistent, the recording readable up to about a second before the kill, marked incomplete and
//! sealed, and the whole database verifying with the session "recovered after a crash" in the ledger.
//! And the attacker's version: while the gateway is down, the session's last two chunks (covered by a
//! signed checkpoint) are cut and the session row's totals fixed to match; after the restart the
//! session is reported damaged, not sealed, and the gateway's audit log says so.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail, ensure};
use sallyport_e2e::portal::{Terminal, login_admin, target_id, verifying_key};
use sallyport_e2e::{
    Gateway, GatewayOptions, Sshd, SshdOptions, TargetNet, ensure_test_user, require_root,
};
use sallyport_recordings::{Event, LedgerState, Outcome, Store, Verification};

/// How much of the recording's end a crash may lose (the chunk interval and the checkpoint interval are one
/// second; this allows for the writer's tick and scheduling on a busy machine).
const LOSS_BOUND_MS: u64 = 2000;

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A gateway killed with SIGKILL during a session, not restarted yet. Dropped gateway first, then the target.
struct Crashed {
    gateway: Gateway,
    _sshd: Sshd,
    _net: TargetNet,
    /// When the kill was sent (Unix milliseconds).
    killed_at: u64,
}

/// How the session looks when the gateway is killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AtKill {
    /// Output flowing as fast as the PTY takes it.
    Busy,
    /// The busy loop interrupted and the shell idle for a few seconds, so that the last chunks are written
    /// and a signed checkpoint covers them.
    Settled,
}

/// Starts a target and a gateway, runs a busy session for about two seconds after it got going, and
/// SIGKILLs the gateway (busy, or after the session settled).
async fn crash_during_a_session(tag: &str, at_kill: AtKill) -> Result<Crashed> {
    require_root()?;
    let net = TargetNet::create(tag)?;
    let user = ensure_test_user()?;
    let sshd = Sshd::start(&net, SshdOptions::default())?;
    let mut gateway = Gateway::start(GatewayOptions::for_net(&net)).await?;
    let client = login_admin(&gateway).await?;
    let alpha = target_id(&client, "alpha").await?;
    let mut terminal = Terminal::open(&client, alpha, &user.name, &user.password).await?;
    terminal.expect_connected().await?;

    // A busy session: numbered lines as fast as the PTY takes them, bounded in count.
    terminal
        .type_text("for i in $(seq 1 3000000); do echo busy-line-$i; done\r")
        .await?;
    let busy = terminal
        .read_until(Duration::from_secs(20), |r| {
            r.output.matches("busy-line-").count() > 2000
        })
        .await?;
    if !busy {
        bail!(
            "the session never got busy: {:?}",
            &terminal
                .received
                .output
                .chars()
                .take(500)
                .collect::<String>()
        );
    }
    // Keep it flowing for two seconds so several chunks are written.
    let _ = terminal
        .read_until(Duration::from_secs(2), |_| false)
        .await?;
    if at_kill == AtKill::Settled {
        // Ctrl-C ends the loop; a command whose output differs from its echo proves the shell is back.
        terminal.type_text("\x03").await?;
        terminal.type_text("echo settled-$((40+2))\r").await?;
        terminal
            .read_bulk_until("settled-42", Duration::from_secs(30))
            .await
            .context("the shell did not come back after Ctrl-C")?;
        // The writer flushes an open chunk after a second and signs a checkpoint at least every second while
        // anything was recorded: after three quiet seconds every chunk is written and vouched for.
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let killed_at = unix_ms();
    gateway.kill_9()?;
    drop(terminal);
    Ok(Crashed {
        gateway,
        _sshd: sshd,
        _net: net,
        killed_at,
    })
}

/// Both databases pass SQLite's own integrity check.
fn integrity_checks(gateway: &Gateway, store: &Store) -> Result<()> {
    ensure!(
        store.integrity_check()?,
        "recordings.db failed PRAGMA integrity_check"
    );
    let state = open_state_db(gateway)?;
    let state_check: String = state.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    ensure!(
        state_check == "ok",
        "state.db failed PRAGMA integrity_check: {state_check}"
    );
    Ok(())
}

fn open_state_db(gateway: &Gateway) -> Result<rusqlite::Connection> {
    Ok(rusqlite::Connection::open_with_flags(
        gateway.state_db(),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?)
}

/// The gateway's audit events about recordings (`recording_*`): kind, session id, detail.
fn recording_audit(gateway: &Gateway) -> Result<Vec<(String, Option<String>, String)>> {
    let state = open_state_db(gateway)?;
    let mut stmt = state.prepare(
        "SELECT kind, session_id, coalesce(detail, '') FROM audit_events
         WHERE kind LIKE 'recording\\_%' ESCAPE '\\' ORDER BY at_ms, rowid",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The ledger's findings, one a line, for failure messages.
fn findings_text(v: &sallyport_recordings::DatabaseVerification) -> String {
    if v.ledger.findings.is_empty() {
        return "(no findings)".into();
    }
    v.ledger
        .findings
        .iter()
        .map(|f| format!("  {f}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_a_busy_session_loses_at_most_about_a_second() -> Result<()> {
    let _alone = crate::ALONE.lock().await;
    let mut crashed = crash_during_a_session("crash", AtKill::Busy).await?;
    let killed_at = crashed.killed_at;
    let gateway = &mut crashed.gateway;

    gateway.restart().await?;
    let store = Store::open_read_only(&gateway.recordings_db())?;
    integrity_checks(gateway, &store)?;

    let sessions = store.sessions()?;
    let session = sessions
        .iter()
        .find(|s| s.target == "alpha")
        .ok_or_else(|| anyhow::anyhow!("no recording: {sessions:?}"))?;
    assert_eq!(session.outcome, Some(Outcome::Incomplete), "{session:?}");
    assert!(
        session.sealed,
        "recovered session was not sealed: {session:?}"
    );
    let key = verifying_key(gateway)?;
    match store.verify(&session.id, &key)? {
        Verification::Intact { chunks } => assert!(chunks >= 2, "only {chunks} chunks"),
        other => bail!("recovered recording does not verify: {other:?}"),
    }
    let events = store.events(&session.id)?;
    let last_output = events
        .iter()
        .rev()
        .find(|e| matches!(e.event, Event::Output(_)))
        .map(|e| e.at_ms);
    let Some(last_output) = last_output else {
        bail!("no output was recorded")
    };
    let lost_ms = killed_at.saturating_sub(session.started_at_ms + last_output);
    eprintln!(
        "recording ends {lost_ms} ms before the kill ({} events, {} chunks)",
        events.len(),
        session.chunk_count
    );
    assert!(
        lost_ms <= LOSS_BOUND_MS,
        "the recording stops {lost_ms} ms before the kill; at most about one second may be lost"
    );

    // The whole database verifies, and the ledger says how the session ended and how much of it no checkpoint
    // made before the crash covers.
    let v = store.verify_database(&key, &[])?;
    assert!(
        v.is_clean(),
        "the database does not verify after crash recovery:\n{}",
        findings_text(&v)
    );
    assert!(v.session_ok(&session.id), "{}", findings_text(&v));
    let state = v
        .ledger
        .state(&session.id)
        .with_context(|| format!("the ledger does not know session {}", session.id))?;
    let LedgerState::Recovered {
        chunks,
        unvouched_chunks,
        unvouched_ms,
    } = *state
    else {
        bail!("the ledger says {state:?} of the session, not recovered after a crash");
    };
    let said = state.to_string();
    eprintln!(
        "ledger: {said} ({chunks} chunks; the recording's end is {lost_ms} ms before the kill)"
    );
    assert!(
        said.starts_with("recovered after a crash"),
        "the ledger state reads {said:?}"
    );
    assert_eq!(
        chunks, session.chunk_count,
        "the ledger's seal covers {chunks} chunks, the session has {}",
        session.chunk_count
    );
    assert!(
        unvouched_chunks <= chunks,
        "{unvouched_chunks} unvouched chunks of {chunks}"
    );
    if unvouched_chunks == 0 {
        assert_eq!(
            unvouched_ms, 0,
            "no chunk after the last checkpoint, yet {unvouched_ms} ms unvouched"
        );
    }
    // Checkpoints are signed at least every second while recording, so what no checkpoint covers is at most
    // about a second of the recording's end; the recording itself ends at most LOSS_BOUND_MS before the kill.
    assert!(
        unvouched_ms <= LOSS_BOUND_MS,
        "{unvouched_ms} ms of the recording came after the last checkpoint; checkpoints are signed every second"
    );

    // The gateway audited the recovery, and nothing else about recordings.
    let audit = recording_audit(gateway)?;
    eprintln!("recording audit events: {audit:?}");
    assert!(
        audit.iter().any(
            |(kind, id, _)| kind == "recording_recovered" && id.as_deref() == Some(&session.id)
        ),
        "no recording_recovered audit event for {}: {audit:?}",
        session.id
    );
    assert!(
        audit
            .iter()
            .all(|(kind, _, _)| kind == "recording_recovered"),
        "unexpected recording audit events: {audit:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_cut_while_the_gateway_is_down_are_reported_not_sealed() -> Result<()> {
    let _alone = crate::ALONE.lock().await;
    let mut crashed = crash_during_a_session("crcut", AtKill::Settled).await?;
    let gateway = &mut crashed.gateway;
    let key = verifying_key(gateway)?;

    // The attacker's view: one open session, its chunks, and how far the last checkpoint reaches.
    let (id, chunk_count, vouched) = {
        let store = Store::open_read_only(&gateway.recordings_db())?;
        let sessions = store.sessions()?;
        let [session] = sessions.as_slice() else {
            bail!("expected one session, found {sessions:?}");
        };
        ensure!(
            !session.sealed && session.ended_at_ms.is_none(),
            "the session was ended before the kill: {session:?}"
        );
        let report = store.audit_ledger(&key, &[])?;
        ensure!(
            report.is_clean(),
            "the ledger has findings before anything was cut: {:?}",
            report.findings
        );
        (session.id.clone(), session.chunk_count, report.vouched)
    };
    ensure!(
        chunk_count >= 4,
        "only {chunk_count} chunks were written; the test cuts two and keeps at least two"
    );
    let cut_from = chunk_count - 2;
    {
        let db = rusqlite::Connection::open(gateway.recordings_db())?;
        // The chunks to cut are covered by the last checkpoint signed before the crash.
        let last_entry: Option<i64> = db.query_row(
            "SELECT max(seq) FROM ledger WHERE session_id = ?1 AND chunk_seq >= ?2",
            rusqlite::params![id, cut_from],
            |r| r.get(0),
        )?;
        let last_entry = last_entry.context("the ledger has no entries for the last chunks")?;
        eprintln!(
            "cutting chunks {cut_from}..{chunk_count}; their last ledger entry is {last_entry}, the last \
             checkpoint covers entries below {vouched}"
        );
        ensure!(
            u64::try_from(last_entry)? < vouched,
            "the last chunks (ledger entry {last_entry}) are not covered by the last checkpoint (entries below \
             {vouched})"
        );
        let tx = db.unchecked_transaction()?;
        let cut = tx.execute(
            "DELETE FROM chunks WHERE session_id = ?1 AND seq >= ?2",
            rusqlite::params![id, cut_from],
        )?;
        ensure!(cut == 2, "deleted {cut} chunks, not 2");
        tx.execute(
            "UPDATE sessions SET
                 chunk_count = (SELECT count(*) FROM chunks WHERE session_id = ?1),
                 bytes_raw = (SELECT coalesce(sum(raw_len), 0) FROM chunks WHERE session_id = ?1),
                 bytes_stored = (SELECT coalesce(sum(length(data)), 0) FROM chunks WHERE session_id = ?1)
             WHERE id = ?1",
            [&id],
        )?;
        tx.commit()?;
    }
    // Without the ledger this would pass: the session's own chain is whole over the chunks that are left.
    {
        let store = Store::open_read_only(&gateway.recordings_db())?;
        let left = store.verify(&id, &key)?;
        ensure!(
            left == Verification::Unsealed {
                chunks: chunk_count - 2
            },
            "after the cut, the session's own chain says {left:?}"
        );
    }

    gateway.restart().await?;
    let store = Store::open_read_only(&gateway.recordings_db())?;
    integrity_checks(gateway, &store)?;
    let session = store
        .session(&id)?
        .with_context(|| format!("session {id} is gone after the restart"))?;
    assert!(
        !session.sealed,
        "recovery sealed a session whose chunks were cut: {session:?}"
    );
    let v = store.verify_database(&key, &[])?;
    eprintln!("findings after the restart:\n{}", findings_text(&v));
    assert!(
        !v.session_ok(&id),
        "the cut session passes verification:\n{}",
        findings_text(&v)
    );
    assert!(!v.is_clean(), "the database verifies clean after the cut");
    match v.ledger.state(&id) {
        Some(LedgerState::Damaged { reason }) => eprintln!("ledger: damaged: {reason}"),
        other => bail!(
            "the ledger says {other:?} of the cut session, not damaged:\n{}",
            findings_text(&v)
        ),
    }
    assert!(
        v.ledger.findings_for(&id).next().is_some(),
        "no finding names the cut session"
    );

    let audit = recording_audit(gateway)?;
    eprintln!("recording audit events: {audit:?}");
    assert!(
        audit
            .iter()
            .any(|(kind, sid, _)| kind == "recording_damaged" && sid.as_deref() == Some(&id)),
        "no recording_damaged audit event for {id}: {audit:?}"
    );
    assert!(
        audit
            .iter()
            .any(|(kind, sid, detail)| kind == "recording_tampered"
                && sid.as_deref() == Some(&id)
                && detail.contains(&format!("chunk {cut_from}"))),
        "no recording_tampered audit event names chunk {cut_from} of {id}: {audit:?}"
    );
    assert!(
        !audit
            .iter()
            .any(|(kind, sid, _)| kind == "recording_recovered" && sid.as_deref() == Some(&id)),
        "the cut session was audited as recovered: {audit:?}"
    );
    Ok(())
}
