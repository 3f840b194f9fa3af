//! One task per connection (identify, then accept streams) and one per stream (preamble, re-identify,
//! dispatch). Terminal streams become the broker's [`TerminalTransport`].

use std::net::SocketAddr;
use std::sync::Arc;

use quinn::{Connection, Incoming, RecvStream, SendStream, VarInt};
use rustls::pki_types::CertificateDer;
use sallyport_core::errors::ErrorKind;
use sallyport_core::frames::{
    ClientMessage, FrameError, MAX_CONTROL_LEN, MAX_INPUT_LEN, ServerControl,
};
use sallyport_core::policy::Authorized;
use sallyport_core::quic::{
    CLOSE_DONE, CLOSE_REFUSED, Frame, FrameDecoder, FrameType, Preamble, StatusInfo, TargetInfo,
};
use sallyport_relay::access::visible_targets;
use sallyport_relay::{Proxy, Terminal, TerminalTransport, Transport, TransportClosed};
use sallyport_state::AuditEvent;
use tracing::{Instrument, debug, info_span, warn};

use crate::Shared;
use crate::identity::{Identity, identify};
use crate::preamble::read_preamble;
use crate::target::decide_target;

/// Stream reset code for a stream the gateway refused.
const RESET_REFUSED: u32 = 1;

fn peer_chain(conn: &Connection) -> Vec<CertificateDer<'static>> {
    conn.peer_identity()
        .and_then(|any| any.downcast::<Vec<CertificateDer<'static>>>().ok())
        .map(|chain| *chain)
        .unwrap_or_default()
}

fn audit(shared: &Shared, kind: &str, actor: Option<&str>, client: SocketAddr, detail: String) {
    shared.broker.audit(AuditEvent {
        kind: kind.into(),
        actor: actor.map(str::to_owned),
        client_addr: Some(client.to_string()),
        detail: Some(detail),
        ..AuditEvent::default()
    });
}

/// Runs one connection from handshake to close.
pub(crate) async fn connection(shared: &Arc<Shared>, incoming: Incoming) {
    let client = incoming.remote_address();
    let conn = match tokio::time::timeout(shared.config.handshake_timeout, incoming).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(error)) => {
            // Foreign and expired certificates end here, refused by rustls with a TLS alert.
            debug!(client_addr = %client, %error, "quic handshake failed");
            audit(
                shared,
                "quic_refused",
                None,
                client,
                format!("handshake failed: {error}"),
            );
            return;
        }
        Err(_) => {
            debug!(client_addr = %client, "quic handshake timed out");
            return;
        }
    };
    let chain = peer_chain(&conn);
    let identity = match identify(shared.broker.state(), &chain) {
        Ok(identity) => identity,
        Err(refusal) => {
            audit(shared, "quic_refused", None, client, refusal.to_string());
            conn.close(
                VarInt::from_u32(CLOSE_REFUSED),
                refusal.to_string().as_bytes(),
            );
            return;
        }
    };
    let span = info_span!("quic", user = %identity.user.username(), client_addr = %client);
    async {
        debug!("quic connection accepted");
        loop {
            let (send, recv) = match conn.accept_bi().await {
                Ok(pair) => pair,
                Err(error) => {
                    debug!(%error, "quic connection ended");
                    break;
                }
            };
            let shared = shared.clone();
            let conn = conn.clone();
            let chain = chain.clone();
            tokio::spawn(
                async move { stream(&shared, &conn, &chain, send, recv).await }
                    .instrument(tracing::Span::current()),
            );
        }
    }
    .instrument(span)
    .await;
}

/// Writes one control frame.
async fn send_json(send: &mut SendStream, json: &str) -> Result<(), TransportClosed> {
    send.write_all(&Frame::encode(FrameType::Control, json.as_bytes()))
        .await
        .map_err(|_| TransportClosed)
}

/// Refuses a stream with an error frame and ends it; the connection stays up.
async fn refuse(mut send: SendStream, kind: ErrorKind, detail: &str) {
    let _ = send_json(
        &mut send,
        &ServerControl::error(kind, Some(detail)).to_json(),
    )
    .await;
    let _ = send.finish();
    // Let the error reach the client before the stream's state goes away.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), send.stopped()).await;
}

async fn stream(
    shared: &Arc<Shared>,
    conn: &Connection,
    chain: &[CertificateDer<'static>],
    send: SendStream,
    mut recv: RecvStream,
) {
    let client = conn.remote_address();
    let (preamble, rest) = match read_preamble(shared.config.preamble_timeout, &mut recv).await {
        Ok(found) => found,
        Err(detail) => {
            audit(shared, "quic_stream_refused", None, client, detail.clone());
            let _ = recv.stop(VarInt::from_u32(RESET_REFUSED));
            refuse(send, ErrorKind::BadRequest, &detail).await;
            return;
        }
    };
    // Revocation applies to every new stream, at once.
    let identity = match identify(shared.broker.state(), chain) {
        Ok(identity) => identity,
        Err(refusal) => {
            audit(shared, "quic_refused", None, client, refusal.to_string());
            refuse(send, refusal.error_kind(), &refusal.to_string()).await;
            conn.close(
                VarInt::from_u32(CLOSE_REFUSED),
                refusal.to_string().as_bytes(),
            );
            return;
        }
    };
    let username = identity.user.username().to_owned();
    match preamble {
        Preamble::Targets => {
            let json = match visible_targets(shared.broker.state(), &identity.user) {
                Ok(targets) => serde_json::to_string(
                    &targets
                        .into_iter()
                        .map(|t| TargetInfo {
                            name: t.name,
                            host: t.host,
                            port: t.port,
                            protocol: t.protocol.as_str().to_owned(),
                        })
                        .collect::<Vec<_>>(),
                )
                .unwrap_or_else(|_| "[]".to_owned()),
                Err(error) => {
                    warn!(%error, "could not list targets");
                    return refuse(send, ErrorKind::Internal, "the target list is unavailable")
                        .await;
                }
            };
            reply(send, &json).await;
        }
        Preamble::Status => {
            let info = StatusInfo {
                username,
                role: identity.user.role().as_str().to_owned(),
                expires_at_ms: identity.expires_at_ms,
            };
            reply(send, &serde_json::to_string(&info).unwrap_or_default()).await;
        }
        Preamble::Logout => logout(shared, conn, &identity, send, client).await,
        Preamble::Terminal { target } => {
            session(
                shared,
                conn,
                &identity,
                &target,
                Carries::Terminal,
                (send, recv),
                rest,
            )
            .await
        }
        Preamble::Proxy { target } => {
            session(
                shared,
                conn,
                &identity,
                &target,
                Carries::Ssh,
                (send, recv),
                rest,
            )
            .await
        }
    }
}

async fn reply(mut send: SendStream, json: &str) {
    let _ = send_json(&mut send, json).await;
    let _ = send.finish();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), send.stopped()).await;
}

async fn logout(
    shared: &Shared,
    conn: &Connection,
    identity: &Identity,
    send: SendStream,
    client: SocketAddr,
) {
    match shared
        .broker
        .state()
        .revoke_client_cert(&identity.fingerprint, sallyport_relay::now_ms())
    {
        Ok(_) => {
            audit(
                shared,
                "cli_logout",
                Some(identity.user.username()),
                client,
                format!("certificate {} revoked", &identity.fingerprint[..16]),
            );
            reply(send, r#"{"type":"logged_out"}"#).await;
            conn.close(VarInt::from_u32(CLOSE_DONE), b"logged out");
        }
        Err(error) => {
            warn!(%error, "could not revoke a client certificate");
            refuse(
                send,
                ErrorKind::Internal,
                "the logout could not be recorded",
            )
            .await;
        }
    }
}

/// What a session stream carries.
enum Carries {
    /// `sallyport ssh`: the browser's terminal messages in frames.
    Terminal,
    /// `sallyport proxy`: the user's OpenSSH speaks SSH in data frames, which the broker hands to the
    /// gateway's SSH server.
    Ssh,
}

/// A session stream: the same policy decision, egress check and recorder as the browser's sessions.
async fn session(
    shared: &Shared,
    conn: &Connection,
    identity: &Identity,
    target_name: &str,
    carries: Carries,
    (send, recv): (SendStream, RecvStream),
    rest: Vec<u8>,
) {
    let client = conn.remote_address();
    let decision = match authorize_target(shared, client, identity, target_name) {
        Ok(decision) => decision,
        Err((kind, detail)) => return refuse(send, kind, &detail).await,
    };
    let mut decoder = FrameDecoder::new(MAX_CONTROL_LEN.max(MAX_INPUT_LEN));
    decoder.extend(&rest);
    let transport = QuicTransport {
        send,
        recv,
        decoder,
        chunk: vec![0; 16 * 1024],
        ended: false,
        conn: conn.clone(),
        last_addr: client,
        shared_audit: AuditSink {
            broker: shared.broker.clone(),
            user: identity.user.username().to_owned(),
        },
    };
    match carries {
        Carries::Terminal => {
            shared
                .broker
                .run(decision, client, Terminal(transport))
                .await
        }
        Carries::Ssh => shared.broker.run(decision, client, Proxy(transport)).await,
    }
}

/// Where the transport reports a client address change.
struct AuditSink {
    broker: Arc<sallyport_relay::Broker>,
    user: String,
}

/// A terminal stream as the broker's transport: frames in, frames out.
struct QuicTransport {
    send: SendStream,
    recv: RecvStream,
    decoder: FrameDecoder,
    chunk: Vec<u8>,
    ended: bool,
    conn: Connection,
    last_addr: SocketAddr,
    shared_audit: AuditSink,
}

impl QuicTransport {
    /// Audits a change of the client's address (connection migration), once per change.
    fn note_migration(&mut self) {
        let now = self.conn.remote_address();
        if now != self.last_addr {
            self.shared_audit.broker.audit(AuditEvent {
                kind: "client_address_changed".into(),
                actor: Some(self.shared_audit.user.clone()),
                client_addr: Some(now.to_string()),
                detail: Some(format!("from {} to {now}", self.last_addr)),
                ..AuditEvent::default()
            });
            self.last_addr = now;
        }
    }
}

impl TerminalTransport for QuicTransport {
    async fn recv(&mut self) -> Option<Result<ClientMessage, FrameError>> {
        loop {
            match self.decoder.next_frame() {
                Ok(Some(frame)) => return Some(frame.into_client_message()),
                Ok(None) => {}
                Err(error) => return Some(Err(FrameError::Malformed(error.to_string()))),
            }
            if self.ended {
                return None;
            }
            // `read` is cancel-safe and the decoder keeps what arrived, so this method is too.
            match self.recv.read(&mut self.chunk).await {
                Ok(Some(n)) => {
                    let received = self.chunk.get(..n).unwrap_or_default();
                    self.decoder.extend(received);
                    self.note_migration();
                }
                Ok(None) | Err(_) => {
                    self.ended = true;
                    return None;
                }
            }
        }
    }

    async fn send_output(&mut self, data: &[u8]) -> Result<(), TransportClosed> {
        self.send
            .write_all(&Frame::encode(FrameType::Data, data))
            .await
            .map_err(|_| TransportClosed)
    }
}

impl Transport for QuicTransport {
    async fn send_control(&mut self, msg: &ServerControl) -> Result<(), TransportClosed> {
        send_json(&mut self.send, &msg.to_json()).await
    }

    async fn close(&mut self) {
        let _ = self.send.finish();
        // A client that stopped reading must not hold the session task.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), self.send.stopped()).await;
    }
}

/// Finds the named target and asks the policy; refusals are audited.
fn authorize_target(
    shared: &Shared,
    client: SocketAddr,
    identity: &Identity,
    target_name: &str,
) -> Result<Authorized, (ErrorKind, String)> {
    decide_target(shared.broker.state(), identity, target_name, |detail| {
        shared.broker.audit(AuditEvent {
            kind: "connect_refused".into(),
            actor: Some(identity.user.username().to_owned()),
            client_addr: Some(client.to_string()),
            target: Some(target_name.to_owned()),
            detail: Some(detail),
            ..AuditEvent::default()
        });
    })
}
