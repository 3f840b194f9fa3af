//! Secret-aware input on a real target: a user runs `sudo -k; sudo true` on a real sshd and types their password
//! at sudo's prompt, which does not echo; once through the browser's terminal WebSocket and once with
//! `sallyport ssh` over QUIC. The recording holds the echoed command line, Enter, and in the password's place a
//! marker counting its keystrokes; the password's bytes are in no event, and a search does not find it.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use rexpect::ReadUntil;
use rexpect::session::PtySession;
use sallyport_e2e::cli::{Cli, exit_code};
use sallyport_e2e::portal::{
    ADMIN_PASSWORD, Terminal, login_admin, sealed_session, target_id, verifying_key,
};
use sallyport_e2e::sshd::{SUDO_TEST_PASSWORD, SUDO_TEST_USER};
use sallyport_e2e::{
    Gateway, GatewayOptions, Sshd, SshdOptions, TargetNet, TestUser, ensure_sudo_user, require_root,
};
use sallyport_recordings::{Event, Outcome, SearchIndex, SessionRow, Store, Verification};

/// The command typed before the password.
const SUDO_COMMAND: &str = "sudo -k; sudo true";
/// Typed after sudo: its output (`done-0-secrets`, sudo's exit status in the middle) differs from its echo.
const DONE_COMMAND: &str = "echo done-$?-secrets";
const DONE_OUTPUT: &str = "done-0-secrets";
/// How the recorder words a withheld secret.
const WITHHELD: &str = "input withheld:";

/// The target, its sudo user and a gateway in front of it (kept whole: the target lives as long as this).
struct Setup {
    gateway: Gateway,
    user: TestUser,
    _sshd: Sshd,
    _net: TargetNet,
}

async fn setup(tag: &str) -> Result<Setup> {
    require_root()?;
    ensure!(
        Path::new("/usr/bin/sudo").exists(),
        "/usr/bin/sudo is missing: this test types a password at sudo's prompt on the target; install Debian's \
         `sudo` package (`cargo xtask setup` does)"
    );
    let user = ensure_sudo_user()?;
    ensure!(
        user.name == SUDO_TEST_USER && user.password == SUDO_TEST_PASSWORD,
        "unexpected sudo user {user:?}"
    );
    // The password must not turn up by accident: not in the user's name, not in sudo's prompt or the shell's.
    ensure!(
        !format!("[sudo] password for {}: {}@", user.name, user.name)
            .to_lowercase()
            .contains(&user.password.to_lowercase()),
        "the test password {:?} would appear in the prompts",
        user.password
    );
    let net = TargetNet::create(tag)?;
    let sshd = Sshd::start(&net, SshdOptions::default())?;
    let gateway = Gateway::start(GatewayOptions::for_net(&net)).await?;
    Ok(Setup {
        gateway,
        user,
        _sshd: sshd,
        _net: net,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sudo_password_typed_in_the_browser_terminal_is_not_recorded() -> Result<()> {
    let setup = setup("secw").await?;
    let (gateway, user) = (&setup.gateway, &setup.user);
    let client = login_admin(gateway).await?;
    let alpha = target_id(&client, "alpha").await?;
    let mut terminal = Terminal::open(&client, alpha, &user.name, &user.password).await?;
    terminal.expect_connected().await?;
    wait_output(&mut terminal, 0, "the shell prompt", |new| {
        new.ends_with("$ ")
    })
    .await?;

    let from = terminal.received.output.len();
    terminal.type_text(&format!("{SUDO_COMMAND}\r")).await?;
    let sudo_prompt = format!("[sudo] password for {}:", user.name);
    wait_output(&mut terminal, from, "sudo's password prompt", |new| {
        new.contains(&sudo_prompt)
    })
    .await?;

    // A person types the password, then Enter.
    let from = terminal.received.output.len();
    terminal.type_text(&user.password).await?;
    terminal.type_text("\r").await?;
    wait_output(&mut terminal, from, "the shell prompt after sudo", |new| {
        new.ends_with("$ ") || new.contains("Sorry, try again")
    })
    .await?;
    let after = &terminal.received.output[from..];
    ensure!(
        !after.contains("Sorry, try again"),
        "sudo refused the password: {after:?}"
    );

    let from = terminal.received.output.len();
    terminal.type_text(&format!("{DONE_COMMAND}\r")).await?;
    wait_output(&mut terminal, from, "the marker after sudo", |new| {
        new.contains(DONE_OUTPUT)
    })
    .await?;
    terminal.type_text("exit\r").await?;
    let _ = terminal
        .read_until(Duration::from_secs(10), |r| r.close_frame)
        .await?;
    let shown = terminal.received.output.clone();
    drop(terminal);
    ensure!(
        !shown.contains(&user.password),
        "the terminal showed the password: {shown:?}"
    );

    check_recording(gateway, user).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sudo_password_typed_through_the_cli_is_not_recorded() -> Result<()> {
    let setup = setup("secc").await?;
    let (gateway, user) = (&setup.gateway, &setup.user);
    login_admin(gateway).await?;
    let cli = Cli::new(gateway)?;
    cli.login(gateway, "admin", ADMIN_PASSWORD)?;

    let destination = format!("{}@alpha", user.name);
    let mut ssh = cli.spawn_sized(&["ssh", &destination], 100, 30)?;
    // The CLI's own prompt for the target login (not part of the terminal session).
    ssh.exp_string("password: ")?;
    ssh.send_line(&user.password)?;
    ssh.exp_string("$ ").context("no shell prompt")?;

    enter(&mut ssh, SUDO_COMMAND)?;
    ssh.exp_string(&format!("[sudo] password for {}:", user.name))
        .context("no sudo password prompt")?;
    enter(&mut ssh, &user.password)?;
    let (before, found) = ssh
        .exp_any(vec![
            ReadUntil::String("$ ".into()),
            ReadUntil::String("Sorry, try again".into()),
        ])
        .context("no shell prompt after sudo")?;
    ensure!(
        found == "$ ",
        "sudo refused the password: {before:?}{found:?}"
    );
    ensure!(
        !before.contains(&user.password),
        "the terminal showed the password: {before:?}"
    );
    enter(&mut ssh, DONE_COMMAND)?;
    ssh.exp_string(DONE_OUTPUT)
        .context("no marker after sudo")?;
    enter(&mut ssh, "exit")?;
    ssh.exp_eof()?;
    let status = ssh.process().wait()?;
    ensure!(
        exit_code(status) == Some(0),
        "sallyport ssh ended with {status:?}"
    );

    check_recording(gateway, user).await
}

/// Types `line` and Enter (a carriage return, as a terminal sends it) on the CLI's terminal.
fn enter(ssh: &mut PtySession, line: &str) -> Result<()> {
    ssh.send(&format!("{line}\r"))?;
    ssh.flush()?;
    Ok(())
}

/// Reads the terminal until the output after byte `from` satisfies `done` (at most 20 s).
async fn wait_output(
    terminal: &mut Terminal,
    from: usize,
    what: &str,
    done: impl Fn(&str) -> bool,
) -> Result<()> {
    let ok = terminal
        .read_until(Duration::from_secs(20), |r| {
            r.output.get(from..).is_some_and(&done)
        })
        .await?;
    if !ok {
        let new = terminal.received.output.get(from..).unwrap_or_default();
        bail!("timed out waiting for {what}; the terminal showed {new:?}");
    }
    Ok(())
}

/// The one session of this gateway, once sealed, checked for the password and the withheld marker.
async fn check_recording(gateway: &Gateway, user: &TestUser) -> Result<()> {
    let password = user.password.as_str();
    let store = Store::open_read_only(&gateway.recordings_db())?;
    let session: SessionRow = sealed_session(&store, Duration::from_secs(15), |s| {
        s.user == "admin" && s.target == "alpha"
    })
    .await?;
    assert_eq!(session.outcome, Some(Outcome::Ended), "{session:?}");
    let key = verifying_key(gateway)?;
    assert!(
        matches!(
            store.verify(&session.id, &key)?,
            Verification::Intact { .. }
        ),
        "the recording does not verify"
    );

    let events = store.events(&session.id)?;
    // No event holds the password, nor do the joined streams (a password split over events).
    let mut input = Vec::new();
    let mut output = Vec::new();
    // The typed stream as recorded, with each withheld marker in its place.
    let mut transcript = String::new();
    let mut withheld = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let bytes: &[u8] = match &e.event {
            Event::Input(b) => {
                input.extend_from_slice(b);
                transcript.push_str(&String::from_utf8_lossy(b));
                b
            }
            Event::Output(b) => {
                output.extend_from_slice(b);
                b
            }
            Event::Marker(m) => {
                if let Some(rest) = m.strip_prefix(WITHHELD) {
                    let count: usize = rest
                        .split_whitespace()
                        .next()
                        .and_then(|n| n.parse().ok())
                        .with_context(|| format!("marker {m:?} gives no count"))?;
                    withheld.push((i, e.at_ms, count, m.clone()));
                    transcript.push_str(&format!("«withheld {count}»"));
                }
                m.as_bytes()
            }
            _ => continue,
        };
        assert!(
            !contains(bytes, password.as_bytes()),
            "event {i} at {} ms holds the password: {:?}",
            e.at_ms,
            e.event
        );
    }
    assert!(
        !contains(&input, password.as_bytes()),
        "the recorded input holds the password"
    );
    assert!(
        !contains(&output, password.as_bytes()),
        "the recorded output holds the password"
    );
    eprintln!("recorded input with markers: {transcript:?}");

    let input_text = String::from_utf8_lossy(&input);
    assert!(
        input_text.contains(SUDO_COMMAND),
        "the echoed command line {SUDO_COMMAND:?} is not in the recorded input: {input_text:?}"
    );
    assert!(
        input_text.contains(DONE_COMMAND),
        "the command after sudo is not in the recorded input: {input_text:?}"
    );
    let [(_, at_ms, count, marker)] = withheld.as_slice() else {
        bail!(
            "expected one withheld-input marker, found {withheld:?}; recorded input: {transcript:?}"
        );
    };
    eprintln!("marker at {at_ms} ms: {marker}");
    assert_eq!(
        *count,
        password.chars().count(),
        "the marker counts {count} keystrokes; the password has {}",
        password.chars().count()
    );
    // In order: the command line and its Enter, the password's place, the Enter after it, the next command.
    let expected = format!("{SUDO_COMMAND}\r«withheld {count}»\r{DONE_COMMAND}\r");
    assert!(
        transcript.contains(&expected),
        "the recorded input does not read {expected:?}: {transcript:?}"
    );

    // A search finds the command, not the password.
    let mut index = SearchIndex::open_in_memory()?;
    index.update(&store)?;
    let hits = index.search(password, 10)?;
    assert!(hits.is_empty(), "searching the password finds {hits:?}");
    let lower = index.search(&password.to_lowercase(), 10)?;
    assert!(lower.is_empty(), "searching the password finds {lower:?}");
    let hits = index.search("sudo true", 10)?;
    assert!(
        hits.iter().any(|h| h.session_id == session.id),
        "searching \"sudo true\" does not find the session: {hits:?}"
    );
    Ok(())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
