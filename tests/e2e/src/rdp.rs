//! Real RDP servers inside a [`TargetNet`]: xrdp with xorgxrdp ([`Xrdp`]) and FreeRDP's shadow server on
//! Xvfb with NLA ([`Shadow`]).
//!
//! [`Xrdp`] runs `xrdp-sesman -n` and `xrdp -n` with private copies of Debian's `sesman.ini` and
//! `xrdp.ini` (TLS only, a self-signed certificate, automatic login with the client's credentials, logs
//! in the test's directory). The session it starts for the test user runs `~/startwm.sh`
//! ([`STARTWM`]): a solid [`BACKGROUND`], an xterm at [`XTERM_AT`] whose shell runs in the test's
//! directory, `xev` logging every mouse button pressed on the background with its position, and the
//! screen size written to a file every half second. Those files land
//! in [`Xrdp::out_dir`] (the session gets its path as `SPE2E_DIR` through sesman's `[SessionVariables]`),
//! so a test checks on the target side what typing, clicking and resizing did.

use std::fs::{self, OpenOptions};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
pub use sallyport_demo::xrdp::self_signed_cert;
use sallyport_demo::xrdp::{self as shared, XrdpConfig};
use tempfile::TempDir;

use crate::common::{require_root, require_tool, run_ok, signal_pid, tail, wait_or_kill};
use crate::netns::TargetNet;
use crate::sshd::{TestUser, ensure_test_user};

/// The desktop background the test session paints, as RGB.
pub const BACKGROUND: [u8; 3] = [0xcc, 0x00, 0x00];
/// Where the session's xterm sits (top-left pixel, from `-geometry +X+Y`) and its background (white).
pub const XTERM_AT: (u16, u16) = (40, 40);

/// The test user's `~/startwm.sh`, run by sesman for every xrdp session of that user.
pub const STARTWM: &str = r#"#!/bin/sh
# Sallyport e2e desktop: a known background, an xterm with a shell in the test's directory, every mouse
# button on the background logged with its position, and the screen size.
out="${SPE2E_DIR:-/tmp}"
echo "$DISPLAY" > "$out/display"
xsetroot -solid '#cc0000'
xterm -geometry 60x8+40+40 -bg white -fg black -e /bin/sh -c 'cd "$SPE2E_DIR" && exec /bin/bash --norc --noprofile' &
stdbuf -oL xev -root -event button > "$out/buttons" 2>&1 &
i=0
while [ $i -lt 7200 ]; do
  xdpyinfo 2>/dev/null | awk '/dimensions:/ {print $2}' > "$out/size.tmp" && mv "$out/size.tmp" "$out/size"
  sleep 0.5
  i=$((i+1))
done
"#;

/// A running xrdp (sesman and xrdp); both killed by PID and reaped on drop.
#[derive(Debug)]
pub struct Xrdp {
    dir: TempDir,
    sesman: Option<Child>,
    xrdp: Option<Child>,
    addr: Ipv4Addr,
    port: u16,
    user: TestUser,
}

impl Xrdp {
    /// Starts xrdp inside `net` for the test user and waits (at most 15 s) until it accepts connections.
    pub fn start(net: &TargetNet) -> Result<Xrdp> {
        require_root()?;
        for tool in shared::TOOLS.iter().chain(&[
            "/usr/bin/xterm",
            "/usr/bin/xsetroot",
            "/usr/bin/xev",
            "/usr/bin/xdpyinfo",
            "/usr/bin/xclip",
        ]) {
            require_tool(tool)?;
        }
        let user = ensure_test_user()?;
        shared::install_startwm(&user.home, STARTWM)?;

        let dir = tempfile::Builder::new()
            .prefix("spe2e-xrdp-")
            .tempdir()
            .context("xrdp tempdir")?;
        // The session (running as the test user) writes its files here.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777))?;
        let out = dir.path().join("out");
        fs::create_dir(&out)?;
        fs::set_permissions(&out, fs::Permissions::from_mode(0o777))?;
        XrdpConfig {
            dir: dir.path(),
            port: 3389,
            session_vars: &[("SPE2E_DIR", out.display().to_string())],
            kill_disconnected: true,
            chansrv_debug: true,
        }
        .write()?;
        let [sesman, xrdp] = shared::spawn(net.name(), dir.path())?;
        let mut children = [sesman, xrdp];
        let addr = net.ns_addr();
        let ready = shared::wait_listening(
            &mut children,
            SocketAddr::from((addr, 3389)),
            Duration::from_secs(15),
            dir.path(),
        );
        let [sesman, xrdp] = children;
        let server = Xrdp {
            dir,
            sesman: Some(sesman),
            xrdp: Some(xrdp),
            addr,
            port: 3389,
            user,
        };
        ready?;
        Ok(server)
    }

    /// The address xrdp is reached at.
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The user the session logs in as.
    pub fn user(&self) -> &TestUser {
        &self.user
    }

    /// Where the session writes `display`, `size`, `clicked` and whatever the test types into its shell.
    pub fn out_dir(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    /// Button presses on the background so far, as `(button, x, y)` (from `xev`).
    pub fn button_presses(&self) -> Vec<(u32, u32, u32)> {
        parse_button_presses(
            &fs::read_to_string(self.out_dir().join("buttons")).unwrap_or_default(),
        )
    }

    /// `xclip` on the session's X clipboard, as its user (xrdp's chansrv bridges it to the RDP
    /// clipboard); `None` until the session wrote its display. Add `-i` or `-o`.
    pub fn xclip(&self) -> Option<Command> {
        let display = fs::read_to_string(self.out_dir().join("display")).ok()?;
        let mut command = Command::new("runuser");
        command
            .args(["-u", &self.user.name, "--", "env"])
            .arg(format!("DISPLAY={}", display.trim()))
            .arg(format!(
                "XAUTHORITY={}",
                self.user.home.join(".Xauthority").display()
            ))
            .args(["xclip", "-quiet", "-selection", "clipboard"]);
        Some(command)
    }

    /// The session's screen size as `WIDTHxHEIGHT`, once the session wrote it.
    pub fn screen_size(&self) -> Option<String> {
        fs::read_to_string(self.out_dir().join("size"))
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    }

    /// The logs of xrdp and sesman.
    pub fn log(&self) -> String {
        shared::log(self.dir.path())
    }
}

impl Drop for Xrdp {
    fn drop(&mut self) {
        // sesman's children (Xorg, the session script, chansrv) live in the namespace, which the
        // TargetNet kills on its drop; the daemons themselves are ours to stop.
        for child in [self.xrdp.take(), self.sesman.take()].into_iter().flatten() {
            let mut child = child;
            let _ = signal_pid(child.id(), "TERM");
            wait_or_kill(&mut child, Duration::from_secs(3));
        }
        if std::thread::panicking() {
            eprintln!("--- xrdp logs ---\n{}", self.log());
        }
        forget_display(&self.out_dir());
    }
}

/// Forgets the display the session wrote to `out_dir/display` ([`shared::forget_display`]).
fn forget_display(out_dir: &Path) {
    if let Some(display) = fs::read_to_string(out_dir.join("display"))
        .ok()
        .and_then(|d| shared::display_number(&d))
    {
        shared::forget_display(display);
    }
}

/// The session script of the shadow server's Xvfb display: the same picture as [`STARTWM`] (it only
/// differs in who runs it: root, inside the namespace, with `DISPLAY` and `SPE2E_DIR` set).
pub const SHADOW_SESSION: &str = STARTWM;

/// Which security the shadow server offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShadowSecurity {
    /// CredSSP/NLA with an NTLM SAM file (the test user and password).
    Nla,
    /// Standard RDP security only (RC4): the gateway must refuse it.
    StandardOnly,
}

/// FreeRDP's shadow server mirroring an Xvfb display, inside a namespace; everything killed by PID on drop.
#[derive(Debug)]
pub struct Shadow {
    dir: TempDir,
    children: Vec<Child>,
    addr: Ipv4Addr,
    port: u16,
    username: String,
    password: String,
}

const SHADOW: &str = "/usr/bin/freerdp-shadow-cli";
const XVFB: &str = "/usr/bin/Xvfb";
const WINPR_HASH: &str = "/usr/bin/winpr-hash";

impl Shadow {
    /// Starts Xvfb (1024x768), the session script and the shadow server inside `net`, and waits (at most
    /// 20 s) until the server accepts connections.
    pub fn start(net: &TargetNet, security: ShadowSecurity) -> Result<Shadow> {
        Shadow::start_sized(net, security, (1024, 768))
    }

    /// [`start`](Self::start) with another screen size.
    pub fn start_sized(
        net: &TargetNet,
        security: ShadowSecurity,
        (width, height): (u16, u16),
    ) -> Result<Shadow> {
        require_root()?;
        for tool in [SHADOW, XVFB, WINPR_HASH, "/usr/bin/xterm", "/usr/bin/xev"] {
            require_tool(tool)?;
        }
        let dir = tempfile::Builder::new()
            .prefix("spe2e-shadow-")
            .tempdir()
            .context("shadow tempdir")?;
        let out = dir.path().join("out");
        fs::create_dir(&out)?;
        let mut shadow = Shadow {
            dir,
            children: Vec::new(),
            addr: net.ns_addr(),
            port: 3389,
            username: crate::sshd::TEST_USER.to_owned(),
            password: crate::sshd::TEST_PASSWORD.to_owned(),
        };
        // Display numbers are per machine (lock files in /tmp): derive one from the namespace's address.
        let display = format!(":{}", 200 + u32::from(net.ns_addr().octets()[2]));
        let log = |name: &str| -> Result<Stdio> {
            Ok(Stdio::from(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(shadow.dir.path().join(name))?,
            ))
        };
        shadow.children.push(
            net.exec(XVFB)
                .args([
                    &display,
                    "-screen",
                    "0",
                    &format!("{width}x{height}x24"),
                    "-noreset",
                    "-nolisten",
                    "tcp",
                ])
                .stdin(Stdio::null())
                .stdout(log("xvfb.log")?)
                .stderr(log("xvfb.log")?)
                .spawn()
                .context("spawn Xvfb")?,
        );
        let socket = PathBuf::from(format!("/tmp/.X11-unix/X{}", &display[1..]));
        if !crate::common::wait_until(Duration::from_secs(10), || socket.exists()) {
            bail!("Xvfb did not start; its log:\n{}", shadow.log());
        }
        let script = shadow.dir.path().join("session.sh");
        fs::write(&script, SHADOW_SESSION)?;
        shadow.children.push(
            net.exec("/bin/sh")
                .arg(&script)
                .env("DISPLAY", &display)
                .env("SPE2E_DIR", &out)
                .stdin(Stdio::null())
                .stdout(log("session.log")?)
                .stderr(log("session.log")?)
                .spawn()
                .context("spawn the session script")?,
        );
        let mut args = vec!["/port:3389".to_owned()];
        match security {
            ShadowSecurity::Nla => {
                let sam = run_ok(Command::new(WINPR_HASH).args([
                    "-u",
                    &shadow.username,
                    "-p",
                    &shadow.password,
                    "-f",
                    "sam",
                ]))?;
                let sam_file = shadow.dir.path().join("sam");
                fs::write(&sam_file, sam)?;
                args.extend([
                    "+auth".to_owned(),
                    "/sec:nla".to_owned(),
                    format!("/sam-file:{}", sam_file.display()),
                ]);
            }
            ShadowSecurity::StandardOnly => {
                args.extend(["-auth".to_owned(), "/sec:rdp".to_owned()]);
            }
        }
        shadow.children.push(
            net.exec(SHADOW)
                .args(&args)
                .env("DISPLAY", &display)
                // The server keeps its generated certificate under HOME.
                .env("HOME", shadow.dir.path())
                .stdin(Stdio::null())
                .stdout(log("shadow.log")?)
                .stderr(log("shadow.log")?)
                .spawn()
                .context("spawn freerdp-shadow-cli")?,
        );
        let target = SocketAddr::from((shadow.addr, shadow.port));
        let ready = crate::common::wait_until(Duration::from_secs(20), || {
            TcpStream::connect_timeout(&target, Duration::from_millis(300)).is_ok()
        });
        if !ready {
            bail!(
                "the shadow server did not listen on {target}; logs:\n{}",
                shadow.log()
            );
        }
        Ok(shadow)
    }

    /// The address the server is reached at.
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The NLA account.
    pub fn username(&self) -> &str {
        &self.username
    }

    /// Its password.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// Where the session script writes its files (the xterm's shell runs here).
    pub fn out_dir(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    /// Button presses on the background so far, as `(button, x, y)`.
    pub fn button_presses(&self) -> Vec<(u32, u32, u32)> {
        parse_button_presses(
            &fs::read_to_string(self.out_dir().join("buttons")).unwrap_or_default(),
        )
    }

    /// The Xvfb screen's size as `WIDTHxHEIGHT`, once the session wrote it.
    pub fn screen_size(&self) -> Option<String> {
        fs::read_to_string(self.out_dir().join("size"))
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    }

    /// The logs of Xvfb, the session and the server.
    pub fn log(&self) -> String {
        let mut out = String::new();
        for name in ["xvfb.log", "session.log", "shadow.log"] {
            let text = fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
            out.push_str(&format!("--- {name} ---\n{}\n", tail(&text, 6000)));
        }
        out
    }
}

impl Drop for Shadow {
    fn drop(&mut self) {
        for mut child in self.children.drain(..).rev() {
            let _ = signal_pid(child.id(), "TERM");
            wait_or_kill(&mut child, Duration::from_secs(3));
        }
        if std::thread::panicking() {
            eprintln!("--- shadow logs ---\n{}", self.log());
        }
    }
}

/// Reads `xev`'s log of ButtonPress events into `(button, x, y)`.
fn parse_button_presses(log: &str) -> Vec<(u32, u32, u32)> {
    let mut presses = Vec::new();
    let mut in_press = false;
    let mut at = None;
    for line in log.lines() {
        if line.starts_with("ButtonPress") {
            in_press = true;
            at = None;
        } else if line.starts_with(|c: char| !c.is_whitespace()) {
            in_press = false;
        }
        if !in_press {
            continue;
        }
        if let Some(pos) = line
            .split("root:(")
            .nth(1)
            .and_then(|r| r.split(')').next())
        {
            let mut xy = pos.split(',').filter_map(|v| v.trim().parse::<u32>().ok());
            at = xy.next().zip(xy.next());
        }
        let button = line
            .split("button ")
            .nth(1)
            .and_then(|r| r.split(',').next())
            .and_then(|b| b.trim().parse::<u32>().ok());
        if let (Some(button), Some((x, y))) = (button, at) {
            presses.push((button, x, y));
        }
    }
    presses
}
