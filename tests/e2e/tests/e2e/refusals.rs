//! Refusals, each with a clear error while the daemon keeps serving others: wrong portal password,
//! foreign Origin, wrong target password, unreachable target, changed host key (refused before any
//! credential is sent) and more than twenty forbidden target addresses.

use std::time::Duration;

use anyhow::{Result, bail};
use sallyport_e2e::portal::{Terminal, login_admin, target_id};
use sallyport_e2e::{
    Gateway, GatewayOptions, HandshakeError, KeyPair, Sshd, SshdOptions, TargetNet,
    ensure_test_user, require_root,
};

/// Target addresses that must never be dialled, in the encodings attackers use, and names that resolve
/// to them. `OWN` is replaced by the gateway's own address on the test link, `HOSTNAME` by this machine's
/// host name (which resolves to a loopback address through /etc/hosts).
const FORBIDDEN: &[&str] = &[
    "127.0.0.1",
    "127.1",
    "2130706433",
    "0x7f000001",
    "0177.0.0.1",
    "::1",
    "::ffff:127.0.0.1",
    "localhost",
    "LocalHost.",
    "HOSTNAME",
    "169.254.169.254",
    "2852039166",
    "0xa9fea9fe",
    "0251.0376.0251.0376",
    "::ffff:169.254.169.254",
    "64:ff9b::a9fe:a9fe",
    "168.63.129.16",
    "fd00:ec2::254",
    "0.0.0.0",
    "224.0.0.1",
    "255.255.255.255",
    "fe80::1",
    "192.0.2.10",
    "198.51.100.7",
    "OWN",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_is_clear_and_the_gateway_keeps_serving() -> Result<()> {
    require_root()?;
    let net = TargetNet::create("ref")?;
    let user = ensure_test_user()?;
    let mut sshd = Sshd::start(&net, SshdOptions::default())?;
    let mut options = GatewayOptions::for_net(&net)
        .target("beta", &net.ns_addr().to_string(), 22)
        .target("gamma", &net.ns_addr().to_string(), 22)
        .target("closed-port", &net.ns_addr().to_string(), 2222);
    for (index, address) in FORBIDDEN.iter().enumerate() {
        let address = match *address {
            "OWN" => net.host_addr().to_string(),
            "HOSTNAME" => machine_hostname()?,
            other => other.to_owned(),
        };
        options = options.target(&format!("forbidden-{index}"), &address, 22);
    }
    let gateway = Gateway::start(options).await?;

    // Wrong portal password: 401, plain words, no session cookie.
    let stranger = gateway.client()?;
    let origin = stranger.origin();
    let response = stranger
        .post_form(
            "/login",
            &[("username", "admin"), ("password", "not-the-password")],
            Some(&origin),
        )
        .await?;
    assert_eq!(response.status, 401);
    assert!(
        response.text().contains("Wrong username or password"),
        "{}",
        response.text()
    );
    assert_eq!(stranger.cookie("__Host-sallyport"), None);
    // An unknown user gets the very same answer.
    let response = stranger
        .post_form(
            "/login",
            &[("username", "nobody"), ("password", "x")],
            Some(&origin),
        )
        .await?;
    assert_eq!(response.status, 401);
    // A login form posted from another site is refused.
    let response = stranger
        .post_form(
            "/login",
            &[("username", "admin"), ("password", &gateway.password())],
            Some("https://evil.example"),
        )
        .await?;
    assert_eq!(response.status, 403);

    let client = login_admin(&gateway).await?;
    let cookie = client.cookie_header();
    let alpha = target_id(&client, "alpha").await?;

    // WebSockets with a foreign or missing Origin are refused before the upgrade.
    for origin in [Some("https://evil.example"), Some("null"), None] {
        match client
            .ws_connect(&format!("/ws/terminal/{alpha}"), cookie.as_deref(), origin)
            .await
        {
            Err(HandshakeError::Refused { status, .. }) => {
                assert_eq!(status, 403, "origin {origin:?}")
            }
            Err(other) => bail!("origin {origin:?}: unexpected failure {other}"),
            Ok(_) => bail!("origin {origin:?}: the WebSocket was accepted"),
        }
    }
    // And without a login, the upgrade is redirected to the login page.
    let anonymous = gateway.client()?;
    match anonymous
        .ws_connect_same_origin(&format!("/ws/terminal/{alpha}"))
        .await
    {
        Err(HandshakeError::Refused { status, .. }) => assert_eq!(status, 303),
        Err(other) => bail!("anonymous: unexpected failure {other}"),
        Ok(_) => bail!("an anonymous WebSocket was accepted"),
    }

    // Wrong target password.
    let mut terminal = Terminal::open(&client, alpha, &user.name, "wrong-password").await?;
    let (kind, message) = terminal.expect_error().await?;
    assert_eq!(kind, "target_auth_failed", "{message}");
    assert!(
        message.contains("refused the username or password"),
        "{message}"
    );
    // The session ends with a WebSocket close frame, not a dropped connection.
    terminal
        .read_until(Duration::from_secs(5), |r| r.close_frame)
        .await?;
    assert!(
        terminal.received.close_frame,
        "no close frame after the error"
    );

    // Private keys: an authorized key logs in; a key that is not a key is refused in plain words.
    let key = KeyPair::generate_ed25519()?;
    sshd.authorize_key(key.public_line())?;
    let gamma = target_id(&client, "gamma").await?;
    let mut terminal =
        Terminal::open_with_key(&client, gamma, &user.name, &key.private_key_pem()?).await?;
    terminal.expect_connected().await?;
    terminal.close().await;
    let mut terminal = Terminal::open_with_key(
        &client,
        gamma,
        &user.name,
        "-----BEGIN OPENSSH PRIVATE KEY-----\nnot a key\n-----END OPENSSH PRIVATE KEY-----\n",
    )
    .await?;
    let (kind, message) = terminal.expect_error().await?;
    assert_eq!(kind, "bad_private_key", "{message}");

    // Unreachable target (nothing listens on that port).
    let closed = target_id(&client, "closed-port").await?;
    let mut terminal = Terminal::open(&client, closed, &user.name, &user.password).await?;
    let (kind, message) = terminal.expect_error().await?;
    assert_eq!(kind, "target_unreachable", "{message}");

    // A good session pins the host key...
    let mut terminal = Terminal::open(&client, alpha, &user.name, &user.password).await?;
    terminal.expect_connected().await?;
    assert_eq!(
        terminal
            .received
            .control("connected")
            .map(|c| c["host_key_first_seen"].clone()),
        Some(serde_json::json!(true))
    );
    terminal.close().await;

    // ...then the target's host key changes: refused before any authentication is attempted.
    sshd.regenerate_host_key_and_restart()?;
    let log_before = sshd.log();
    let mut terminal = Terminal::open(&client, alpha, &user.name, &user.password).await?;
    let (kind, message) = terminal.expect_error().await?;
    assert_eq!(kind, "host_key_changed", "{message}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let new_log = sshd.log();
    let new_lines = new_log
        .strip_prefix(log_before.as_str())
        .unwrap_or(&new_log);
    for auth_trace in [
        "Accepted password",
        "Failed password",
        "Failed none",
        "Postponed",
        "userauth",
    ] {
        assert!(
            !new_lines.contains(auth_trace),
            "sshd saw an authentication attempt ({auth_trace}) after the host key changed:\n{new_lines}"
        );
    }
    assert!(
        new_lines.contains("Connection from") || new_lines.contains("connection from"),
        "the refused connection never reached sshd:\n{new_lines}"
    );

    // Every forbidden address: not allowed, with the reason.
    for (index, address) in FORBIDDEN.iter().enumerate() {
        let id = target_id(&client, &format!("forbidden-{index}")).await?;
        let mut terminal = Terminal::open(&client, id, &user.name, &user.password).await?;
        let (kind, message) = terminal.expect_error().await?;
        assert_eq!(kind, "not_allowed", "{address}: {message}");
        assert!(
            message.contains("refused because") || message.contains("not a valid"),
            "{address}: {message}"
        );
    }
    assert!(FORBIDDEN.len() >= 20);

    // The daemon still serves others: a second target entry for the same machine has no pinned key yet,
    // so a session to it works end to end.
    let beta = target_id(&client, "beta").await?;
    let mut terminal = Terminal::open(&client, beta, &user.name, &user.password).await?;
    terminal.expect_connected().await?;
    terminal.type_text("echo still-$((20+3))-serving\r").await?;
    assert!(
        terminal
            .read_until(Duration::from_secs(10), |r| r
                .output
                .contains("still-23-serving"))
            .await?,
        "output: {}",
        terminal.received.output
    );
    terminal.close().await;

    let audit = gateway_audit_kinds(&gateway)?;
    for kind in [
        "login_failed",
        "login",
        "connect_refused",
        "connect_failed",
        "host_key_pinned",
        "host_key_mismatch",
    ] {
        assert!(
            audit.iter().any(|k| k == kind),
            "audit log lacks {kind}: {audit:?}"
        );
    }
    let page = client.get("/targets").await?;
    assert_eq!(page.status, 200, "the portal stopped serving");
    Ok(())
}

/// The kinds of the audit events in the gateway's state database.
fn gateway_audit_kinds(gateway: &Gateway) -> Result<Vec<String>> {
    let db = rusqlite::Connection::open_with_flags(
        gateway.state_db(),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?;
    let mut stmt = db.prepare("SELECT kind FROM audit_events ORDER BY id")?;
    let kinds = stmt
        .query_map([], |row| row.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(kinds)
}

/// This machine's host name.
fn machine_hostname() -> Result<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")?
        .trim()
        .to_owned();
    if name.is_empty() {
        bail!("this machine has no host name");
    }
    Ok(name)
}
