//! Connecting to a target: TCP, SSH handshake with host key pinning, authentication, PTY and shell.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use russh::client::{self, AuthResult, Handle, KeyboardInteractiveAuthResponse};
use russh::keys::{Algorithm, EcdsaCurve, HashAlg, PrivateKey, PrivateKeyWithHashAlg};
use russh::{ChannelMsg, MethodKind, Preferred, Pty, SshId};
use tokio::net::TcpStream;

mod handler;
#[cfg(test)]
mod tests;

pub(crate) use handler::{Client, refuse_channel};

use crate::credential::{Credential, decode_private_key};
use crate::error::{SshError, seconds};
use crate::host_key::HostKey;
use crate::identification;
use crate::proxy::Reverse;
use crate::session::{SocketGuard, TerminalSession};

/// Everything needed to open a terminal on a target. The address must already have passed the caller's egress
/// checks; this crate connects to exactly that address.
#[derive(Debug)]
pub struct ConnectRequest {
    /// The target's vetted address.
    pub addr: SocketAddr,
    /// The username on the target.
    pub username: String,
    /// The credential, used for this connect only; its `Debug` is redacted.
    pub credential: Credential,
    /// The host key pinned for this target, or `None` to trust on first use (the presented key is returned in
    /// [`Connected::host_key`] for the caller to pin).
    pub pinned_host_key: Option<HostKey>,
    /// The terminal type, e.g. `"xterm-256color"`.
    pub term: String,
    /// Terminal width in character cells.
    pub cols: u16,
    /// Terminal height in character cells.
    pub rows: u16,
    /// Deadline for TCP connect, SSH handshake, authentication and opening the shell, together.
    pub connect_timeout: Duration,
}

/// A terminal ready for use, and the host key the target presented.
#[derive(Debug)]
pub struct Connected {
    /// The shell session.
    pub session: TerminalSession,
    /// The key the target presented (equal to the pin if there was one).
    pub host_key: HostKey,
}

/// Interval of SSH keepalives once authenticated; after 3 unanswered ones russh ends the connection.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// Initial channel window: how much output the target may have in flight. Small enough that Ctrl-C stops a
/// flood quickly, large enough for terminal throughput (256 KiB per round trip).
const WINDOW_SIZE: u32 = 256 * 1024;
/// Largest data packet we accept on the channel.
const MAXIMUM_PACKET_SIZE: u32 = 32 * 1024;
/// Channel messages russh queues for us before it stops reading the socket (see [`crate::session`]).
const CHANNEL_BUFFER_SIZE: usize = 16;
/// Keyboard-interactive rounds we answer before giving up on a target that keeps asking.
const MAX_KEYBOARD_INTERACTIVE_ROUNDS: usize = 8;
/// Most prompts in one keyboard-interactive round we answer (each answer is the password): PAM asks one or two.
const MAX_KEYBOARD_INTERACTIVE_PROMPTS: usize = 8;

/// Host key algorithms we accept, most preferred first: russh's defaults without `ssh-rsa` (RSA with SHA-1).
const HOST_KEY_ALGORITHMS: &[Algorithm] = &[
    Algorithm::Ed25519,
    Algorithm::Ecdsa {
        curve: EcdsaCurve::NistP256,
    },
    Algorithm::Ecdsa {
        curve: EcdsaCurve::NistP384,
    },
    Algorithm::Ecdsa {
        curve: EcdsaCurve::NistP521,
    },
    Algorithm::Rsa {
        hash: Some(HashAlg::Sha512),
    },
    Algorithm::Rsa {
        hash: Some(HashAlg::Sha256),
    },
];

/// Terminal modes for the PTY: a UTF-8 terminal with the usual control characters, and XON/XOFF off so that
/// Ctrl-S in a browser does not freeze the session.
const PTY_MODES: &[(Pty, u32)] = &[
    (Pty::VINTR, 3),
    (Pty::VQUIT, 28),
    (Pty::VERASE, 127),
    (Pty::VKILL, 21),
    (Pty::VEOF, 4),
    (Pty::VSUSP, 26),
    (Pty::VWERASE, 23),
    (Pty::VLNEXT, 22),
    (Pty::ICRNL, 1),
    (Pty::IXON, 0),
    (Pty::IUTF8, 1),
    (Pty::ISIG, 1),
    (Pty::ICANON, 1),
    (Pty::IEXTEN, 1),
    (Pty::ECHO, 1),
    (Pty::ECHOE, 1),
    (Pty::ECHOK, 1),
    (Pty::ECHOCTL, 1),
    (Pty::ECHOKE, 1),
    (Pty::OPOST, 1),
    (Pty::ONLCR, 1),
    (Pty::CS8, 1),
    (Pty::TTY_OP_ISPEED, 38400),
    (Pty::TTY_OP_OSPEED, 38400),
];

/// The russh client configuration used for every target.
///
/// - Algorithms: russh 0.65's defaults (no SHA-1 key exchange or MAC, no CBC ciphers, strict KEX offered) with
///   `ssh-rsa` host keys removed.
/// - Strict KEX: `kex-strict-c-v00@openssh.com` stays in the key exchange list, so against a server that offers
///   it (OpenSSH 9.6 and later) russh enforces the strict sequence-number rules. Older servers still connect.
/// - No inactivity timeout (terminals idle for hours); keepalives detect dead targets.
/// - Small buffers, see [`crate::session`].
pub(crate) fn config() -> client::Config {
    client::Config {
        // Raw: sent as it is, line end included; the key exchange hashes it without the line end.
        client_id: SshId::Raw(Cow::Borrowed(identification::CLIENT_ID_LINE)),
        window_size: WINDOW_SIZE,
        maximum_packet_size: MAXIMUM_PACKET_SIZE,
        channel_buffer_size: CHANNEL_BUFFER_SIZE,
        preferred: Preferred {
            key: Cow::Borrowed(HOST_KEY_ALGORITHMS),
            ..Preferred::DEFAULT
        },
        inactivity_timeout: None,
        keepalive_interval: Some(KEEPALIVE_INTERVAL),
        keepalive_max: 3,
        nodelay: true,
        ..client::Config::default()
    }
}

/// Connects to the target, checks its host key, authenticates, and opens a PTY shell.
///
/// The whole sequence runs under `req.connect_timeout`. A host key other than the pinned one is refused during
/// the key exchange, before any authentication request is sent, and reported as [`SshError::HostKeyChanged`].
pub async fn connect(req: ConnectRequest) -> Result<Connected, SshError> {
    let ConnectRequest {
        addr,
        username,
        credential,
        pinned_host_key,
        term,
        cols,
        rows,
        connect_timeout,
    } = req;
    let (attempt, handler) = Attempt::new(pinned_host_key, Arc::new(Reverse::new(false)));
    let shell = ShellRequest { term, cols, rows };
    let result = tokio::time::timeout(
        connect_timeout,
        establish(addr, username, credential, handler, shell, &attempt.stage),
    )
    .await;
    let (session, host_key) = attempt.conclude(result, connect_timeout)?;
    Ok(Connected { session, host_key })
}

/// A target connection after the SSH handshake (host key checked), before authentication: the SSH proxy
/// authenticates it with what the user's ssh sends, then opens channels as that client asks.
pub(crate) struct Handshaken {
    /// The russh handle: authenticate and open channels with it.
    pub(crate) handle: Handle<Client>,
    /// The key the target presented (equal to the pin if there was one).
    pub(crate) host_key: HostKey,
    /// Shuts the TCP connection down when dropped.
    pub(crate) guard: SocketGuard,
    /// Why the connection ended, once it has (set by the handler).
    pub(crate) failure: Arc<OnceLock<SshError>>,
}

/// Connects to the target and completes the SSH handshake within `timeout`; the host key is checked against
/// the pin inside the key exchange. `reverse` decides what happens to channels the target opens towards the
/// gateway (forwarded ports, agent, X11): refused unless the SSH proxy allows them.
pub(crate) async fn handshake(
    addr: SocketAddr,
    pinned_host_key: Option<HostKey>,
    timeout: Duration,
    reverse: Arc<Reverse>,
) -> Result<Handshaken, SshError> {
    let (attempt, handler) = Attempt::new(pinned_host_key, reverse);
    let failure = Arc::clone(&handler.failure);
    let result =
        tokio::time::timeout(timeout, tcp_and_handshake(addr, handler, &attempt.stage)).await;
    let ((handle, guard), host_key) = attempt.conclude(result, timeout)?;
    Ok(Handshaken {
        handle,
        host_key,
        guard,
        failure,
    })
}

/// The SSH handshake over an in-memory transport (no identification exchange of the gateway's own, no
/// socket): for unit tests of the SSH proxy.
#[cfg(test)]
pub(crate) async fn handshake_in_memory(
    stream: tokio::io::DuplexStream,
    reverse: Arc<Reverse>,
) -> Result<Handshaken, SshError> {
    let (attempt, handler) = Attempt::new(None, reverse);
    let failure = Arc::clone(&handler.failure);
    let handshake = client::connect_stream(Arc::new(config()), stream, handler);
    let result = tokio::time::timeout(Duration::from_secs(10), async {
        handshake
            .await
            .map_err(|e| SshError::from_russh(&e, "the handshake"))
    })
    .await;
    let (handle, host_key) = attempt.conclude(result, Duration::from_secs(10))?;
    Ok(Handshaken {
        handle,
        host_key,
        guard: SocketGuard::in_memory(),
        failure,
    })
}

/// One connection attempt's shared state: what the handler saw of the host key, and how far it got.
struct Attempt {
    pinned: Option<HostKey>,
    presented: Arc<OnceLock<HostKey>>,
    stage: AtomicU8,
}

impl Attempt {
    /// The attempt and the russh handler that checks the host key against `pinned`.
    fn new(pinned: Option<HostKey>, reverse: Arc<Reverse>) -> (Attempt, Client) {
        let presented: Arc<OnceLock<HostKey>> = Arc::new(OnceLock::new());
        let handler = Client {
            pinned: pinned.clone(),
            presented: Arc::clone(&presented),
            failure: Arc::new(OnceLock::new()),
            reverse,
        };
        let attempt = Attempt {
            pinned,
            presented,
            stage: AtomicU8::new(Stage::Connecting as u8),
        };
        (attempt, handler)
    }

    /// The outcome of the steps run within `timeout`, with the key the target presented. Whatever failed,
    /// a presented key that differs from the pin is the reason: russh aborted the key exchange because the
    /// handler said no.
    fn conclude<T>(
        self,
        result: Result<Result<T, SshError>, tokio::time::error::Elapsed>,
        timeout: Duration,
    ) -> Result<(T, HostKey), SshError> {
        if let (Some(pinned), Some(presented)) = (self.pinned, self.presented.get())
            && pinned != *presented
        {
            return Err(SshError::HostKeyChanged {
                pinned,
                presented: presented.clone(),
            });
        }
        let done = result.map_err(|_| {
            SshError::Timeout(format!(
                "{} within {}",
                Stage::from_u8(self.stage.load(Ordering::Relaxed)).unfinished(),
                seconds(timeout)
            ))
        })??;
        let host_key = self.presented.get().cloned().ok_or_else(|| {
            SshError::Protocol("target completed the handshake without a host key".into())
        })?;
        Ok((done, host_key))
    }
}

struct ShellRequest {
    term: String,
    cols: u16,
    rows: u16,
}

/// How far [`establish`] got, so that a timeout can say what the target did not finish.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Stage {
    Connecting = 0,
    Handshake = 1,
    Authenticating = 2,
    OpeningShell = 3,
}

impl Stage {
    fn from_u8(value: u8) -> Stage {
        match value {
            0 => Stage::Connecting,
            1 => Stage::Handshake,
            2 => Stage::Authenticating,
            _ => Stage::OpeningShell,
        }
    }

    /// What the target did not do, for [`SshError::Timeout`] ("target did not ... within 20 s").
    fn unfinished(self) -> &'static str {
        match self {
            Stage::Connecting => "accept the TCP connection",
            Stage::Handshake => "finish the SSH handshake",
            Stage::Authenticating => "finish authentication",
            Stage::OpeningShell => "open the shell",
        }
    }
}

/// The steps of [`connect`], without the deadline. Dropping this future (on timeout) drops the socket guard,
/// which shuts the socket down and ends russh's session task.
async fn establish(
    addr: SocketAddr,
    username: String,
    credential: Credential,
    handler: Client,
    shell: ShellRequest,
    stage: &AtomicU8,
) -> Result<TerminalSession, SshError> {
    let enter = |next: Stage| stage.store(next as u8, Ordering::Relaxed);
    let failure = Arc::clone(&handler.failure);
    let (handle, guard) = dial(addr, username, credential, handler, stage).await?;
    open_shell(addr, handle, guard, failure, shell, &enter).await
}

/// TCP, the SSH handshake (host key checked by `handler`) and authentication.
async fn dial(
    addr: SocketAddr,
    username: String,
    credential: Credential,
    handler: Client,
    stage: &AtomicU8,
) -> Result<(Handle<Client>, SocketGuard), SshError> {
    let enter = |next: Stage| stage.store(next as u8, Ordering::Relaxed);
    // Decode a private key before touching the network: a bad key should not cost the target a failed login.
    // Key derivation is CPU work, so it runs on a blocking thread.
    let secret = match credential {
        Credential::Password(password) => Secret::Password(password),
        Credential::PrivateKey { pem, passphrase } => {
            let key = tokio::task::spawn_blocking(move || {
                decode_private_key(&pem, passphrase.as_deref())
            })
            .await
            .map_err(|_| SshError::BadPrivateKey("decoding the key failed".into()))??;
            Secret::Key(Arc::new(key))
        }
    };
    let (mut handle, guard) = tcp_and_handshake(addr, handler, stage).await?;
    enter(Stage::Authenticating);
    authenticate(&mut handle, username, secret).await?;
    Ok((handle, guard))
}

/// TCP and the SSH handshake (the host key is checked by `handler`).
async fn tcp_and_handshake(
    addr: SocketAddr,
    handler: Client,
    stage: &AtomicU8,
) -> Result<(Handle<Client>, SocketGuard), SshError> {
    let enter = |next: Stage| stage.store(next as u8, Ordering::Relaxed);
    let stream = TcpStream::connect(addr)
        .await
        .map_err(SshError::Unreachable)?;
    let std_stream = stream.into_std().map_err(SshError::Unreachable)?;
    let guard = SocketGuard::new(std_stream.try_clone().map_err(SshError::Unreachable)?);
    let stream = TcpStream::from_std(std_stream).map_err(SshError::Unreachable)?;
    tracing::debug!(target_addr = %addr, "tcp connected to target");

    enter(Stage::Handshake);
    let stream = identification::greet(stream).await?;
    let handle = client::connect_stream(Arc::new(config()), stream, handler)
        .await
        .map_err(|e| SshError::from_russh(&e, "the handshake"))?;
    Ok((handle, guard))
}

/// Opens the PTY shell on an authenticated connection.
async fn open_shell(
    addr: SocketAddr,
    handle: Handle<Client>,
    guard: SocketGuard,
    failure: Arc<OnceLock<SshError>>,
    shell: ShellRequest,
    enter: &(dyn Fn(Stage) + Sync),
) -> Result<TerminalSession, SshError> {
    enter(Stage::OpeningShell);
    let channel = handle
        .channel_open_session()
        .await
        .map_err(|e| SshError::from_russh(&e, "opening the session channel"))?;
    let (mut reader, writer) = channel.split();
    writer
        .request_pty(
            true,
            &shell.term,
            shell.cols.into(),
            shell.rows.into(),
            0,
            0,
            PTY_MODES,
        )
        .await
        .map_err(|e| SshError::from_russh(&e, "the pty request"))?;
    await_reply(&mut reader, "pty").await?;
    writer
        .request_shell(true)
        .await
        .map_err(|e| SshError::from_russh(&e, "the shell request"))?;
    await_reply(&mut reader, "shell").await?;
    tracing::debug!(target_addr = %addr, "shell open on target");
    Ok(TerminalSession::new(handle, reader, writer, guard, failure))
}

/// Waits for the target's answer to a channel request sent with `want_reply`.
async fn await_reply(reader: &mut russh::ChannelReadHalf, what: &str) -> Result<(), SshError> {
    loop {
        match reader.wait().await {
            Some(ChannelMsg::Success) => return Ok(()),
            Some(ChannelMsg::Failure) => {
                return Err(SshError::ChannelRefused(format!("{what} request refused")));
            }
            Some(ChannelMsg::Close) | None => {
                return Err(SshError::ChannelRefused(format!(
                    "channel closed before the {what} request was answered"
                )));
            }
            // Nothing else is expected before the shell starts (window adjustments at most); ignore it.
            Some(_) => {}
        }
    }
}

/// The credential in the form used for authentication.
enum Secret {
    Password(String),
    Key(Arc<PrivateKey>),
}

async fn authenticate(
    handle: &mut Handle<Client>,
    username: String,
    secret: Secret,
) -> Result<(), SshError> {
    let lost = |e: russh::Error| SshError::from_russh(&e, "authentication");
    match secret {
        Secret::Key(key) => {
            let hash = if key.algorithm().is_rsa() {
                // `None` from best_supported_rsa_hash means the target did not list its signature algorithms
                // (OpenSSH before 7.2); those targets only verify ssh-rsa (SHA-1), so that is what they get.
                handle
                    .best_supported_rsa_hash()
                    .await
                    .map_err(lost)?
                    .flatten()
            } else {
                None
            };
            let result = handle
                .authenticate_publickey(username, PrivateKeyWithHashAlg::new(key, hash))
                .await
                .map_err(lost)?;
            attempted("publickey", result.success())
        }
        Secret::Password(password) => {
            // Ask which methods the target offers ("none" does not count as a failed attempt in OpenSSH), so that
            // keyboard-interactive is used only when password is not offered.
            let methods = match handle
                .authenticate_none(username.as_str())
                .await
                .map_err(lost)?
            {
                AuthResult::Success => return Ok(()),
                AuthResult::Failure {
                    remaining_methods, ..
                } => remaining_methods,
            };
            if !methods.contains(&MethodKind::Password)
                && methods.contains(&MethodKind::KeyboardInteractive)
            {
                return keyboard_interactive(handle, username, password).await;
            }
            let result = handle
                .authenticate_password(username, password)
                .await
                .map_err(lost)?;
            attempted("password", result.success())
        }
    }
}

/// Keyboard-interactive authentication answering every prompt with the password (PAM's "Password:" prompt).
async fn keyboard_interactive(
    handle: &mut Handle<Client>,
    username: String,
    password: String,
) -> Result<(), SshError> {
    let lost = |e: russh::Error| SshError::from_russh(&e, "authentication");
    let mut response = handle
        .authenticate_keyboard_interactive_start(username, None)
        .await
        .map_err(lost)?;
    for _ in 0..MAX_KEYBOARD_INTERACTIVE_ROUNDS {
        match response {
            KeyboardInteractiveAuthResponse::Success => {
                return attempted("keyboard-interactive", true);
            }
            KeyboardInteractiveAuthResponse::Failure { .. } => break,
            KeyboardInteractiveAuthResponse::InfoRequest { prompts, .. } => {
                if prompts.len() > MAX_KEYBOARD_INTERACTIVE_PROMPTS {
                    return Err(SshError::Protocol(format!(
                        "target asked {} keyboard-interactive questions at once",
                        prompts.len()
                    )));
                }
                let answers = prompts.iter().map(|_| password.clone()).collect();
                response = handle
                    .authenticate_keyboard_interactive_respond(answers)
                    .await
                    .map_err(lost)?;
            }
        }
    }
    attempted("keyboard-interactive", false)
}

/// Logs an authentication attempt's outcome and turns a refusal into [`SshError::AuthFailed`].
fn attempted(method: &'static str, success: bool) -> Result<(), SshError> {
    tracing::debug!(method, success, "authentication attempt");
    if success {
        Ok(())
    } else {
        Err(SshError::AuthFailed)
    }
}
