//! Why an RDP connection failed or ended, classified for the user and detailed for the logs.

/// An RDP failure. The text never contains a credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RdpError {
    /// The TCP connection could not be made.
    #[error("cannot reach the target: {0}")]
    Unreachable(String),
    /// A stage did not finish before its deadline.
    #[error("the target did not answer in time ({0})")]
    Timeout(&'static str),
    /// The target offers only standard RDP security (RC4), which the gateway refuses.
    #[error(
        "the target offers only standard RDP security, which is not safe (RC4, no server authentication); \
         enable TLS or NLA on the target"
    )]
    StandardSecurity,
    /// The TLS handshake failed.
    #[error("tls: {0}")]
    Tls(String),
    /// The target's key is not the pinned one; nothing was sent after the handshake.
    #[error("the target's key changed: {0}")]
    KeyChanged(String),
    /// The target refused the credentials.
    #[error("the target refused the login: {0}")]
    AuthFailed(String),
    /// The target broke the protocol or sent something we cannot decode.
    #[error("rdp protocol: {0}")]
    Protocol(String),
    /// The target sent more than a session may hold (a decompression bomb, an oversized desktop).
    #[error("the target exceeded a limit: {0}")]
    Limit(String),
    /// The connection closed.
    #[error("the target closed the connection{0}")]
    Closed(String),
    /// The session recorder refused an event: the session ends (fail closed).
    #[error("recording failed: {0}")]
    Recording(String),
}
