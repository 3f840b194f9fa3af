//! The SSH proxy behind `sallyport proxy TARGET` (OpenSSH's `ProxyCommand`): the gateway is the SSH server
//! of the user's ssh, scp or sftp (russh server, the gateway's own stable host key) and the SSH client of
//! the target (the same dialling, host key pinning and deadlines as terminal sessions).
//!
//! Authentication is relayed, not duplicated: the user is already known by their QUIC client certificate,
//! so the gateway's server asks nothing of its own. Each attempt of the user's ssh is passed to the target
//! as it comes (`none`, then `password` or `keyboard-interactive` with the target's prompts shown to the
//! user), and the target's answer, with its list of methods, goes back. Public keys cannot be relayed (the
//! signature covers the session with the gateway, not the target's), so `publickey` is refused; a target
//! that accepts only keys is reported in the recording.
//!
//! After authentication, each session channel the user opens becomes one target channel. Requests before
//! the command (PTY, environment, agent, X11) are passed on one by one, each waiting for the target's
//! answer, so the user's ssh gets exactly the replies it asked for; the command request (shell, exec,
//! subsystem) hands both channels to [`bridge`], which records what passes. Port forwarding, agent and
//! X11 forwarding are refused and audited unless policy allows them ([`forward`]).

mod bridge;
mod forward;

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use russh::keys::{HashAlg, PrivateKey};
use russh::server::{self, Auth, ChannelOpenHandle, Msg, Session};
use russh::{
    Channel, ChannelId, ChannelMsg, ChannelOpenFailure, Disconnect, MethodKind, MethodSet, Pty,
    SshId,
};
use sallyport_core::errors::ErrorKind as UserErrorKind;
use sallyport_relay::{
    BoxFuture, ProxyConnect, ProxyConnector, ProxyEvent, ProxyOpened, ProxySession, ProxySink,
    ProxyStream, TargetError,
};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::connect::{Client, Handshaken, handshake};
use crate::error::seconds;
use crate::relay_adapter::target_error;
use crate::{HostKey, SshError};
use sallyport_transfer::scp::ScpCommand;

pub(crate) use forward::Reverse;

/// Most session channels one connection may have open (OpenSSH's `MaxSessions` default).
const MAX_SESSIONS: usize = 10;
/// Most environment variables passed on per channel (OpenSSH clients send a dozen at most).
const MAX_ENV: usize = 64;
/// How long the target may take to answer a channel request before the user's ssh is told no.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Most keyboard-interactive prompts passed on at once (PAM asks one or two).
const MAX_PROMPTS: usize = 16;
/// Most bytes of one keyboard-interactive prompt, name or instruction shown to the user.
const MAX_PROMPT_CHARS: usize = 512;

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

    fn config(&self) -> server::Config {
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
            let target = handshake(request.addr, pinned, request.timeout, Some(reverse.clone()))
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

/// What every part of one proxied connection shares.
pub(crate) struct Shared {
    /// Why the session failed, when the gateway ended it (the first reason wins).
    pub(crate) failure: OnceLock<TargetError>,
    /// Whether the user's ssh has authenticated (the login deadline stops applying).
    authenticated: AtomicBool,
    /// The bridges of channels; aborted when the session ends.
    pub(crate) tasks: Mutex<JoinSet<()>>,
}

impl Shared {
    /// Runs a bridge for as long as the session lives.
    pub(crate) fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        // Reap the finished ones so the set stays as small as the open channels.
        while tasks.try_join_next().is_some() {}
        tasks.spawn(task);
    }

    /// Ends the session with `error` (recorded as its outcome); the user's ssh hears the reason.
    pub(crate) async fn fail(&self, server: &server::Handle, error: TargetError) {
        let words = error.detail.clone();
        let _ = self.failure.set(error);
        let _ = server
            .disconnect(Disconnect::ByApplication, words, "en".into())
            .await;
    }
}

/// Aborts the bridges when the session's future ends or is dropped.
struct AbortTasks(Arc<Shared>);

impl Drop for AbortTasks {
    fn drop(&mut self) {
        self.0
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .abort_all();
    }
}

/// A target after its handshake, waiting for the user's ssh.
struct Proxied {
    config: Arc<server::Config>,
    target: Handshaken,
    reverse: Arc<Reverse>,
    request: ProxyConnect,
}

/// A failure of the user's side.
fn client_error(detail: String) -> TargetError {
    TargetError {
        kind: UserErrorKind::BadRequest,
        detail,
    }
}

/// Words for a russh failure on the user's side of the proxy.
fn client_russh_error(error: &russh::Error) -> String {
    match error {
        russh::Error::Version => {
            "the client sent no SSH identification line (is this stream from ssh?)".into()
        }
        russh::Error::Disconnect | russh::Error::HUP => {
            "the client closed the connection during the SSH handshake".into()
        }
        russh::Error::PacketSize(size) => {
            format!("the client sent a packet of {size} bytes, more than allowed")
        }
        russh::Error::NoCommonAlgo { kind, .. } => {
            format!("the client offers no {kind:?} algorithm the gateway accepts")
        }
        other => format!("the client's SSH connection failed: {other}"),
    }
}

impl ProxySession for Proxied {
    fn serve(
        self: Box<Self>,
        stream: Box<dyn ProxyStream>,
        sink: ProxySink,
        mut stop: watch::Receiver<Option<String>>,
    ) -> BoxFuture<'static, Result<(), TargetError>> {
        Box::pin(async move {
            let Proxied {
                config,
                target,
                reverse,
                request,
            } = *self;
            let Handshaken {
                handle,
                host_key: _,
                guard,
                failure: target_failure,
            } = target;
            let shared = Arc::new(Shared {
                failure: OnceLock::new(),
                authenticated: AtomicBool::new(false),
                tasks: Mutex::new(JoinSet::new()),
            });
            let _abort = AbortTasks(shared.clone());
            let handler = ProxyHandler {
                target: handle,
                _guard: guard,
                target_failure,
                sink: sink.clone(),
                shared: shared.clone(),
                forwarding: request.forwarding,
                addr: request.addr,
                user: None,
                channels: HashMap::new(),
            };
            let login = request.login_timeout;
            let running = match tokio::time::timeout(
                login,
                server::run_stream(config, stream, handler),
            )
            .await
            {
                Ok(Ok(running)) => running,
                Ok(Err(error)) => return Err(client_error(client_russh_error(&error))),
                Err(_) => {
                    return Err(client_error(format!(
                        "the client sent no SSH identification within {}",
                        seconds(login)
                    )));
                }
            };
            let server = running.handle();
            reverse.attach(server.clone(), sink, shared.clone());
            tokio::pin!(running);
            let deadline = tokio::time::sleep(login);
            tokio::pin!(deadline);
            let mut stopped = false;
            let result = loop {
                tokio::select! {
                    result = &mut running => break result,
                    () = &mut deadline, if !shared.authenticated.load(Ordering::Relaxed) => {
                        shared
                            .fail(&server, client_error(format!(
                                "the client did not authenticate within {}",
                                seconds(login)
                            )))
                            .await;
                        // Set far away: the session ends on the disconnect.
                        deadline.as_mut().reset(tokio::time::Instant::now() + Duration::from_secs(365 * 24 * 3600));
                    }
                    changed = stop.changed(), if !stopped => {
                        let reason = match changed {
                            Ok(()) => stop.borrow().clone(),
                            Err(_) => Some("the gateway is shutting down".to_owned()),
                        };
                        if let Some(reason) = reason {
                            stopped = true;
                            let _ = server
                                .disconnect(Disconnect::ByApplication, format!("sallyport: {reason}"), "en".into())
                                .await;
                        }
                    }
                }
            };
            if let Some(error) = shared.failure.get() {
                return Err(error.clone());
            }
            match result {
                Ok(()) => Ok(()),
                // The user's ssh went away without a goodbye: an ordinary end for a proxied session.
                Err(russh::Error::Disconnect | russh::Error::HUP) => Ok(()),
                Err(russh::Error::IO(error))
                    if matches!(
                        error.kind(),
                        std::io::ErrorKind::UnexpectedEof
                            | std::io::ErrorKind::BrokenPipe
                            | std::io::ErrorKind::ConnectionReset
                    ) =>
                {
                    Ok(())
                }
                Err(error) => Err(client_error(client_russh_error(&error))),
            }
        })
    }
}

/// A session channel between its open and its command: both ends, and what was asked so far.
struct Pending {
    client: Channel<Msg>,
    target: Channel<russh::client::Msg>,
    /// Target messages that arrived while waiting for a reply (replayed by the bridge first).
    early: Vec<ChannelMsg>,
    pty: bool,
    env: usize,
}

/// One user's SSH connection through the proxy: russh's callbacks, turned into target requests.
struct ProxyHandler {
    target: russh::client::Handle<Client>,
    /// Shuts the target's TCP connection down when the session ends.
    _guard: crate::session::SocketGuard,
    target_failure: Arc<OnceLock<SshError>>,
    sink: ProxySink,
    shared: Arc<Shared>,
    forwarding: bool,
    addr: std::net::SocketAddr,
    /// The target account, once authenticated.
    user: Option<String>,
    channels: HashMap<ChannelId, Pending>,
}

/// Methods the proxy can relay, among those the target offers.
fn relayable(methods: &MethodSet) -> MethodSet {
    let mut out = Vec::new();
    if methods.contains(&MethodKind::Password) {
        out.push(MethodKind::Password);
    }
    if methods.contains(&MethodKind::KeyboardInteractive) {
        out.push(MethodKind::KeyboardInteractive);
    }
    MethodSet::from(&out[..])
}

/// Text from the target shown to the user: bounded, no control characters (no escape sequences).
fn shown(text: &str) -> String {
    text.chars()
        .take(MAX_PROMPT_CHARS)
        .map(|c| {
            if c.is_control() && c != '\n' {
                '\u{fffd}'
            } else {
                c
            }
        })
        .collect()
}

impl ProxyHandler {
    async fn record(&self, event: ProxyEvent) -> Result<(), russh::Error> {
        match self.sink.record(event).await {
            Ok(()) => Ok(()),
            Err(error) => {
                let _ = self.shared.failure.set(error);
                Err(russh::Error::Disconnect)
            }
        }
    }

    async fn marker(&self, text: String) -> Result<(), russh::Error> {
        self.record(ProxyEvent::Marker(text)).await
    }

    /// A target failure during authentication ends the session with the target's reason.
    fn target_lost(&self, error: &russh::Error) -> russh::Error {
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

    /// The user is in: the target accepted them.
    async fn accepted(&mut self, user: &str, method: &str) -> Result<Auth, russh::Error> {
        self.user = Some(user.to_owned());
        self.shared.authenticated.store(true, Ordering::Relaxed);
        self.marker(format!(
            "authenticated to {} as {user} ({method}, relayed to the target)",
            self.addr
        ))
        .await?;
        Ok(Auth::Accept)
    }

    /// The target said no; its remaining methods (those the proxy can relay) are offered to the user.
    async fn rejected(
        &self,
        user: &str,
        method: &str,
        remaining: &MethodSet,
        partial_success: bool,
    ) -> Result<Auth, russh::Error> {
        let offered = relayable(remaining);
        if method != "none" {
            self.marker(format!("the target refused {user} ({method})"))
                .await?;
        } else if offered.is_empty() {
            let names: Vec<&str> = remaining.iter().map(<&str>::from).collect();
            self.marker(format!(
                "the target accepts only {} for {user}; sallyport proxy relays passwords and \
                 keyboard-interactive prompts, not keys",
                names.join(", ")
            ))
            .await?;
        }
        Ok(Auth::Reject {
            proceed_with_methods: Some(offered),
            partial_success,
        })
    }

    /// Passes a channel request to the target and waits for its answer; answers the user's ssh the same.
    async fn relay_request(
        &mut self,
        id: ChannelId,
        request: Request<'_>,
        session: &mut Session,
    ) -> Result<bool, russh::Error> {
        let what = request.name();
        let Some(pending) = self.channels.get_mut(&id) else {
            // After the command started (or on an unknown channel) the proxy takes no more requests.
            session.channel_failure(id)?;
            return Ok(false);
        };
        drain_echoes(&mut pending.client).await;
        if request.send(&pending.target).await.is_err() {
            session.channel_failure(id)?;
            return Ok(false);
        }
        let answer = tokio::time::timeout(
            REQUEST_TIMEOUT,
            await_reply(&mut pending.target, &mut pending.early),
        )
        .await
        .unwrap_or(None);
        match answer {
            Some(true) => session.channel_success(id)?,
            Some(false) => session.channel_failure(id)?,
            None => {
                session.channel_failure(id)?;
                self.marker(format!("the target did not answer the {what} request"))
                    .await?;
                return Ok(false);
            }
        }
        Ok(answer == Some(true))
    }

    /// Starts the bridge of a channel whose command the target accepted.
    fn start(&mut self, id: ChannelId, usage: bridge::Usage, server: server::Handle) {
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

    async fn refuse_forwarding(&self, kind: &str, detail: String) -> Result<(), russh::Error> {
        self.record(ProxyEvent::Audit {
            kind: format!("{kind}_refused"),
            detail: format!("{detail} (not allowed by policy)"),
        })
        .await
    }
}

/// A channel request passed on to the target (always asking for its answer).
enum Request<'a> {
    Pty {
        term: &'a str,
        cols: u32,
        rows: u32,
        width: u32,
        height: u32,
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
    Shell,
    Exec(&'a [u8]),
    Subsystem(&'a str),
}

impl Request<'_> {
    fn name(&self) -> &'static str {
        match self {
            Request::Pty { .. } => "pty",
            Request::Env { .. } => "env",
            Request::X11 { .. } => "x11",
            Request::Shell => "shell",
            Request::Exec(_) => "exec",
            Request::Subsystem(_) => "subsystem",
        }
    }

    async fn send(&self, target: &Channel<russh::client::Msg>) -> Result<(), russh::Error> {
        match *self {
            Request::Pty {
                term,
                cols,
                rows,
                width,
                height,
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
            Request::Shell => target.request_shell(true).await,
            Request::Exec(command) => target.exec(true, command).await,
            Request::Subsystem(name) => target.request_subsystem(true, name).await,
        }
    }
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
async fn await_reply(
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

impl server::Handler for ProxyHandler {
    type Error = russh::Error;

    async fn authentication_banner(&mut self) -> Result<Option<String>, Self::Error> {
        Ok(Some(
            "This session passes through a Sallyport gateway and is recorded.\r\n".into(),
        ))
    }

    async fn auth_none(&mut self, user: &str) -> Result<Auth, Self::Error> {
        match self.target.authenticate_none(user).await {
            Ok(russh::client::AuthResult::Success) => self.accepted(user, "none").await,
            Ok(russh::client::AuthResult::Failure {
                remaining_methods,
                partial_success,
            }) => {
                self.rejected(user, "none", &remaining_methods, partial_success)
                    .await
            }
            Err(error) => Err(self.target_lost(&error)),
        }
    }

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        match self.target.authenticate_password(user, password).await {
            Ok(russh::client::AuthResult::Success) => self.accepted(user, "password").await,
            Ok(russh::client::AuthResult::Failure {
                remaining_methods,
                partial_success,
            }) => {
                self.rejected(user, "password", &remaining_methods, partial_success)
                    .await
            }
            Err(error) => Err(self.target_lost(&error)),
        }
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
        let answer = match response {
            None => {
                let submethods = (!submethods.is_empty()).then(|| submethods.to_owned());
                self.target
                    .authenticate_keyboard_interactive_start(user, submethods)
                    .await
            }
            Some(response) => {
                let answers: Vec<String> = response
                    .take(MAX_PROMPTS)
                    .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
                    .collect();
                self.target
                    .authenticate_keyboard_interactive_respond(answers)
                    .await
            }
        };
        use russh::client::KeyboardInteractiveAuthResponse as R;
        match answer {
            Ok(R::Success) => self.accepted(user, "keyboard-interactive").await,
            Ok(R::Failure {
                remaining_methods,
                partial_success,
            }) => {
                self.rejected(
                    user,
                    "keyboard-interactive",
                    &remaining_methods,
                    partial_success,
                )
                .await
            }
            Ok(R::InfoRequest {
                name,
                instructions,
                prompts,
            }) => Ok(Auth::Partial {
                name: Cow::Owned(shown(&name)),
                instructions: Cow::Owned(shown(&instructions)),
                prompts: Cow::Owned(
                    prompts
                        .into_iter()
                        .take(MAX_PROMPTS)
                        .map(|p| (Cow::Owned(shown(&p.prompt)), p.echo))
                        .collect(),
                ),
            }),
            Err(error) => Err(self.target_lost(&error)),
        }
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let open = self.shared.tasks.lock().map(|t| t.len()).unwrap_or(0) + self.channels.len();
        if self.user.is_none() || open >= MAX_SESSIONS {
            reply.reject(ChannelOpenFailure::ResourceShortage).await;
            return Ok(());
        }
        match self.target.channel_open_session().await {
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
        let cols = u16::try_from(col_width).unwrap_or(u16::MAX);
        let rows = u16::try_from(row_height).unwrap_or(u16::MAX);
        let ok = self
            .relay_request(
                channel,
                Request::Pty {
                    term,
                    cols: col_width,
                    rows: row_height,
                    width: pix_width,
                    height: pix_height,
                    modes,
                },
                session,
            )
            .await?;
        if ok {
            if let Some(pending) = self.channels.get_mut(&channel) {
                pending.pty = true;
            }
            self.record(ProxyEvent::Resize { cols, rows }).await?;
            self.marker(format!("pty {} ({cols}x{rows})", shown(term)))
                .await?;
        }
        Ok(())
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        variable_name: &str,
        variable_value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
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
        self.relay_request(
            channel,
            Request::Env {
                name: variable_name,
                value: variable_value,
            },
            session,
        )
        .await?;
        Ok(())
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
        if !self.forwarding {
            if let Some(pending) = self.channels.get_mut(&channel) {
                drain_echoes(&mut pending.client).await;
            }
            session.channel_failure(channel)?;
            return self
                .refuse_forwarding("x11_forward", "X11 forwarding".into())
                .await;
        }
        let ok = self
            .relay_request(
                channel,
                Request::X11 {
                    single_connection,
                    protocol: x11_auth_protocol,
                    cookie: x11_auth_cookie,
                    screen: x11_screen_number,
                },
                session,
            )
            .await?;
        if ok {
            self.record(ProxyEvent::Audit {
                kind: "x11_forward".into(),
                detail: "X11 forwarding (allowed by policy)".into(),
            })
            .await?;
        }
        Ok(())
    }

    async fn agent_request(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        if !self.forwarding {
            if let Some(pending) = self.channels.get_mut(&channel) {
                drain_echoes(&mut pending.client).await;
            }
            self.refuse_forwarding("agent_forward", "agent forwarding".into())
                .await?;
            return Ok(false);
        }
        // russh answers this request itself from the returned value, so only ask the target here.
        let Some(pending) = self.channels.get_mut(&channel) else {
            return Ok(false);
        };
        drain_echoes(&mut pending.client).await;
        if pending.target.agent_forward(true).await.is_err() {
            return Ok(false);
        }
        let ok = tokio::time::timeout(
            REQUEST_TIMEOUT,
            await_reply(&mut pending.target, &mut pending.early),
        )
        .await
        .ok()
        .flatten()
            == Some(true);
        if ok {
            self.record(ProxyEvent::Audit {
                kind: "agent_forward".into(),
                detail: "agent forwarding (allowed by policy)".into(),
            })
            .await?;
        }
        Ok(ok)
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let pty = self.channels.get(&channel).is_some_and(|p| p.pty);
        if self.relay_request(channel, Request::Shell, session).await? {
            self.marker(format!("shell{}", if pty { " with a pty" } else { "" }))
                .await?;
            self.start(channel, bridge::Usage::Terminal, session.handle());
        }
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let shown_command: String = sallyport_transfer::clean_name(data);
        if self
            .relay_request(channel, Request::Exec(data), session)
            .await?
        {
            self.marker(format!("exec: {shown_command}")).await?;
            let usage = match ScpCommand::parse(data) {
                Some(scp) => {
                    bridge::Usage::Scp(Box::new(sallyport_transfer::scp::ScpWatch::new(scp)))
                }
                None => bridge::Usage::Terminal,
            };
            self.start(channel, usage, session.handle());
        }
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
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

    async fn window_change_request(
        &mut self,
        channel: ChannelId,
        col_width: u32,
        row_height: u32,
        pix_width: u32,
        pix_height: u32,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        // Once the command runs, the bridge passes size changes on; before, they go from here (their
        // copies on the channel are drained with the next request's).
        if let Some(pending) = self.channels.get(&channel) {
            let _ = pending
                .target
                .window_change(col_width, row_height, pix_width, pix_height)
                .await;
            self.record(ProxyEvent::Resize {
                cols: u16::try_from(col_width).unwrap_or(u16::MAX),
                rows: u16::try_from(row_height).unwrap_or(u16::MAX),
            })
            .await?;
        }
        Ok(())
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
        let what = format!(
            "local forwarding to {}:{port_to_connect} (as the target sees it)",
            shown(host_to_connect)
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
            .channel_open_direct_tcpip(
                host_to_connect,
                port_to_connect,
                originator_address,
                originator_port,
            )
            .await
        {
            Ok(target) => {
                reply.accept().await;
                self.record(ProxyEvent::Audit {
                    kind: "port_forward".into(),
                    detail: format!("{what} (allowed by policy)"),
                })
                .await?;
                self.shared
                    .spawn(forward::pipe(channel, target, what, self.sink.clone()));
            }
            Err(error) => {
                self.marker(format!("{what}: the target refused it: {error}"))
                    .await?;
                reply.reject(ChannelOpenFailure::ConnectFailed).await;
            }
        }
        Ok(())
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
            format!("forwarding to the socket {}", shown(socket_path)),
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
        let what = format!(
            "remote forwarding of {}:{port} on the target",
            shown(address)
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
                self.record(ProxyEvent::Audit {
                    kind: "port_forward".into(),
                    detail: format!("{what} (allowed by policy)"),
                })
                .await?;
                Ok(true)
            }
            Err(error) => {
                self.marker(format!("{what}: the target refused it: {error}"))
                    .await?;
                Ok(false)
            }
        }
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
            format!("remote forwarding of the socket {}", shown(socket_path)),
        )
        .await?;
        Ok(false)
    }
}
