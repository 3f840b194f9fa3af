//! OpenSSH servers as targets: the one `sshd_config` the demo and the e2e harness write, the host key, and
//! starting `sshd -D -e` inside a namespace until it serves its banner.

use std::fs::OpenOptions;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::proc::run_ok;

/// The OpenSSH server.
pub const SSHD: &str = "/usr/sbin/sshd";
/// Its key generator.
pub const SSH_KEYGEN: &str = "/usr/bin/ssh-keygen";

/// What an sshd's configuration says beyond the fixed defaults.
#[derive(Debug, Clone)]
pub struct SshdConfig<'a> {
    /// The address to listen on inside the namespace (`0.0.0.0`: every address there).
    pub listen: &'a str,
    /// The TCP port.
    pub port: u16,
    /// The host key (see [`generate_host_key`]).
    pub host_key: &'a Path,
    /// The `AuthorizedKeysFile` (every user's keys), if any.
    pub authorized_keys: Option<&'a Path>,
    /// Raw lines placed before the defaults; sshd keeps the first value it reads for a keyword, so these
    /// override them. No `Match` blocks here.
    pub extra: &'a [String],
}

impl SshdConfig<'_> {
    /// The `sshd_config` text: password logins without PAM (the account's password in /etc/shadow), no root
    /// logins, generous connection limits (tests open many sessions at once), SFTP in-process.
    pub fn text(&self) -> String {
        let mut config = String::new();
        for line in self.extra {
            config.push_str(line);
            config.push('\n');
        }
        config.push_str(&format!(
            "Port {port}\n\
             ListenAddress {listen}\n\
             HostKey {host_key}\n\
             PidFile none\n\
             UsePAM no\n\
             PasswordAuthentication yes\n\
             KbdInteractiveAuthentication no\n\
             PubkeyAuthentication yes\n\
             PermitRootLogin no\n\
             StrictModes no\n\
             MaxStartups 500:30:1000\n\
             MaxSessions 10\n\
             LogLevel VERBOSE\n\
             UseDNS no\n\
             PrintMotd no\n\
             Subsystem sftp internal-sftp\n",
            port = self.port,
            listen = self.listen,
            host_key = self.host_key.display(),
        ));
        if let Some(keys) = self.authorized_keys {
            config.push_str(&format!("AuthorizedKeysFile {}\n", keys.display()));
        }
        config
    }
}

/// Makes a new ed25519 host key at `path` (and `path.pub`), replacing any there.
pub fn generate_host_key(path: &Path, comment: &str) -> Result<()> {
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_file(path.with_extension("pub"));
    run_ok(
        Command::new(SSH_KEYGEN)
            .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
            .arg(path),
    )?;
    Ok(())
}

/// Starts `sshd -D -e -f config` inside the namespace `netns`, its output appended to `log`.
pub fn spawn(netns: &str, config: &Path, log: &Path) -> Result<Child> {
    // The privilege separation directory Debian's sshd insists on.
    std::fs::create_dir_all("/run/sshd").context("creating /run/sshd")?;
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    Command::new("ip")
        .args(["netns", "exec", netns, SSHD, "-D", "-e", "-f"])
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log))
        .spawn()
        .context("starting sshd")
}

/// Waits up to `timeout` until `target` serves an SSH banner; fails early when `child` exits.
pub fn wait_banner(child: &mut Child, target: SocketAddr, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("sshd exited early ({status})");
        }
        if let Ok(mut stream) = TcpStream::connect_timeout(&target, Duration::from_millis(500)) {
            stream.set_read_timeout(Some(Duration::from_secs(2)))?;
            let mut banner = [0u8; 4];
            if stream.read_exact(&mut banner).is_ok() && &banner == b"SSH-" {
                return Ok(());
            }
        }
        if Instant::now() >= deadline {
            bail!("sshd did not serve a banner on {target} within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
