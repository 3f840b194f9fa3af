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
    /// The target did not do something in time; the text says what, e.g. "finish the SSH handshake within 20 s"
    /// when TCP connect, handshake, authentication and opening the shell together passed their deadline during
    /// the handshake.
    #[error("target did not {0}")]
    Timeout(String),
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
    /// A write made no progress for this long: the target stopped opening its SSH window (it reads no input,
    /// or it stopped reading the connection). The session is ended rather than left hanging.
    #[error("target accepted no input for {}", seconds(*.0))]
    InputStalled(std::time::Duration),
    /// The session is already closed (the target closed the channel or the connection ended).
    #[error("target connection is closed")]
    Closed,
    /// A host key line (for example a stored pin) could not be parsed.
    #[error("host key unusable: {0}")]
    BadHostKey(String),
}

/// The target's own words (a disconnect reason, a protocol version) made safe for logs and messages: control
/// characters (escape sequences) replaced, at most `max_chars` characters.
pub(crate) fn printable(text: &str, max_chars: usize) -> String {
    text.chars()
        .take(max_chars)
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect()
}

/// A duration as people read it in messages: "20 s", "0.5 s".
pub(crate) fn seconds(duration: std::time::Duration) -> String {
    if duration.subsec_millis() == 0 {
        format!("{} s", duration.as_secs())
    } else {
        format!("{:.1} s", duration.as_secs_f64())
    }
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
    /// See [`SshError::Stalled`] and [`SshError::InputStalled`]: the target stopped taking input.
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
            SshError::Timeout(_) => ErrorKind::Timeout,
            SshError::HostKeyChanged { .. } => ErrorKind::HostKeyChanged,
            SshError::AuthFailed => ErrorKind::AuthFailed,
            SshError::BadPrivateKey(_) => ErrorKind::BadPrivateKey,
            SshError::ChannelRefused(_) => ErrorKind::ChannelRefused,
            SshError::Protocol(_) => ErrorKind::Protocol,
            SshError::Stalled | SshError::InputStalled(_) => ErrorKind::Stalled,
            SshError::Closed => ErrorKind::Closed,
            SshError::BadHostKey(_) => ErrorKind::BadHostKey,
        }
    }

    /// The connection to the target ended, or failed, at the moment `when` describes ("during the handshake",
    /// "before sending its SSH identification line"): closed (FIN), reset (RST) or otherwise lost.
    pub(crate) fn connection_ended(error: &std::io::Error, when: &str) -> SshError {
        use std::io::ErrorKind as Io;
        SshError::Protocol(match error.kind() {
            Io::UnexpectedEof | Io::BrokenPipe => format!("target closed the connection {when}"),
            Io::ConnectionReset => format!("target reset the connection {when}"),
            _ => format!("connection to target lost {when}: {error}"),
        })
    }

    /// The target's identification line names an SSH protocol version other than 2.0 (or 1.99, a server that
    /// also speaks 2.0).
    pub(crate) fn unsupported_protocol(version: &str) -> SshError {
        let version = printable(version, 20);
        SshError::Protocol(if version.starts_with("1.") {
            format!(
                "target speaks SSH protocol {version}, which is insecure and not supported; only SSH 2 is"
            )
        } else {
            format!("target speaks SSH protocol {version}, which is not supported; only SSH 2.0 is")
        })
    }

    /// The target sent no identification line the gateway accepts where one must be: a line `SSH-2.0-...`
    /// of at most 255 bytes, within the first 8 KiB it sends (see `identification::scan_greeting`).
    pub(crate) fn no_identification() -> SshError {
        SshError::Protocol(
            "target sent no valid SSH identification line (at most 8 KiB of other lines may come first, and \
             the line itself is at most 255 bytes)"
                .into(),
        )
    }

    /// Maps an error from russh during the handshake or a later stage (`stage`, e.g. "authentication") to
    /// [`SshError`], in words that say what the target did. Host key mismatches are detected by the caller before
    /// this is used.
    pub(crate) fn from_russh(error: &russh::Error, stage: &str) -> SshError {
        match error {
            russh::Error::IO(e) => SshError::connection_ended(e, &format!("during {stage}")),
            russh::Error::Version => SshError::Protocol(
                "target sent no valid SSH identification line (at most 20 lines of up to 255 bytes may \
                 come first)"
                    .into(),
            ),
            russh::Error::PacketSize(size) => SshError::Protocol(format!(
                "target sent a packet of {size} bytes during {stage}, more than the 256 KiB allowed"
            )),
            russh::Error::SshEncoding(e) => {
                SshError::Protocol(format!("target sent a malformed message during {stage}: {e}"))
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
            | russh::Error::RecvError => {
                SshError::Protocol(format!("target closed the connection during {stage}"))
            }
            russh::Error::KeepaliveTimeout => SshError::Timeout("answer keepalives".into()),
            russh::Error::ConnectionTimeout | russh::Error::InactivityTimeout => {
                SshError::Timeout(format!("answer in time during {stage}"))
            }
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
            SshError::Timeout("finish the SSH handshake within 20 s".into()),
            ErrorKind::Timeout,
            "target did not finish the SSH handshake within 20 s",
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
            SshError::InputStalled(std::time::Duration::from_secs(30)),
            ErrorKind::Stalled,
            "target accepted no input for 30 s",
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
        let e = SshError::from_russh(&russh::Error::Disconnect, "authentication");
        assert_eq!(e.kind(), ErrorKind::Protocol);
        assert_eq!(
            e.to_string(),
            "target protocol error: target closed the connection during authentication"
        );
        let e = SshError::from_russh(&russh::Error::KeepaliveTimeout, "the session");
        assert_eq!(e.kind(), ErrorKind::Timeout);
        assert_eq!(e.to_string(), "target did not answer keepalives");
        assert_eq!(
            SshError::from_russh(&russh::Error::InactivityTimeout, "session").kind(),
            ErrorKind::Timeout
        );
        let refused = SshError::from_russh(
            &russh::Error::ChannelOpenFailure(
                russh::ChannelOpenFailure::AdministrativelyProhibited,
            ),
            "channel open",
        );
        assert_eq!(refused.kind(), ErrorKind::ChannelRefused);
    }

    /// What the hostile targets of the end-to-end tests provoke, in the words the user gets.
    #[test]
    fn hostile_handshakes_are_described() {
        let protocol = |error: russh::Error| {
            let e = SshError::from_russh(&error, "the handshake");
            assert_eq!(e.kind(), ErrorKind::Protocol, "{e}");
            e.to_string()
        };
        assert_eq!(
            protocol(russh::Error::Version),
            "target protocol error: target sent no valid SSH identification line (at most 20 lines of up to \
             255 bytes may come first)"
        );
        assert_eq!(
            protocol(russh::Error::PacketSize(0xFFFF_FFF0)),
            "target protocol error: target sent a packet of 4294967280 bytes during the handshake, more than \
             the 256 KiB allowed"
        );
        assert_eq!(
            protocol(russh::Error::IO(std::io::ErrorKind::UnexpectedEof.into())),
            "target protocol error: target closed the connection during the handshake"
        );
        assert_eq!(
            protocol(russh::Error::IO(std::io::ErrorKind::ConnectionReset.into())),
            "target protocol error: target reset the connection during the handshake"
        );
        assert!(
            protocol(russh::Error::SshEncoding(ssh_length_error())).starts_with(
                "target protocol error: target sent a malformed message during the handshake"
            )
        );
    }

    /// The gateway's own identification exchange: early ends worded by what happened, other protocols refused.
    #[test]
    fn early_ends_and_other_protocols_are_described() {
        use std::io::{Error, ErrorKind as Io};
        let before = "before sending its SSH identification line";
        let ended = |kind: Io| {
            let e = SshError::connection_ended(&Error::from(kind), before);
            assert_eq!(e.kind(), ErrorKind::Protocol, "{e}");
            e.to_string()
        };
        assert_eq!(
            ended(Io::UnexpectedEof),
            "target protocol error: target closed the connection before sending its SSH identification line"
        );
        assert_eq!(
            ended(Io::BrokenPipe),
            "target protocol error: target closed the connection before sending its SSH identification line"
        );
        assert_eq!(
            ended(Io::ConnectionReset),
            "target protocol error: target reset the connection before sending its SSH identification line"
        );
        assert!(
            ended(Io::TimedOut).starts_with(
                "target protocol error: connection to target lost before sending its SSH identification line: "
            )
        );
        let version = |v: &str| {
            let e = SshError::unsupported_protocol(v);
            assert_eq!(e.kind(), ErrorKind::Protocol, "{e}");
            e.to_string()
        };
        assert_eq!(
            version("1.5"),
            "target protocol error: target speaks SSH protocol 1.5, which is insecure and not supported; only \
             SSH 2 is"
        );
        assert_eq!(
            version("3.0"),
            "target protocol error: target speaks SSH protocol 3.0, which is not supported; only SSH 2.0 is"
        );
        // The target's words are bounded and carry no escape sequences.
        let hostile = version(&format!("\x1b]52;c;{}", "A".repeat(100)));
        assert!(
            !hostile.contains('\x1b') && hostile.len() < 200,
            "{hostile}"
        );
    }

    /// An encoding error as russh reports a name-list over its limit.
    fn ssh_length_error() -> russh::keys::ssh_encoding::Error {
        russh::keys::ssh_encoding::Error::Length
    }
}
