//! A `sallyport ssh` session survives a change of the client's address: mid-session the CLI moves its
//! connection to a new UDP socket (SIGUSR1 does what a change of network does), the gateway follows
//! the new address (QUIC connection migration), and the terminal goes on in the same recorded session
//! without a word about it.

use std::time::Duration;

use anyhow::{Context, Result};
use rexpect_nix::sys::signal::Signal;
use sallyport_e2e::cli::{Cli, exit_code};
use sallyport_e2e::portal::{ADMIN_PASSWORD, eventually, login_admin};
use sallyport_e2e::{
    Gateway, GatewayOptions, Sshd, SshdOptions, TargetNet, ensure_test_user, require_root,
};
use sallyport_recordings::{Event, Store};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_survives_a_change_of_the_client_address() -> Result<()> {
    require_root()?;
    let net = TargetNet::create("clm")?;
    let user = ensure_test_user()?;
    let _sshd = Sshd::start(&net, SshdOptions::default())?;
    let gateway = Gateway::start(GatewayOptions::for_net(&net)).await?;
    login_admin(&gateway).await?;
    let cli = Cli::new(&gateway)?;
    cli.login(&gateway, "admin", ADMIN_PASSWORD)?;

    let mut ssh = cli.spawn(&["ssh", &format!("{}@alpha", user.name)])?;
    ssh.exp_string("password: ")?;
    ssh.send_line(&user.password)?;
    ssh.send_line("echo before-$((1+1))")?;
    ssh.exp_string("before-2")?;
    for round in 1..=3 {
        // The pseudo-terminal's own child is the `sallyport` process (no shell between), and only this test's:
        // other scenarios in the executable run their own CLIs beside it.
        ssh.process_mut()
            .signal(Signal::SIGUSR1)
            .context("SIGUSR1 to the sallyport process")?;
        let command = format!("echo after-{round}-$((40+2))");
        ssh.send_line(&command)?;
        // Nothing but the command's own output: no error, no reconnect message.
        let seen = ssh.exp_string(&format!("after-{round}-42"))?;
        assert!(
            !seen.contains("sallyport:"),
            "the terminal noticed the move: {seen:?}"
        );
        // The CLI handles the signal on a task of its own, so the command may have left before the move;
        // the gateway notices a move on the client's next data. Empty lines are that data, until this
        // move is seen: two moves with nothing sent between them would reach the gateway as one.
        let mut nudges = 0;
        while address_changes(&gateway)?.len() < round {
            nudges += 1;
            if nudges > 50 {
                anyhow::bail!("move {round} was not seen after {nudges} empty lines");
            }
            ssh.send_line("")?;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    ssh.send_line("exit")?;
    ssh.exp_eof()?;
    assert_eq!(exit_code(ssh.process().wait()?), Some(0));

    // The gateway saw the client's address change, and it was one session throughout.
    let moves = address_changes(&gateway)?;
    assert!(
        moves.len() >= 3,
        "expected three address changes, saw {moves:?}"
    );
    for detail in &moves {
        let (from, to) = detail
            .strip_prefix("from ")
            .and_then(|rest| rest.split_once(" to "))
            .with_context(|| format!("unexpected detail {detail}"))?;
        assert_ne!(from, to);
    }
    let store = Store::open_read_only(&gateway.recordings_db())?;
    let sessions = eventually(Duration::from_secs(10), "the session to be sealed", || {
        let sessions = store.sessions().ok()?;
        sessions.iter().all(|s| s.sealed).then_some(sessions)
    })
    .await?;
    assert_eq!(sessions.len(), 1, "the move started a new session");
    let output: Vec<u8> = store
        .events(&sessions[0].id)?
        .into_iter()
        .filter_map(|e| match e.event {
            Event::Output(bytes) => Some(bytes),
            _ => None,
        })
        .flatten()
        .collect();
    let output = String::from_utf8_lossy(&output);
    for marker in ["before-2", "after-1-42", "after-2-42", "after-3-42"] {
        assert!(
            output.contains(marker),
            "{marker} missing from the recording"
        );
    }
    Ok(())
}

/// The details of the gateway's `client_address_changed` audit events, oldest first.
fn address_changes(gateway: &Gateway) -> Result<Vec<String>> {
    let db = rusqlite::Connection::open(gateway.state_db())?;
    db.busy_timeout(Duration::from_secs(5))?;
    let moves = db
        .prepare(
            "SELECT detail FROM audit_events WHERE kind = 'client_address_changed' ORDER BY id",
        )?
        .query_map([], |row| row.get::<_, String>(0))?
        .collect::<Result<_, _>>()?;
    Ok(moves)
}
