//! Connecting to a target: TCP, SSH handshake with host key pinning, authentication, PTY and shell.

use std::borrow::Cow;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use russh::client::{
    self, AuthResult, ChannelOpenHandle, DisconnectReason, Handle, KeyboardInteractiveAuthResponse,
    Msg, Session,
};
use russh::keys::{Algorithm, EcdsaCurve, HashAlg, PrivateKey, PrivateKeyWithHashAlg};
use russh::{Channel, ChannelMsg, ChannelOpenFailure, MethodKind, Preferred, Pty, SshId};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use crate::credential::{Credential, decode_private_key};
use crate::error::{SshError, printable, seconds};
use crate::host_key::HostKey;
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

/// The gateway's SSH identification line (RFC 4253 section 4.2), line end included.
const CLIENT_ID_LINE: &str = concat!("SSH-2.0-Sallyport_", env!("CARGO_PKG_VERSION"), "\r\n");
/// Most bytes the target may send up to the end of its identification line. RFC 4253 section 4.2 lets a
/// server send other lines before it, without a limit; 8 KiB holds any real pre-banner text and bounds what a
/// target makes the gateway read and keep before the key exchange.
const MAX_GREETING: usize = 8 * 1024;
/// Longest identification line, its line end included (RFC 4253 section 4.2; russh checks the same).
const MAX_IDENTIFICATION_LINE: usize = 255;
/// How long the gateway waits for the target to speak before sending its own identification line anyway. A
/// server sends its line as soon as the connection is made (RFC 4253 section 4.2; SSH 1 clients even waited
/// for it before sending theirs), so this costs a real target nothing. Not writing into silence means that a
/// target that hangs up at once never holds unread bytes of ours, so its kernel ends the connection with FIN,
/// not RST, and the error says "closed" every time rather than "reset" by chance.
const IDENTIFICATION_GRACE: Duration = Duration::from_millis(500);

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
        client_id: SshId::Raw(Cow::Borrowed(CLIENT_ID_LINE)),
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
    let presented: Arc<OnceLock<HostKey>> = Arc::new(OnceLock::new());
    let handler = Client {
        pinned: pinned_host_key.clone(),
        presented: Arc::clone(&presented),
        failure: Arc::new(OnceLock::new()),
        reverse: None,
    };
    let shell = ShellRequest { term, cols, rows };
    let stage = AtomicU8::new(Stage::Connecting as u8);
    let result = tokio::time::timeout(
        connect_timeout,
        establish(addr, username, credential, handler, shell, &stage),
    )
    .await;
    // Whatever failed, a presented key that differs from the pin is the reason: russh aborted the key exchange
    // because our handler said no.
    if let (Some(pinned), Some(presented)) = (pinned_host_key, presented.get())
        && pinned != *presented
    {
        return Err(SshError::HostKeyChanged {
            pinned,
            presented: presented.clone(),
        });
    }
    let session = result.map_err(|_| {
        SshError::Timeout(format!(
            "{} within {}",
            Stage::from_u8(stage.load(Ordering::Relaxed)).unfinished(),
            seconds(connect_timeout)
        ))
    })??;
    let host_key = presented.get().cloned().ok_or_else(|| {
        SshError::Protocol("target completed the handshake without a host key".into())
    })?;
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
    reverse: Option<Arc<crate::proxy::Reverse>>,
) -> Result<Handshaken, SshError> {
    let presented: Arc<OnceLock<HostKey>> = Arc::new(OnceLock::new());
    let failure = Arc::new(OnceLock::new());
    let handler = Client {
        pinned: pinned_host_key.clone(),
        presented: Arc::clone(&presented),
        failure: Arc::clone(&failure),
        reverse,
    };
    let stage = AtomicU8::new(Stage::Connecting as u8);
    let result = tokio::time::timeout(timeout, tcp_and_handshake(addr, handler, &stage)).await;
    if let (Some(pinned), Some(presented)) = (pinned_host_key, presented.get())
        && pinned != *presented
    {
        return Err(SshError::HostKeyChanged {
            pinned,
            presented: presented.clone(),
        });
    }
    let (handle, guard) = result.map_err(|_| {
        SshError::Timeout(format!(
            "{} within {}",
            Stage::from_u8(stage.load(Ordering::Relaxed)).unfinished(),
            seconds(timeout)
        ))
    })??;
    let host_key = presented.get().cloned().ok_or_else(|| {
        SshError::Protocol("target completed the handshake without a host key".into())
    })?;
    Ok(Handshaken {
        handle,
        host_key,
        guard,
        failure,
    })
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
    let guard = SocketGuard(std_stream.try_clone().map_err(SshError::Unreachable)?);
    let mut stream = TcpStream::from_std(std_stream).map_err(SshError::Unreachable)?;
    tracing::debug!(target_addr = %addr, "tcp connected to target");

    enter(Stage::Handshake);
    let replay = exchange_identification(&mut stream).await?;
    let stream = Greeted {
        stream,
        replay,
        replayed: 0,
        sent_id: CLIENT_ID_LINE.as_bytes(),
    };
    let handle = client::connect_stream(Arc::new(config()), stream, handler)
        .await
        .map_err(|e| SshError::from_russh(&e, "the handshake"))?;
    Ok((handle, guard))
}

/// The identification exchange (RFC 4253 section 4.2), done here rather than in russh so that a target that
/// speaks another protocol version is refused at its first line, and an early end is worded by what happened.
///
/// Reads what the target sends up to the end of its identification line (at most [`MAX_GREETING`] bytes) and
/// sends the gateway's line as soon as the target has sent anything, or after [`IDENTIFICATION_GRACE`] of
/// silence. Returns the bytes from the target's identification line on, for russh to read again. Runs under
/// the caller's handshake deadline.
async fn exchange_identification(stream: &mut TcpStream) -> Result<Vec<u8>, SshError> {
    let lost = |error: io::Error| {
        SshError::connection_ended(&error, "before sending its SSH identification line")
    };
    let mut received = vec![0; MAX_GREETING];
    let mut filled = 0;
    let mut sent = false;
    loop {
        match scan_greeting(&received[..filled]) {
            Greeting::Identified(start) => {
                received.truncate(filled);
                received.drain(..start);
                return Ok(received);
            }
            Greeting::Refused(error) => return Err(error),
            // Never with all of MAX_GREETING filled, so there is room to read into.
            Greeting::Incomplete => {}
        }
        let read = stream.read(&mut received[filled..]);
        let read = if sent {
            Some(read.await)
        } else {
            // `None`: the target stayed silent for the grace period.
            tokio::time::timeout(IDENTIFICATION_GRACE, read).await.ok()
        };
        if let Some(read) = read {
            match read.map_err(lost)? {
                0 => return Err(lost(io::ErrorKind::UnexpectedEof.into())),
                n => filled += n,
            }
        }
        if !sent {
            // Sent before what the target sent is judged, so that even a target refused at once has seen the
            // gateway identify itself. A failed write is not reported here: the next read says how the
            // connection ended, after the bytes that arrived before are judged.
            let _ = stream.write_all(CLIENT_ID_LINE.as_bytes()).await;
            sent = true;
        }
    }
}

/// What the bytes a target sent so far say about its identification line.
#[derive(Debug)]
enum Greeting {
    /// No identification line yet: read more. Only while fewer than [`MAX_GREETING`] bytes are in.
    Incomplete,
    /// An acceptable identification line starts at this offset; what came before it were other lines.
    Identified(usize),
    /// The target cannot be spoken to.
    Refused(SshError),
}

/// Judges the start of what a target sent (RFC 4253 section 4.2): other lines, then the identification line
/// `SSH-protoversion-softwareversion [comments]`. Lines end with LF, a CR before it is dropped (CR LF is the
/// RFC's line end; a bare LF is accepted, as OpenSSH and russh do). The first line starting with `SSH-` is the
/// identification line (other lines must not start so); it must be at most [`MAX_IDENTIFICATION_LINE`] bytes
/// and end within the first [`MAX_GREETING`] bytes.
fn scan_greeting(received: &[u8]) -> Greeting {
    let window = &received[..received.len().min(MAX_GREETING)];
    let mut start = 0;
    while let Some(rest) = window.get(start..).filter(|rest| !rest.is_empty()) {
        let identification = rest.starts_with(b"SSH-");
        match rest.iter().position(|b| *b == b'\n') {
            Some(end) if identification => {
                if end + 1 > MAX_IDENTIFICATION_LINE {
                    return Greeting::Refused(SshError::no_identification());
                }
                let line = &rest[..end];
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                return match judge_identification(line) {
                    Ok(()) => Greeting::Identified(start),
                    Err(error) => Greeting::Refused(error),
                };
            }
            Some(end) => start += end + 1,
            None if identification && rest.len() >= MAX_IDENTIFICATION_LINE => {
                return Greeting::Refused(SshError::no_identification());
            }
            None => break,
        }
    }
    if received.len() >= MAX_GREETING {
        Greeting::Refused(SshError::no_identification())
    } else {
        Greeting::Incomplete
    }
}

/// Judges an identification line (without its line end): protocol 2.0, or 1.99 (a server that speaks 2.0 as
/// well as 1), is accepted; SSH 1 and anything else is refused in words.
fn judge_identification(line: &[u8]) -> Result<(), SshError> {
    let (version, _software) = std::str::from_utf8(line)
        .ok()
        .and_then(|line| line.strip_prefix("SSH-"))
        .and_then(|rest| rest.split_once('-'))
        .filter(|(version, _)| !version.is_empty())
        .ok_or_else(SshError::no_identification)?;
    match version {
        "2.0" | "1.99" => Ok(()),
        other => Err(SshError::unsupported_protocol(other)),
    }
}

/// The target's stream as russh gets it after [`exchange_identification`]: reads first replay the bytes read
/// from the target's identification line on (russh parses that line again, as it always does), and the
/// identification line russh writes first is dropped, because it went out already.
struct Greeted {
    stream: TcpStream,
    /// The bytes from the target's identification line on, and how many of them russh has read.
    replay: Vec<u8>,
    replayed: usize,
    /// What russh's first writes must be (our identification line), not yet seen.
    sent_id: &'static [u8],
}

impl AsyncRead for Greeted {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(rest) = this.replay.get(this.replayed..).filter(|r| !r.is_empty()) {
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.replayed += n;
            if this.replayed == this.replay.len() {
                this.replay = Vec::new();
                this.replayed = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Greeted {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if !this.sent_id.is_empty() {
            let n = buf.len().min(this.sent_id.len());
            if buf[..n] != this.sent_id[..n] {
                return Poll::Ready(Err(io::Error::other(
                    "russh did not begin with the gateway's identification line",
                )));
            }
            this.sent_id = &this.sent_id[n..];
            return Poll::Ready(Ok(n));
        }
        Pin::new(&mut this.stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
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
            tracing::debug!(
                method = "publickey",
                success = result.success(),
                "authentication attempt"
            );
            if result.success() {
                Ok(())
            } else {
                Err(SshError::AuthFailed)
            }
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
            tracing::debug!(
                method = "password",
                success = result.success(),
                "authentication attempt"
            );
            if result.success() {
                Ok(())
            } else {
                Err(SshError::AuthFailed)
            }
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
                tracing::debug!(
                    method = "keyboard-interactive",
                    success = true,
                    "authentication attempt"
                );
                return Ok(());
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
    tracing::debug!(
        method = "keyboard-interactive",
        success = false,
        "authentication attempt"
    );
    Err(SshError::AuthFailed)
}

/// russh's callback object for one connection: checks the host key against the pin, records what the target
/// presented, refuses every channel the target tries to open towards the gateway, and keeps the reason the
/// connection failed once it is established.
pub(crate) struct Client {
    pinned: Option<HostKey>,
    presented: Arc<OnceLock<HostKey>>,
    /// Why russh's session task ended, if it ended with an error or a disconnect from the target.
    failure: Arc<OnceLock<SshError>>,
    /// For the SSH proxy: where channels the target opens towards the gateway go when policy allows
    /// forwarding (`None`: every such channel is refused).
    reverse: Option<Arc<crate::proxy::Reverse>>,
}

/// The answer to every channel a target opens towards the gateway.
const REFUSED: ChannelOpenFailure = ChannelOpenFailure::AdministrativelyProhibited;

/// Refuses a channel the target opened. A terminal session never needs one: no agent or X11 forwarding is
/// requested and no port is forwarded. russh's default handler *accepts* them, and each accepted channel stays in
/// russh's tables until the target closes it, so a target could grow the gateway's memory without bound.
pub(crate) async fn refuse_channel(kind: &str, channel: Channel<Msg>, reply: ChannelOpenHandle) {
    tracing::debug!(
        channel_type = kind,
        "target tried to open a channel towards the gateway; refused"
    );
    drop(channel);
    reply.reject(REFUSED).await;
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("pinned", &self.pinned)
            .finish_non_exhaustive()
    }
}

impl client::Handler for Client {
    type Error = russh::Error;

    /// Runs during the initial key exchange, after russh verified the exchange signature with this key and before
    /// anything else (authentication included) is sent. Returning `false` makes russh abort the connection.
    async fn check_server_key(
        &mut self,
        key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let Ok(presented) = HostKey::from_public_key(&key.public_key()) else {
            tracing::debug!("target presented a host key that cannot be encoded");
            return Ok(false);
        };
        let accepted = self
            .pinned
            .as_ref()
            .is_none_or(|pinned| *pinned == presented);
        tracing::debug!(
            host_key_fingerprint = %presented.fingerprint(),
            pinned = self.pinned.is_some(),
            accepted,
            "target host key"
        );
        // Only the initial key exchange calls this, so the slot is empty here.
        let _ = self.presented.set(presented);
        Ok(accepted)
    }

    async fn disconnected(
        &mut self,
        reason: DisconnectReason<Self::Error>,
    ) -> Result<(), Self::Error> {
        match reason {
            DisconnectReason::ReceivedDisconnect(info) => {
                let _ = self.failure.set(SshError::Protocol(format!(
                    "target disconnected ({:?}): {}",
                    info.reason_code,
                    // The target's words go to logs: no control characters (escape sequences), bounded.
                    printable(&info.message, 200)
                )));
                Ok(())
            }
            DisconnectReason::Error(error) => {
                let _ = self
                    .failure
                    .set(SshError::from_russh(&error, "the session"));
                Err(error)
            }
        }
    }

    async fn server_channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        refuse_channel("session", channel, reply).await;
        Ok(())
    }

    async fn server_channel_open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        _host_to_connect: &str,
        _port_to_connect: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        refuse_channel("direct-tcpip", channel, reply).await;
        Ok(())
    }

    async fn server_channel_open_direct_streamlocal(
        &mut self,
        channel: Channel<Msg>,
        _socket_path: &str,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        refuse_channel("direct-streamlocal", channel, reply).await;
        Ok(())
    }

    async fn server_channel_open_forwarded_tcpip(
        &mut self,
        channel: Channel<Msg>,
        connected_address: &str,
        connected_port: u32,
        originator_address: &str,
        originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        match &self.reverse {
            Some(reverse) => {
                reverse
                    .forwarded_tcpip(
                        channel,
                        reply,
                        connected_address,
                        connected_port,
                        originator_address,
                        originator_port,
                    )
                    .await
            }
            None => refuse_channel("forwarded-tcpip", channel, reply).await,
        }
        Ok(())
    }

    async fn server_channel_open_forwarded_streamlocal(
        &mut self,
        channel: Channel<Msg>,
        _socket_path: &str,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        refuse_channel("forwarded-streamlocal", channel, reply).await;
        Ok(())
    }

    async fn server_channel_open_agent_forward(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        match &self.reverse {
            Some(reverse) => reverse.agent(channel, reply).await,
            None => refuse_channel("auth-agent", channel, reply).await,
        }
        Ok(())
    }

    async fn server_channel_open_x11(
        &mut self,
        channel: Channel<Msg>,
        originator_address: &str,
        originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        match &self.reverse {
            Some(reverse) => {
                reverse
                    .x11(channel, reply, originator_address, originator_port)
                    .await
            }
            None => refuse_channel("x11", channel, reply).await,
        }
        Ok(())
    }

    async fn server_channel_open_unknown(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        refuse_channel("unknown", channel, reply).await;
        Ok(())
    }

    async fn kex_done(
        &mut self,
        _shared_secret: Option<&[u8]>,
        names: &russh::Names,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        tracing::debug!(
            kex = %names.kex.as_ref(),
            cipher = %names.cipher.as_ref(),
            strict_kex = names.strict_kex(),
            "key exchange with target done"
        );
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn strict_kex_is_offered() {
        let config = config();
        assert!(
            config
                .preferred
                .kex
                .contains(&russh::kex::EXTENSION_OPENSSH_STRICT_KEX_AS_CLIENT)
        );
    }

    #[test]
    fn weak_algorithms_are_not_offered() {
        let config = config();
        assert!(
            !config
                .preferred
                .key
                .contains(&Algorithm::Rsa { hash: None })
        );
        for kex in config.preferred.kex.iter() {
            let name = kex.as_ref();
            assert!(
                !name.contains("sha1") && !name.ends_with("group1-sha1"),
                "{name}"
            );
        }
        for cipher in config.preferred.cipher.iter() {
            let name = cipher.as_ref();
            assert!(
                !name.contains("cbc") && !name.contains("3des") && name != "none",
                "{name}"
            );
        }
        for mac in config.preferred.mac.iter() {
            let name = mac.as_ref();
            assert!(
                !name.contains("sha1") && !name.contains("md5") && name != "none",
                "{name}"
            );
        }
    }

    #[test]
    fn limits() {
        let config = config();
        assert_eq!(config.inactivity_timeout, None);
        assert_eq!(config.keepalive_interval, Some(KEEPALIVE_INTERVAL));
        assert!(config.channel_buffer_size <= 16);
        assert!(config.window_size <= 256 * 1024);
    }

    /// A target on loopback that accepts and then says nothing: the deadline names the unfinished stage.
    #[tokio::test]
    async fn a_silent_target_times_out_in_the_handshake() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            // Hold the connection open, silently, until the client gives up.
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(socket);
        });
        let started = std::time::Instant::now();
        let error = connect(ConnectRequest {
            addr,
            username: "alice".into(),
            credential: Credential::Password("x".into()),
            pinned_host_key: None,
            term: "xterm-256color".into(),
            cols: 80,
            rows: 24,
            connect_timeout: Duration::from_millis(500),
        })
        .await
        .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(3));
        assert_eq!(error.kind(), crate::ErrorKind::Timeout);
        assert_eq!(
            error.to_string(),
            "target did not finish the SSH handshake within 0.5 s"
        );
        server.abort();
    }

    /// [`scan_greeting`] as a value: `Ok(None)` to read more, `Ok(Some(offset))` of the identification line, or
    /// the refusal in words.
    fn greeting(bytes: &[u8]) -> Result<Option<usize>, String> {
        match scan_greeting(bytes) {
            Greeting::Incomplete => Ok(None),
            Greeting::Identified(start) => Ok(Some(start)),
            Greeting::Refused(error) => Err(error.to_string()),
        }
    }

    #[test]
    fn identification_lines_of_ssh_2_are_found_after_other_lines() {
        let cases: &[(&[u8], Option<usize>)] = &[
            (b"SSH-2.0-OpenSSH_9.6\r\n", Some(0)),
            (b"SSH-2.0-OpenSSH_7.4\n", Some(0)),
            (b"SSH-2.0-OpenSSH_9.6 Debian-3\r\n\x00\x00\x01\x14", Some(0)),
            (b"SSH-1.99-Cisco-1.25\r\n", Some(0)),
            (b"Welcome\r\nauthorised use only\nSSH-2.0-x\r\n", Some(29)),
            (b"SSH-2.0-OpenSSH", None),
            (b"Welcome\r\nSS", None),
            (b"", None),
        ];
        for (bytes, expected) in cases {
            assert_eq!(
                greeting(bytes),
                Ok(*expected),
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
        // The longest line RFC 4253 allows, line end included.
        let longest = format!("SSH-2.0-{}\r\n", "A".repeat(245));
        assert_eq!(longest.len(), MAX_IDENTIFICATION_LINE);
        assert_eq!(greeting(longest.as_bytes()), Ok(Some(0)));
        // Other lines up to the bound, then the identification line ending exactly at it.
        let mut most = "x\n".repeat((MAX_GREETING - 10) / 2).into_bytes();
        most.extend_from_slice(b"SSH-2.0-x\n");
        assert_eq!(most.len(), MAX_GREETING);
        assert_eq!(greeting(&most), Ok(Some(MAX_GREETING - 10)));
    }

    #[test]
    fn other_protocols_and_endless_greetings_are_refused_in_words() {
        let insecure = |v: &str| {
            format!(
                "target protocol error: target speaks SSH protocol {v}, which is insecure and not \
                 supported; only SSH 2 is"
            )
        };
        let none = "target protocol error: target sent no valid SSH identification line (at most 8 KiB of \
                    other lines may come first, and the line itself is at most 255 bytes)";
        let cases: &[(&[u8], &str)] = &[
            (b"SSH-1.5-OpenSSH_1.2.3\r\n", &insecure("1.5")),
            (b"SSH-1.3-x\n", &insecure("1.3")),
            (b"Welcome\r\nSSH-1.5-x\r\nSSH-2.0-y\r\n", &insecure("1.5")),
            (
                b"SSH-3.0-x\r\n",
                "target protocol error: target speaks SSH protocol 3.0, which is not supported; only SSH \
                 2.0 is",
            ),
            (
                b"SSH-\x1b[31m-x\r\n",
                "target protocol error: target speaks SSH protocol \u{fffd}[31m, which is not supported; \
                 only SSH 2.0 is",
            ),
            (b"SSH-2.0\r\n", none),
            (b"SSH--x\r\n", none),
            (b"SSH-2.0-\xff\r\n", none),
        ];
        for (bytes, expected) in cases {
            assert_eq!(
                greeting(bytes),
                Err((*expected).to_owned()),
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
        // One byte too long, with or without its line end yet.
        let too_long = format!("SSH-2.0-{}\r\n", "A".repeat(246));
        assert_eq!(greeting(too_long.as_bytes()), Err(none.to_owned()));
        let unended = format!("SSH-2.0-{}", "A".repeat(300));
        assert_eq!(greeting(unended.as_bytes()), Err(none.to_owned()));
        // 8 KiB of other lines; one byte less still waits for more.
        let lines = "pre-banner line\r\n"
            .repeat(MAX_GREETING / 17 + 1)
            .into_bytes();
        assert_eq!(greeting(&lines[..MAX_GREETING - 1]), Ok(None));
        assert_eq!(greeting(&lines[..MAX_GREETING]), Err(none.to_owned()));
        assert_eq!(greeting(&lines), Err(none.to_owned()));
        // An identification line that would end past the bound.
        let mut late = "x\n".repeat((MAX_GREETING - 8) / 2).into_bytes();
        late.extend_from_slice(b"SSH-2.0-x\n");
        assert_eq!(greeting(&late), Err(none.to_owned()));
    }

    #[test]
    fn the_identification_line_sent_is_the_one_hashed() {
        let config = config();
        let SshId::Raw(id) = &config.client_id else {
            panic!("the identification line is sent raw");
        };
        assert_eq!(id.as_ref(), CLIENT_ID_LINE);
        assert!(CLIENT_ID_LINE.starts_with("SSH-2.0-Sallyport_"));
        assert!(CLIENT_ID_LINE.ends_with("\r\n"));
        assert!(CLIENT_ID_LINE.len() <= MAX_IDENTIFICATION_LINE);
    }

    #[test]
    fn request_debug_redacts_the_credential() {
        let request = ConnectRequest {
            addr: SocketAddr::from(([192, 0, 2, 1], 22)),
            username: "alice".into(),
            credential: Credential::Password("hunter2".into()),
            pinned_host_key: None,
            term: "xterm-256color".into(),
            cols: 80,
            rows: 24,
            connect_timeout: Duration::from_secs(10),
        };
        let shown = format!("{request:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("Password(<redacted>)"), "{shown}");
    }
}
