//! A real OpenSSH server inside a [`TargetNet`], the test users it logs in (one of them may use sudo), and client
//! keys.
//!
//! [`Sshd::start`] writes its own `sshd_config`, host key and `AuthorizedKeysFile` into a temporary
//! directory, runs `/usr/sbin/sshd -D -e` inside the namespace (listening on every address there,
//! port 22 by default) and waits until the SSH banner is served on [`TargetNet::ns_addr`].
//! sshd's stderr goes to a log file, readable with [`Sshd::log`].

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use sallyport_demo::sshd::{SSH_KEYGEN, SSHD};
use tempfile::TempDir;

use crate::common::{
    require_root, require_tool, run_ok, run_with_timeout, signal_pid, tail, wait_or_kill,
};
use crate::netns::TargetNet;

/// Name of the system user the tests log in as on SSH targets.
pub const TEST_USER: &str = "sp-e2e";
/// Password of [`TEST_USER`].
pub const TEST_PASSWORD: &str = "sp-e2e-pass";

/// Name of the system user that may run anything with sudo after typing its password (the secrets test). Its own
/// user, so that the password every other test logs in with stays as it is while tests run in parallel.
pub const SUDO_TEST_USER: &str = "sp-e2e-sudo";
/// Password of [`SUDO_TEST_USER`]. Unlike [`TEST_PASSWORD`], which starts with the user name that sudo's prompt and
/// the shell prompt print, it shares no word with anything a session prints, and its first character (upper case)
/// starts none of the target's lines, so neither an accidental echo nor a search can find it by chance.
pub const SUDO_TEST_PASSWORD: &str = "Qv7Lk3Zw9Xj4";
/// The sudoers drop-in that lets [`SUDO_TEST_USER`] use sudo.
pub const SUDOERS_DROP_IN: &str = "/etc/sudoers.d/sallyport-e2e";

const SUDO: &str = "/usr/bin/sudo";
const VISUDO: &str = "/usr/sbin/visudo";

/// How an [`Sshd`] is configured beyond the fixed test defaults.
#[derive(Debug, Clone)]
pub struct SshdOptions {
    /// TCP port inside the namespace (22 unless a test needs another).
    pub port: u16,
    /// Raw `sshd_config` lines placed before the defaults; sshd keeps the first value it reads
    /// for a keyword, so these override the defaults. No `Match` blocks here.
    pub extra_config: Vec<String>,
}

impl Default for SshdOptions {
    fn default() -> Self {
        SshdOptions {
            port: 22,
            extra_config: Vec::new(),
        }
    }
}

/// A running sshd; killed by PID (and reaped) on drop.
#[derive(Debug)]
pub struct Sshd {
    dir: TempDir,
    child: Option<Child>,
    netns: String,
    addr: Ipv4Addr,
    port: u16,
}

impl Sshd {
    /// Starts sshd inside `net` and waits (at most 10 s) until it serves its banner.
    pub fn start(net: &TargetNet, opts: SshdOptions) -> Result<Sshd> {
        require_root()?;
        require_tool(SSHD)?;
        require_tool(SSH_KEYGEN)?;

        let dir = tempfile::Builder::new()
            .prefix("spe2e-sshd-")
            .tempdir()
            .context("sshd tempdir")?;
        // sshd reads AuthorizedKeysFile as the logged-in user: the directory must be traversable.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))?;
        let sshd = Sshd {
            dir,
            child: None,
            netns: net.name().to_owned(),
            addr: net.ns_addr(),
            port: opts.port,
        };
        let keys = sshd.authorized_keys_path();
        File::create(&keys).context("create authorized_keys")?;
        fs::set_permissions(&keys, fs::Permissions::from_mode(0o644))?;
        sshd.generate_host_key()?;

        let config = sallyport_demo::sshd::SshdConfig {
            listen: "0.0.0.0",
            port: opts.port,
            host_key: &sshd.host_key_path(),
            authorized_keys: Some(&keys),
            extra: &opts.extra_config,
        }
        .text();
        fs::write(sshd.config_path(), config).context("write sshd_config")?;

        let mut sshd = sshd;
        sshd.spawn()?;
        Ok(sshd)
    }

    fn spawn(&mut self) -> Result<()> {
        let mut child =
            sallyport_demo::sshd::spawn(&self.netns, &self.config_path(), &self.log_path())?;
        let target = SocketAddr::from((self.addr, self.port));
        let ready = sallyport_demo::sshd::wait_banner(&mut child, target, Duration::from_secs(10));
        self.child = Some(child);
        ready.with_context(|| format!("sshd's log:\n{}", self.log()))
    }

    fn generate_host_key(&self) -> Result<()> {
        sallyport_demo::sshd::generate_host_key(&self.host_key_path(), "spe2e-host")
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = signal_pid(child.id(), "TERM");
            wait_or_kill(&mut child, Duration::from_secs(5));
        }
    }

    /// Replaces the host key with a new one and restarts sshd (for "host key changed" tests).
    pub fn regenerate_host_key_and_restart(&mut self) -> Result<()> {
        self.stop();
        self.generate_host_key()?;
        self.spawn()
    }

    /// Restarts sshd with the same configuration and host key.
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        self.spawn()
    }

    /// The address sshd is reached at (the namespace end of the veth).
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// The TCP port sshd listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// PID of the listening sshd, if running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Everything sshd has written to stderr so far (all starts).
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The public host key line (`ssh-ed25519 AAAA... spe2e-host`).
    pub fn host_key_pub(&self) -> Result<String> {
        let text = fs::read_to_string(self.host_key_path().with_extension("pub"))?;
        Ok(text.trim().to_owned())
    }

    /// The host key fingerprint as OpenSSH prints it, `SHA256:<base64>`.
    pub fn host_key_fingerprint(&self) -> Result<String> {
        let out = run_ok(
            Command::new(SSH_KEYGEN)
                .args(["-l", "-E", "sha256", "-f"])
                .arg(self.host_key_path().with_extension("pub")),
        )?;
        out.split_whitespace()
            .nth(1)
            .map(str::to_owned)
            .context("unexpected ssh-keygen -l output")
    }

    /// Appends one public key line to the AuthorizedKeysFile (it applies to every user).
    pub fn authorize_key(&self, pubkey_line: &str) -> Result<()> {
        let mut file = OpenOptions::new()
            .append(true)
            .open(self.authorized_keys_path())?;
        writeln!(file, "{}", pubkey_line.trim())?;
        Ok(())
    }

    /// Path of the AuthorizedKeysFile.
    pub fn authorized_keys_path(&self) -> PathBuf {
        self.dir.path().join("authorized_keys")
    }

    /// Path of the generated sshd_config.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("sshd_config")
    }

    fn host_key_path(&self) -> PathBuf {
        self.dir.path().join("ssh_host_ed25519_key")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("sshd.log")
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- sshd log (tail) ---\n{}", tail(&self.log(), 4000));
        }
    }
}

/// The system user tests log in as on SSH targets.
#[derive(Debug, Clone)]
pub struct TestUser {
    /// Login name ([`TEST_USER`] or [`SUDO_TEST_USER`]).
    pub name: String,
    /// Password ([`TEST_PASSWORD`] or [`SUDO_TEST_PASSWORD`]).
    pub password: String,
    /// Home directory.
    pub home: PathBuf,
}

/// Users [`ensure_user`] has set up in this process.
static USERS_DONE: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());

/// Creates (idempotently) the system user `sp-e2e` with a home and the password `sp-e2e-pass`.
pub fn ensure_test_user() -> Result<TestUser> {
    ensure_user(TEST_USER, TEST_PASSWORD)
}

/// Creates (idempotently) the system user `sp-e2e-sudo` with a home and the password [`SUDO_TEST_PASSWORD`], and
/// lets it run anything with sudo after typing that password ([`SUDOERS_DROP_IN`]). Fails with a message naming
/// the Debian package when sudo is not installed.
pub fn ensure_sudo_user() -> Result<TestUser> {
    require_root()?;
    for tool in [SUDO, VISUDO] {
        if !Path::new(tool).exists() {
            bail!(
                "{tool} is missing: the secrets tests need Debian's `sudo` package (`cargo xtask setup` installs it)"
            );
        }
    }
    let user = ensure_user(SUDO_TEST_USER, SUDO_TEST_PASSWORD)?;
    ensure_sudoers_drop_in()?;
    Ok(user)
}

/// Writes [`SUDOERS_DROP_IN`] unless it already says what it must (mode 0440). Safe when test threads and processes
/// do it at once: each writes its own file that sudo ignores (its name has a dot), has `visudo -cf` check it, and
/// renames it over the drop-in, so sudo never reads a half-written or unchecked file.
fn ensure_sudoers_drop_in() -> Result<()> {
    let wanted = format!(
        "# Written by the Sallyport end-to-end tests (tests/e2e/src/sshd.rs): the secrets test types this user's\n\
         # password at sudo's prompt.\n{SUDO_TEST_USER} ALL=(ALL) ALL\n"
    );
    let path = Path::new(SUDOERS_DROP_IN);
    let current_ok = fs::read_to_string(path).is_ok_and(|text| text == wanted)
        && fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o7777 == 0o440);
    if current_ok {
        return Ok(());
    }
    let dir = path.parent().context("the drop-in has no directory")?;
    if !dir.is_dir() {
        bail!(
            "{} does not exist: is Debian's sudo package installed?",
            dir.display()
        );
    }
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let tmp = dir.join(format!(".sallyport-e2e.{}.{n}", std::process::id()));
    let result = (|| -> Result<()> {
        fs::write(&tmp, &wanted).with_context(|| format!("write {}", tmp.display()))?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o440))?;
        let out = run_with_timeout(
            Command::new(VISUDO).arg("-cf").arg(&tmp),
            Duration::from_secs(10),
        )?;
        if !out.status.success() {
            bail!(
                "visudo -cf rejects the sudoers drop-in: {}{}",
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        fs::rename(&tmp, path)
            .with_context(|| format!("rename {} to {}", tmp.display(), path.display()))?;
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Creates (idempotently) the system user `name` with a home directory, a bash login shell and `password`.
pub fn ensure_user(name: &'static str, password: &str) -> Result<TestUser> {
    require_root()?;
    let mut done = USERS_DONE.lock().unwrap_or_else(|e| e.into_inner());
    let user = TestUser {
        name: name.to_owned(),
        password: password.to_owned(),
        home: PathBuf::from(format!("/home/{name}")),
    };
    if done.contains(&name) {
        return Ok(user);
    }
    sallyport_demo::user::ensure(name, password)?;
    done.push(name);
    Ok(user)
}

/// An SSH client key pair in its own temporary directory.
#[derive(Debug)]
pub struct KeyPair {
    dir: TempDir,
    public_line: String,
}

impl KeyPair {
    /// Generates an unencrypted ed25519 key with `ssh-keygen`.
    pub fn generate_ed25519() -> Result<KeyPair> {
        require_tool(SSH_KEYGEN)?;
        let dir = tempfile::Builder::new().prefix("spe2e-key-").tempdir()?;
        let path = dir.path().join("id_ed25519");
        run_ok(
            Command::new(SSH_KEYGEN)
                .args(["-q", "-t", "ed25519", "-N", "", "-C", "spe2e-client", "-f"])
                .arg(&path),
        )?;
        let public_line = fs::read_to_string(path.with_extension("pub"))?
            .trim()
            .to_owned();
        Ok(KeyPair { dir, public_line })
    }

    /// Path of the private key file (OpenSSH format, mode 0600).
    pub fn private_key_path(&self) -> PathBuf {
        self.dir.path().join("id_ed25519")
    }

    /// The private key in OpenSSH PEM format.
    pub fn private_key_pem(&self) -> Result<String> {
        Ok(fs::read_to_string(self.private_key_path())?)
    }

    /// The `authorized_keys` line of the public key.
    pub fn public_line(&self) -> &str {
        &self.public_line
    }

    /// The directory holding the key files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}
