//! The small traits transports and protocols implement to plug into the broker.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use sallyport_core::errors::ErrorKind;
use sallyport_core::frames::{ClientMessage, Credential, FrameError, ServerControl, TerminalSize};

/// A boxed, sendable future (keeps the protocol traits object-safe).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The user's side went away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the client closed the connection")]
pub struct TransportClosed;

/// What every transport to the user does, whatever the session carries: control messages and a polite
/// end.
pub trait Transport: Send {
    /// Sends a control message.
    fn send_control(
        &mut self,
        msg: &ServerControl,
    ) -> impl Future<Output = Result<(), TransportClosed>> + Send;
    /// Ends the transport politely (a WebSocket close frame), once the session is over.
    fn close(&mut self) -> impl Future<Output = ()> + Send;
}

/// Terminal frames to and from the user (a browser WebSocket, a QUIC stream).
pub trait TerminalTransport: Transport {
    /// The next client message; `None` when the client is gone. Must be cancel-safe.
    fn recv(&mut self) -> impl Future<Output = Option<Result<ClientMessage, FrameError>>> + Send;
    /// Sends terminal output.
    fn send_output(
        &mut self,
        data: &[u8],
    ) -> impl Future<Output = Result<(), TransportClosed>> + Send;
}

/// What a protocol needs to open a terminal on a target. The address is already vetted by the egress
/// rules: protocols dial exactly this and resolve nothing.
#[derive(Debug)]
pub struct TerminalConnect {
    /// The vetted address to dial.
    pub addr: SocketAddr,
    /// Account on the target.
    pub username: String,
    /// Credential for this connection only.
    pub credential: Credential,
    /// The pinned host key (OpenSSH line), or `None` to trust on first use.
    pub pinned_host_key: Option<String>,
    /// Initial terminal size.
    pub size: TerminalSize,
    /// Deadline for connect, handshake and authentication together.
    pub timeout: Duration,
}

/// An open terminal and the identity the target proved.
pub struct TerminalOpened {
    /// The terminal channel.
    pub channel: Box<dyn TerminalChannel>,
    /// The host key the target presented (OpenSSH line).
    pub host_key: String,
    /// Its `SHA256:` fingerprint.
    pub host_key_fingerprint: String,
}

/// A failure on the target side, already classified for the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind:?}: {detail}")]
pub struct TargetError {
    /// What the user is told.
    pub kind: ErrorKind,
    /// Detail for logs and audit (never a credential).
    pub detail: String,
}

/// Something the target sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetEvent {
    /// Terminal output.
    Output(Vec<u8>),
    /// The shell exited with this status.
    Exit(u32),
    /// The shell was killed by this signal.
    ExitSignal(String),
    /// The channel or connection closed in order.
    Closed,
    /// The target connection failed mid-session (protocol violation, reset, lost keepalives).
    Failed(TargetError),
}

/// A protocol that can open terminals on targets.
pub trait TerminalConnector: Send + Sync {
    /// Dials, checks the host key against the pin, authenticates and opens a PTY shell.
    fn connect(
        &self,
        request: TerminalConnect,
    ) -> BoxFuture<'_, Result<TerminalOpened, TargetError>>;
}

/// An open terminal on a target.
pub trait TerminalChannel: Send {
    /// The next event from the target. Must be cancel-safe.
    fn next_event(&mut self) -> BoxFuture<'_, TargetEvent>;
    /// Sends keystrokes, waiting for the target's window (backpressure).
    fn write<'a>(&'a mut self, data: &'a [u8]) -> BoxFuture<'a, Result<(), TargetError>>;
    /// Changes the terminal size.
    fn resize(&mut self, size: TerminalSize) -> BoxFuture<'_, Result<(), TargetError>>;
    /// Closes politely.
    fn close(self: Box<Self>) -> BoxFuture<'static, ()>;
}
