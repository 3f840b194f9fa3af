//! The `sallyport` CLI over QUIC, as a person uses it: log in through a terminal (pinning the
//! gateway's certificate), list targets, open `sallyport ssh` to a real sshd in a namespace through a
//! pseudo-terminal, type a command, leave with an exit status; then find the typed marker and its
//! output in the recording, which verifies like a browser session's.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use anyhow::{Context, Result};
use sallyport_e2e::cli::{Cli, exit_code};
use sallyport_e2e::portal::{ADMIN_PASSWORD, login_admin, sealed_session, verifying_key};
use sallyport_e2e::{
    Gateway, GatewayOptions, Sshd, SshdOptions, TargetNet, ensure_test_user, require_root,
};
use sallyport_recordings::{Event, Outcome, Store, Verification};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_logs_in_lists_targets_and_its_terminal_session_is_recorded() -> Result<()> {
    require_root()?;
    let net = TargetNet::create("clq")?;
    let user = ensure_test_user()?;
    let _sshd = Sshd::start(&net, SshdOptions::default())?;
    let gateway = Gateway::start(GatewayOptions::for_net(&net)).await?;
    login_admin(&gateway).await?;
    let cli = Cli::new(&gateway)?;

    // Login: the fingerprint shown is the gateway's; key and certificate are private files.
    let printed = cli.login(&gateway, "admin", ADMIN_PASSWORD)?;
    assert!(printed.contains("Logged in to"), "{printed}");
    for file in ["client-key.pem", "client-cert.pem", "profile.json"] {
        let mode = std::fs::metadata(cli.config_dir().join(file))?
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file} has mode {mode:o}");
    }
    let (code, out, err) = cli.run(&["status"])?;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("yes, as admin (admin)"), "{out}");

    // Targets.
    let (code, out, err) = cli.run(&["targets"])?;
    assert_eq!(code, 0, "{out}{err}");
    let row = out
        .lines()
        .find(|l| l.starts_with("alpha "))
        .with_context(|| format!("alpha is not listed:\n{out}"))?;
    assert!(row.contains(&format!("{}:22", net.ns_addr())), "{row}");

    // A terminal session through a pseudo-terminal; the marker's output proves the shell ran it.
    let destination = format!("{}@alpha", user.name);
    let mut ssh = cli.spawn(&["ssh", &destination])?;
    ssh.exp_string("password: ")?;
    ssh.send_line(&user.password)?;
    ssh.send_line("echo quic-marker-$((40+2))")?;
    ssh.exp_string("quic-marker-42")?;
    ssh.send_line("exit 7")?;
    ssh.exp_eof()?;
    let status = ssh.process().wait()?;
    assert_eq!(
        exit_code(status),
        Some(7),
        "exit status not passed through: {status:?}"
    );

    // The recording holds the typed command and its output, sealed and verified.
    let store = Store::open_read_only(&gateway.recordings_db())?;
    let session = sealed_session(&store, Duration::from_secs(10), |s| {
        s.user == "admin" && s.target == "alpha"
    })
    .await?;
    assert_eq!(session.outcome, Some(Outcome::Ended));
    let events = store.events(&session.id)?;
    let collect = |input: bool| -> String {
        let bytes: Vec<u8> = events
            .iter()
            .filter_map(|e| match (&e.event, input) {
                (Event::Input(b), true) | (Event::Output(b), false) => Some(b.clone()),
                _ => None,
            })
            .flatten()
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    assert!(
        collect(true).contains("echo quic-marker-$((40+2))"),
        "typed marker missing from the recorded input"
    );
    assert!(
        collect(false).contains("quic-marker-42"),
        "marker output missing from the recorded output"
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(&e.event, Event::Marker(m) if m == "exit status 7")),
        "exit status not recorded"
    );
    let key = verifying_key(&gateway)?;
    assert!(
        matches!(
            store.verify(&session.id, &key)?,
            Verification::Intact { .. }
        ),
        "the recording does not verify"
    );
    Ok(())
}
