//! russh's server callbacks for one proxied connection: the handler's state, the recording helpers all
//! concerns share, and the `server::Handler` implementation, which hands each callback to its concern
//! ([`super::auth`], [`super::channels`], [`super::forward`]).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use russh::server::{self, Auth, ChannelOpenHandle, Msg, Session};
use russh::{Channel, ChannelId, ChannelOpenFailure, Pty};
use sallyport_core::errors::ErrorKind as UserErrorKind;
use sallyport_relay::{Event, ProxyEvent, ProxySink, TargetError};

use super::channels::Pending;
use super::session::Shared;
use crate::SshError;
use crate::connect::Client;

/// One user's SSH connection through the proxy: russh's callbacks, turned into target requests.
pub(super) struct ProxyHandler {
    pub(super) target: russh::client::Handle<Client>,
    /// Shuts the target's TCP connection down when the session ends.
    pub(super) _guard: crate::session::SocketGuard,
    pub(super) target_failure: Arc<OnceLock<SshError>>,
    pub(super) sink: ProxySink,
    pub(super) shared: Arc<Shared>,
    pub(super) forwarding: bool,
    pub(super) addr: std::net::SocketAddr,
    /// The target account, once authenticated.
    pub(super) user: Option<String>,
    /// Session channels between their open and their command.
    pub(super) channels: HashMap<ChannelId, Pending>,
}

impl ProxyHandler {
    /// Records `event`; a recording failure ends the session (fail closed).
    pub(super) async fn record(&self, event: impl Into<ProxyEvent>) -> Result<(), russh::Error> {
        match self.sink.record(event).await {
            Ok(()) => Ok(()),
            Err(error) => {
                let _ = self.shared.failure.set(error);
                Err(russh::Error::Disconnect)
            }
        }
    }

    pub(super) async fn marker(&self, text: String) -> Result<(), russh::Error> {
        self.record(Event::Marker(text)).await
    }

    /// Records that a forward was allowed by policy.
    pub(super) async fn audit_allowed(&self, kind: &str, detail: &str) -> Result<(), russh::Error> {
        self.record(ProxyEvent::Audit {
            kind: kind.into(),
            detail: format!("{detail} (allowed by policy)"),
        })
        .await
    }

    /// Records that a forward was refused by policy.
    pub(super) async fn refuse_forwarding(
        &self,
        kind: &str,
        detail: String,
    ) -> Result<(), russh::Error> {
        self.record(ProxyEvent::Audit {
            kind: format!("{kind}_refused"),
            detail: format!("{detail} (not allowed by policy)"),
        })
        .await
    }

    /// A target failure ends the session with the target's reason.
    pub(super) fn target_lost(&self, error: &russh::Error) -> russh::Error {
        let error = self
            .target_failure
            .get()
            .map(|e| e.to_string())
            .unwrap_or_else(|| SshError::from_russh(error, "authentication").to_string());
        let _ = self.shared.failure.set(TargetError {
            kind: UserErrorKind::TargetProtocol,
            detail: error,
        });
        russh::Error::Disconnect
    }
}

impl server::Handler for ProxyHandler {
    type Error = russh::Error;

    async fn authentication_banner(&mut self) -> Result<Option<String>, Self::Error> {
        Ok(Some(
            "This session passes through a Sallyport gateway and is recorded.\r\n".into(),
        ))
    }

    async fn auth_none(&mut self, user: &str) -> Result<Auth, Self::Error> {
        let shared = self.shared.clone();
        let answer = shared.unless_ended(self.target.authenticate_none(user));
        let answer = answer.await;
        self.relayed(user, "none", answer).await
    }

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        let shared = self.shared.clone();
        let answer = shared.unless_ended(self.target.authenticate_password(user, password));
        let answer = answer.await;
        self.relayed(user, "password", answer).await
    }

    async fn auth_publickey_offered(
        &mut self,
        _user: &str,
        _offer: server::PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        // A signature made for the gateway's session cannot log in to the target.
        Ok(Auth::Reject {
            proceed_with_methods: None,
            partial_success: false,
        })
    }

    async fn auth_keyboard_interactive<'a>(
        &'a mut self,
        user: &str,
        submethods: &str,
        response: Option<server::Response<'a>>,
    ) -> Result<Auth, Self::Error> {
        self.keyboard_interactive(user, submethods, response).await
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.open_session(channel, reply).await
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        term: &str,
        col_width: u32,
        row_height: u32,
        pix_width: u32,
        pix_height: u32,
        modes: &[(Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let size = (col_width, row_height, pix_width, pix_height);
        self.pty(channel, term, size, modes, session).await
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        variable_name: &str,
        variable_value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.env(channel, variable_name, variable_value, session)
            .await
    }

    async fn x11_request(
        &mut self,
        channel: ChannelId,
        single_connection: bool,
        x11_auth_protocol: &str,
        x11_auth_cookie: &str,
        x11_screen_number: u32,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let request = super::channels::Request::X11 {
            single_connection,
            protocol: x11_auth_protocol,
            cookie: x11_auth_cookie,
            screen: x11_screen_number,
        };
        self.x11(channel, request, session).await
    }

    async fn agent_request(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        self.agent(channel).await
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.shell(channel, session).await
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.exec(channel, data, session).await
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.subsystem(channel, name, session).await
    }

    async fn window_change_request(
        &mut self,
        channel: ChannelId,
        col_width: u32,
        row_height: u32,
        pix_width: u32,
        pix_height: u32,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.window_change(channel, (col_width, row_height, pix_width, pix_height))
            .await
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        // A channel closed before its command: close the target's too.
        if let Some(pending) = self.channels.remove(&channel) {
            let _ = pending.target.close().await;
        }
        Ok(())
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        host_to_connect: &str,
        port_to_connect: u32,
        originator_address: &str,
        originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let to = (host_to_connect, port_to_connect);
        let from = (originator_address, originator_port);
        self.local_forward(channel, to, from, reply).await
    }

    async fn channel_open_direct_streamlocal(
        &mut self,
        channel: Channel<Msg>,
        socket_path: &str,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        drop(channel);
        reply
            .reject(ChannelOpenFailure::AdministrativelyProhibited)
            .await;
        self.refuse_forwarding(
            "port_forward",
            format!("forwarding to the socket {}", super::shown(socket_path)),
        )
        .await
    }

    async fn channel_open_x11(
        &mut self,
        channel: Channel<Msg>,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        // Clients never open X11 channels towards a server.
        drop(channel);
        reply
            .reject(ChannelOpenFailure::AdministrativelyProhibited)
            .await;
        Ok(())
    }

    async fn tcpip_forward(
        &mut self,
        address: &str,
        port: &mut u32,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        self.remote_forward(address, port).await
    }

    async fn cancel_tcpip_forward(
        &mut self,
        address: &str,
        port: u32,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        if !self.forwarding {
            return Ok(false);
        }
        Ok(self
            .target
            .cancel_tcpip_forward(address, port)
            .await
            .is_ok())
    }

    async fn streamlocal_forward(
        &mut self,
        socket_path: &str,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        self.refuse_forwarding(
            "port_forward",
            format!(
                "remote forwarding of the socket {}",
                super::shown(socket_path)
            ),
        )
        .await?;
        Ok(false)
    }
}
