//! Session channels of a proxied connection, from their open to their command: each becomes one target
//! channel, and each request before the command (PTY, environment, agent, X11) is passed on and answered
//! as the target answered it, in order. The command (shell, exec, subsystem) hands both ends to the
//! channel's bridge.
//!
//! russh 0.65 keeps one `wants_reply` flag per channel, overwritten by every request that arrives, and
//! sends a reply only while it is set; a reply sent later through the session `Handle` is therefore
//! dropped or taken for another request's once the client pipelines (OpenSSH sends `pty-req`, `env`
//! without a reply, and `shell` without waiting). The answer is given inside the callback.
//! What keeps that wait from holding the connection is its bounds: [`REQUEST_TIMEOUT`], and the session's
//! end (stop, failure), which gives up the wait at once so the disconnect goes out.

use std::time::Duration;

use russh::server::{ChannelOpenHandle, Msg, Session};
use russh::{Channel, ChannelId, ChannelMsg, ChannelOpenFailure, Pty};
use sallyport_relay::Event;
use sallyport_transfer::scp::{ScpCommand, ScpWatch};

use super::handler::ProxyHandler;
use super::{MAX_ENV, MAX_SESSIONS, REQUEST_TIMEOUT, bridge, shown};

/// A session channel between its open and its command: both ends, and what was asked so far.
pub(super) struct Pending {
    client: Channel<Msg>,
    pub(super) target: Channel<russh::client::Msg>,
    /// Target messages that arrived while waiting for a reply (replayed by the bridge first).
    early: Vec<ChannelMsg>,
    pty: bool,
    env: usize,
}

/// Whether one more session channel may open: only after authentication, and only below
/// [`MAX_SESSIONS`] counting bridges and pending channels. An unknown bridge count (`None`) counts as
/// full: the cap fails closed.
pub(super) fn may_open_session(
    authenticated: bool,
    bridges: Option<usize>,
    pending: usize,
) -> bool {
    authenticated && bridges.is_some_and(|bridges| bridges + pending < MAX_SESSIONS)
}

/// A channel request passed on to the target (always asking for its answer).
pub(super) enum Request<'a> {
    Pty {
        term: &'a str,
        /// Columns, rows, pixel width, pixel height.
        size: (u32, u32, u32, u32),
        modes: &'a [(Pty, u32)],
    },
    Env {
        name: &'a str,
        value: &'a str,
    },
    X11 {
        single_connection: bool,
        protocol: &'a str,
        cookie: &'a str,
        screen: u32,
    },
    Agent,
    Shell,
    Exec(&'a [u8]),
    Subsystem(&'a str),
}

impl Request<'_> {
    pub(super) fn name(&self) -> &'static str {
        match self {
            Request::Pty { .. } => "pty",
            Request::Env { .. } => "env",
            Request::X11 { .. } => "x11",
            Request::Agent => "agent",
            Request::Shell => "shell",
            Request::Exec(_) => "exec",
            Request::Subsystem(_) => "subsystem",
        }
    }

    async fn send(&self, target: &Channel<russh::client::Msg>) -> Result<(), russh::Error> {
        match *self {
            Request::Pty {
                term,
                size: (cols, rows, width, height),
                modes,
            } => {
                target
                    .request_pty(true, term, cols, rows, width, height, modes)
                    .await
            }
            Request::Env { name, value } => target.set_env(true, name, value).await,
            Request::X11 {
                single_connection,
                protocol,
                cookie,
                screen,
            } => {
                target
                    .request_x11(true, single_connection, protocol, cookie, screen)
                    .await
            }
            Request::Agent => target.agent_forward(true).await,
            Request::Shell => target.request_shell(true).await,
            Request::Exec(command) => target.exec(true, command).await,
            Request::Subsystem(name) => target.request_subsystem(true, name).await,
        }
    }
}

/// How the target answered a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Answer {
    Accepted,
    /// It said no, or the request could not be sent (no such pending channel, target gone).
    Refused,
    /// No answer in time, or its channel closed first.
    Silent,
    /// The session is ending: the wait was given up.
    Ending,
}

/// Throws away the copies of channel requests russh queues on the user's channel (the handler answers
/// them), keeping the queue short before the bridge reads it. Data and EOF never come before a command.
async fn drain_echoes(client: &mut Channel<Msg>) {
    while let Ok(Some(message)) = tokio::time::timeout(Duration::ZERO, client.wait()).await {
        if matches!(
            message,
            ChannelMsg::Data { .. } | ChannelMsg::ExtendedData { .. } | ChannelMsg::Eof
        ) {
            // A client that sends data before its command gets it dropped, as a target would not
            // run anything to read it; the bridge starts only with a command.
            tracing::debug!("data before the channel's command dropped");
        }
    }
}

/// Waits for the target's answer to a channel request: `Some(true)` success, `Some(false)` failure, `None`
/// when the channel closed. Other messages (window adjustments, early output) are kept for the bridge.
pub(super) async fn await_reply(
    target: &mut Channel<russh::client::Msg>,
    early: &mut Vec<ChannelMsg>,
) -> Option<bool> {
    loop {
        match target.wait().await? {
            ChannelMsg::Success => return Some(true),
            ChannelMsg::Failure => return Some(false),
            ChannelMsg::WindowAdjusted { .. } => {}
            ChannelMsg::Close => {
                early.push(ChannelMsg::Close);
                return None;
            }
            // A target that sends more than a few messages before answering is not waited for.
            _ if early.len() >= 64 => return None,
            other => early.push(other),
        }
    }
}

impl ProxyHandler {
    /// Passes a request on a pending channel to the target and waits for its answer (bounded by
    /// [`REQUEST_TIMEOUT`] and by the session's end).
    async fn ask(&mut self, id: ChannelId, request: &Request<'_>) -> Answer {
        let shared = self.shared.clone();
        let Some(pending) = self.channels.get_mut(&id) else {
            // After the command started (or on an unknown channel) the proxy takes no more requests.
            return Answer::Refused;
        };
        drain_echoes(&mut pending.client).await;
        if request.send(&pending.target).await.is_err() {
            return Answer::Refused;
        }
        let reply = tokio::time::timeout(
            REQUEST_TIMEOUT,
            await_reply(&mut pending.target, &mut pending.early),
        );
        match shared.unless_ended(reply).await {
            Some(Ok(Some(true))) => Answer::Accepted,
            Some(Ok(Some(false))) => Answer::Refused,
            Some(Ok(None) | Err(_)) => Answer::Silent,
            None => Answer::Ending,
        }
    }

    /// Passes a channel request to the target and answers the user's ssh the same; true when accepted.
    async fn relay_request(
        &mut self,
        id: ChannelId,
        request: Request<'_>,
        session: &mut Session,
    ) -> Result<bool, russh::Error> {
        let answer = self.ask(id, &request).await;
        if answer == Answer::Accepted {
            session.channel_success(id)?;
            return Ok(true);
        }
        session.channel_failure(id)?;
        if answer == Answer::Silent {
            self.marker(format!(
                "the target did not answer the {} request",
                request.name()
            ))
            .await?;
        }
        Ok(false)
    }

    /// Drains a pending channel's echoes before a request is refused without asking the target.
    async fn refuse_unasked(&mut self, id: ChannelId) {
        if let Some(pending) = self.channels.get_mut(&id) {
            drain_echoes(&mut pending.client).await;
        }
    }

    /// Starts the bridge of a channel whose command the target accepted.
    fn start(&mut self, id: ChannelId, usage: bridge::Usage, server: russh::server::Handle) {
        if let Some(pending) = self.channels.remove(&id) {
            let bridge = bridge::Bridge {
                client: pending.client,
                target: pending.target,
                early: pending.early,
                usage,
                sink: self.sink.clone(),
                shared: self.shared.clone(),
                server,
            };
            self.shared.spawn(bridge.run());
        }
    }

    pub(super) async fn open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
    ) -> Result<(), russh::Error> {
        let bridges = self.shared.bridges_open();
        if !may_open_session(self.user.is_some(), bridges, self.channels.len()) {
            reply.reject(ChannelOpenFailure::ResourceShortage).await;
            return Ok(());
        }
        let shared = self.shared.clone();
        let Some(opened) = shared
            .unless_ended(self.target.channel_open_session())
            .await
        else {
            reply.reject(ChannelOpenFailure::ConnectFailed).await;
            return Ok(());
        };
        match opened {
            Ok(target) => {
                reply.accept().await;
                self.channels.insert(
                    channel.id(),
                    Pending {
                        client: channel,
                        target,
                        early: Vec::new(),
                        pty: false,
                        env: 0,
                    },
                );
            }
            Err(error) => {
                self.marker(format!("the target refused a session channel: {error}"))
                    .await?;
                reply.reject(ChannelOpenFailure::ConnectFailed).await;
            }
        }
        Ok(())
    }

    /// `size` is (columns, rows, pixel width, pixel height).
    pub(super) async fn pty(
        &mut self,
        channel: ChannelId,
        term: &str,
        size: (u32, u32, u32, u32),
        modes: &[(Pty, u32)],
        session: &mut Session,
    ) -> Result<(), russh::Error> {
        let request = Request::Pty { term, size, modes };
        if self.relay_request(channel, request, session).await? {
            if let Some(pending) = self.channels.get_mut(&channel) {
                pending.pty = true;
            }
            let (cols, rows) = terminal_size(size.0, size.1);
            self.record(Event::Resize { cols, rows }).await?;
            self.marker(format!("pty {} ({cols}x{rows})", shown(term)))
                .await?;
        }
        Ok(())
    }

    pub(super) async fn env(
        &mut self,
        channel: ChannelId,
        name: &str,
        value: &str,
        session: &mut Session,
    ) -> Result<(), russh::Error> {
        let Some(pending) = self.channels.get_mut(&channel) else {
            session.channel_failure(channel)?;
            return Ok(());
        };
        pending.env += 1;
        if pending.env > MAX_ENV {
            drain_echoes(&mut pending.client).await;
            session.channel_failure(channel)?;
            return Ok(());
        }
        self.relay_request(channel, Request::Env { name, value }, session)
            .await?;
        Ok(())
    }

    pub(super) async fn x11(
        &mut self,
        channel: ChannelId,
        request: Request<'_>,
        session: &mut Session,
    ) -> Result<(), russh::Error> {
        if !self.forwarding {
            self.refuse_unasked(channel).await;
            session.channel_failure(channel)?;
            return self
                .refuse_forwarding("x11_forward", "X11 forwarding".into())
                .await;
        }
        if self.relay_request(channel, request, session).await? {
            self.audit_allowed("x11_forward", "X11 forwarding").await?;
        }
        Ok(())
    }

    /// russh answers the agent request itself from the returned value, so only the target is asked here.
    pub(super) async fn agent(&mut self, channel: ChannelId) -> Result<bool, russh::Error> {
        if !self.forwarding {
            self.refuse_unasked(channel).await;
            self.refuse_forwarding("agent_forward", "agent forwarding".into())
                .await?;
            return Ok(false);
        }
        let ok = self.ask(channel, &Request::Agent).await == Answer::Accepted;
        if ok {
            self.audit_allowed("agent_forward", "agent forwarding")
                .await?;
        }
        Ok(ok)
    }

    pub(super) async fn shell(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), russh::Error> {
        let pty = self.channels.get(&channel).is_some_and(|p| p.pty);
        if self.relay_request(channel, Request::Shell, session).await? {
            self.marker(format!("shell{}", if pty { " with a pty" } else { "" }))
                .await?;
            self.start(channel, bridge::Usage::Terminal, session.handle());
        }
        Ok(())
    }

    pub(super) async fn exec(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), russh::Error> {
        let shown_command: String = sallyport_transfer::clean_name(data);
        if self
            .relay_request(channel, Request::Exec(data), session)
            .await?
        {
            self.marker(format!("exec: {shown_command}")).await?;
            let usage = match ScpCommand::parse(data) {
                Some(scp) => bridge::Usage::Scp(Box::new(ScpWatch::new(scp))),
                None => bridge::Usage::Terminal,
            };
            self.start(channel, usage, session.handle());
        }
        Ok(())
    }

    pub(super) async fn subsystem(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), russh::Error> {
        if self
            .relay_request(channel, Request::Subsystem(name), session)
            .await?
        {
            self.marker(format!("subsystem: {}", shown(name))).await?;
            let usage = if name == "sftp" {
                bridge::Usage::Sftp(Box::default())
            } else {
                bridge::Usage::Opaque
            };
            self.start(channel, usage, session.handle());
        }
        Ok(())
    }

    /// `size` is (columns, rows, pixel width, pixel height).
    pub(super) async fn window_change(
        &mut self,
        channel: ChannelId,
        size: (u32, u32, u32, u32),
    ) -> Result<(), russh::Error> {
        // Once the command runs, the bridge passes size changes on; before, they go from here (their
        // copies on the channel are drained with the next request's).
        if let Some(pending) = self.channels.get(&channel) {
            let (cols, rows, width, height) = size;
            let _ = pending
                .target
                .window_change(cols, rows, width, height)
                .await;
            let (cols, rows) = terminal_size(cols, rows);
            self.record(Event::Resize { cols, rows }).await?;
        }
        Ok(())
    }
}

/// A terminal size as recorded: each side saturated to 16 bits.
pub(super) fn terminal_size(cols: u32, rows: u32) -> (u16, u16) {
    (
        u16::try_from(cols).unwrap_or(u16::MAX),
        u16::try_from(rows).unwrap_or(u16::MAX),
    )
}
