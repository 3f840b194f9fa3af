//! The terminal WebSocket protocol between the browser and the gateway.
//!
//! Binary messages carry terminal bytes (keystrokes up, output down). Text messages carry JSON control
//! messages, tagged by `type`. The first client message must be [`ClientControl::Connect`] with the target
//! username and the credential, which the gateway uses for that one connection and never stores or logs.
//! Everything from the browser is untrusted: [`parse_client_text`] bounds sizes and never panics.

use serde::{Deserialize, Serialize};

use crate::errors::ErrorKind;

/// Largest control message accepted from a client, in bytes.
pub const MAX_CONTROL_LEN: usize = 32 * 1024;
/// Largest binary (keystrokes or paste) message accepted from a client, in bytes.
pub const MAX_INPUT_LEN: usize = 64 * 1024;
/// Terminal dimensions are clamped to this range.
pub const MAX_TERMINAL_DIMENSION: u16 = 1000;

/// A control message from the client.
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientControl {
    /// Opens the session to the target. Must come first, exactly once.
    Connect {
        /// The account on the target.
        username: String,
        /// Password, if the user chose password authentication.
        #[serde(default)]
        password: Option<String>,
        /// PEM private key (OpenSSH or PKCS#8), if the user chose key authentication.
        #[serde(default)]
        private_key: Option<String>,
        /// Passphrase of the private key, if any.
        #[serde(default)]
        passphrase: Option<String>,
        /// Initial terminal width in columns.
        cols: u16,
        /// Initial terminal height in rows.
        rows: u16,
    },
    /// The browser window changed size.
    Resize {
        /// Width in columns.
        cols: u16,
        /// Height in rows.
        rows: u16,
    },
}

impl std::fmt::Debug for ClientControl {
    // Credentials never reach a log through Debug.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientControl::Connect {
                username,
                private_key,
                cols,
                rows,
                ..
            } => f
                .debug_struct("Connect")
                .field("username", username)
                .field(
                    "auth",
                    &if private_key.is_some() {
                        "private key"
                    } else {
                        "password"
                    },
                )
                .field("cols", cols)
                .field("rows", rows)
                .finish_non_exhaustive(),
            ClientControl::Resize { cols, rows } => f
                .debug_struct("Resize")
                .field("cols", cols)
                .field("rows", rows)
                .finish(),
        }
    }
}

/// The credential the user typed for this connection.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// A password.
    Password(String),
    /// A PEM private key and its optional passphrase.
    PrivateKey {
        /// The key text.
        pem: String,
        /// Its passphrase.
        passphrase: Option<String>,
    },
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Credential::Password(_) => "Password(<redacted>)",
            Credential::PrivateKey { .. } => "PrivateKey(<redacted>)",
        })
    }
}

/// A validated connect request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectRequest {
    /// The account on the target.
    pub username: String,
    /// How to authenticate.
    pub credential: Credential,
    /// Initial terminal size.
    pub size: TerminalSize,
}

/// Terminal size in character cells, clamped to 1..=[`MAX_TERMINAL_DIMENSION`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TerminalSize {
    /// Columns.
    pub cols: u16,
    /// Rows.
    pub rows: u16,
}

impl TerminalSize {
    /// Clamps a size reported by a client.
    pub fn clamped(cols: u16, rows: u16) -> Self {
        TerminalSize {
            cols: cols.clamp(1, MAX_TERMINAL_DIMENSION),
            rows: rows.clamp(1, MAX_TERMINAL_DIMENSION),
        }
    }
}

/// A client message after validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMessage {
    /// Open the session.
    Connect(ConnectRequest),
    /// Resize the terminal.
    Resize(TerminalSize),
    /// Keystrokes or pasted text.
    Input(Vec<u8>),
}

/// Why a client message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Larger than the protocol allows.
    #[error("message of {0} bytes is too large")]
    TooLarge(usize),
    /// Not a known control message.
    #[error("malformed control message: {0}")]
    Malformed(String),
    /// A connect without a credential, or with both kinds.
    #[error("connect needs exactly one of password or private key")]
    BadCredential,
    /// A username that is empty, too long or has control characters.
    #[error("the username is not valid")]
    BadUsername,
}

/// Parses a text (control) message from the client.
pub fn parse_client_text(text: &str) -> Result<ClientMessage, FrameError> {
    if text.len() > MAX_CONTROL_LEN {
        return Err(FrameError::TooLarge(text.len()));
    }
    let control: ClientControl =
        serde_json::from_str(text).map_err(|e| FrameError::Malformed(e.to_string()))?;
    match control {
        ClientControl::Resize { cols, rows } => {
            Ok(ClientMessage::Resize(TerminalSize::clamped(cols, rows)))
        }
        ClientControl::Connect {
            username,
            password,
            private_key,
            passphrase,
            cols,
            rows,
        } => {
            if username.is_empty() || username.len() > 256 || username.chars().any(char::is_control)
            {
                return Err(FrameError::BadUsername);
            }
            let credential = match (password, private_key) {
                (Some(password), None) => Credential::Password(password),
                (None, Some(pem)) if !pem.trim().is_empty() => {
                    Credential::PrivateKey { pem, passphrase }
                }
                _ => return Err(FrameError::BadCredential),
            };
            Ok(ClientMessage::Connect(ConnectRequest {
                username,
                credential,
                size: TerminalSize::clamped(cols, rows),
            }))
        }
    }
}

/// Accepts a binary (input) message from the client.
pub fn parse_client_binary(bytes: &[u8]) -> Result<ClientMessage, FrameError> {
    if bytes.len() > MAX_INPUT_LEN {
        return Err(FrameError::TooLarge(bytes.len()));
    }
    Ok(ClientMessage::Input(bytes.to_vec()))
}

/// A control message from the gateway to the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerControl {
    /// The terminal is open.
    Connected {
        /// The recording's id, so the user can quote it.
        session_id: String,
        /// The target's host key fingerprint (`SHA256:...`).
        host_key_fingerprint: String,
        /// True when this connection pinned the key for the first time.
        host_key_first_seen: bool,
    },
    /// The remote command exited.
    Exit {
        /// Its exit status.
        status: u32,
    },
    /// The session could not start or had to end.
    Error {
        /// Stable kind for programs.
        kind: ErrorKind,
        /// Plain words for people.
        message: String,
    },
}

impl ServerControl {
    /// An error message with the standard wording for `kind`, plus an optional detail.
    pub fn error(kind: ErrorKind, detail: Option<&str>) -> Self {
        let message = match detail {
            Some(detail) => format!("{}: {detail}", kind.message()),
            None => kind.message().to_owned(),
        };
        ServerControl::Error { kind, message }
    }

    /// The JSON text sent over the WebSocket.
    pub fn to_json(&self) -> String {
        // Serializing these plain enums cannot fail; fall back to a fixed message rather than panic.
        serde_json::to_string(self).unwrap_or_else(|_| {
            r#"{"type":"error","kind":"internal","message":"internal error"}"#.to_owned()
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn connect_with_password_parses_and_redacts() {
        let msg = parse_client_text(
            r#"{"type":"connect","username":"alice","password":"s3cret","cols":80,"rows":24}"#,
        )
        .unwrap();
        let ClientMessage::Connect(req) = &msg else {
            panic!("not a connect: {msg:?}")
        };
        assert_eq!(req.credential, Credential::Password("s3cret".into()));
        assert_eq!(req.size, TerminalSize { cols: 80, rows: 24 });
        assert!(!format!("{msg:?}").contains("s3cret"));
    }

    #[test]
    fn hostile_messages_are_refused() {
        let cases = [
            r#"{"type":"connect","username":"a","cols":80,"rows":24}"#,
            r#"{"type":"connect","username":"a","password":"x","private_key":"k","cols":80,"rows":24}"#,
            r#"{"type":"connect","username":"","password":"x","cols":80,"rows":24}"#,
            r#"{"type":"connect","username":"a\nb","password":"x","cols":80,"rows":24}"#,
            r#"{"type":"resize","cols":-1,"rows":24}"#,
            r#"{"type":"resize","cols":80,"rows":24,"extra":1}"#,
            r#"{"type":"shell"}"#,
            "not json",
        ];
        for case in cases {
            assert!(parse_client_text(case).is_err(), "{case}");
        }
        assert_eq!(
            parse_client_text(&"x".repeat(MAX_CONTROL_LEN + 1)),
            Err(FrameError::TooLarge(MAX_CONTROL_LEN + 1))
        );
        assert!(parse_client_binary(&vec![0; MAX_INPUT_LEN + 1]).is_err());
    }

    #[test]
    fn sizes_are_clamped() {
        assert_eq!(
            parse_client_text(r#"{"type":"resize","cols":0,"rows":65535}"#).unwrap(),
            ClientMessage::Resize(TerminalSize {
                cols: 1,
                rows: MAX_TERMINAL_DIMENSION
            })
        );
    }

    #[test]
    fn server_errors_carry_plain_words() {
        let json = ServerControl::error(ErrorKind::HostKeyChanged, None).to_json();
        assert!(
            json.contains(r#""kind":"host_key_changed""#) && json.contains("host key has changed"),
            "{json}"
        );
    }
}
