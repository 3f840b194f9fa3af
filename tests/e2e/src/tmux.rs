//! Terminal programs driven as a person drives them: a private tmux server runs the program in a pane of a
//! fixed size, `send-keys` types, `capture-pane` reads the screen (with or without its colours). Used for the
//! built `sallyport-review` ([`review_bin`]).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

/// A built binary of this workspace beside the running test executable (`target/<profile>/NAME`).
pub fn workspace_bin(name: &str, package: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe().context("current_exe")?;
    let mut dir = exe.parent().context("test executable has no directory")?;
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir = dir.parent().context("deps has no parent")?;
    }
    let bin = dir.join(name);
    if !bin.is_file() {
        bail!(
            "{} is missing; build it first: cargo build -p {package}",
            bin.display()
        );
    }
    Ok(bin)
}

/// The built `sallyport-review` (build it first: `cargo build -p sallyport-review`).
pub fn review_bin() -> Result<PathBuf> {
    workspace_bin("sallyport-review", "sallyport-review")
}

/// A tmux server of our own (its own socket) with one pane running a command; killed on drop.
pub struct Tmux {
    socket: String,
}

impl Tmux {
    /// Runs `command` in a 140×40 pane, in the current directory.
    pub fn start(socket: &str, command: &str) -> Result<Tmux> {
        Self::start_in(socket, None, command, &[])
    }

    /// Runs `command` in a 140×40 pane in `dir`, with extra environment variables.
    pub fn start_in(
        socket: &str,
        dir: Option<&Path>,
        command: &str,
        env: &[(&str, &str)],
    ) -> Result<Tmux> {
        // A server left over from an interrupted run of the same test would answer instead of ours.
        let _ = Command::new("tmux")
            .args(["-L", socket, "kill-server"])
            .stderr(std::process::Stdio::null())
            .status();
        let tmux = Tmux {
            socket: socket.to_owned(),
        };
        let mut new = Command::new("tmux");
        new.args([
            "-L",
            socket,
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            "review",
        ]);
        if let Some(dir) = dir {
            new.arg("-c").arg(dir);
        }
        for (key, value) in env {
            new.arg("-e").arg(format!("{key}={value}"));
        }
        let status = new
            .args(["-x", "140", "-y", "40", command])
            .env("TERM", "xterm-256color")
            .status()
            .context("running tmux (cargo xtask setup installs it)")?;
        ensure!(status.success(), "tmux new-session failed");
        Ok(tmux)
    }

    /// Sends keys by tmux's names (`Enter`, `Left`, `q`).
    pub fn keys(&self, keys: &[&str]) -> Result<()> {
        let status = Command::new("tmux")
            .args(["-L", &self.socket, "send-keys", "-t", "review"])
            .args(keys)
            .status()?;
        ensure!(status.success(), "tmux send-keys failed");
        Ok(())
    }

    /// Types text literally.
    pub fn type_text(&self, text: &str) -> Result<()> {
        self.keys(&["-l", text])
    }

    /// The pane's text.
    pub fn capture(&self) -> Result<String> {
        self.capture_with(&[])
    }

    /// The pane's text with its colours and attributes as escape sequences (`capture-pane -e`).
    pub fn capture_styled(&self) -> Result<String> {
        self.capture_with(&["-e"])
    }

    fn capture_with(&self, extra: &[&str]) -> Result<String> {
        let out = Command::new("tmux")
            .args(["-L", &self.socket, "capture-pane", "-p", "-t", "review"])
            .args(extra)
            .output()?;
        ensure!(out.status.success(), "tmux capture-pane failed");
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Waits (at most 20 s) until the pane shows what `done` accepts; the last capture is in the error.
    pub fn wait_for(&self, what: &str, done: impl Fn(&str) -> bool) -> Result<String> {
        self.wait_for_within(Duration::from_secs(20), what, done)
    }

    /// Waits until the pane shows what `done` accepts, at most `timeout`.
    pub fn wait_for_within(
        &self,
        timeout: Duration,
        what: &str,
        done: impl Fn(&str) -> bool,
    ) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let screen = self.capture()?;
            if done(&screen) {
                return Ok(screen);
            }
            if Instant::now() > deadline {
                bail!("timed out waiting for {what}; the pane shows:\n{screen}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .stderr(std::process::Stdio::null())
            .status();
    }
}
