//! The SSH server side of `sallyport proxy`: the gateway's host key, the russh server settings, and the
//! relay's `ProxyConnector` (dial, pin and handshake the target, then wait for the user's ssh).

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use russh::keys::{HashAlg, PrivateKey};
use russh::server;
use russh::{MethodKind, MethodSet, SshId};
use sallyport_relay::{BoxFuture, ProxyConnect, ProxyConnector, ProxyOpened, TargetError};

use super::Reverse;
use super::session::Proxied;
use crate::connect::handshake;
use crate::relay_adapter::target_error;
use crate::{HostKey, SshError};

/// The SSH server of `sallyport proxy` streams: the gateway's host key and the server settings.
#[derive(Clone)]
pub struct SshProxy {
    host_key: PrivateKey,
}

impl std::fmt::Debug for SshProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshProxy")
            .field("host_key", &self.host_key_fingerprint())
            .finish()
    }
}

impl SshProxy {
    /// A proxy presenting `host_key` (OpenSSH private key text) to users' ssh clients.
    pub fn from_openssh(pem: &str) -> Result<SshProxy, SshError> {
        let host_key = PrivateKey::from_openssh(pem)
            .map_err(|e| SshError::BadHostKey(format!("the proxy host key is unusable: {e}")))?;
        Ok(SshProxy { host_key })
    }

    /// A new Ed25519 host key from 32 random bytes, as OpenSSH private key text.
    pub fn generate_host_key(seed: [u8; 32]) -> Result<String, SshError> {
        let pair = russh::keys::ssh_key::private::Ed25519Keypair::from_seed(&seed);
        let key = PrivateKey::from(pair);
        key.to_openssh(russh::keys::ssh_key::LineEnding::LF)
            .map(|text| text.to_string())
            .map_err(|e| SshError::BadHostKey(format!("encoding the proxy host key: {e}")))
    }

    /// The host key's `SHA256:` fingerprint, as users' ssh shows it.
    pub fn host_key_fingerprint(&self) -> String {
        self.host_key
            .public_key()
            .fingerprint(HashAlg::Sha256)
            .to_string()
    }

    /// The public host key as an OpenSSH line (`ssh-ed25519 AAAA...`), for users' `known_hosts`.
    pub fn host_key_openssh(&self) -> String {
        self.host_key.public_key().to_openssh().unwrap_or_default()
    }

    pub(super) fn config(&self) -> server::Config {
        server::Config {
            server_id: SshId::Standard(Cow::Borrowed(concat!(
                "SSH-2.0-Sallyport_",
                env!("CARGO_PKG_VERSION")
            ))),
            methods: MethodSet::from(
                &[
                    MethodKind::None,
                    MethodKind::Password,
                    MethodKind::KeyboardInteractive,
                ][..],
            ),
            // Rejections are the target's, with its own delays; the first ("none") is a question.
            auth_rejection_time: Duration::from_millis(500),
            auth_rejection_time_initial: Some(Duration::ZERO),
            keys: vec![self.host_key.clone()],
            max_auth_attempts: 8,
            // Idle sessions are the broker's business (its idle timeout); keepalives find dead clients.
            inactivity_timeout: None,
            keepalive_interval: Some(Duration::from_secs(30)),
            keepalive_max: 3,
            // A window like the target side's: enough for transfers, bounded memory per channel.
            window_size: 1024 * 1024,
            maximum_packet_size: 32 * 1024,
            channel_buffer_size: 32,
            nodelay: true,
            ..server::Config::default()
        }
    }
}

impl ProxyConnector for SshProxy {
    fn connect(
        &self,
        request: ProxyConnect,
    ) -> BoxFuture<'static, Result<ProxyOpened, TargetError>> {
        let config = Arc::new(self.config());
        Box::pin(async move {
            let pinned = match &request.pinned_host_key {
                Some(line) => Some(HostKey::from_openssh(line).map_err(target_error)?),
                None => None,
            };
            let reverse = Arc::new(Reverse::new(request.forwarding));
            let target = handshake(request.addr, pinned, request.timeout, reverse.clone())
                .await
                .map_err(target_error)?;
            Ok(ProxyOpened {
                host_key: target.host_key.openssh(),
                host_key_fingerprint: target.host_key.fingerprint(),
                session: Box::new(Proxied {
                    config,
                    target,
                    reverse,
                    request,
                }),
            })
        })
    }
}
