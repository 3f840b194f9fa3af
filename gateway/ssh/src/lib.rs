//! SSH client towards target machines: the gateway side of a terminal session.
//!
//! `sallyport-ssh` connects to an already-vetted socket address, checks the target's host key against a pin (or
//! records it on first use), authenticates with a credential the user typed, opens a PTY shell and then moves
//! bytes both ways through [`TerminalSession`]. It never resolves names and never decides which addresses are
//! allowed (the caller passes a [`std::net::SocketAddr`] that its egress checks accepted); it never stores or logs
//! credentials: a [`Credential`] is consumed by [`connect()`] and its `Debug` output is redacted.
//!
//! Map of the crate:
//! - [`connect()`] with a [`ConnectRequest`] gives a [`Connected`]: the [`TerminalSession`] and the [`HostKey`]
//!   the target presented (so that the caller can pin it).
//! - [`HostKey`] is an OpenSSH public key line with its `SHA256:` fingerprint.
//! - [`SshError`] says which side failed; [`SshError::kind`] gives a small [`ErrorKind`] for user messages.
//! - [`SshConnector`] implements the relay's `TerminalConnector` on top of the above (the broker's entry point).
//! - [`SshProxy`] implements the relay's `ProxyConnector`: the SSH server behind `sallyport proxy` (OpenSSH's
//!   `ProxyCommand`), which relays the user's authentication to the target, bridges channels and records
//!   terminal bytes, commands, and files moved by SFTP and legacy scp (watched by `sallyport-transfer`); forwarding is
//!   refused and audited unless policy allows it.
//!
//! Security-relevant behaviour, all inside this crate:
//! - A host key that differs from the pin is refused inside russh's `check_server_key`, during the key
//!   exchange, so no authentication request (and no credential) ever reaches an impostor.
//! - Strict key exchange (the Terrapin countermeasure, `kex-strict-c-v00@openssh.com`) is offered; russh 0.65
//!   offers it by default and this crate keeps it in its algorithm list (a unit test checks it).
//! - Memory per session is bounded whatever the target sends: see [`session`] for how russh's buffering works
//!   and how it is configured here, and what hostile targets were checked.
//! - Targets are untrusted: every breakage of the protocol ends only its own connection, with an [`SshError`]
//!   saying what the target did; the connect deadline covers everything before the shell, and a write that the
//!   target never lets through fails after [`session::INPUT_STALL_TIMEOUT`]. Channels a target opens towards
//!   the gateway (agent, X11, forwarded ports, sessions) are refused.

pub mod connect;
pub mod credential;
pub mod error;
pub mod host_key;
#[cfg(test)]
mod hostile_tests;
mod identification;
mod proxy;
mod relay_adapter;
pub mod session;

pub use connect::{ConnectRequest, Connected, connect};
pub use credential::Credential;
pub use error::{ErrorKind, SshError};
pub use host_key::HostKey;
pub use proxy::SshProxy;
pub use relay_adapter::SshConnector;
pub use session::{TerminalEvent, TerminalSession};
