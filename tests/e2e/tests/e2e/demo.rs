//! The demo's own setup, as `cargo xtask demo` makes it: the demo network and its targets from
//! `sallyport_demo::Demo::start` (on a /24 and a namespace of the test's own, so a person's demo may run
//! beside it), the gateway with the demo's `[[networks]]` and `[[targets]]`; then both SSH targets answer a
//! command as the demo user, and headless Chromium logs in, opens the RDP target `desk` and sees the demo
//! desktop (its background colour and its xterm on the canvas).

use std::time::Duration;

use anyhow::{Result, bail};
use fantoccini::Client as Driver;
use sallyport_demo::{DEMO_USER, DESKTOP_BACKGROUND, Demo, Layout};
use sallyport_e2e::browser::steps::{click, fill, wait_text};
use sallyport_e2e::portal::{ADMIN_PASSWORD, Terminal, login_admin, target_id};
use sallyport_e2e::{Browser, Gateway, GatewayOptions, require_root};

use crate::browser_rdp::wait_painted;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_setup_serves_its_ssh_targets_and_its_desktop_in_the_browser() -> Result<()> {
    require_root()?;
    let dir = tempfile::Builder::new().prefix("spe2e-demo-").tempdir()?;
    // The harness's prefix and PID in the name, so that a killed run's namespace is cleaned up by the next.
    let layout = Layout {
        namespace: format!("spe2e-demo-{}-0", std::process::id()),
        host_if: "spe2edemo0".into(),
        ns_if: "spe2edemo1".into(),
        subnet: [10, 213, 78],
    };
    let demo = Demo::start(dir.path(), layout)?;
    let mut options = GatewayOptions::default();
    options.extra_toml.push(demo.targets_toml());
    let gateway = Gateway::start(options).await?;

    // Both SSH targets run a command for the demo user.
    let admin = login_admin(&gateway).await?;
    for name in ["alpha", "beta"] {
        let id = target_id(&admin, name).await?;
        let mut terminal = Terminal::open(&admin, id, DEMO_USER, demo.password()).await?;
        terminal.expect_connected().await?;
        terminal.type_text("echo demo-$((6*7))-$(whoami)\n").await?;
        let answered = terminal
            .read_until(Duration::from_secs(15), |r| {
                r.output.contains(&format!("demo-42-{DEMO_USER}"))
            })
            .await?;
        if !answered {
            bail!(
                "{name} did not run the command: {:?}\n{}",
                terminal.received.output,
                demo.logs()
            );
        }
        terminal.close().await;
    }

    let browser = Browser::start().await?;
    let result = desktop(browser.client(), &gateway, &demo).await;
    browser
        .finish(
            result,
            std::path::Path::new(env!("CARGO_TARGET_TMPDIR")),
            "demo",
            || format!("gateway stderr:\n{}\n{}", gateway.stderr(), demo.logs()),
        )
        .await
}

/// Logs in (admin's password is already changed), opens `desk` as the demo user and waits for the demo
/// desktop's background and its xterm (white, from `-geometry +40+40`) on the canvas.
async fn desktop(driver: &Driver, gateway: &Gateway, demo: &Demo) -> Result<()> {
    driver.set_window_size(1200, 900).await?;
    driver.goto(&gateway.url()).await?;
    fill(driver, "#username", "admin").await?;
    fill(driver, "#password", ADMIN_PASSWORD).await?;
    click(driver, "#login").await?;
    click(driver, r#"tr[data-target="desk"] a.connect"#).await?;
    fill(driver, "#target-username", DEMO_USER).await?;
    fill(driver, "#target-password", demo.password()).await?;
    click(driver, "#connect").await?;
    wait_text(driver, "#status", Duration::from_secs(30), |s| {
        s.starts_with("Connected")
    })
    .await?;
    // The xterm sits at +40+40.
    wait_painted(driver, DESKTOP_BACKGROUND, (70, 70)).await
}
