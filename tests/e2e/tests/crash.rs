//! Crash safety: SIGKILL the gateway during a busy session, restart it, and find both databases
//! consistent and the recording readable up to about a second before the kill, marked incomplete and
//! sealed.

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Result, bail};
use sallyport_e2e::{
    Gateway, GatewayOptions, Sshd, SshdOptions, TargetNet, ensure_test_user, require_root,
};
use sallyport_recordings::{Event, Outcome, Store, Verification};
use support::{Terminal, login_admin, target_id, verifying_key};

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_a_busy_session_loses_at_most_about_a_second() -> Result<()> {
    require_root()?;
    let net = TargetNet::create("crash")?;
    let user = ensure_test_user()?;
    let _sshd = Sshd::start(&net, SshdOptions::default())?;
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
    // Keep it flowing for two seconds so several chunks are written, then kill.
    let _ = terminal
        .read_until(Duration::from_secs(2), |_| false)
        .await?;
    let killed_at = unix_ms();
    gateway.kill_9()?;
    drop(terminal);

    gateway.restart().await?;
    let store = Store::open_read_only(&gateway.recordings_db())?;
    assert!(
        store.integrity_check()?,
        "recordings.db failed PRAGMA integrity_check"
    );
    let state = rusqlite::Connection::open_with_flags(
        gateway.state_db(),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?;
    let state_check: String = state.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    assert_eq!(state_check, "ok", "state.db failed PRAGMA integrity_check");

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
    match store.verify(&session.id, &verifying_key(&gateway)?)? {
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
    // The chunk interval is one second; allow for the writer's tick and scheduling on a busy machine.
    assert!(
        lost_ms <= 2000,
        "the recording stops {lost_ms} ms before the kill; at most about one second may be lost"
    );
    Ok(())
}
