//! Forwarded channels of a proxied connection, when policy allows forwarding: local forwards the user's
//! ssh opens (`-L`, `-W`: direct-tcpip, dialled by the target, not the gateway), and the channels the
//! target opens back (remote forwards `-R`, the agent `-A`, X11 `-X`), each bridged to a matching channel
//! towards the user's ssh. Their bytes are not recorded (they are not a terminal and may be anything);
//! each forward is audited when it opens and recorded with its byte counts when it closes.
//!
//! When policy does not allow forwarding, the user's requests are refused (and audited) and every channel
//! the target opens is refused here, as for terminal sessions.

use std::sync::{Arc, OnceLock};

use russh::client::ChannelOpenHandle;
use russh::{Channel, ChannelMsg, ChannelOpenFailure, server};
use sallyport_relay::{Event, ProxyEvent, ProxySink};

use super::handler::ProxyHandler;
use super::session::Shared;
use crate::connect::refuse_channel;

/// Where the channels a target opens go: the user's side of the same proxied connection.
pub(crate) struct Reverse {
    allowed: bool,
    attached: OnceLock<Attached>,
}

/// The user's side, known once their ssh connected.
struct Attached {
    server: server::Handle,
    sink: ProxySink,
    shared: Arc<Shared>,
}

impl Reverse {
    /// Channels from the target are bridged when `allowed` (by policy), refused otherwise.
    pub(crate) fn new(allowed: bool) -> Reverse {
        Reverse {
            allowed,
            attached: OnceLock::new(),
        }
    }

    /// Connects the user's side (once their ssh's session runs).
    pub(super) fn attach(&self, server: server::Handle, sink: ProxySink, shared: Arc<Shared>) {
        let _ = self.attached.set(Attached {
            server,
            sink,
            shared,
        });
    }

    fn user_side(&self) -> Option<&Attached> {
        self.attached.get().filter(|_| self.allowed)
    }

    /// The target opened a channel for a remote forward (`-R`).
    pub(crate) async fn forwarded_tcpip(
        &self,
        channel: Channel<russh::client::Msg>,
        reply: ChannelOpenHandle,
        connected_address: &str,
        connected_port: u32,
        originator_address: &str,
        originator_port: u32,
    ) {
        let Some(user) = self.user_side() else {
            return refuse_channel("forwarded-tcpip", channel, reply).await;
        };
        let what = format!(
            "remote forwarding connection to {}:{connected_port} from {}:{originator_port}",
            super::shown(connected_address),
            super::shown(originator_address)
        );
        let opened = user
            .server
            .channel_open_forwarded_tcpip(
                connected_address,
                connected_port,
                originator_address,
                originator_port,
            )
            .await;
        bridge_back(user, opened.ok(), channel, reply, what).await;
    }

    /// The target opened a channel to the user's agent (`-A`).
    pub(crate) async fn agent(
        &self,
        channel: Channel<russh::client::Msg>,
        reply: ChannelOpenHandle,
    ) {
        let Some(user) = self.user_side() else {
            return refuse_channel("auth-agent", channel, reply).await;
        };
        let opened = user.server.channel_open_agent().await;
        bridge_back(
            user,
            opened.ok(),
            channel,
            reply,
            "agent connection from the target".into(),
        )
        .await;
    }

    /// The target opened an X11 channel (`-X`).
    pub(crate) async fn x11(
        &self,
        channel: Channel<russh::client::Msg>,
        reply: ChannelOpenHandle,
        originator_address: &str,
        originator_port: u32,
    ) {
        let Some(user) = self.user_side() else {
            return refuse_channel("x11", channel, reply).await;
        };
        let opened = user
            .server
            .channel_open_x11(originator_address, originator_port)
            .await;
        bridge_back(
            user,
            opened.ok(),
            channel,
            reply,
            "X11 connection from the target".into(),
        )
        .await;
    }
}

/// Accepts the target's channel if the user's ssh accepted its twin, audits it and bridges the two.
async fn bridge_back(
    user: &Attached,
    opened: Option<Channel<server::Msg>>,
    channel: Channel<russh::client::Msg>,
    reply: ChannelOpenHandle,
    what: String,
) {
    let Some(user_channel) = opened else {
        let _ = user
            .sink
            .record(Event::Marker(format!("{what}: the user's ssh refused it")))
            .await;
        return refuse_channel("forwarded", channel, reply).await;
    };
    if user
        .sink
        .record(ProxyEvent::Audit {
            kind: "port_forward".into(),
            detail: format!("{what} (allowed by policy)"),
        })
        .await
        .is_err()
    {
        return refuse_channel("forwarded", channel, reply).await;
    }
    reply.accept().await;
    user.shared
        .spawn(pipe(user_channel, channel, what, user.sink.clone()));
}

/// Moves bytes both ways between a forwarded channel's two ends until both are closed, then records
/// how many went each way.
pub(super) async fn pipe(
    user: Channel<server::Msg>,
    target: Channel<russh::client::Msg>,
    what: String,
    sink: ProxySink,
) {
    let (mut from_user, to_user) = user.split();
    let (mut from_target, to_target) = target.split();
    let (mut up, mut down) = (0u64, 0u64);
    loop {
        tokio::select! {
            message = from_user.wait() => match message {
                Some(ChannelMsg::Data { data }) => {
                    up += data.len() as u64;
                    if to_target.data(&data[..]).await.is_err() {
                        break;
                    }
                }
                Some(ChannelMsg::Eof) => {
                    let _ = to_target.eof().await;
                }
                Some(ChannelMsg::Close) | None => break,
                Some(_) => {}
            },
            message = from_target.wait() => match message {
                Some(ChannelMsg::Data { data }) => {
                    down += data.len() as u64;
                    if to_user.data(&data[..]).await.is_err() {
                        break;
                    }
                }
                Some(ChannelMsg::Eof) => {
                    let _ = to_user.eof().await;
                }
                Some(ChannelMsg::Close) | None => break,
                Some(_) => {}
            },
        }
    }
    let _ = to_target.close().await;
    let _ = to_user.close().await;
    let _ = sink
        .record(Event::Marker(format!(
            "{what} closed: {up} bytes from the user, {down} bytes to the user"
        )))
        .await;
}

impl ProxyHandler {
    /// The user's ssh asks for a local forward (`-L`, `-W`): `to` as the target sees it, `from` the
    /// originator the user's ssh names.
    pub(super) async fn local_forward(
        &mut self,
        channel: Channel<server::Msg>,
        to: (&str, u32),
        from: (&str, u32),
        reply: server::ChannelOpenHandle,
    ) -> Result<(), russh::Error> {
        let what = format!(
            "local forwarding to {}:{} (as the target sees it)",
            super::shown(to.0),
            to.1
        );
        if !self.forwarding || self.user.is_none() {
            drop(channel);
            reply
                .reject(ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return self.refuse_forwarding("port_forward", what).await;
        }
        match self
            .target
            .channel_open_direct_tcpip(to.0, to.1, from.0, from.1)
            .await
        {
            Ok(target) => {
                reply.accept().await;
                self.audit_allowed("port_forward", &what).await?;
                self.shared
                    .spawn(pipe(channel, target, what, self.sink.clone()));
            }
            Err(error) => {
                self.marker(format!("{what}: the target refused it: {error}"))
                    .await?;
                reply.reject(ChannelOpenFailure::ConnectFailed).await;
            }
        }
        Ok(())
    }

    /// The user's ssh asks for a remote forward (`-R`): the target listens, and its connections come
    /// back through [`Reverse::forwarded_tcpip`].
    pub(super) async fn remote_forward(
        &mut self,
        address: &str,
        port: &mut u32,
    ) -> Result<bool, russh::Error> {
        let what = format!(
            "remote forwarding of {}:{port} on the target",
            super::shown(address)
        );
        if !self.forwarding || self.user.is_none() {
            self.refuse_forwarding("port_forward", what).await?;
            return Ok(false);
        }
        match self.target.tcpip_forward(address, *port).await {
            Ok(bound) => {
                if *port == 0 {
                    *port = bound;
                }
                self.audit_allowed("port_forward", &what).await?;
                Ok(true)
            }
            Err(error) => {
                self.marker(format!("{what}: the target refused it: {error}"))
                    .await?;
                Ok(false)
            }
        }
    }
}
