//! Session limits from `[sessions]`: a per-user cap on concurrent sessions (released when a session
//! ends), the idle timeout (input resets it), and the maximum session duration.

use std::time::{Duration, Instant};

use anyhow::Result;
use sallyport_e2e::portal::{Terminal, login_admin, target_id};
use sallyport_e2e::{
    Gateway, GatewayOptions, Sshd, SshdOptions, TargetNet, ensure_test_user, require_root,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_cap_idle_timeout_and_maximum_duration() -> Result<()> {
    require_root()?;
    let net = TargetNet::create("limits")?;
    let user = ensure_test_user()?;
    let _sshd = Sshd::start(&net, SshdOptions::default())?;
    let options = GatewayOptions::for_net(&net)
        .extra_toml("[sessions]\nidle_timeout_secs = 3\nmax_sessions_per_user = 1");
    let gateway = Gateway::start(options).await?;
    let client = login_admin(&gateway).await?;
    let alpha = target_id(&client, "alpha").await?;

    // One session at a time for this user.
    let mut first = Terminal::open(&client, alpha, &user.name, &user.password).await?;
    first.expect_connected().await?;
    let mut second = Terminal::open(&client, alpha, &user.name, &user.password).await?;
    let (kind, message) = second.expect_error().await?;
    assert_eq!(kind, "not_allowed", "{message}");
    assert!(message.contains("maximum of 1 sessions"), "{message}");

    // Typing keeps the session alive past the idle timeout...
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(5) {
        first.type_text(" ").await?;
        let _ = first
            .read_until(Duration::from_millis(500), |_| false)
            .await?;
    }
    assert!(
        first.received.control("error").is_none(),
        "ended while the user was typing: {:?}",
        first.received.controls
    );
    // ...and silence ends it.
    let quiet = Instant::now();
    let (kind, message) = first.expect_error().await?;
    let took = quiet.elapsed();
    assert_eq!(kind, "terminated", "{message}");
    assert!(message.contains("idle timeout"), "{message}");
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(8),
        "idle end after {took:?}"
    );

    // The slot is free again.
    let mut third = Terminal::open(&client, alpha, &user.name, &user.password).await?;
    third.expect_connected().await?;
    third.close().await;
    drop(gateway);

    // Maximum duration, even for a busy session.
    let options = GatewayOptions::for_net(&net)
        .extra_toml("[sessions]\nidle_timeout_secs = 0\nmax_duration_secs = 3");
    let gateway = Gateway::start(options).await?;
    let client = login_admin(&gateway).await?;
    let alpha = target_id(&client, "alpha").await?;
    let mut busy = Terminal::open(&client, alpha, &user.name, &user.password).await?;
    busy.expect_connected().await?;
    let started = Instant::now();
    busy.type_text("while true; do echo tick; sleep 0.2; done\r")
        .await?;
    let (kind, message) = busy.expect_error().await?;
    assert_eq!(kind, "terminated", "{message}");
    assert!(message.contains("maximum session duration"), "{message}");
    assert!(started.elapsed() < Duration::from_secs(8));
    Ok(())
}
