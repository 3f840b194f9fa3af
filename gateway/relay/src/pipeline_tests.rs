//! Unit tests of the session pipeline: [`Broker::run`] driven with in-memory transports and connectors
//! (channels), over the real state database and the real recordings store on temporary SQLite files.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ed25519_dalek::SigningKey;
use sallyport_core::errors::ErrorKind;
use sallyport_core::frames::{
    ClientMessage, ConnectRequest, Credential, FrameError, ServerControl, TerminalSize,
};
use sallyport_core::policy::{Authorized, Protocol, Role};
use sallyport_recordings::{Event, Limits, Recorder, SessionMeta, Store};
use sallyport_state::{AuditFilter, HostKeyPin, StateDb, TargetSpec};
use tempfile::TempDir;
use tokio::sync::mpsc;

use crate::access::{AccessError, decide};
use crate::{
    BoxFuture, Broker, BrokerConfig, Connectors, Desktop, DesktopConnect, DesktopConnector,
    DesktopOpened, DesktopTransport, Proxy, ProxyConnect, ProxyConnector, ProxyOpened, TargetError,
    TargetEvent, Terminal, TerminalChannel, TerminalConnect, TerminalConnector, TerminalOpened,
    TerminalTransport, Transport, TransportClosed,
};

const HOST_KEY: &str = "ssh-ed25519 AAAAtest";
const FINGERPRINT: &str = "SHA256:test";

/// What the in-memory transport saw the broker send.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Sent {
    Output(Vec<u8>),
    Control(ServerControl),
    Closed,
}

/// The user's side: frames in through a channel, everything sent out through another.
struct MemoryTransport {
    incoming: mpsc::UnboundedReceiver<Result<ClientMessage, FrameError>>,
    sent: mpsc::UnboundedSender<Sent>,
}

impl TerminalTransport for MemoryTransport {
    async fn recv(&mut self) -> Option<Result<ClientMessage, FrameError>> {
        self.incoming.recv().await
    }
    async fn send_output(&mut self, data: &[u8]) -> Result<(), TransportClosed> {
        self.sent
            .send(Sent::Output(data.to_vec()))
            .map_err(|_| TransportClosed)
    }
}

impl Transport for MemoryTransport {
    async fn send_control(&mut self, msg: &ServerControl) -> Result<(), TransportClosed> {
        self.sent
            .send(Sent::Control(msg.clone()))
            .map_err(|_| TransportClosed)
    }
    async fn close(&mut self) {
        let _ = self.sent.send(Sent::Closed);
    }
}

impl DesktopTransport for MemoryTransport {
    async fn recv(
        &mut self,
    ) -> Option<Result<sallyport_core::display::DesktopMessage, FrameError>> {
        None
    }
    async fn send_update(&mut self, _update: Vec<u8>) -> Result<(), TransportClosed> {
        Ok(())
    }
    async fn send_desktop_control(
        &mut self,
        _msg: &sallyport_core::display::DesktopServerControl,
    ) -> Result<(), TransportClosed> {
        Ok(())
    }
}

/// The target's side of one terminal: events pushed through a channel, keystrokes collected.
struct MemoryChannel {
    events: mpsc::UnboundedReceiver<TargetEvent>,
    written: Arc<Mutex<Vec<u8>>>,
}

impl TerminalChannel for MemoryChannel {
    fn next_event(&mut self) -> BoxFuture<'_, TargetEvent> {
        Box::pin(async move { self.events.recv().await.unwrap_or(TargetEvent::Closed) })
    }
    fn write<'a>(&'a mut self, data: &'a [u8]) -> BoxFuture<'a, Result<(), TargetError>> {
        self.written.lock().unwrap().extend_from_slice(data);
        Box::pin(async { Ok(()) })
    }
    fn resize(&mut self, _size: TerminalSize) -> BoxFuture<'_, Result<(), TargetError>> {
        Box::pin(async { Ok(()) })
    }
    fn close(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async {})
    }
}

/// Every protocol in memory: counts dials; terminals answer with `answer` (a channel, or a failure).
#[derive(Default)]
struct MemoryConnectors {
    dials: Mutex<Vec<SocketAddr>>,
    failure: Mutex<Option<TargetError>>,
    /// The target's events for the next terminal opened.
    target: Mutex<Option<mpsc::UnboundedReceiver<TargetEvent>>>,
    written: Arc<Mutex<Vec<u8>>>,
}

impl MemoryConnectors {
    fn dial_count(&self) -> usize {
        self.dials.lock().unwrap().len()
    }
}

impl TerminalConnector for MemoryConnectors {
    fn connect(
        &self,
        request: TerminalConnect,
    ) -> BoxFuture<'_, Result<TerminalOpened, TargetError>> {
        self.dials.lock().unwrap().push(request.addr);
        let failure = self.failure.lock().unwrap().clone();
        let events = self.target.lock().unwrap().take();
        let written = self.written.clone();
        Box::pin(async move {
            if let Some(error) = failure {
                return Err(error);
            }
            Ok(TerminalOpened {
                channel: Box::new(MemoryChannel {
                    events: events.expect("the test gives the target's events"),
                    written,
                }),
                host_key: HOST_KEY.into(),
                host_key_fingerprint: FINGERPRINT.into(),
            })
        })
    }
}

impl DesktopConnector for MemoryConnectors {
    fn connect(
        &self,
        request: DesktopConnect,
    ) -> BoxFuture<'_, Result<DesktopOpened, TargetError>> {
        self.dials.lock().unwrap().push(request.addr);
        Box::pin(async { Err(unreachable_target()) })
    }
}

impl ProxyConnector for MemoryConnectors {
    fn connect(
        &self,
        request: ProxyConnect,
    ) -> BoxFuture<'static, Result<ProxyOpened, TargetError>> {
        self.dials.lock().unwrap().push(request.addr);
        Box::pin(async { Err(unreachable_target()) })
    }
}

fn unreachable_target() -> TargetError {
    TargetError {
        kind: ErrorKind::TargetUnreachable,
        detail: "connection refused".into(),
    }
}

/// A gateway on temporary files: the state database, the recordings store, in-memory connectors.
struct Gateway {
    _dir: TempDir,
    recordings: std::path::PathBuf,
    state: StateDb,
    recorder: Recorder,
    connectors: Arc<MemoryConnectors>,
    broker: Arc<Broker>,
}

fn gateway(config: BrokerConfig, limits: Limits) -> Gateway {
    let dir = tempfile::tempdir().unwrap();
    let state = StateDb::open(&dir.path().join("state.db")).unwrap();
    let recordings = dir.path().join("recordings.db");
    let recorder = Recorder::start(&recordings, SigningKey::from_bytes(&[7; 32]), limits).unwrap();
    let connectors = Arc::new(MemoryConnectors::default());
    let broker = Broker::new(
        state.clone(),
        recorder.clone(),
        Vec::new(),
        Connectors {
            terminal: connectors.clone(),
            desktop: connectors.clone(),
            proxy: connectors.clone(),
        },
        config,
    );
    Gateway {
        _dir: dir,
        recordings,
        state,
        recorder,
        connectors,
        broker: Arc::new(broker),
    }
}

impl Gateway {
    /// A target `name` at `host`, a user with `role`, and the policy decision for them.
    fn decide(
        &self,
        name: &str,
        host: &str,
        protocol: Protocol,
        role: Role,
    ) -> Result<Authorized, AccessError> {
        self.state
            .upsert_target(&TargetSpec {
                name: name.into(),
                host: host.into(),
                port: 22,
                protocol,
                tags: Vec::new(),
            })
            .unwrap();
        let target = self
            .state
            .targets()
            .unwrap()
            .into_iter()
            .find(|t| t.name == name)
            .unwrap();
        let username = format!("{}-{name}", role.as_str());
        let record = self
            .state
            .create_user(&username, "correct horse battery", role, false, 0)
            .unwrap();
        let user = record.authenticated();
        decide(&self.state, &user, &target)
    }

    /// An admin's decision for an SSH target in 10.0.0.0/8, the network allowed.
    fn allowed(&self, name: &str) -> Authorized {
        self.state
            .add_network("lab", "10.0.0.0/8".parse().unwrap())
            .ok();
        self.decide(name, "10.0.0.5", Protocol::Ssh, Role::Admin)
            .unwrap()
    }

    fn audit_kinds(&self) -> Vec<(String, Option<String>)> {
        let mut events = self
            .state
            .audit_query(&AuditFilter {
                limit: 100,
                ..AuditFilter::default()
            })
            .unwrap();
        events.reverse();
        events
            .into_iter()
            .map(|record| (record.event.kind, record.event.detail))
            .collect()
    }

    fn recorded(&self, session_id: &str) -> Vec<Event> {
        let store = Store::open(&self.recordings).unwrap();
        store
            .events(session_id)
            .unwrap()
            .into_iter()
            .map(|timed| timed.event)
            .collect()
    }
}

/// The user's end of a running session.
struct User {
    input: mpsc::UnboundedSender<Result<ClientMessage, FrameError>>,
    sent: mpsc::UnboundedReceiver<Sent>,
    task: tokio::task::JoinHandle<()>,
}

impl User {
    async fn next(&mut self) -> Sent {
        tokio::time::timeout(Duration::from_secs(10), self.sent.recv())
            .await
            .expect("the broker answers in time")
            .expect("the broker still runs")
    }

    fn send(&self, message: ClientMessage) {
        self.input.send(Ok(message)).unwrap();
    }

    /// Waits for the session task to end.
    async fn ended(self) {
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the session ends")
            .unwrap();
    }
}

fn connect_message() -> ClientMessage {
    ClientMessage::Connect(ConnectRequest {
        username: "root".into(),
        credential: Credential::Password("hunter2".into()),
        size: TerminalSize { cols: 80, rows: 24 },
    })
}

fn client() -> SocketAddr {
    "192.0.2.10:50000".parse().unwrap()
}

fn memory_transport() -> (MemoryTransport, User) {
    let (input, incoming) = mpsc::unbounded_channel();
    let (sent_tx, sent) = mpsc::unbounded_channel();
    let transport = MemoryTransport {
        incoming,
        sent: sent_tx,
    };
    let user = User {
        input,
        sent,
        task: tokio::spawn(async {}),
    };
    (transport, user)
}

/// Starts a terminal session; the target's events go through the returned sender.
fn start_terminal(
    gw: &Gateway,
    decision: Authorized,
) -> (User, mpsc::UnboundedSender<TargetEvent>) {
    let (target_tx, target_rx) = mpsc::unbounded_channel();
    *gw.connectors.target.lock().unwrap() = Some(target_rx);
    let (transport, mut user) = memory_transport();
    let broker = gw.broker.clone();
    user.task = tokio::spawn(async move {
        broker.run(decision, client(), Terminal(transport)).await;
    });
    (user, target_tx)
}

fn error_of(sent: &Sent) -> (ErrorKind, String) {
    match sent {
        Sent::Control(ServerControl::Error { kind, message }) => (*kind, message.clone()),
        other => panic!("expected an error, got {other:?}"),
    }
}

async fn connected(user: &mut User) -> String {
    match user.next().await {
        Sent::Control(ServerControl::Connected {
            session_id,
            host_key_fingerprint,
            host_key_first_seen,
        }) => {
            assert_eq!(host_key_fingerprint, FINGERPRINT);
            assert!(host_key_first_seen, "nothing was pinned before");
            session_id
        }
        other => panic!("expected connected, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_session_records_before_forwarding_and_is_audited_from_pin_to_disconnect() {
    let gw = gateway(BrokerConfig::default(), Limits::default());
    let decision = gw.allowed("web");
    let (user_id, target_id) = (decision.user().user_id(), decision.target().id);
    let (mut user, target) = start_terminal(&gw, decision);
    user.send(connect_message());
    let session_id = connected(&mut user).await;
    let live = gw.broker.live().list();
    assert_eq!(live.len(), 1, "registered as live");
    assert_eq!(live[0].protocol, "ssh");
    // The target list remembers the use and the target username (never the password).
    let used = gw.state.target_use(user_id, target_id).unwrap().unwrap();
    assert_eq!(used.username.as_deref(), Some("root"));
    assert!(used.last_used_ms >= live[0].started_at_ms);

    user.send(ClientMessage::Input(b"ls\r".to_vec()));
    let written = || gw.connectors.written.lock().unwrap().clone();
    for _ in 0..1000 {
        if !written().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(written(), b"ls\r", "the keystrokes reach the target");
    target
        .send(TargetEvent::Output(b"ls\r\nfile\r\n".to_vec()))
        .unwrap();
    assert_eq!(user.next().await, Sent::Output(b"ls\r\nfile\r\n".to_vec()));
    target.send(TargetEvent::Exit(0)).unwrap();
    assert_eq!(
        user.next().await,
        Sent::Control(ServerControl::Exit { status: 0 })
    );
    target.send(TargetEvent::Closed).unwrap();
    assert_eq!(user.next().await, Sent::Closed);
    user.ended().await;

    assert!(
        gw.broker.live().list().is_empty(),
        "unregistered at the end"
    );
    assert_eq!(gw.connectors.dial_count(), 1);
    let pinned = gw
        .state
        .pinned_host_key(gw.broker.state().targets().unwrap()[0].id);
    assert_eq!(pinned.unwrap().unwrap().public_key, HOST_KEY);
    let kinds: Vec<String> = gw.audit_kinds().into_iter().map(|(kind, _)| kind).collect();
    assert_eq!(kinds, ["host_key_pinned", "connect", "disconnect"]);
    assert_eq!(
        gw.audit_kinds().last().unwrap().1.as_deref(),
        Some("target closed")
    );
    let events = gw.recorded(&session_id);
    assert!(events.contains(&Event::Marker("connecting to 10.0.0.5:22 as root".into())));
    assert!(events.contains(&Event::Output(b"ls\r\nfile\r\n".to_vec())));
    let input_at = events.iter().position(|e| matches!(e, Event::Input(_)));
    let output_at = events.iter().position(|e| matches!(e, Event::Output(_)));
    assert!(input_at < output_at, "recorded in order: {events:?}");
    assert!(events.contains(&Event::Marker("exit status 0".into())));
    assert_eq!(
        events.last(),
        Some(&Event::Marker("session ended: target closed".into()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_outside_the_networks_is_refused_before_anything_is_dialled() {
    let gw = gateway(BrokerConfig::default(), Limits::default());
    let decision = gw
        .decide("outside", "192.0.2.44", Protocol::Ssh, Role::Admin)
        .unwrap();
    let (mut user, _target) = start_terminal(&gw, decision);
    user.send(connect_message());
    let (kind, message) = error_of(&user.next().await);
    assert_eq!(kind, ErrorKind::NotAllowed);
    assert!(message.contains("192.0.2.44"), "{message}");
    assert_eq!(user.next().await, Sent::Closed);
    user.ended().await;
    assert_eq!(gw.connectors.dial_count(), 0);
    let audit = gw.audit_kinds();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].0, "connect_refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_no_policy_grants_is_not_authorized() {
    let gw = gateway(BrokerConfig::default(), Limits::default());
    let refused = gw.decide("db", "10.0.0.6", Protocol::Ssh, Role::User);
    assert!(
        matches!(refused, Err(AccessError::Denied(ref denied)) if denied.to_string() == "no policy allows you to reach this target"),
        "{refused:?}"
    );
    let auditor = gw.decide("db", "10.0.0.6", Protocol::Ssh, Role::Auditor);
    assert!(matches!(auditor, Err(AccessError::Denied(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorder_that_refuses_the_session_fails_it_closed_with_nothing_dialled() {
    let limits = Limits {
        chunk_max_bytes: 16 * 1024,
        max_db_pages: Some(64),
        ..Limits::default()
    };
    let gw = gateway(BrokerConfig::default(), limits);
    // Fill the recordings database until it takes no more writes.
    let filler = gw
        .recorder
        .open_session(SessionMeta {
            user: "filler".into(),
            target: "filler".into(),
            target_addr: "10.0.0.1:22".into(),
            protocol: "ssh".into(),
            client_addr: "192.0.2.1:1".into(),
        })
        .unwrap();
    let mut seed = 1u64;
    for _ in 0..10_000 {
        let block: Vec<u8> = (0..8 * 1024)
            .map(|_| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (seed >> 33) as u8
            })
            .collect();
        if filler.record(Event::Output(block)).is_err() {
            break;
        }
    }
    let decision = gw.allowed("web");
    let (mut user, _target) = start_terminal(&gw, decision);
    user.send(connect_message());
    let (kind, _) = error_of(&user.next().await);
    assert_eq!(kind, ErrorKind::RecordingUnavailable);
    user.ended().await;
    assert_eq!(gw.connectors.dial_count(), 0, "nothing dialled");
    let audit = gw.audit_kinds();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].0, "connect_refused");
    assert!(
        audit[0]
            .1
            .as_deref()
            .unwrap()
            .starts_with("recording unavailable: ")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminated_session_tells_the_user_why_and_is_sealed_as_terminated() {
    let gw = gateway(BrokerConfig::default(), Limits::default());
    let decision = gw.allowed("web");
    let (mut user, _target) = start_terminal(&gw, decision);
    user.send(connect_message());
    let session_id = connected(&mut user).await;
    assert!(gw.broker.live().terminate(&session_id, "ended by an admin"));
    let (kind, message) = error_of(&user.next().await);
    assert_eq!(kind, ErrorKind::Terminated);
    assert!(message.ends_with("ended by an admin"), "{message}");
    user.ended().await;
    let (last_kind, last_detail) = gw.audit_kinds().pop().unwrap();
    assert_eq!(last_kind, "disconnect");
    assert_eq!(
        last_detail.as_deref(),
        Some("terminated: ended by an admin")
    );
    assert!(
        gw.recorded(&session_id)
            .contains(&Event::Marker("terminated: ended by an admin".into()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_session_ends_and_input_keeps_it_open() {
    let config = BrokerConfig {
        idle_timeout: Some(Duration::from_millis(1500)),
        ..BrokerConfig::default()
    };
    let gw = gateway(config, Limits::default());
    let decision = gw.allowed("web");
    let (mut user, _target) = start_terminal(&gw, decision);
    user.send(connect_message());
    connected(&mut user).await;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        user.send(ClientMessage::Input(b"x".to_vec()));
    }
    assert!(
        user.sent.try_recv().is_err(),
        "input keeps the session open"
    );
    let (kind, message) = error_of(&user.next().await);
    assert_eq!(kind, ErrorKind::Terminated);
    assert!(
        message.ends_with("no input for 1 s (idle timeout)"),
        "{message}"
    );
    user.ended().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_over_their_session_limit_is_refused_before_anything_is_dialled() {
    let config = BrokerConfig {
        max_sessions_per_user: 1,
        ..BrokerConfig::default()
    };
    let gw = gateway(config, Limits::default());
    let decision = gw.allowed("web");
    let (mut first, _target) = start_terminal(&gw, decision.clone());
    first.send(connect_message());
    connected(&mut first).await;
    let (mut second, _target2) = start_terminal(&gw, decision);
    second.send(connect_message());
    let (kind, message) = error_of(&second.next().await);
    assert_eq!(kind, ErrorKind::NotAllowed);
    assert!(message.contains("session"), "{message}");
    second.ended().await;
    assert_eq!(gw.connectors.dial_count(), 1, "only the first was dialled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_target_fails_the_session_in_words() {
    let gw = gateway(BrokerConfig::default(), Limits::default());
    let decision = gw.allowed("web");
    let (mut user, target) = start_terminal(&gw, decision);
    user.send(connect_message());
    connected(&mut user).await;
    target
        .send(TargetEvent::Failed(TargetError {
            kind: ErrorKind::TargetUnreachable,
            detail: "the target stopped answering keepalives".into(),
        }))
        .unwrap();
    let (kind, message) = error_of(&user.next().await);
    assert_eq!(kind, ErrorKind::TargetUnreachable);
    assert!(
        message.ends_with("the target stopped answering keepalives"),
        "{message}"
    );
    user.ended().await;
    let (last_kind, last_detail) = gw.audit_kinds().pop().unwrap();
    assert_eq!(last_kind, "disconnect");
    assert_eq!(
        last_detail.as_deref(),
        Some("the target stopped answering keepalives")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_host_key_is_audited_and_the_connect_fails() {
    let gw = gateway(BrokerConfig::default(), Limits::default());
    let decision = gw.allowed("web");
    let pin = HostKeyPin {
        public_key: "ssh-ed25519 AAAAold".into(),
        fingerprint: "SHA256:old".into(),
        first_seen_ms: 1,
    };
    let user_id = decision.user().user_id();
    gw.state.pin_host_key(decision.target().id, &pin).unwrap();
    *gw.connectors.failure.lock().unwrap() = Some(TargetError {
        kind: ErrorKind::HostKeyChanged,
        detail: "the host key changed".into(),
    });
    let (mut user, _target) = start_terminal(&gw, decision);
    user.send(connect_message());
    let (kind, _) = error_of(&user.next().await);
    assert_eq!(kind, ErrorKind::HostKeyChanged);
    user.ended().await;
    let kinds: Vec<String> = gw.audit_kinds().into_iter().map(|(kind, _)| kind).collect();
    assert_eq!(kinds, ["host_key_mismatch", "connect_failed"]);
    assert!(
        gw.state.target_uses(user_id).unwrap().is_empty(),
        "a failed connect is no use of the target"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_kind_refuses_a_target_of_another_protocol_before_reading_or_dialling() {
    let gw = gateway(BrokerConfig::default(), Limits::default());
    let ssh = gw.allowed("web");
    let (transport, mut user) = memory_transport();
    gw.broker.run(ssh, client(), Desktop(transport)).await;
    let (kind, message) = error_of(&user.next().await);
    assert_eq!(kind, ErrorKind::BadRequest);
    assert!(
        message.ends_with("this target is not an RDP target"),
        "{message}"
    );

    let rdp = gw
        .decide("desk", "10.0.0.7", Protocol::Rdp, Role::Admin)
        .unwrap();
    let (transport, mut user) = memory_transport();
    gw.broker.run(rdp, client(), Proxy(transport)).await;
    let (kind, message) = error_of(&user.next().await);
    assert_eq!(kind, ErrorKind::NotAllowed);
    assert!(
        message.ends_with("desk is a rdp target; sallyport proxy carries ssh only"),
        "{message}"
    );
    assert_eq!(gw.connectors.dial_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_proxy_target_is_a_failed_connect_recorded_and_audited() {
    let gw = gateway(BrokerConfig::default(), Limits::default());
    let decision = gw.allowed("web");
    let (transport, mut user) = memory_transport();
    gw.broker.run(decision, client(), Proxy(transport)).await;
    let (kind, message) = error_of(&user.next().await);
    assert_eq!(kind, ErrorKind::TargetUnreachable);
    assert!(message.ends_with("connection refused"), "{message}");
    assert_eq!(gw.connectors.dial_count(), 1);
    let (last_kind, last_detail) = gw.audit_kinds().pop().unwrap();
    assert_eq!(last_kind, "connect_failed");
    assert_eq!(
        last_detail.as_deref(),
        Some("TargetUnreachable: connection refused")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxied_login_is_remembered_as_the_targets_username() {
    let gw = gateway(BrokerConfig::default(), Limits::default());
    let decision = gw.allowed("web");
    let (user_id, target_id) = (decision.user().user_id(), decision.target().id);
    let recording = gw
        .recorder
        .open_session(SessionMeta {
            user: decision.user().username().into(),
            target: "web".into(),
            target_addr: "10.0.0.5:22".into(),
            protocol: "ssh-proxy".into(),
            client_addr: client().to_string(),
        })
        .unwrap();
    gw.state
        .record_target_use(user_id, target_id, 1, None)
        .unwrap();
    let sink = crate::proxy::ProxySink::for_session(&gw.state, &decision, client(), &recording);
    sink.target_login("deploy");
    let used = gw.state.target_use(user_id, target_id).unwrap().unwrap();
    assert_eq!(used.username.as_deref(), Some("deploy"));
    assert!(used.last_used_ms > 1);
    // A sink without the session's context (a protocol's own tests) remembers nothing.
    crate::proxy::ProxySink::recording_only(recording.sink()).target_login("other");
    assert_eq!(
        gw.state
            .remembered_username(user_id, target_id)
            .unwrap()
            .as_deref(),
        Some("deploy")
    );
}
