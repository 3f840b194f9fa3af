//! The SSH proxy behind `sallyport proxy TARGET` (OpenSSH's `ProxyCommand`): the gateway is the SSH
//! server on the user's stream (russh server, the gateway's own host key, password authentication
//! only) and the SSH client towards the target (the same dialling, host key pinning and deadlines as
//! terminal sessions). The password the user's ssh sends is used for that one target connection.
//!
//! Each session channel the user opens becomes one target channel, bridged by one task
//! ([`bridge`]): requests (PTY, shell, exec, subsystem, window size, signals) go on with the target's
//! answers coming back in order, data both ways, exit status, EOF and close. What passes is reported
//! to the broker's [`ProxySink`]: terminal input and output of PTY channels, the commands run, SFTP
//! file transfers (name, direction, size, see [`crate::sftp`]). Port forwarding, agent and X11
//! forwarding are refused and audited.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use russh::keys::{HashAlg, PrivateKey};
use russh::server::{self, Auth, ChannelOpenHandle, Msg, Session};
use russh::{Channel, ChannelMsg, ChannelOpenFailure, MethodKind, MethodSet, SshId};
use sallyport_core::errors::ErrorKind as UserErrorKind;
use sallyport_relay::{
    BoxFuture, ProxyConnect, ProxyConnector, ProxyEvent, ProxySink, ProxyStream, TargetError,
};

use crate::connect::{AuthenticatedTarget, connect_authenticated};
use crate::sftp::SftpWatch;
use crate::{Credential, HostKey, SshError};

/// Password attempts a user's ssh gets before the gateway stops dialling the target for it.
const MAX_PASSWORD_ATTEMPTS: u32 = 3;

/// The SSH server of `sallyport proxy` streams.
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
            .map_err(|e| SshError::Protocol(format!("the proxy host key is unusable: {e}")))?;
        Ok(SshProxy { host_key })
    }

    /// A new Ed25519 host key from 32 random bytes, as OpenSSH private key text.
    pub fn generate_host_key(seed: [u8; 32]) -> Result<String, SshError> {
        let pair = russh::keys::ssh_key::private::Ed25519Keypair::from_seed(&seed);
        let key = PrivateKey::from(pair);
        key.to_openssh(russh::keys::ssh_key::LineEnding::LF)
            .map(|text| text.to_string())
            .map_err(|e| SshError::Protocol(format!("encoding the proxy host key: {e}")))
    }

    /// The host key's `SHA256:` fingerprint, as users' ssh shows it.
    pub fn host_key_fingerprint(&self) -> String {
        self.host_key
            .public_key()
            .fingerprint(HashAlg::Sha256)
            .to_string()
    }

    fn config(&self) -> server::Config {
        server::Config {
            server_id: SshId::Standard(Cow::Borrowed(concat!(
                "SSH-2.0-Sallyport_",
                env!("CARGO_PKG_VERSION")
            ))),
            methods: MethodSet::from(&[MethodKind::Password][..]),
            auth_rejection_time: Duration::from_secs(1),
            auth_rejection_time_initial: Some(Duration::ZERO),
            keys: vec![self.host_key.clone()],
            max_auth_attempts: 6,
            inactivity_timeout: None,
            keepalive_interval: Some(Duration::from_secs(30)),
            keepalive_max: 3,
            nodelay: true,
            ..server::Config::default()
        }
    }
}

/// Maps a target failure to the user's words.
fn target_error(error: &SshError) -> TargetError {
    use crate::ErrorKind;
    let kind = match error.kind() {
        ErrorKind::Unreachable | ErrorKind::Closed => UserErrorKind::TargetUnreachable,
        ErrorKind::Timeout | ErrorKind::Stalled => UserErrorKind::TargetTimeout,
        ErrorKind::HostKeyChanged => UserErrorKind::HostKeyChanged,
        ErrorKind::AuthFailed => UserErrorKind::TargetAuthFailed,
        ErrorKind::BadPrivateKey => UserErrorKind::BadPrivateKey,
        ErrorKind::ChannelRefused | ErrorKind::Protocol | ErrorKind::BadHostKey => {
            UserErrorKind::TargetProtocol
        }
    };
    TargetError {
        kind,
        detail: error.to_string(),
    }
}

impl ProxyConnector for SshProxy {
    fn serve(
        &self,
        request: ProxyConnect,
        stream: Box<dyn ProxyStream>,
        sink: ProxySink,
    ) -> BoxFuture<'static, Result<(), TargetError>> {
        let config = Arc::new(self.config());
        Box::pin(async move {
            let pinned = match &request.pinned_host_key {
                Some(line) => Some(HostKey::from_openssh(line).map_err(|e| target_error(&e))?),
                None => None,
            };
            let handler = ProxyHandler {
                request,
                pinned,
                sink,
                target: None,
                attempts: 0,
                failure: None,
            };
            let running = server::run_stream(config, stream, handler)
                .await
                .map_err(|e| TargetError {
                    kind: UserErrorKind::BadRequest,
                    detail: format!("the client's SSH handshake failed: {e}"),
                })?;
            running.await.map_err(|e| TargetError {
                kind: UserErrorKind::TargetProtocol,
                detail: format!("the SSH session failed: {e}"),
            })
        })
    }
}

/// One user's SSH connection through the proxy.
struct ProxyHandler {
    request: ProxyConnect,
    pinned: Option<HostKey>,
    sink: ProxySink,
    target: Option<AuthenticatedTarget>,
    attempts: u32,
    failure: Option<TargetError>,
}

impl ProxyHandler {
    async fn marker(&self, text: String) -> Result<(), russh::Error> {
        self.sink
            .send(ProxyEvent::Marker(text))
            .await
            .map_err(|_| russh::Error::Disconnect)
    }

    async fn refuse_channel(&self, kind: &str, detail: String, reply: ChannelOpenHandle) {
        let _ = self
            .sink
            .send(ProxyEvent::Audit {
                kind: format!("{kind}_refused"),
                detail,
            })
            .await;
        reply
            .reject(ChannelOpenFailure::AdministrativelyProhibited)
            .await;
    }
}

impl server::Handler for ProxyHandler {
    type Error = russh::Error;

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        if self.target.is_some() || self.attempts >= MAX_PASSWORD_ATTEMPTS {
            return Ok(Auth::reject());
        }
        self.attempts += 1;
        let connected = connect_authenticated(
            self.request.addr,
            user.to_owned(),
            Credential::Password(password.to_owned()),
            self.pinned.clone(),
            self.request.timeout,
        )
        .await;
        match connected {
            Ok(target) => {
                let _ = self
                    .sink
                    .send(ProxyEvent::HostKey {
                        public_key: target.host_key.openssh(),
                        fingerprint: target.host_key.fingerprint(),
                    })
                    .await;
                self.marker(format!("authenticated to {} as {user}", self.request.addr))
                    .await?;
                self.target = Some(target);
                Ok(Auth::Accept)
            }
            Err(error) => {
                let error = target_error(&error);
                if error.kind == UserErrorKind::HostKeyChanged {
                    let _ = self
                        .sink
                        .send(ProxyEvent::Audit {
                            kind: "host_key_mismatch".into(),
                            detail: error.detail.clone(),
                        })
                        .await;
                }
                self.marker(format!("target refused {user}: {}", error.detail))
                    .await?;
                self.failure = Some(error);
                Ok(Auth::reject())
            }
        }
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(target) = &self.target else {
            reply.reject(ChannelOpenFailure::ConnectFailed).await;
            return Ok(());
        };
        match target.handle.channel_open_session().await {
            Ok(target_channel) => {
                reply.accept().await;
                let server = session.handle();
                let sink = self.sink.clone();
                tokio::spawn(bridge(channel, target_channel, server, sink));
            }
            Err(error) => {
                self.marker(format!("the target refused a session channel: {error}"))
                    .await?;
                reply.reject(ChannelOpenFailure::ConnectFailed).await;
            }
        }
        Ok(())
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        _channel: Channel<Msg>,
        host_to_connect: &str,
        port_to_connect: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse_channel(
            "port_forward",
            format!("local forwarding to {host_to_connect}:{port_to_connect}"),
            reply,
        )
        .await;
        Ok(())
    }

    async fn channel_open_x11(
        &mut self,
        _channel: Channel<Msg>,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse_channel("x11", "x11 channel".into(), reply)
            .await;
        Ok(())
    }

    async fn tcpip_forward(
        &mut self,
        address: &str,
        port: &mut u32,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        let _ = self
            .sink
            .send(ProxyEvent::Audit {
                kind: "port_forward_refused".into(),
                detail: format!("remote forwarding of {address}:{port}"),
            })
            .await;
        Ok(false)
    }
}

/// What a channel is used for, which decides what is recorded of its bytes.
enum Use {
    /// Not decided yet (no shell, exec or subsystem request so far).
    Undecided,
    /// An interactive terminal or a command: bytes are recorded.
    Terminal,
    /// SFTP: transfers are recorded, not the bytes.
    Sftp(Box<SftpWatch>),
    /// Another subsystem: only its name is recorded.
    Other,
}

/// Moves one channel both ways until either side closes it: the one task that owns both ends.
async fn bridge(
    client: Channel<Msg>,
    target: Channel<russh::client::Msg>,
    server: server::Handle,
    sink: ProxySink,
) {
    let id = client.id();
    let (mut from_client, to_client) = client.split();
    let (mut from_target, to_target) = target.split();
    let mut use_ = Use::Undecided;
    let mut pty = false;
    let send = |event: ProxyEvent| {
        let sink = sink.clone();
        async move { sink.send(event).await.is_ok() }
    };
    loop {
        tokio::select! {
            message = from_client.wait() => {
                let Some(message) = message else { break };
                let ok = match message {
                    ChannelMsg::Data { data } => {
                        let recorded = match &mut use_ {
                            Use::Terminal | Use::Undecided => send(ProxyEvent::Input(data.to_vec())).await,
                            Use::Sftp(watch) => {
                                let mut ok = true;
                                for event in watch.client_bytes(&data) {
                                    ok &= send(ProxyEvent::Marker(event.to_string())).await;
                                }
                                ok
                            }
                            Use::Other => true,
                        };
                        recorded && to_target.data(&data[..]).await.is_ok()
                    }
                    ChannelMsg::Eof => to_target.eof().await.is_ok(),
                    ChannelMsg::Close => break,
                    ChannelMsg::RequestPty { want_reply, term, col_width, row_height, pix_width, pix_height, terminal_modes } => {
                        pty = true;
                        let cols = u16::try_from(col_width).unwrap_or(u16::MAX);
                        let rows = u16::try_from(row_height).unwrap_or(u16::MAX);
                        send(ProxyEvent::Resize { cols, rows }).await
                            && to_target.request_pty(want_reply, &term, col_width, row_height, pix_width, pix_height, &terminal_modes).await.is_ok()
                    }
                    ChannelMsg::RequestShell { want_reply } => {
                        use_ = Use::Terminal;
                        send(ProxyEvent::Marker(format!("shell{}", if pty { " with a pty" } else { "" }))).await
                            && to_target.request_shell(want_reply).await.is_ok()
                    }
                    ChannelMsg::Exec { want_reply, command } => {
                        use_ = Use::Terminal;
                        let shown: String = String::from_utf8_lossy(&command).chars().take(1024).collect();
                        send(ProxyEvent::Marker(format!("exec: {shown}"))).await
                            && to_target.exec(want_reply, command).await.is_ok()
                    }
                    ChannelMsg::RequestSubsystem { want_reply, name } => {
                        use_ = if name == "sftp" { Use::Sftp(Box::default()) } else { Use::Other };
                        send(ProxyEvent::Marker(format!("subsystem: {name}"))).await
                            && to_target.request_subsystem(want_reply, name).await.is_ok()
                    }
                    ChannelMsg::WindowChange { col_width, row_height, pix_width, pix_height } => {
                        let cols = u16::try_from(col_width).unwrap_or(u16::MAX);
                        let rows = u16::try_from(row_height).unwrap_or(u16::MAX);
                        send(ProxyEvent::Resize { cols, rows }).await
                            && to_target.window_change(col_width, row_height, pix_width, pix_height).await.is_ok()
                    }
                    ChannelMsg::Signal { signal } => to_target.signal(signal).await.is_ok(),
                    ChannelMsg::SetEnv { want_reply, variable_name, variable_value } => {
                        to_target.set_env(want_reply, variable_name, variable_value).await.is_ok()
                    }
                    ChannelMsg::AgentForward { want_reply } => {
                        let _ = send(ProxyEvent::Audit { kind: "agent_forward_refused".into(), detail: "agent forwarding".into() }).await;
                        !want_reply || server.channel_failure(id).await.is_ok()
                    }
                    ChannelMsg::RequestX11 { want_reply, .. } => {
                        let _ = send(ProxyEvent::Audit { kind: "x11_refused".into(), detail: "x11 forwarding".into() }).await;
                        !want_reply || server.channel_failure(id).await.is_ok()
                    }
                    _ => true,
                };
                if !ok {
                    break;
                }
            }
            message = from_target.wait() => {
                let Some(message) = message else { break };
                let ok = match message {
                    ChannelMsg::Data { data } => {
                        let recorded = match &mut use_ {
                            Use::Terminal | Use::Undecided => send(ProxyEvent::Output(data.to_vec())).await,
                            Use::Sftp(watch) => {
                                let mut ok = true;
                                for event in watch.server_bytes(&data) {
                                    ok &= send(ProxyEvent::Marker(event.to_string())).await;
                                }
                                ok
                            }
                            Use::Other => true,
                        };
                        recorded && to_client.data(&data[..]).await.is_ok()
                    }
                    ChannelMsg::ExtendedData { data, ext } => {
                        let recorded = match use_ {
                            Use::Terminal | Use::Undecided => send(ProxyEvent::Output(data.to_vec())).await,
                            _ => true,
                        };
                        recorded && to_client.extended_data(ext, &data[..]).await.is_ok()
                    }
                    ChannelMsg::Eof => to_client.eof().await.is_ok(),
                    ChannelMsg::Close => break,
                    ChannelMsg::ExitStatus { exit_status } => {
                        send(ProxyEvent::Marker(format!("exit status {exit_status}"))).await
                            && to_client.exit_status(exit_status).await.is_ok()
                    }
                    ChannelMsg::ExitSignal { signal_name, .. } => {
                        send(ProxyEvent::Marker(format!("killed by signal {signal_name:?}"))).await
                    }
                    ChannelMsg::Success => server.channel_success(id).await.is_ok(),
                    ChannelMsg::Failure => server.channel_failure(id).await.is_ok(),
                    _ => true,
                };
                if !ok {
                    break;
                }
            }
        }
    }
    let _ = to_target.close().await;
    let _ = to_client.close().await;
}
