//! A target connection lost in the middle of a session ends that session with an error the user can
//! read (not a silent close), a close frame, and a recording that says why; the gateway keeps serving.

use std::process::Command;
use std::time::Duration;

use anyhow::{Result, bail};
use sallyport_e2e::portal::{Terminal, eventually, login_admin, target_id};
use sallyport_e2e::{
    Gateway, GatewayOptions, Sshd, SshdOptions, TargetNet, ensure_test_user, require_root,
};
use sallyport_recordings::{Event, Outcome, Store};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_lost_mid_session_is_reported_and_recorded() -> Result<()> {
    require_root()?;
    let net = TargetNet::create("lost")?;
    let user = ensure_test_user()?;
    let sshd = Sshd::start(&net, SshdOptions::default())?;
    let gateway = Gateway::start(GatewayOptions::for_net(&net)).await?;
    let client = login_admin(&gateway).await?;
    let alpha = target_id(&client, "alpha").await?;
    let mut terminal = Terminal::open(&client, alpha, &user.name, &user.password).await?;
    terminal.expect_connected().await?;
    terminal.type_text("echo before-$((1+1))\r").await?;
    assert!(
        terminal
            .read_until(Duration::from_secs(10), |r| r.output.contains("before-2"))
            .await?
    );

    // Kill the target's per-connection sshd processes (children of the listening sshd we started), so
    // the TCP connection ends without an SSH goodbye.
    let listener = sshd
        .pid()
        .ok_or_else(|| anyhow::anyhow!("sshd is not running"))?;
    // Every process below the listener: the privileged monitor and the user's session process both hold
    // the connection's socket.
    let pids: Vec<String> = sallyport_e2e::common::descendants(listener)
        .iter()
        .map(u32::to_string)
        .collect();
    if pids.is_empty() {
        bail!("found no per-connection sshd under pid {listener}");
    }
    Command::new("kill").arg("-KILL").args(&pids).status()?;

    let (kind, message) = terminal.expect_error().await?;
    assert!(
        kind.starts_with("target_"),
        "unexpected error kind {kind}: {message}"
    );
    terminal
        .read_until(Duration::from_secs(5), |r| r.close_frame)
        .await?;
    assert!(
        terminal.received.close_frame,
        "no close frame after the target was lost"
    );

    let store = Store::open_read_only(&gateway.recordings_db())?;
    let session = eventually(
        Duration::from_secs(10),
        "the failed session to be sealed",
        || {
            store
                .sessions()
                .ok()?
                .into_iter()
                .find(|s| s.target == "alpha" && s.sealed)
        },
    )
    .await?;
    assert_eq!(session.outcome, Some(Outcome::Failed));
    let ended = store
        .events(&session.id)?
        .into_iter()
        .any(|e| matches!(e.event, Event::Marker(ref m) if m.starts_with("session ended")));
    assert!(ended, "the recording does not say how the session ended");
    assert_eq!(
        client.get("/targets").await?.status,
        200,
        "the portal stopped serving"
    );
    Ok(())
}
