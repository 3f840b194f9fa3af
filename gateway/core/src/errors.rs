//! User-facing session errors: a stable kind for programs and a plain-words message for people.
//!
//! Every failure that ends a session is mapped to one [`ErrorKind`] before it reaches the browser or the
//! CLI, so users see the same words whatever the transport, and internal details stay in the logs.

use serde::{Deserialize, Serialize};

/// Why a session could not start or had to end, as the user is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Policy or egress rules forbid this connection.
    NotAllowed,
    /// The target could not be reached (refused, no route, name not found).
    TargetUnreachable,
    /// The target did not answer in time.
    TargetTimeout,
    /// The target refused the username or credential.
    TargetAuthFailed,
    /// The target presented a host key different from the pinned one.
    HostKeyChanged,
    /// The private key the user supplied could not be used.
    BadPrivateKey,
    /// The target broke the protocol or refused the terminal.
    TargetProtocol,
    /// The recorder cannot write, so the session is refused or ended (fail closed).
    RecordingUnavailable,
    /// An administrator, or a revocation (logout, password change, disabled user), ended the session.
    Terminated,
    /// The browser or client sent something malformed.
    BadRequest,
    /// Something failed inside the gateway.
    Internal,
}

impl ErrorKind {
    /// The sentence shown to the user.
    pub fn message(self) -> &'static str {
        match self {
            ErrorKind::NotAllowed => "you are not allowed to connect to this target",
            ErrorKind::TargetUnreachable => "the target could not be reached",
            ErrorKind::TargetTimeout => "the target did not answer in time",
            ErrorKind::TargetAuthFailed => "the target refused the username or password",
            ErrorKind::HostKeyChanged => {
                "the target's host key has changed since it was first seen; the connection was refused \
                 before any credential was sent (ask an admin to check the target and forget the old key)"
            }
            ErrorKind::BadPrivateKey => {
                "the private key could not be read (wrong format or passphrase)"
            }
            ErrorKind::TargetProtocol => "the target broke the protocol or refused the terminal",
            ErrorKind::RecordingUnavailable => {
                "the session cannot be recorded right now, so it was refused"
            }
            ErrorKind::Terminated => "the session was ended by the gateway",
            ErrorKind::BadRequest => "the request was malformed",
            ErrorKind::Internal => "an internal error ended the session",
        }
    }
}
