//! SSH proxying for OpenSSH's `ProxyCommand` (`sallyport proxy TARGET`): the transport hands the broker
//! a raw byte stream; a [`ProxyConnector`] (the SSH crate's server) terminates SSH on it, dials the
//! target as a client and reports what happens through a [`ProxySink`]. The broker owns the recording:
//! sink events go through a bounded queue to the one task that records them, so a slow disk slows the
//! session, and a recorder failure ends it (fail closed).
//!
//! As for terminals, the target is resolved and egress-vetted here, the recording is opened before
//! anything is dialled, the host key is pinned on first use, and the session is registered in the live
//! sessions (terminate, revocation, byte counters).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sallyport_core::errors::ErrorKind;
use sallyport_core::policy::Authorized;
use sallyport_recordings::{Event, Outcome, SessionRecorder, TryRecordError};
use sallyport_state::HostKeyPin;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tracing::warn;

use crate::broker::{Broker, now_ms};
use crate::live::{LiveInfo, SessionSlot};
use crate::traits::{BoxFuture, TargetError};

/// A byte stream to the user's SSH client.
pub trait ProxyStream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> ProxyStream for T {}

/// What the SSH server needs to reach the target.
#[derive(Debug, Clone)]
pub struct ProxyConnect {
    /// The vetted address to dial (exactly this).
    pub addr: SocketAddr,
    /// The pinned host key (OpenSSH line), or `None` to trust on first use.
    pub pinned_host_key: Option<String>,
    /// Deadline for dialling, handshake and target authentication together.
    pub timeout: Duration,
}

/// Something to record or act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyEvent {
    /// Bytes the user typed into a terminal channel.
    Input(Vec<u8>),
    /// Terminal output from the target.
    Output(Vec<u8>),
    /// The user's terminal size.
    Resize {
        /// Columns.
        cols: u16,
        /// Rows.
        rows: u16,
    },
    /// Free text: channel requests, commands run, file transfers, exit statuses.
    Marker(String),
    /// The target presented this host key (OpenSSH line, `SHA256:` fingerprint); pinned on first use.
    HostKey {
        /// OpenSSH public key line.
        public_key: String,
        /// Its fingerprint.
        fingerprint: String,
    },
    /// An audit event (refused port forwarding, for instance).
    Audit {
        /// Event kind.
        kind: String,
        /// Detail.
        detail: String,
    },
}

/// Where the SSH server reports events. Sending waits while the recorder is behind.
#[derive(Clone)]
pub struct ProxySink {
    tx: mpsc::Sender<ProxyEvent>,
}

impl ProxySink {
    /// Records or acts on an event; an error means the session is over (recording failed or ended).
    pub async fn send(&self, event: ProxyEvent) -> Result<(), TargetError> {
        self.tx.send(event).await.map_err(|_| TargetError {
            kind: ErrorKind::RecordingUnavailable,
            detail: "the session's recording has ended".into(),
        })
    }
}

/// A protocol that terminates SSH on a stream and relays to a target.
pub trait ProxyConnector: Send + Sync {
    /// Serves one SSH connection on `stream` until it ends.
    fn serve(
        &self,
        request: ProxyConnect,
        stream: Box<dyn ProxyStream>,
        sink: ProxySink,
    ) -> BoxFuture<'static, Result<(), TargetError>>;
}

/// A proxy session whose target was vetted and whose recording is open, waiting for its stream.
pub struct PreparedProxy<'a> {
    broker: &'a Broker,
    connector: Arc<dyn ProxyConnector>,
    decision: Authorized,
    client_addr: SocketAddr,
    addr: SocketAddr,
    _slot: SessionSlot,
    recording: SessionRecorder,
}

/// How a proxy session ended.
enum ProxyEnd {
    Closed,
    Terminated(String),
    Failed(ErrorKind, String),
}

impl Broker {
    /// Checks everything a proxy session needs before its stream carries SSH: the connector exists,
    /// the target resolves to an allowed address, a session slot is free, the recording is open.
    pub async fn prepare_proxy(
        &self,
        decision: Authorized,
        client_addr: SocketAddr,
    ) -> Result<PreparedProxy<'_>, (ErrorKind, Option<String>)> {
        let connector = self.proxy_connector().ok_or((
            ErrorKind::BadRequest,
            Some("ssh proxying is not enabled on this gateway".into()),
        ))?;
        let (addr, slot, recording) = self
            .open_session(&decision, client_addr, "ssh-proxy")
            .await?;
        Ok(PreparedProxy {
            broker: self,
            connector,
            decision,
            client_addr,
            addr,
            _slot: slot,
            recording,
        })
    }
}

/// Records an event, waiting off the async workers when the recorder's queue is full.
fn record(recording: &SessionRecorder, event: Event) -> Result<(), String> {
    match recording.try_record(event) {
        Ok(()) => Ok(()),
        Err(TryRecordError::Full(event)) => {
            tokio::task::block_in_place(|| recording.record(event)).map_err(|e| e.to_string())
        }
        Err(TryRecordError::Failed(error)) => Err(error.to_string()),
    }
}

impl PreparedProxy<'_> {
    /// The recording's id.
    pub fn session_id(&self) -> &str {
        self.recording.id()
    }

    /// Runs the SSH session on `stream` until either side ends it, then seals the recording.
    pub async fn run<S: ProxyStream + 'static>(self, stream: S) {
        let PreparedProxy {
            broker,
            connector,
            decision,
            client_addr,
            addr,
            _slot,
            recording,
        } = self;
        let target = decision.target();
        let audit = |kind: &str, detail: String| {
            broker.audit(sallyport_state::AuditEvent {
                kind: kind.to_owned(),
                actor: Some(decision.user().username.clone()),
                client_addr: Some(client_addr.to_string()),
                target: Some(target.name.clone()),
                session_id: Some(recording.id().to_owned()),
                detail: Some(detail),
            })
        };
        let pinned = match broker.state().pinned_host_key(target.id) {
            Ok(pin) => pin.map(|p| p.public_key),
            Err(error) => {
                let _ = recording.finish(Outcome::Failed);
                warn!(%error, "could not read the pinned host key");
                return;
            }
        };
        let _ = record(&recording, Event::Marker(format!("ssh proxy to {addr}")));
        audit("connect", format!("{addr} (ssh proxy)"));
        let mut live = broker.live().register(LiveInfo {
            session_id: recording.id().to_owned(),
            user_id: decision.user().user_id,
            username: decision.user().username.clone(),
            target: target.name.clone(),
            client_addr,
            started_at_ms: recording.started_at_ms(),
            bytes_up: 0,
            bytes_down: 0,
        });
        let (tx, mut rx) = mpsc::channel(256);
        let (ours, theirs) = tokio::io::duplex(256 * 1024);
        let serve = connector.serve(
            ProxyConnect {
                addr,
                pinned_host_key: pinned,
                timeout: broker.config().target_connect_timeout,
            },
            Box::new(theirs),
            ProxySink { tx },
        );
        let far = Duration::from_secs(365 * 24 * 3600);
        let max = tokio::time::sleep(broker.config().max_duration.unwrap_or(far));
        tokio::pin!(serve, max);
        let mut served = None;
        let (mut ours_read, mut ours_write) = tokio::io::split(ours);
        let (mut stream_read, mut stream_write) = tokio::io::split(stream);
        let end = {
            // Up: the client's bytes to the SSH server; its end (the client closed) is passed on as EOF.
            let up = async {
                let _ = tokio::io::copy(&mut stream_read, &mut ours_write).await;
                let _ = tokio::io::AsyncWriteExt::shutdown(&mut ours_write).await;
            };
            // Down: everything the SSH server wrote; it ends when the server is done, which ends the session.
            let down = async {
                let _ = tokio::io::copy(&mut ours_read, &mut stream_write).await;
                let _ = tokio::io::AsyncWriteExt::shutdown(&mut stream_write).await;
            };
            tokio::pin!(up, down);
            let mut up_done = false;
            loop {
                tokio::select! {
                    event = rx.recv() => {
                        let Some(event) = event else { continue };
                        let recorded = match event {
                            ProxyEvent::Input(bytes) => {
                                live.counters.add_up(bytes.len());
                                record(&recording, Event::Input(bytes))
                            }
                            ProxyEvent::Output(bytes) => {
                                live.counters.add_down(bytes.len());
                                live.publish(&bytes);
                                record(&recording, Event::Output(bytes))
                            }
                            ProxyEvent::Resize { cols, rows } => record(&recording, Event::Resize { cols, rows }),
                            ProxyEvent::Marker(text) => record(&recording, Event::Marker(text)),
                            ProxyEvent::HostKey { public_key, fingerprint } => {
                                let pin = HostKeyPin { public_key, fingerprint: fingerprint.clone(), first_seen_ms: now_ms() };
                                if let Ok(true) = broker.state().pin_host_key(target.id, &pin) {
                                    audit("host_key_pinned", fingerprint);
                                }
                                Ok(())
                            }
                            ProxyEvent::Audit { kind, detail } => {
                                audit(&kind, detail.clone());
                                record(&recording, Event::Marker(format!("{kind}: {detail}")))
                            }
                        };
                        if let Err(error) = recorded {
                            break ProxyEnd::Failed(ErrorKind::RecordingUnavailable, error);
                        }
                    }
                    result = &mut serve, if served.is_none() => {
                        served = Some(result);
                    }
                    () = &mut up, if !up_done => {
                        up_done = true;
                    }
                    () = &mut down => {
                        break match served.take() {
                            Some(Err(error)) => ProxyEnd::Failed(error.kind, error.detail),
                            _ => ProxyEnd::Closed,
                        };
                    }
                    () = &mut max, if broker.config().max_duration.is_some() => {
                        break ProxyEnd::Terminated("the maximum session duration was reached".into());
                    }
                    changed = live.terminated.changed() => {
                        let reason = live.terminated.borrow().clone();
                        match (changed, reason) {
                            (Ok(()), None) => continue,
                            (Ok(()), Some(reason)) => break ProxyEnd::Terminated(reason),
                            (Err(_), _) => break ProxyEnd::Terminated("the gateway is shutting down".into()),
                        }
                    }
                }
            }
        };
        // Events already queued are still recorded (bounded: the queue and a short wait).
        let drain = async {
            while let Some(event) = rx.recv().await {
                let event = match event {
                    ProxyEvent::Input(bytes) => Event::Input(bytes),
                    ProxyEvent::Output(bytes) => Event::Output(bytes),
                    ProxyEvent::Resize { cols, rows } => Event::Resize { cols, rows },
                    ProxyEvent::Marker(text) => Event::Marker(text),
                    ProxyEvent::Audit { kind, detail } => {
                        Event::Marker(format!("{kind}: {detail}"))
                    }
                    ProxyEvent::HostKey { .. } => continue,
                };
                if record(&recording, event).is_err() {
                    break;
                }
            }
        };
        drop((ours_read, ours_write));
        let _ = tokio::io::AsyncWriteExt::shutdown(&mut stream_write).await;
        let _ = tokio::time::timeout(Duration::from_millis(500), drain).await;
        let (outcome, detail) = match end {
            ProxyEnd::Closed => (Outcome::Ended, "client closed".to_owned()),
            ProxyEnd::Terminated(reason) => (Outcome::Terminated, format!("terminated: {reason}")),
            ProxyEnd::Failed(kind, detail) => (Outcome::Failed, format!("{kind:?}: {detail}")),
        };
        let _ = record(
            &recording,
            Event::Marker(format!("session ended: {detail}")),
        );
        audit("disconnect", detail);
        drop(live);
        if let Err(error) = recording.finish(outcome) {
            warn!(%error, "could not seal the recording");
        }
    }
}
