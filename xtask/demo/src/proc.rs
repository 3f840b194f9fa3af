//! Running the few system tools the targets need (`ip`, `ssh-keygen`, `openssl`, `useradd`, `chpasswd`),
//! and stopping daemons by PID: each bounded in time, so a hung tool fails the caller instead of hanging it.

use std::io::{Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Runs `cmd` with `input` on its stdin, killing it after `timeout`; fails with its stderr unless it
/// exits successfully; returns its stdout.
pub fn run(cmd: &mut Command, input: Option<&str>, timeout: Duration) -> Result<String> {
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {shown}"))?;
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(input.as_bytes())?;
    }
    // Both pipes are read on threads so that a chatty tool cannot block on a full pipe.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_string(&mut text);
            }
            text
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let Some(status) = wait_for(&mut child, timeout) else {
        stop(&mut child, Duration::ZERO);
        bail!("{shown} did not finish within {timeout:?}");
    };
    let (out, err) = (
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    );
    if !status.success() {
        bail!("{shown} failed ({status}): {}", err.trim());
    }
    Ok(out)
}

/// [`run`] without input, bounded by 30 s.
pub fn run_ok(cmd: &mut Command) -> Result<String> {
    run(cmd, None, Duration::from_secs(30))
}

/// Waits up to `timeout` for `child` to exit.
pub fn wait_for(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends SIGTERM to `child` (by its PID), waits up to `grace`, then kills it; always reaps it.
pub fn stop(child: &mut Child, grace: Duration) {
    if !grace.is_zero() {
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .stderr(Stdio::null())
            .status();
        if wait_for(child, grace).is_some() {
            return;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}
