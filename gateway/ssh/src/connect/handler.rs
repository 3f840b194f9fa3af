//! russh's client callbacks for one target connection: the host key check against the pin (inside the key
//! exchange), the reason the connection ended, and the channels a target opens towards the gateway, which
//! are refused unless the SSH proxy's policy allows forwarding (then [`Reverse`] bridges them).

use std::fmt;
use std::sync::{Arc, OnceLock};

use russh::client::{self, ChannelOpenHandle, DisconnectReason, Msg, Session};
use russh::{Channel, ChannelOpenFailure};

use crate::error::{SshError, printable};
use crate::host_key::HostKey;
use crate::proxy::Reverse;

/// russh's callback object for one connection: checks the host key against the pin, records what the target
/// presented, refuses every channel the target tries to open towards the gateway, and keeps the reason the
/// connection failed once it is established.
pub(crate) struct Client {
    pub(super) pinned: Option<HostKey>,
    pub(super) presented: Arc<OnceLock<HostKey>>,
    /// Why russh's session task ended, if it ended with an error or a disconnect from the target.
    pub(super) failure: Arc<OnceLock<SshError>>,
    /// Where channels the target opens towards the gateway go: refused unless the SSH proxy's policy
    /// allows forwarding (a terminal session's never does).
    pub(super) reverse: Arc<Reverse>,
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
        self.reverse
            .forwarded_tcpip(
                channel,
                reply,
                connected_address,
                connected_port,
                originator_address,
                originator_port,
            )
            .await;
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
        self.reverse.agent(channel, reply).await;
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
        self.reverse
            .x11(channel, reply, originator_address, originator_port)
            .await;
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
