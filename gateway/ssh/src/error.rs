//! Errors of the SSH client, each saying which side failed, and their small [`ErrorKind`] for user messages.

use crate::host_key::HostKey;

/// Why connecting to a target, or talking to it, failed.
///
/// Messages are lowercase plain words and say which side failed: "target" for the machine we connect to,
/// "private key" for what the user supplied. They never contain credentials.
#[derive(thiserror::Error, Debug)]
pub enum SshError {
    /// The TCP connection to the target could not be made (refused, no route, reset).
    #[error("target unreachable: {0}")]
    Unreachable(std::io::Error),
    /// TCP connect, SSH handshake, authentication and opening the shell did not finish before the deadline.
    #[error("target did not finish connecting and authenticating in time")]
    Timeout,
    /// The target presented a host key other than the pinned one; nothing was sent to authenticate.
    #[error(
        "target host key changed: pinned {}, presented {}",
        .pinned.fingerprint(),
        .presented.fingerprint()
    )]
    HostKeyChanged {
        /// The key the caller pinned for this target.
        pinned: HostKey,
        /// The key the target presented during the key exchange.
        presented: HostKey,
    },
    /// The target refused the username or the credential.
    #[error("target refused the username or credential")]
    AuthFailed,
    /// The user-supplied private key could not be read or decrypted (or was refused before use).
    #[error("private key unusable: {0}")]
    BadPrivateKey(String),
    /// The target refused the session channel, the PTY or the shell.
    #[error("target refused the terminal: {0}")]
    ChannelRefused(String),
    /// The target broke the protocol, offered no common algorithm, or dropped the connection unexpectedly.
    #[error("target protocol error: {0}")]
    Protocol(String),
    /// While a write waited for the target to accept input, the target kept sending more output than this crate
    /// buffers; the session is ended rather than growing memory or deadlocking.
    #[error("target stopped reading input while its output kept coming")]
    Stalled,
    /// The session is already closed (the target closed the channel or the connection ended).
    #[error("target connection is closed")]
    Closed,
    /// A host key line (for example a stored pin) could not be parsed.
    #[error("host key unusable: {0}")]
    BadHostKey(String),
}

/// The kind of an [`SshError`], for mapping to user-facing messages and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// See [`SshError::Unreachable`].
    Unreachable,
    /// See [`SshError::Timeout`].
    Timeout,
    /// See [`SshError::HostKeyChanged`].
    HostKeyChanged,
    /// See [`SshError::AuthFailed`].
    AuthFailed,
    /// See [`SshError::BadPrivateKey`].
    BadPrivateKey,
    /// See [`SshError::ChannelRefused`].
    ChannelRefused,
    /// See [`SshError::Protocol`].
    Protocol,
    /// See [`SshError::Stalled`].
    Stalled,
    /// See [`SshError::Closed`].
    Closed,
    /// See [`SshError::BadHostKey`].
    BadHostKey,
}

impl SshError {
    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            SshError::Unreachable(_) => ErrorKind::Unreachable,
            SshError::Timeout => ErrorKind::Timeout,
            SshError::HostKeyChanged { .. } => ErrorKind::HostKeyChanged,
            SshError::AuthFailed => ErrorKind::AuthFailed,
            SshError::BadPrivateKey(_) => ErrorKind::BadPrivateKey,
            SshError::ChannelRefused(_) => ErrorKind::ChannelRefused,
            SshError::Protocol(_) => ErrorKind::Protocol,
            SshError::Stalled => ErrorKind::Stalled,
            SshError::Closed => ErrorKind::Closed,
            SshError::BadHostKey(_) => ErrorKind::BadHostKey,
        }
    }

    /// Maps an error from russh during the handshake or a later stage (`stage`, e.g. "authentication") to
    /// [`SshError`]. Host key mismatches are detected by the caller before this is used.
    pub(crate) fn from_russh(error: russh::Error, stage: &str) -> SshError {
        match error {
            russh::Error::IO(e) => {
                SshError::Protocol(format!("connection to target lost during {stage}: {e}"))
            }
            russh::Error::NoCommonAlgo { kind, .. } => {
                SshError::Protocol(format!("target offers no {kind:?} algorithm we accept"))
            }
            russh::Error::ChannelOpenFailure(reason) => {
                SshError::ChannelRefused(format!("session channel refused ({reason:?})"))
            }
            russh::Error::Disconnect
            | russh::Error::HUP
            | russh::Error::SendError
            | russh::Error::RecvError
            | russh::Error::KeepaliveTimeout => {
                SshError::Protocol(format!("target closed the connection during {stage}"))
            }
            russh::Error::ConnectionTimeout | russh::Error::InactivityTimeout => SshError::Timeout,
            other => SshError::Protocol(format!("{stage} failed: {other}")),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    fn check(error: SshError, kind: ErrorKind, message: &str) {
        assert_eq!(error.kind(), kind);
        assert_eq!(error.to_string(), message);
    }

    #[test]
    fn kinds_and_messages() {
        let key = HostKey::from_openssh(
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILOnvmRkj+jZDCBLLMe22CMHsG7DnUUvX2juF3yyyOrb",
        )
        .unwrap();
        let other = HostKey::from_openssh(
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK99cM15Tk+kWET5X/iyMAHixVJ2+/kjqUMabpP/5kWt",
        )
        .unwrap();
        check(
            SshError::Unreachable(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)),
            ErrorKind::Unreachable,
            "target unreachable: connection refused",
        );
        check(
            SshError::Timeout,
            ErrorKind::Timeout,
            "target did not finish connecting and authenticating in time",
        );
        check(
            SshError::HostKeyChanged {
                pinned: key.clone(),
                presented: other.clone(),
            },
            ErrorKind::HostKeyChanged,
            &format!(
                "target host key changed: pinned {}, presented {}",
                key.fingerprint(),
                other.fingerprint()
            ),
        );
        check(
            SshError::AuthFailed,
            ErrorKind::AuthFailed,
            "target refused the username or credential",
        );
        check(
            SshError::BadPrivateKey("wrong passphrase".into()),
            ErrorKind::BadPrivateKey,
            "private key unusable: wrong passphrase",
        );
        check(
            SshError::ChannelRefused("pty refused".into()),
            ErrorKind::ChannelRefused,
            "target refused the terminal: pty refused",
        );
        check(
            SshError::Protocol("garbage".into()),
            ErrorKind::Protocol,
            "target protocol error: garbage",
        );
        check(
            SshError::Stalled,
            ErrorKind::Stalled,
            "target stopped reading input while its output kept coming",
        );
        check(
            SshError::Closed,
            ErrorKind::Closed,
            "target connection is closed",
        );
        check(
            SshError::BadHostKey("x".into()),
            ErrorKind::BadHostKey,
            "host key unusable: x",
        );
    }

    #[test]
    fn russh_errors_say_the_target_failed() {
        let e = SshError::from_russh(russh::Error::Disconnect, "authentication");
        assert_eq!(e.kind(), ErrorKind::Protocol);
        assert_eq!(
            e.to_string(),
            "target protocol error: target closed the connection during authentication"
        );
        assert_eq!(
            SshError::from_russh(russh::Error::KeepaliveTimeout, "session").kind(),
            ErrorKind::Protocol
        );
        assert_eq!(
            SshError::from_russh(russh::Error::InactivityTimeout, "session").kind(),
            ErrorKind::Timeout
        );
        let refused = SshError::from_russh(
            russh::Error::ChannelOpenFailure(russh::ChannelOpenFailure::AdministrativelyProhibited),
            "channel open",
        );
        assert_eq!(refused.kind(), ErrorKind::ChannelRefused);
    }
}
