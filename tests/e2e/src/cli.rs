//! The real `sallyport` CLI: found next to the test executable (or at `$SALLYPORT_CLI_BIN`), run with
//! its own config directory, and driven through a pseudo-terminal (rexpect) where it prompts, as a
//! person at a terminal would.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rexpect::session::PtySession;
use rexpect_nix::sys::wait::WaitStatus;
use rustls::pki_types::CertificateDer;
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

    /// Starts `sallyport ARGS` on a pseudo-terminal of `cols`×`rows`, as a person's terminal has. rexpect's own
    /// pseudo-terminal is 0×0, which the CLI passes on to the target, where bash's readline then printed no
    /// prompt (only `ESC[?2004h ESC[K CR`). `stty` sets the size before the CLI starts.
    pub fn spawn_sized(&self, args: &[&str], cols: u16, rows: u16) -> Result<PtySession> {
        let inner = self.command(args);
        let mut command = Command::new("/bin/sh");
        command
            .arg("-c")
            .arg(format!(
                "stty cols {cols} rows {rows} && exec \"$0\" \"$@\""
            ))
            .arg(inner.get_program())
            .args(inner.get_args());
        for (key, value) in inner.get_envs() {
            match value {
                Some(value) => command.env(key, value),
                None => command.env_remove(key),
            };
        }
        rexpect::session::spawn_command(command, Some(EXPECT_TIMEOUT.as_millis() as u64))
            .with_context(|| format!("starting sallyport {} ({cols}×{rows})", args.join(" ")))
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
        let rest = finished(session, "sallyport login")?;
        Ok(format!("{shown}{rest}"))
    }

    /// `sallyport ssh DESTINATION` with the target's `password`: a command that echoes `word`, then
    /// `exit CODE`, which must be the CLI's exit code. Blocking.
    pub fn ssh_echo(&self, destination: &str, password: &str, word: &str, code: i32) -> Result<()> {
        let mut ssh = self.spawn(&["ssh", destination])?;
        ssh.exp_string("password: ")?;
        ssh.send_line(password)?;
        ssh.send_line(&format!("echo {word}-$((40+2))"))?;
        ssh.exp_string(&format!("{word}-42"))?;
        ssh.send_line(&format!("exit {code}"))?;
        ssh.exp_eof()?;
        let status = ssh.process().wait()?;
        if exit_code(status) != Some(code) {
            bail!("sallyport ssh ended with {status:?}, not exit code {code}");
        }
        Ok(())
    }
}

/// Waits for the CLI on its terminal to end; everything it printed since the last expectation, or
/// why `what` failed. Blocking.
pub fn finished(mut session: PtySession, what: &str) -> Result<String> {
    let rest = session.exp_eof()?;
    let status = session.process().wait()?;
    if exit_code(status) != Some(0) {
        bail!("{what} failed ({status:?}): {rest}");
    }
    Ok(rest)
}

/// The exit code of a finished process, `None` if a signal ended it.
pub fn exit_code(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, code) => Some(code),
        _ => None,
    }
}

/// Accepts any gateway certificate: for tests that speak raw QUIC to probe the gateway's refusals,
/// where the gateway's identity is not what is under test (the CLI's pinning is tested through the CLI).
#[derive(Debug)]
struct AnyServer(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A quinn client configuration with the given client certificate and key (PEM), trusting any gateway
/// certificate, with TLS session resumption kept in `resumption` when given (else none).
pub fn quic_client_config(
    cert_pem: &str,
    key_pem: &str,
    resumption: Option<Arc<dyn rustls::client::ClientSessionStore>>,
) -> Result<quinn::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs =
        CertificateDer::pem_slice_iter(cert_pem.as_bytes()).collect::<Result<Vec<_>, _>>()?;
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes())?;
    let mut tls = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer(provider)))
        .with_client_auth_cert(certs, key)?;
    tls.alpn_protocols = vec![b"sallyport/1".to_vec()];
    tls.resumption = match resumption {
        Some(store) => rustls::client::Resumption::store(store),
        None => rustls::client::Resumption::disabled(),
    };
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)?;
    Ok(quinn::ClientConfig::new(Arc::new(crypto)))
}

/// Connects `endpoint` to the gateway at `addr` with `config` (handshake bounded to 10 s).
pub async fn quic_connect_with(
    endpoint: &quinn::Endpoint,
    config: quinn::ClientConfig,
    addr: std::net::SocketAddr,
) -> Result<quinn::Connection> {
    let connecting = endpoint.connect_with(config, addr, "localhost")?;
    Ok(tokio::time::timeout(Duration::from_secs(10), connecting)
        .await
        .context("the QUIC handshake timed out")??)
}

/// A raw QUIC connection to the gateway (ALPN `sallyport/1`) with the given client certificate and
/// key (PEM), for probing refusals the CLI would never provoke. The endpoint must outlive the
/// connection.
pub async fn quic_connect(
    addr: std::net::SocketAddr,
    cert_pem: &str,
    key_pem: &str,
) -> Result<(quinn::Endpoint, quinn::Connection)> {
    let endpoint = quinn::Endpoint::client(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))?;
    let config = quic_client_config(cert_pem, key_pem, None)?;
    let conn = quic_connect_with(&endpoint, config, addr).await?;
    Ok((endpoint, conn))
}
