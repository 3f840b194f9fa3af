//! The real `sallyport` CLI: found next to the test executable (or at `$SALLYPORT_CLI_BIN`), run with
//! its own config directory, and driven through a pseudo-terminal (rexpect) where it prompts, as a
//! person at a terminal would.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rexpect::session::PtySession;
use rexpect_nix::sys::wait::WaitStatus;
use tempfile::TempDir;

use crate::Gateway;

/// How long one expected prompt or output may take to appear.
pub const EXPECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the CLI is: `$SALLYPORT_CLI_BIN`, else `target/<profile>/sallyport` beside the test.
pub fn cli_bin() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("SALLYPORT_CLI_BIN") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe().context("current_exe")?;
    let mut dir = exe.parent().context("test executable has no directory")?;
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir = dir.parent().context("deps has no parent")?;
    }
    let bin = dir.join("sallyport");
    if !bin.is_file() {
        bail!(
            "{} is missing; build it first: cargo build -p sallyport (cargo xtask ci does this)",
            bin.display()
        );
    }
    Ok(bin)
}

/// One user's CLI installation: the binary and a config directory of its own.
#[derive(Debug)]
pub struct Cli {
    bin: PathBuf,
    config: TempDir,
    /// `https://127.0.0.1:PORT` of the gateway.
    pub gateway_url: String,
}

impl Cli {
    /// A fresh installation pointed at `gateway`.
    pub fn new(gateway: &Gateway) -> Result<Cli> {
        Ok(Cli {
            bin: cli_bin()?,
            config: tempfile::Builder::new().prefix("spe2e-cli-").tempdir()?,
            gateway_url: gateway.base_url().trim_end_matches('/').to_owned(),
        })
    }

    /// The config directory (`SALLYPORT_CONFIG_DIR`).
    pub fn config_dir(&self) -> &Path {
        self.config.path()
    }

    /// `sallyport ARGS` with this installation's config directory.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.bin);
        command
            .args(args)
            .env("SALLYPORT_CONFIG_DIR", self.config.path())
            .env("TERM", "xterm")
            .env_remove("RUST_LOG");
        command
    }

    /// Runs `sallyport ARGS` to completion without a terminal (at most 60 s); returns the exit code,
    /// stdout and stderr.
    pub fn run(&self, args: &[&str]) -> Result<(i32, String, String)> {
        let output = crate::common::run_with_timeout(
            self.command(args).stdin(std::process::Stdio::null()),
            Duration::from_secs(60),
        )?;
        Ok((
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        ))
    }

    /// Starts `sallyport ARGS` on a pseudo-terminal.
    pub fn spawn(&self, args: &[&str]) -> Result<PtySession> {
        rexpect::session::spawn_command(self.command(args), Some(EXPECT_TIMEOUT.as_millis() as u64))
            .with_context(|| format!("starting sallyport {}", args.join(" ")))
    }

    /// `sallyport login` through the terminal: checks the fingerprint it shows against the gateway's,
    /// trusts it, types the username and password (and `code`, when asked). Returns everything the
    /// CLI printed.
    pub fn login(&self, gateway: &Gateway, username: &str, password: &str) -> Result<String> {
        let mut session = self.spawn(&["login", &self.gateway_url])?;
        let shown = session
            .exp_string("Trust this gateway")
            .context("no trust question")?;
        let expected = gateway
            .fingerprint()
            .context("the gateway printed no fingerprint")?;
        let shown_hex: String = shown
            .chars()
            .filter(char::is_ascii_hexdigit)
            .collect::<String>()
            .to_lowercase();
        if !shown_hex.contains(&expected) {
            bail!(
                "the CLI showed another fingerprint than the gateway printed ({expected}): {shown}"
            );
        }
        session.send_line("yes")?;
        session.exp_string("Username: ")?;
        session.send_line(username)?;
        session.exp_string("Password: ")?;
        session.send_line(password)?;
        let rest = session.exp_eof()?;
        let status = session.process().wait()?;
        if exit_code(status) != Some(0) {
            bail!("sallyport login failed ({status:?}): {rest}");
        }
        Ok(format!("{shown}{rest}"))
    }
}

/// The exit code of a finished process, `None` if a signal ended it.
pub fn exit_code(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, code) => Some(code),
        _ => None,
    }
}
