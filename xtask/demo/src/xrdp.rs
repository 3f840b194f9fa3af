//! xrdp with xorgxrdp as a target: private copies of Debian's `xrdp.ini` and `sesman.ini` (TLS only with a
//! self-signed pair, automatic login with the client's credentials, no fork, logs in the server's own
//! directory), the session script in the user's home, and starting both daemons in the foreground inside a
//! namespace as direct children (this sandbox's PID 1 reaps no orphans).

use std::fs::{self, OpenOptions};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::proc::run_ok;

/// The RDP server.
pub const XRDP: &str = "/usr/sbin/xrdp";
/// Its session manager.
pub const SESMAN: &str = "/usr/sbin/xrdp-sesman";
/// The Xorg driver sessions run on.
pub const XORGXRDP: &str = "/usr/lib/xorg/modules/drivers/xrdpdev_drv.so";
/// The certificate tool.
pub const OPENSSL: &str = "/usr/bin/openssl";

/// How one xrdp is configured; its files go to `dir`.
#[derive(Debug, Clone)]
pub struct XrdpConfig<'a> {
    /// Where the certificate, the two ini files and the logs go.
    pub dir: &'a Path,
    /// xrdp.ini's `port` (every address of the namespace).
    pub port: u16,
    /// Variables every session gets (sesman's `[SessionVariables]`).
    pub session_vars: &'a [(&'a str, String)],
    /// End a session 5 s after its client left (tests), instead of keeping it for a reconnect (the demo).
    pub kill_disconnected: bool,
    /// Log the clipboard channel (chansrv) in detail.
    pub chansrv_debug: bool,
}

impl XrdpConfig<'_> {
    /// Writes the self-signed pair, `xrdp.ini` and `sesman.ini` into [`XrdpConfig::dir`].
    pub fn write(&self) -> Result<()> {
        let (cert, key) = self_signed_cert(self.dir)?;
        let path = |name: &str| self.dir.join(name).display().to_string();
        let port = self.port.to_string();
        let (cert, key) = (cert.display().to_string(), key.display().to_string());
        let xrdp_ini = edit_ini(
            "/etc/xrdp/xrdp.ini",
            &[
                ("Globals", "fork", "false"),
                ("Globals", "port", &port),
                ("Globals", "security_layer", "tls"),
                ("Globals", "certificate", &cert),
                ("Globals", "key_file", &key),
                ("Globals", "autorun", "Xorg"),
                ("Logging", "LogFile", &path("xrdp.log")),
                ("Logging", "EnableSyslog", "false"),
            ],
            &[],
        )?;
        let mut sesman = vec![
            ("Logging", "LogFile", path("sesman.log")),
            ("Logging", "EnableSyslog", "false".to_owned()),
            ("ChansrvLogging", "EnableSyslog", "false".to_owned()),
        ];
        if self.kill_disconnected {
            sesman.push(("Sessions", "KillDisconnected", "true".to_owned()));
            sesman.push(("Sessions", "DisconnectedTimeLimit", "5".to_owned()));
        }
        if self.chansrv_debug {
            sesman.push(("ChansrvLogging", "LogLevel", "DEBUG".to_owned()));
        }
        let sesman: Vec<(&str, &str, &str)> = sesman
            .iter()
            .map(|(s, k, v)| (*s, *k, v.as_str()))
            .collect();
        let vars: Vec<(&str, String)> = self
            .session_vars
            .iter()
            .map(|(k, v)| ("SessionVariables", format!("{k}={v}")))
            .collect();
        let sesman_ini = edit_ini("/etc/xrdp/sesman.ini", &sesman, &vars)?;
        fs::write(self.dir.join("xrdp.ini"), xrdp_ini)?;
        fs::write(self.dir.join("sesman.ini"), sesman_ini)?;
        Ok(())
    }
}

/// The programs an xrdp target needs, for a clear "missing" message before anything starts.
pub const TOOLS: &[&str] = &[XRDP, SESMAN, XORGXRDP, OPENSSL];

/// Makes a self-signed RSA certificate and key (PEM) in `dir`: `cert.pem`, `key.pem`.
pub fn self_signed_cert(dir: &Path) -> Result<(PathBuf, PathBuf)> {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    run_ok(
        Command::new(OPENSSL)
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
            ])
            .args(["-subj", "/CN=sallyport-rdp-target", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert),
    )?;
    Ok((cert, key))
}

/// Copies an ini file, replacing `key=value` lines of the given sections and appending lines to sections.
pub fn edit_ini(
    source: &str,
    changes: &[(&str, &str, &str)],
    append: &[(&str, String)],
) -> Result<String> {
    let text = fs::read_to_string(source).with_context(|| format!("reading {source}"))?;
    let mut out = String::new();
    let mut section = String::new();
    let flush_appends = |section: &str, out: &mut String| {
        for (s, line) in append {
            if *s == section {
                out.push_str(line);
                out.push('\n');
            }
        }
    };
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') && trimmed.ends_with(']') {
            flush_appends(&section, &mut out);
            section = trimmed[1..trimmed.len() - 1].to_owned();
        }
        let key = trimmed.split('=').next().unwrap_or("").trim();
        let replacement = (!trimmed.starts_with(['#', ';']) && trimmed.contains('='))
            .then(|| {
                changes
                    .iter()
                    .find(|(s, k, _)| *s == section && *k == key)
                    .map(|(_, k, v)| format!("{k}={v}"))
            })
            .flatten();
        out.push_str(&replacement.unwrap_or_else(|| line.to_owned()));
        out.push('\n');
    }
    flush_appends(&section, &mut out);
    Ok(out)
}

/// Starts sesman, then xrdp, in the foreground inside `netns` with the files [`XrdpConfig::write`] put in
/// `dir`; their output goes to `sesman.out` and `xrdp.out` there. Returns `[sesman, xrdp]`.
pub fn spawn(netns: &str, dir: &Path) -> Result<[Child; 2]> {
    let start = |program: &str, ini: &str, out: &str| -> Result<Child> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(out))?;
        Command::new("ip")
            .args(["netns", "exec", netns, program, "-n", "-c"])
            .arg(dir.join(ini))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("starting {program}"))
    };
    let sesman = start(SESMAN, "sesman.ini", "sesman.out")?;
    match start(XRDP, "xrdp.ini", "xrdp.out") {
        Ok(xrdp) => Ok([sesman, xrdp]),
        Err(error) => {
            let mut sesman = sesman;
            crate::proc::stop(&mut sesman, Duration::from_secs(3));
            Err(error)
        }
    }
}

/// Waits up to `timeout` until `target` accepts TCP; fails early (with the logs in `dir`) when a daemon
/// exits.
pub fn wait_listening(
    children: &mut [Child],
    target: SocketAddr,
    timeout: Duration,
    dir: &Path,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        for child in children.iter_mut() {
            if let Some(status) = child.try_wait()? {
                bail!("xrdp exited early ({status}); logs:\n{}", log(dir));
            }
        }
        if TcpStream::connect_timeout(&target, Duration::from_millis(500)).is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "xrdp did not listen on {target} within {timeout:?}; logs:\n{}",
                log(dir)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The last 12,000 bytes of each of xrdp's and sesman's logs in `dir`.
pub fn log(dir: &Path) -> String {
    let mut out = String::new();
    for name in ["xrdp.out", "xrdp.log", "sesman.out", "sesman.log"] {
        let text = fs::read_to_string(dir.join(name)).unwrap_or_default();
        let mut start = text.len().saturating_sub(12000);
        while !text.is_char_boundary(start) {
            start += 1;
        }
        out.push_str(&format!("--- {name} ---\n{}\n", &text[start..]));
    }
    out
}

/// Puts `script` in `home` as `startwm.sh` (what sesman runs for every session of that user) unless it is
/// already there. Several servers may share a user, and sesman may start one's session while another
/// writes the script: so it is written beside it under a name of its own and renamed over it, and never
/// seen half-written.
pub fn install_startwm(home: &Path, script: &str) -> Result<()> {
    let startwm = home.join("startwm.sh");
    let current = fs::read_to_string(&startwm).is_ok_and(|text| text == script)
        && fs::metadata(&startwm).is_ok_and(|m| m.permissions().mode() & 0o777 == 0o755);
    if current {
        return Ok(());
    }
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    let written = home.join(format!(".startwm.sh.{}.{n}", std::process::id()));
    let result = (|| -> Result<()> {
        fs::write(&written, script).context("writing ~/startwm.sh")?;
        fs::set_permissions(&written, fs::Permissions::from_mode(0o755))?;
        fs::rename(&written, &startwm).context("renaming the new ~/startwm.sh into place")
    })();
    if result.is_err() {
        let _ = fs::remove_file(&written);
    }
    result
}

/// Removes the X display's socket and lock and xrdp's sockets of display `display`. A session's Xorg that
/// dies with its namespace (SIGKILL) leaves them behind; sesman counts such leftovers as displays in use
/// and refuses logins once its range is full.
pub fn forget_display(display: u32) {
    let _ = fs::remove_file(format!("/tmp/.X11-unix/X{display}"));
    let _ = fs::remove_file(format!("/tmp/.X{display}-lock"));
    for name in [
        "xrdp_chansrv_socket",
        "xrdp_disconnect_display",
        "xrdp_display",
        "xrdpapi",
    ] {
        let path = format!("/run/xrdp/sockdir/{name}_{display}");
        let _ = fs::remove_file(&path).or_else(|_| fs::remove_dir_all(&path));
    }
}

/// The display number in a `:N` or `:N.S` string (what a session writes as `$DISPLAY`).
pub fn display_number(display: &str) -> Option<u32> {
    display
        .trim()
        .trim_start_matches(':')
        .split('.')
        .next()?
        .parse()
        .ok()
}
