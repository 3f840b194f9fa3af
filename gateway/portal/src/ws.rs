//! The terminal WebSocket: checks login and policy before upgrading (the Origin layer checked its Origin), then hands the socket to
//! the broker as a [`TerminalTransport`] (terminals) or a [`DesktopTransport`] (desktops).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{FromRequestParts, Path};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use sallyport_core::display::{
    DesktopMessage, DesktopServerControl, MAX_DESKTOP_TEXT, MAX_INPUT_MESSAGE,
    parse_desktop_binary, parse_desktop_text,
};
use sallyport_core::frames::{
    ClientMessage, FrameError, MAX_CONTROL_LEN, MAX_INPUT_LEN, ServerControl, parse_client_binary,
    parse_client_text,
};
use sallyport_core::policy::Authorized;
use sallyport_relay::{
    Desktop, DesktopTransport, SessionKind, Terminal, TerminalTransport, Transport, TransportClosed,
};
use sallyport_state::AuditEvent;

use crate::Portal;
use crate::access::{AccessError, decide};
use crate::auth::{CurrentUser, client_addr};

/// A session WebSocket's upgrade request that passed the login and policy checks (the Origin layer on
/// the whole router checked its Origin first): the extractor makes them before any upgrade (in this
/// order: the login, that it is an upgrade at all, then the policy), and answers a refusal over HTTP
/// after auditing it.
pub(crate) struct AuthorizedUpgrade {
    portal: Arc<Portal>,
    client: SocketAddr,
    decision: Authorized,
    upgrade: WebSocketUpgrade,
}

impl FromRequestParts<Arc<Portal>> for AuthorizedUpgrade {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        portal: &Arc<Portal>,
    ) -> Result<Self, Self::Rejection> {
        let client = client_addr(parts, portal).await?;
        let Path(target_id) = Path::<i64>::from_request_parts(parts, portal)
            .await
            .map_err(IntoResponse::into_response)?;
        let user = CurrentUser::from_request_parts(parts, portal).await?;
        let upgrade = WebSocketUpgrade::from_request_parts(parts, portal)
            .await
            .map_err(IntoResponse::into_response)?;
        let decision =
            authorize_upgrade(portal, client, target_id, &user).map_err(|refused| *refused)?;
        Ok(AuthorizedUpgrade {
            portal: portal.clone(),
            client,
            decision,
            upgrade,
        })
    }
}

/// The target and policy checks before any upgrade; a refusal is audited and answered over HTTP.
fn authorize_upgrade(
    portal: &Portal,
    client: SocketAddr,
    target_id: i64,
    user: &CurrentUser,
) -> Result<Authorized, Box<Response>> {
    let refuse = |status: StatusCode, detail: &str| {
        portal.broker.audit(AuditEvent {
            kind: "connect_refused".into(),
            actor: Some(user.user.username().to_owned()),
            client_addr: Some(client.to_string()),
            detail: Some(detail.to_owned()),
            ..AuditEvent::default()
        });
        Box::new((status, detail.to_owned()).into_response())
    };
    let target = match portal.broker.state().target(target_id) {
        Ok(Some(target)) => target,
        _ => return Err(refuse(StatusCode::NOT_FOUND, "no such target")),
    };
    match decide(portal, &user.user, &target) {
        Ok(decision) => Ok(decision),
        Err(AccessError::Denied(denied)) => Err(refuse(
            StatusCode::FORBIDDEN,
            &format!("not allowed: {denied}"),
        )),
        Err(AccessError::State(error)) => Err(refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("state database: {error}"),
        )),
    }
}

impl AuthorizedUpgrade {
    /// Upgrades to a WebSocket taking messages up to `max_message_size`, and runs the session of the
    /// kind `kind` makes of the socket.
    fn run<K: SessionKind + 'static>(
        self,
        max_message_size: usize,
        kind: fn(WsTransport) -> K,
    ) -> Response {
        let AuthorizedUpgrade {
            portal,
            client,
            decision,
            upgrade,
        } = self;
        let broker = portal.broker.clone();
        upgrade
            .max_message_size(max_message_size)
            .on_upgrade(move |socket| async move {
                broker
                    .run(decision, client, kind(WsTransport { socket }))
                    .await
            })
    }
}

/// `GET /ws/terminal/{target_id}`.
pub async fn terminal(session: AuthorizedUpgrade) -> Response {
    let max = MAX_CONTROL_LEN.max(MAX_INPUT_LEN) + 1024;
    session.run(max, Terminal)
}

/// `GET /ws/desktop/{target_id}`: the same checks, then a desktop session.
pub async fn desktop(session: AuthorizedUpgrade) -> Response {
    // Clipboard text is the longest message a desktop client sends.
    let max = MAX_DESKTOP_TEXT.max(MAX_INPUT_MESSAGE) + 1024;
    session.run(max, Desktop)
}

/// A browser WebSocket as the broker's transport.
struct WsTransport {
    socket: WebSocket,
}

impl WsTransport {
    /// The next text or binary message, parsed with `text` or `binary`; `None` once the socket closes.
    async fn recv_parsed<T>(
        &mut self,
        text: impl FnOnce(&str) -> T,
        binary: impl FnOnce(&[u8]) -> T,
    ) -> Option<T> {
        loop {
            match self.socket.recv().await? {
                Ok(Message::Text(message)) => return Some(text(message.as_str())),
                Ok(Message::Binary(bytes)) => return Some(binary(&bytes)),
                Ok(Message::Ping(_) | Message::Pong(_)) => continue,
                Ok(Message::Close(_)) | Err(_) => return None,
            }
        }
    }

    async fn send(&mut self, message: Message) -> Result<(), TransportClosed> {
        self.socket.send(message).await.map_err(|_| TransportClosed)
    }
}

impl TerminalTransport for WsTransport {
    async fn recv(&mut self) -> Option<Result<ClientMessage, FrameError>> {
        self.recv_parsed(parse_client_text, parse_client_binary)
            .await
    }

    async fn send_output(&mut self, data: &[u8]) -> Result<(), TransportClosed> {
        self.send(Message::Binary(data.to_vec().into())).await
    }
}

impl Transport for WsTransport {
    async fn send_control(&mut self, msg: &ServerControl) -> Result<(), TransportClosed> {
        self.send(Message::Text(msg.to_json().into())).await
    }

    async fn close(&mut self) {
        close_socket(&mut self.socket).await;
    }
}

impl DesktopTransport for WsTransport {
    async fn recv(&mut self) -> Option<Result<DesktopMessage, FrameError>> {
        self.recv_parsed(parse_desktop_text, parse_desktop_binary)
            .await
    }

    async fn send_update(&mut self, update: Vec<u8>) -> Result<(), TransportClosed> {
        self.send(Message::Binary(update.into())).await
    }

    async fn send_desktop_control(
        &mut self,
        msg: &DesktopServerControl,
    ) -> Result<(), TransportClosed> {
        self.send(Message::Text(msg.to_json().into())).await
    }
}

/// Sends a close frame, giving up after two seconds.
async fn close_socket(socket: &mut WebSocket) {
    let frame = CloseFrame {
        code: close_code::NORMAL,
        reason: "session ended".into(),
    };
    let send = socket.send(Message::Close(Some(frame)));
    // A client that stopped reading must not hold the session task.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), send).await;
}
