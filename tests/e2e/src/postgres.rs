//! A private PostgreSQL server per test, from Debian's packages (fleet mode's state database): a cluster
//! made by `initdb` in a temporary directory and run by `pg_ctl`, on a socket directory of its own and
//! `127.0.0.1` on a free port. `initdb` refuses to run as root, so both run as the `postgres` system user
//! the package creates, which owns the directory. Only loopback and the socket are listened on, with
//! `trust` for this throwaway cluster's own superuser. Drop stops the server (`pg_ctl stop -m immediate`),
//! kills the postmaster by PID if it is still there, and removes the directory.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tempfile::TempDir;

use crate::common::{
    free_port, is_running, require_root, require_tool, run_with_timeout, signal_pid,
};

/// Where Debian 12's PostgreSQL server programs are.
pub const POSTGRES_BIN: &str = "/usr/lib/postgresql/15/bin";
/// The system user the server runs as.
const SYSTEM_USER: &str = "postgres";

/// A running private PostgreSQL server.
#[derive(Debug)]
pub struct Postgres {
    dir: TempDir,
    port: u16,
    pid: Option<u32>,
}

fn as_postgres(program: &str) -> Command {
    let mut command = Command::new("/usr/sbin/runuser");
    command
        .args(["-u", SYSTEM_USER, "--"])
        .arg(Path::new(POSTGRES_BIN).join(program));
    command
}

/// Runs `command` (at most `seconds`), failing with its output when it fails.
fn run(command: &mut Command, what: &str, seconds: u64) -> Result<String> {
    let output = run_with_timeout(command, Duration::from_secs(seconds))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if !output.status.success() {
        bail!("{what} failed ({}): {text}", output.status);
    }
    Ok(text)
}

impl Postgres {
    /// Makes and starts a cluster (bounded: 60 s for `initdb`, 30 s for the start).
    pub fn start() -> Result<Postgres> {
        require_root()?;
        require_tool(&format!("{POSTGRES_BIN}/initdb"))?;
        require_tool("/usr/sbin/runuser")?;
        let dir = tempfile::Builder::new()
            .prefix("spe2e-postgres-")
            .tempdir()
            .context("postgres tempdir")?;
        let data = dir.path().join("data");
        let socket = dir.path().join("socket");
        std::fs::create_dir(&socket)?;
        run(
            Command::new("chown")
                .args(["-R", &format!("{SYSTEM_USER}:")])
                .arg(dir.path()),
            "chown",
            10,
        )?;
        run(
            as_postgres("initdb").arg("-D").arg(&data).args([
                "-U",
                SYSTEM_USER,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-instructions",
            ]),
            "initdb",
            60,
        )?;
        let port = free_port()?;
        let options = format!(
            "-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={} -c fsync=off",
            socket.display()
        );
        let mut postgres = Postgres {
            dir,
            port,
            pid: None,
        };
        run(
            as_postgres("pg_ctl")
                .arg("-D")
                .arg(&data)
                .args(["-o", &options, "-l"])
                .arg(postgres.dir.path().join("server.log"))
                .args(["-w", "-t", "30", "start"]),
            "pg_ctl start",
            40,
        )
        .with_context(|| postgres.log())?;
        let pid = std::fs::read_to_string(data.join("postmaster.pid"))
            .ok()
            .and_then(|text| text.lines().next().and_then(|l| l.trim().parse().ok()));
        postgres.pid = pid;
        Ok(postgres)
    }

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory of its Unix socket.
    pub fn socket_dir(&self) -> PathBuf {
        self.dir.path().join("socket")
    }

    /// A libpq connection string for `database` over loopback TCP, as its superuser.
    pub fn connection_string(&self, database: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={SYSTEM_USER} dbname={database}",
            self.port
        )
    }

    /// Runs `sql` with `psql` on `database` (tuples only, unaligned): what it printed.
    pub fn psql(&self, database: &str, sql: &str) -> Result<String> {
        run(
            Command::new("/usr/bin/psql")
                .arg(self.connection_string(database))
                .args(["-v", "ON_ERROR_STOP=1", "-tA", "-c", sql]),
            "psql",
            30,
        )
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// The postmaster's PID.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = run_with_timeout(
            as_postgres("pg_ctl")
                .arg("-D")
                .arg(self.dir.path().join("data"))
                .args(["-m", "immediate", "-w", "-t", "10", "stop"]),
            Duration::from_secs(15),
        );
        if let Some(pid) = self.pid
            && is_running(pid)
        {
            let _ = signal_pid(pid, "KILL");
        }
    }
}
