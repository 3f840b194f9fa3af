//! The real gateway binary, started with a generated configuration in a temporary directory.
//!
//! [`Gateway::start`] writes `config.toml`, runs `sallyport-gateway --config <file>` (found next
//! to the test executable, or at `$SALLYPORT_GATEWAY_BIN`), reads its stdout on a thread for the
//! `password:`, `fingerprint:` and `url:` lines, and waits until the portal answers HTTPS.
//! stdout and stderr are kept in log files; they are printed when a test panics, and the whole
//! directory is kept when `SALLYPORT_E2E_KEEP=1`.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tempfile::TempDir;

use crate::common::{free_port, signal_pid, tail};
use crate::http::{Client, normalize_fingerprint};
use crate::netns::TargetNet;

/// How long [`Gateway::start`] and [`Gateway::restart`] wait for the portal to answer.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A `[[networks]]` entry.
#[derive(Debug, Clone)]
pub struct NetworkSpec {
    /// Network name.
    pub name: String,
    /// CIDR, e.g. "10.231.7.0/24".
    pub cidr: String,
}

/// A `[[targets]]` entry.
#[derive(Debug, Clone)]
pub struct TargetSpec {
    /// Target name shown in the portal.
    pub name: String,
    /// IP literal or DNS name.
    pub address: String,
    /// TCP port.
    pub port: u16,
    /// "ssh" (or "rdp").
    pub protocol: String,
}

/// What goes into the gateway's configuration file.
#[derive(Debug, Clone, Default)]
pub struct GatewayOptions {
    /// `[[networks]]` entries.
    pub networks: Vec<NetworkSpec>,
    /// `[[targets]]` entries.
    pub targets: Vec<TargetSpec>,
    /// Raw lines placed at the top level, right after `state_dir` (plain `key = value` lines).
    pub extra_top_level: Vec<String>,
    /// Raw lines placed inside the `[portal]` table, after `listen`.
    pub extra_portal: Vec<String>,
    /// Raw TOML appended at the end of the file; start it with a table header such as `[ssh]`.
    pub extra_toml: Vec<String>,
    /// Extra environment variables for the gateway process (e.g. `RUST_LOG`).
    pub env: Vec<(String, String)>,
    /// The program to run instead of [`gateway_bin`] (the harness self-test uses a stand-in).
    pub bin: Option<PathBuf>,
    /// Where the portal listens; unset means 127.0.0.1 on a free port.
    pub listen: Option<std::net::SocketAddr>,
}

impl GatewayOptions {
    /// Options with network "e2e" = `net.cidr()` and an SSH target "alpha" at `net.ns_addr():22`.
    pub fn for_net(net: &TargetNet) -> GatewayOptions {
        GatewayOptions::default()
            .network("e2e", &net.cidr())
            .target("alpha", &net.ns_addr().to_string(), 22)
    }

    /// Adds a network.
    pub fn network(mut self, name: &str, cidr: &str) -> GatewayOptions {
        self.networks.push(NetworkSpec {
            name: name.to_owned(),
            cidr: cidr.to_owned(),
        });
        self
    }

    /// Adds an SSH target.
    pub fn target(mut self, name: &str, address: &str, port: u16) -> GatewayOptions {
        self.targets.push(TargetSpec {
            name: name.to_owned(),
            address: address.to_owned(),
            port,
            protocol: "ssh".to_owned(),
        });
        self
    }

    /// Adds an RDP target.
    pub fn rdp_target(mut self, name: &str, address: &str, port: u16) -> GatewayOptions {
        self.targets.push(TargetSpec {
            name: name.to_owned(),
            address: address.to_owned(),
            port,
            protocol: "rdp".to_owned(),
        });
        self
    }

    /// Makes the portal listen on `addr` instead of 127.0.0.1 on a free port.
    pub fn listen(mut self, addr: std::net::SocketAddr) -> GatewayOptions {
        self.listen = Some(addr);
        self
    }

    /// Appends raw TOML lines at the end of the file.
    pub fn extra_toml(mut self, line: &str) -> GatewayOptions {
        self.extra_toml.push(line.to_owned());
        self
    }
}

/// A TOML basic string with the necessary escapes.
fn toml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The configuration file text for `opts` (exposed so tests can check what the gateway gets).
pub fn render_config(state_dir: &Path, port: u16, opts: &GatewayOptions) -> String {
    let listen = opts
        .listen
        .unwrap_or_else(|| std::net::SocketAddr::from(([127, 0, 0, 1], port)));
    let mut t = format!(
        "state_dir = {}\n",
        toml_str(&state_dir.display().to_string())
    );
    for line in &opts.extra_top_level {
        t.push_str(&format!("{line}\n"));
    }
    t.push_str(&format!(
        "\n[portal]\nlisten = {}\n",
        toml_str(&listen.to_string())
    ));
    for line in &opts.extra_portal {
        t.push_str(&format!("{line}\n"));
    }
    t.push_str("\n[log]\njournald = false\n");
    for n in &opts.networks {
        t.push_str(&format!(
            "\n[[networks]]\nname = {}\ncidr = {}\n",
            toml_str(&n.name),
            toml_str(&n.cidr)
        ));
    }
    for tg in &opts.targets {
        t.push_str(&format!(
            "\n[[targets]]\nname = {}\naddress = {}\nport = {}\nprotocol = {}\n",
            toml_str(&tg.name),
            toml_str(&tg.address),
            tg.port,
            toml_str(&tg.protocol)
        ));
    }
    if !opts.extra_toml.is_empty() {
        t.push('\n');
        for line in &opts.extra_toml {
            t.push_str(&format!("{line}\n"));
        }
    }
    t
}

/// Where the gateway binary is: `$SALLYPORT_GATEWAY_BIN`, else `target/<profile>/sallyport-gateway`
/// next to the running test executable (`target/<profile>/deps/<test>`).
pub fn gateway_bin() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("SALLYPORT_GATEWAY_BIN") {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!("SALLYPORT_GATEWAY_BIN={} is not a file", path.display());
        }
        return Ok(path);
    }
    let exe = std::env::current_exe().context("current_exe")?;
    let mut dir = exe.parent().context("test executable has no directory")?;
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir = dir.parent().context("deps has no parent")?;
    }
    let bin = dir.join("sallyport-gateway");
    if !bin.is_file() {
        bail!(
            "{} is missing; build it first: cargo build -p sallyport-gateway (cargo xtask ci does this)",
            bin.display()
        );
    }
    Ok(bin)
}

/// What the reader thread learned from stdout, over all starts.
#[derive(Debug, Default)]
struct Stdout {
    text: String,
    password: Option<String>,
    fingerprint: Option<String>,
    url: Option<String>,
}

/// A running gateway process; killed by PID on drop.
#[derive(Debug)]
pub struct Gateway {
    dir: TempDir,
    bin: PathBuf,
    host: std::net::IpAddr,
    port: u16,
    env: Vec<(String, String)>,
    child: Option<Child>,
    out: Arc<Mutex<Stdout>>,
}

impl Gateway {
    /// Writes the configuration, starts the gateway on a fresh state directory and waits (at
    /// most 20 s) for its `password:` line and an HTTPS answer on `/`.
    pub async fn start(opts: GatewayOptions) -> Result<Gateway> {
        let bin = match opts.bin.clone() {
            Some(bin) => bin,
            None => gateway_bin()?,
        };
        let dir = tempfile::Builder::new()
            .prefix("spe2e-gateway-")
            .tempdir()
            .context("gateway tempdir")?;
        let state_dir = dir.path().join("state");
        fs::create_dir(&state_dir)?;
        let port = match opts.listen {
            Some(listen) => listen.port(),
            None => free_port()?,
        };
        let host = opts
            .listen
            .map(|listen| listen.ip())
            .unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]));
        fs::write(
            dir.path().join("config.toml"),
            render_config(&state_dir, port, &opts),
        )?;
        let mut gw = Gateway {
            dir,
            bin,
            host,
            port,
            env: opts.env,
            child: None,
            out: Arc::new(Mutex::new(Stdout::default())),
        };
        gw.spawn()?;
        gw.wait_ready(true).await?;
        Ok(gw)
    }

    fn spawn(&mut self) -> Result<()> {
        let stderr = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.stderr_path())?;
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--config")
            .arg(self.config_path())
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr));
        // ETXTBSY: a freshly written binary may still be open for writing in a child that
        // another test thread forked a moment ago; that ends within milliseconds.
        let mut attempts = 0;
        let mut child = loop {
            match cmd.spawn() {
                Err(e) if e.raw_os_error() == Some(26) && attempts < 20 => {
                    attempts += 1;
                    std::thread::sleep(Duration::from_millis(50));
                }
                other => break other.with_context(|| format!("spawn {}", self.bin.display()))?,
            }
        };
        let stdout = child.stdout.take().context("no stdout pipe")?;
        let out = self.out.clone();
        let mut log = File::options()
            .create(true)
            .append(true)
            .open(self.stdout_path())?;
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = writeln!(log, "{line}");
                let mut out = out.lock().unwrap_or_else(|e| e.into_inner());
                parse_stdout_line(&mut out, &line);
                out.text.push_str(&line);
                out.text.push('\n');
            }
        });
        self.child = Some(child);
        Ok(())
    }

    async fn wait_ready(&mut self, need_password: bool) -> Result<()> {
        let probe = Client::new(&self.base_url(), None)?.with_timeout(Duration::from_secs(2));
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                self.child = None;
                bail!(
                    "the gateway exited during start-up ({status})\n--- stderr ---\n{}\n--- stdout ---\n{}",
                    tail(&self.stderr(), 8000),
                    tail(&self.stdout(), 4000)
                );
            }
            let has_password = !need_password || self.password_opt().is_some();
            if has_password && probe.get("/").await.is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "the gateway did not become ready within {READY_TIMEOUT:?} (HTTPS on {}:{}{})\n--- stderr ---\n{}\n--- stdout ---\n{}",
                    self.host,
                    self.port,
                    if has_password {
                        ""
                    } else {
                        "; no `password:` line on stdout"
                    },
                    tail(&self.stderr(), 8000),
                    tail(&self.stdout(), 4000)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILLs the gateway (a crash) and reaps it.
    pub fn kill_9(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// SIGTERMs the gateway and waits (at most 15 s) for it to exit; returns its exit status.
    pub fn stop(&mut self) -> Result<ExitStatus> {
        let mut child = self.child.take().context("the gateway is not running")?;
        signal_pid(child.id(), "TERM")?;
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("the gateway did not exit within 15 s of SIGTERM; killed it");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the gateway again on the same state directory and configuration (stopping it
    /// first with SIGTERM if it still runs) and waits for HTTPS. No new password is expected.
    pub async fn restart(&mut self) -> Result<()> {
        if self.child.is_some() {
            self.stop()?;
        }
        for path in [self.stdout_path(), self.stderr_path()] {
            let mut f = OpenOptions::new().create(true).append(true).open(path)?;
            writeln!(f, "=== sallyport-e2e: restart ===")?;
        }
        self.out
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .text
            .push_str("=== sallyport-e2e: restart ===\n");
        self.spawn()?;
        self.wait_ready(false).await
    }

    /// Whether the process is still running (reaps it if it exited).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    fn password_opt(&self) -> Option<String> {
        self.out
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .password
            .clone()
    }

    /// The one-time admin password printed on first start.
    pub fn password(&self) -> String {
        self.password_opt().unwrap_or_default()
    }

    /// The certificate fingerprint last printed (64 lowercase hex digits), if any.
    pub fn fingerprint(&self) -> Option<String> {
        self.out
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .fingerprint
            .clone()
    }

    /// The portal URL: as printed on stdout, else `https://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        self.out
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .url
            .clone()
            .unwrap_or_else(|| self.base_url())
    }

    /// An HTTPS client for the portal, pinned to the printed fingerprint when there is one.
    pub fn client(&self) -> Result<Client> {
        Client::new(&self.base_url(), self.fingerprint().as_deref())
    }

    /// `https://HOST:PORT/` of the listening address (127.0.0.1 unless [`GatewayOptions::listen`]).
    pub fn base_url(&self) -> String {
        format!(
            "https://{}/",
            std::net::SocketAddr::new(self.host, self.port)
        )
    }

    /// The portal's TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// PID of the running gateway process.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Everything the gateway wrote to stdout (all starts).
    pub fn stdout(&self) -> String {
        self.out
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .text
            .clone()
    }

    /// Everything the gateway wrote to stderr (all starts).
    pub fn stderr(&self) -> String {
        fs::read_to_string(self.stderr_path()).unwrap_or_default()
    }

    /// The temporary directory holding the config, logs and state.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The configured `state_dir`.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// `state_dir/recordings.db`.
    pub fn recordings_db(&self) -> PathBuf {
        self.state_dir().join("recordings.db")
    }

    /// `state_dir/state.db`.
    pub fn state_db(&self) -> PathBuf {
        self.state_dir().join("state.db")
    }

    /// The configuration file passed with `--config`.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.toml")
    }

    fn stdout_path(&self) -> PathBuf {
        self.dir.path().join("gateway.stdout.log")
    }

    fn stderr_path(&self) -> PathBuf {
        self.dir.path().join("gateway.stderr.log")
    }
}

fn parse_stdout_line(out: &mut Stdout, line: &str) {
    let line = line.trim();
    if let Some(v) = line.strip_prefix("password:") {
        out.password.get_or_insert_with(|| v.trim().to_owned());
    } else if let Some(v) = line.strip_prefix("fingerprint:") {
        if let Ok(fp) = normalize_fingerprint(v.trim()) {
            out.fingerprint = Some(fp);
        }
    } else if let Some(v) = line.strip_prefix("url:") {
        out.url = Some(v.trim().to_owned());
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "--- gateway stdout (tail) ---\n{}\n--- gateway stderr (tail) ---\n{}",
                tail(&self.stdout(), 4000),
                tail(&self.stderr(), 8000)
            );
        }
        if std::env::var_os("SALLYPORT_E2E_KEEP").is_some_and(|v| v == "1") {
            self.dir.disable_cleanup(true);
            eprintln!("kept gateway directory {}", self.dir.path().display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_renders_as_documented() {
        let opts = GatewayOptions::default()
            .network("e2e", "10.231.7.0/24")
            .target("alpha", "10.231.7.2", 22)
            .extra_toml("[ssh]")
            .extra_toml("connect_timeout_secs = 5");
        let text = render_config(Path::new("/tmp/x \"y\"/state"), 4433, &opts);
        assert_eq!(
            text,
            "state_dir = \"/tmp/x \\\"y\\\"/state\"\n\n[portal]\nlisten = \"127.0.0.1:4433\"\n\n\
             [log]\njournald = false\n\n[[networks]]\nname = \"e2e\"\ncidr = \"10.231.7.0/24\"\n\n\
             [[targets]]\nname = \"alpha\"\naddress = \"10.231.7.2\"\nport = 22\nprotocol = \"ssh\"\n\n\
             [ssh]\nconnect_timeout_secs = 5\n"
        );
    }

    #[test]
    fn stdout_lines_are_parsed() {
        let mut out = Stdout::default();
        let fp = "AB:".repeat(31) + "CD";
        for line in [
            "some log line",
            "password: s3cret-One",
            &format!("fingerprint: {fp}"),
            "url: https://127.0.0.1:4433/",
            "password: second-ignored",
        ] {
            parse_stdout_line(&mut out, line);
        }
        assert_eq!(out.password.as_deref(), Some("s3cret-One"));
        assert_eq!(
            out.fingerprint.as_deref(),
            Some(format!("{}cd", "ab".repeat(31)).as_str())
        );
        assert_eq!(out.url.as_deref(), Some("https://127.0.0.1:4433/"));
    }
}
