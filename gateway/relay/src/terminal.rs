//! Terminal sessions (SSH from the browser, `sallyport ssh`): the [`Terminal`] kind of the session
//! pipeline. The connect message carries the account, credential and terminal size; the relay loop
//! records keystrokes, resizes and output before forwarding them.

use std::net::SocketAddr;
use std::time::Duration;

use sallyport_core::errors::ErrorKind;
use sallyport_core::frames::{ClientMessage, ConnectRequest, ServerControl};
use sallyport_recordings::Event;

use crate::broker::record;
use crate::limits::Deadlines;
use crate::live::LiveHandle;
use crate::pipeline::{Dialled, End, GiveUp, Refusal, Session, SessionKind, connect_message};
use crate::traits::{
    TargetError, TargetEvent, TerminalChannel, TerminalConnect, TerminalTransport,
};

/// A terminal session over this transport: run it with [`Broker::run`](crate::Broker::run).
pub struct Terminal<T>(pub T);

impl<T: TerminalTransport> SessionKind for Terminal<T> {
    type Request = ConnectRequest;
    type Transport = T;
    type Channel = Box<dyn TerminalChannel>;

    async fn request(&mut self, timeout: Duration) -> Result<Option<ConnectRequest>, Refusal> {
        connect_message(timeout, self.0.recv(), |message| match message {
            ClientMessage::Connect(request) => Some(request),
            _ => None,
        })
        .await
    }

    fn target_username(&self, request: &ConnectRequest) -> Option<String> {
        Some(request.username.clone())
    }

    fn connecting(&self, request: &ConnectRequest, addr: SocketAddr) -> Vec<Event> {
        vec![
            Event::Marker(format!("connecting to {addr} as {}", request.username)),
            Event::Resize {
                cols: request.size.cols,
                rows: request.size.rows,
            },
        ]
    }

    async fn dial(
        session: &Session<'_>,
        request: ConnectRequest,
        addr: SocketAddr,
        pinned_key: Option<String>,
    ) -> Result<Dialled<Self::Channel>, TargetError> {
        let connect = TerminalConnect {
            addr,
            username: request.username,
            credential: request.credential,
            pinned_host_key: pinned_key,
            size: request.size,
            timeout: session.broker.config().target_connect_timeout,
        };
        let opened = session
            .broker
            .connectors()
            .terminal
            .connect(connect)
            .await?;
        Ok(Dialled {
            channel: opened.channel,
            key: opened.host_key,
            fingerprint: opened.host_key_fingerprint,
        })
    }

    async fn relay(
        &mut self,
        mut channel: Self::Channel,
        session: &Session<'_>,
        live: &mut LiveHandle,
    ) -> End {
        let end = relay(&mut self.0, channel.as_mut(), session, live).await;
        channel.close().await;
        end
    }

    fn transport(&mut self) -> &mut T {
        &mut self.0
    }
}

impl GiveUp for Box<dyn TerminalChannel> {
    async fn give_up(self) {
        TerminalChannel::close(self).await;
    }
}

/// Ends a relay loop on a failed step.
pub(crate) fn failed(error: TargetError) -> End {
    End::Failed(error.kind, error.detail)
}

/// The relay loop: client frames to the target and target output to the client, each recorded before
/// it is forwarded.
async fn relay<T: TerminalTransport>(
    transport: &mut T,
    channel: &mut dyn TerminalChannel,
    session: &Session<'_>,
    live: &mut LiveHandle,
) -> End {
    let recording = session.recording;
    let mut deadlines = Deadlines::start(session.broker.config());
    loop {
        tokio::select! {
            reason = deadlines.reached(&mut live.terminated, recording) => {
                return End::Terminated(reason);
            }
            message = transport.recv() => match message {
                None => return End::ClientClosed,
                Some(Err(error)) => return End::Failed(ErrorKind::BadRequest, error.to_string()),
                Some(Ok(ClientMessage::Input(data))) => {
                    deadlines.input();
                    if let Err(error) = record(recording, Event::Input(data.clone())).await {
                        return failed(error);
                    }
                    if let Err(error) = channel.write(&data).await {
                        return failed(error);
                    }
                    live.counters.add_up(data.len());
                }
                Some(Ok(ClientMessage::Resize(size))) => {
                    let event = Event::Resize { cols: size.cols, rows: size.rows };
                    if let Err(error) = record(recording, event).await {
                        return failed(error);
                    }
                    if let Err(error) = channel.resize(size).await {
                        return failed(error);
                    }
                }
                Some(Ok(ClientMessage::Connect(_))) => {
                    return End::Failed(ErrorKind::BadRequest, "connect sent twice".into());
                }
            },
            event = channel.next_event() => match event {
                TargetEvent::Output(data) => {
                    if let Err(error) = record(recording, Event::Output(data.clone())).await {
                        return failed(error);
                    }
                    if transport.send_output(&data).await.is_err() {
                        return End::ClientClosed;
                    }
                    live.counters.add_down(data.len());
                    live.publish(&data);
                }
                TargetEvent::Exit(status) => {
                    let _ = record(recording, Event::Marker(format!("exit status {status}"))).await;
                    if transport.send_control(&ServerControl::Exit { status }).await.is_err() {
                        return End::ClientClosed;
                    }
                }
                TargetEvent::ExitSignal(signal) => {
                    let marker = Event::Marker(format!("killed by signal {signal}"));
                    let _ = record(recording, marker).await;
                }
                TargetEvent::Closed => return End::TargetClosed,
                TargetEvent::Failed(error) => return failed(error),
            },
        }
    }
}
