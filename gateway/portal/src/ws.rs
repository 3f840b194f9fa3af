//! The terminal WebSocket: checks Origin, login and policy before upgrading, then hands the socket to
//! the broker as a [`TerminalTransport`] (terminals) or a [`DesktopTransport`] (desktops).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
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
use crate::auth::{CurrentUser, same_origin};

/// Origin, login and policy checks before any upgrade; a refusal is audited and answered over HTTP.
fn authorize_upgrade(
    portal: &Portal,
    client: SocketAddr,
    target_id: i64,
    headers: &HeaderMap,
    user: &CurrentUser,
) -> Result<Authorized, Box<Response>> {
    let refuse = |status: StatusCode, detail: &str| {
        portal.broker.audit(AuditEvent {
            kind: "connect_refused".into(),
            actor: Some(user.user.username.clone()),
            client_addr: Some(client.to_string()),
            detail: Some(detail.to_owned()),
            ..AuditEvent::default()
        });
        Box::new((status, detail.to_owned()).into_response())
    };
    if !same_origin(headers) {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "websocket refused: foreign or missing Origin",
        ));
    }
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

/// `GET /ws/terminal/{target_id}`.
pub async fn terminal(
    State(portal): State<Arc<Portal>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    Path(target_id): Path<i64>,
    headers: HeaderMap,
    user: CurrentUser,
    upgrade: WebSocketUpgrade,
) -> Response {
    let max_message_size = MAX_CONTROL_LEN.max(MAX_INPUT_LEN) + 1024;
    let checked = authorize_upgrade(&portal, client, target_id, &headers, &user);
    upgrade_into(
        &portal,
        checked,
        client,
        upgrade,
        max_message_size,
        Terminal,
    )
}

/// `GET /ws/desktop/{target_id}`: the same checks, then a desktop session.
pub async fn desktop(
    State(portal): State<Arc<Portal>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    Path(target_id): Path<i64>,
    headers: HeaderMap,
    user: CurrentUser,
    upgrade: WebSocketUpgrade,
) -> Response {
    // Clipboard text is the longest message a desktop client sends.
    let max_message_size = MAX_DESKTOP_TEXT.max(MAX_INPUT_MESSAGE) + 1024;
    let checked = authorize_upgrade(&portal, client, target_id, &headers, &user);
    upgrade_into(&portal, checked, client, upgrade, max_message_size, Desktop)
}

/// Answers a refused upgrade over HTTP, or upgrades and runs the session of the kind `kind` makes of
/// the socket.
fn upgrade_into<K: SessionKind + 'static>(
    portal: &Portal,
    checked: Result<Authorized, Box<Response>>,
    client: SocketAddr,
    upgrade: WebSocketUpgrade,
    max_message_size: usize,
    kind: fn(WsTransport) -> K,
) -> Response {
    let decision = match checked {
        Ok(decision) => decision,
        Err(refused) => return *refused,
    };
    let broker = portal.broker.clone();
    upgrade
        .max_message_size(max_message_size)
        .on_upgrade(move |socket| async move {
            broker
                .run(decision, client, kind(WsTransport { socket }))
                .await
        })
}

/// A browser WebSocket as the broker's transport.
struct WsTransport {
    socket: WebSocket,
}

impl TerminalTransport for WsTransport {
    async fn recv(&mut self) -> Option<Result<ClientMessage, FrameError>> {
        loop {
            match self.socket.recv().await? {
                Ok(Message::Text(text)) => return Some(parse_client_text(text.as_str())),
                Ok(Message::Binary(bytes)) => return Some(parse_client_binary(&bytes)),
                Ok(Message::Ping(_) | Message::Pong(_)) => continue,
                Ok(Message::Close(_)) | Err(_) => return None,
            }
        }
    }

    async fn send_output(&mut self, data: &[u8]) -> Result<(), TransportClosed> {
        self.socket
            .send(Message::Binary(data.to_vec().into()))
            .await
            .map_err(|_| TransportClosed)
    }
}

impl Transport for WsTransport {
    async fn send_control(&mut self, msg: &ServerControl) -> Result<(), TransportClosed> {
        self.socket
            .send(Message::Text(msg.to_json().into()))
            .await
            .map_err(|_| TransportClosed)
    }

    async fn close(&mut self) {
        close_socket(&mut self.socket).await;
    }
}

impl DesktopTransport for WsTransport {
    async fn recv(&mut self) -> Option<Result<DesktopMessage, FrameError>> {
        loop {
            match self.socket.recv().await? {
                Ok(Message::Text(text)) => return Some(parse_desktop_text(text.as_str())),
                Ok(Message::Binary(bytes)) => return Some(parse_desktop_binary(&bytes)),
                Ok(Message::Ping(_) | Message::Pong(_)) => continue,
                Ok(Message::Close(_)) | Err(_) => return None,
            }
        }
    }

    async fn send_update(&mut self, update: Vec<u8>) -> Result<(), TransportClosed> {
        self.socket
            .send(Message::Binary(update.into()))
            .await
            .map_err(|_| TransportClosed)
    }

    async fn send_desktop_control(
        &mut self,
        msg: &DesktopServerControl,
    ) -> Result<(), TransportClosed> {
        self.socket
            .send(Message::Text(msg.to_json().into()))
            .await
            .map_err(|_| TransportClosed)
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
