//! OpenSSH's own `ssh`, `scp` and `sftp` through `sallyport proxy` (their `ProxyCommand`): the gateway
//! terminates SSH, dials the real sshd in a namespace, and records the commands, their output, and the
//! names and sizes of the files moved; port forwarding is refused and audited. The target password
//! reaches ssh through `SSH_ASKPASS`, as a script would give it.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use sallyport_e2e::cli::{Cli, cli_bin};
use sallyport_e2e::common::run_with_timeout;
use sallyport_e2e::portal::{ADMIN_PASSWORD, login_admin};
use sallyport_e2e::{
    Gateway, GatewayOptions, Sshd, SshdOptions, TargetNet, ensure_test_user, require_root,
    wait_until,
};
use sallyport_recordings::{Event, FileTransfer, Store, TransferDirection, TransferProtocol};

/// An OpenSSH tool (`ssh`, `scp`, `sftp`) set up to go through `sallyport proxy`.
fn openssh(tool: &str, cli: &Cli, askpass: &Path) -> Result<Command> {
    let mut command = Command::new(tool);
    command
        .args(["-F", "/dev/null"])
        .arg("-o")
        .arg(format!("ProxyCommand={} proxy %h", cli_bin()?.display()))
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "PreferredAuthentications=password",
            "-o",
            "NumberOfPasswordPrompts=1",
            "-o",
            "LogLevel=ERROR",
        ])
        .env("SALLYPORT_CONFIG_DIR", cli.config_dir())
        .env("SSH_ASKPASS", askpass)
        .env("SSH_ASKPASS_REQUIRE", "force")
        .env("DISPLAY", ":0")
        .stdin(Stdio::null());
    Ok(command)
}

fn run(command: &mut Command) -> Result<(i32, String, String)> {
    let output = run_with_timeout(command, Duration::from_secs(60))?;
    Ok((
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_scp_and_sftp_work_through_the_proxy_and_are_recorded() -> Result<()> {
    require_root()?;
    let net = TargetNet::create("clp")?;
    let user = ensure_test_user()?;
    let _sshd = Sshd::start(&net, SshdOptions::default())?;
    let gateway = Gateway::start(GatewayOptions::for_net(&net)).await?;
    login_admin(&gateway).await?;
    let cli = Cli::new(&gateway)?;
    cli.login(&gateway, "admin", ADMIN_PASSWORD)?;
    let work = tempfile::Builder::new().prefix("spe2e-proxy-").tempdir()?;
    let askpass = work.path().join("askpass");
    std::fs::write(&askpass, format!("#!/bin/sh\necho '{}'\n", user.password))?;
    std::fs::set_permissions(&askpass, std::fs::Permissions::from_mode(0o700))?;
    let destination = format!("{}@alpha", user.name);

    // ssh: a command, its output and exit status.
    let (code, out, err) = run(openssh("ssh", &cli, &askpass)?
        .arg(&destination)
        .arg("echo proxied-$((6*7)); exit 5"))?;
    assert!(out.contains("proxied-42"), "stdout {out:?} stderr {err:?}");
    assert_eq!(code, 5, "exit status not passed through: {err}");
    // ssh with a terminal.
    let (code, out, err) = run(openssh("ssh", &cli, &askpass)?
        .arg("-tt")
        .arg(&destination)
        .arg("tty >/dev/null && echo on-a-tty-$((1+2))"))?;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("on-a-tty-3"), "{out}");

    // scp up, sftp down: the bytes arrive intact.
    let payload: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let local = work.path().join("payload.bin");
    std::fs::write(&local, &payload)?;
    let remote = format!(
        "{}/proxy-upload-{}.bin",
        user.home.display(),
        std::process::id()
    );
    let (code, out, err) = run(openssh("scp", &cli, &askpass)?
        .arg(&local)
        .arg(format!("{destination}:{remote}")))?;
    assert_eq!(code, 0, "scp failed: {out}{err}");
    // The legacy scp protocol (`scp -O`, scp run as a remote command) down again.
    let legacy = work.path().join("legacy.bin");
    let (code, out, err) = run(openssh("scp", &cli, &askpass)?
        .arg("-O")
        .arg(format!("{destination}:{remote}"))
        .arg(&legacy))?;
    assert_eq!(code, 0, "scp -O failed: {out}{err}");
    assert_eq!(std::fs::read(&legacy)?, payload, "scp -O changed the file");
    let downloaded = work.path().join("downloaded.bin");
    let batch = format!("get {remote} {}\nrm {remote}\n", downloaded.display());
    let mut sftp = openssh("sftp", &cli, &askpass)?;
    sftp.arg(&destination)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = sftp.spawn().context("starting sftp")?;
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().context("no stdin")?;
        stdin.write_all(batch.as_bytes())?;
    }
    let finished = wait_until(Duration::from_secs(60), || {
        matches!(child.try_wait(), Ok(Some(_)))
    });
    if !finished {
        let _ = child.kill();
    }
    let output = child.wait_with_output()?;
    assert!(
        output.status.success(),
        "sftp failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        std::fs::read(&downloaded)?,
        payload,
        "the file changed on its way"
    );

    // Port forwarding is refused.
    let (code, _, err) = run(openssh("ssh", &cli, &askpass)?
        .args(["-W", "127.0.0.1:22"])
        .arg(&destination))?;
    assert_ne!(code, 0, "a forwarding was allowed");
    assert!(err.contains("forwarding failed"), "{err}");

    // The recordings: command and output, and the files by name and size.
    let store = Store::open_read_only(&gateway.recordings_db())?;
    let mut markers = Vec::new();
    let mut transfers = Vec::new();
    let mut output = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let sessions = store.sessions()?;
        let proxied: Vec<_> = sessions
            .iter()
            .filter(|s| s.protocol == "ssh-proxy")
            .collect();
        if proxied.len() >= 6 && proxied.iter().all(|s| s.sealed) {
            for session in proxied {
                for event in store.events(&session.id)? {
                    match event.event {
                        Event::Marker(text) => markers.push(text),
                        Event::Output(bytes) => output.extend(bytes),
                        Event::FileTransfer(transfer) => transfers.push(transfer),
                        _ => {}
                    }
                }
            }
            break;
        }
        if std::time::Instant::now() >= deadline {
            let mut report = String::new();
            for session in &proxied {
                let markers: Vec<String> = store
                    .events(&session.id)?
                    .into_iter()
                    .filter_map(|e| match e.event {
                        Event::Marker(text) => Some(text),
                        _ => None,
                    })
                    .collect();
                report.push_str(&format!(
                    "\n{} sealed={} {markers:?}",
                    session.id, session.sealed
                ));
            }
            anyhow::bail!(
                "expected 6 sealed proxy sessions, found {}:{report}",
                proxied.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let has = |text: &str| markers.iter().any(|m| m.contains(text));
    assert!(has("exec: echo proxied-$((6*7)); exit 5"), "{markers:#?}");
    assert!(has("exit status 5"), "{markers:#?}");
    assert!(String::from_utf8_lossy(&output).contains("proxied-42"));
    // Each file by protocol, direction, path and size: scp's upload (OpenSSH 9 speaks SFTP for scp),
    // the legacy scp download and sftp's download.
    let moved = |protocol, direction| {
        transfers.iter().any(|t: &FileTransfer| {
            t.protocol == protocol
                && t.direction == direction
                && t.path == remote
                && t.bytes == payload.len() as u64
                && t.complete
        })
    };
    assert!(
        moved(TransferProtocol::Sftp, TransferDirection::Upload),
        "{transfers:#?}"
    );
    assert!(
        moved(TransferProtocol::Scp, TransferDirection::Download),
        "{transfers:#?}"
    );
    assert!(
        moved(TransferProtocol::Sftp, TransferDirection::Download),
        "{transfers:#?}"
    );
    assert!(
        has(&format!("file change: remove {remote}")),
        "{markers:#?}"
    );
    assert!(has("port_forward_refused"), "{markers:#?}");
    Ok(())
}
