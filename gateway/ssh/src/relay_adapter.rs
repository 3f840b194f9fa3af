//! The relay's [`TerminalConnector`] over this crate: how the broker opens SSH terminals.

use std::time::Duration;

use sallyport_core::errors::ErrorKind as UserErrorKind;
use sallyport_core::frames::{Credential as UserCredential, TerminalSize};
use sallyport_relay::{
    BoxFuture, TargetError, TargetEvent, TerminalChannel, TerminalConnect, TerminalConnector,
    TerminalOpened,
};

use crate::{
    ConnectRequest, Credential, ErrorKind, HostKey, SshError, TerminalEvent, TerminalSession,
    connect,
};

/// Opens PTY shells on SSH targets for the broker.
#[derive(Debug, Clone)]
pub struct SshConnector {
    /// The terminal type announced to targets.
    pub term: String,
}

impl Default for SshConnector {
    fn default() -> Self {
        SshConnector {
            term: "xterm-256color".into(),
        }
    }
}

/// Maps an SSH failure to what the user is told, keeping the detail for logs.
pub(crate) fn target_error(error: impl std::borrow::Borrow<SshError>) -> TargetError {
    let error = error.borrow();
    let kind = match error.kind() {
        ErrorKind::Unreachable => UserErrorKind::TargetUnreachable,
        ErrorKind::Timeout | ErrorKind::Stalled => UserErrorKind::TargetTimeout,
        ErrorKind::HostKeyChanged => UserErrorKind::HostKeyChanged,
        ErrorKind::AuthFailed => UserErrorKind::TargetAuthFailed,
        ErrorKind::BadPrivateKey => UserErrorKind::BadPrivateKey,
        ErrorKind::ChannelRefused | ErrorKind::Protocol | ErrorKind::BadHostKey => {
            UserErrorKind::TargetProtocol
        }
        ErrorKind::Closed => UserErrorKind::TargetUnreachable,
    };
    TargetError {
        kind,
        detail: error.to_string(),
    }
}

impl TerminalConnector for SshConnector {
    fn connect(
        &self,
        request: TerminalConnect,
    ) -> BoxFuture<'_, Result<TerminalOpened, TargetError>> {
        Box::pin(async move {
            let pinned_host_key = match &request.pinned_host_key {
                Some(line) => Some(HostKey::from_openssh(line).map_err(target_error)?),
                None => None,
            };
            let credential = match request.credential {
                UserCredential::Password(password) => Credential::Password(password),
                UserCredential::PrivateKey { pem, passphrase } => {
                    Credential::PrivateKey { pem, passphrase }
                }
            };
            let connected = connect(ConnectRequest {
                addr: request.addr,
                username: request.username,
                credential,
                pinned_host_key,
                term: self.term.clone(),
                cols: request.size.cols,
                rows: request.size.rows,
                connect_timeout: request.timeout,
            })
            .await
            .map_err(target_error)?;
            Ok(TerminalOpened {
                host_key: connected.host_key.openssh(),
                host_key_fingerprint: connected.host_key.fingerprint(),
                channel: Box::new(SshChannel {
                    session: connected.session,
                }),
            })
        })
    }
}

/// A PTY shell as the relay's [`TerminalChannel`].
struct SshChannel {
    session: TerminalSession,
}

impl TerminalChannel for SshChannel {
    fn next_event(&mut self) -> BoxFuture<'_, TargetEvent> {
        Box::pin(async move {
            match self.session.next_event().await {
                Some(TerminalEvent::Output(data)) => TargetEvent::Output(data),
                Some(TerminalEvent::ExitStatus(status)) => TargetEvent::Exit(status),
                Some(TerminalEvent::ExitSignal(signal)) => TargetEvent::ExitSignal(signal),
                Some(TerminalEvent::Closed) | None => {
                    // A connection that failed after the shell opened (protocol violation, reset, unanswered
                    // keepalives) ends the session with its reason; an orderly close is just a close.
                    match self.session.failure() {
                        Some(error) => {
                            tracing::warn!(
                                error = %error,
                                error_kind = ?error.kind(),
                                "target connection failed during the session"
                            );
                            TargetEvent::Failed(target_error(error))
                        }
                        None => TargetEvent::Closed,
                    }
                }
            }
        })
    }

    fn write<'a>(&'a mut self, data: &'a [u8]) -> BoxFuture<'a, Result<(), TargetError>> {
        Box::pin(async move { self.session.write(data).await.map_err(target_error) })
    }

    fn resize(&mut self, size: TerminalSize) -> BoxFuture<'_, Result<(), TargetError>> {
        Box::pin(async move {
            self.session
                .resize(size.cols, size.rows)
                .await
                .map_err(target_error)
        })
    }

    fn close(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            // A target that ignores the goodbye must not hold the session task.
            let _ = tokio::time::timeout(Duration::from_secs(3), self.session.close()).await;
        })
    }
}
