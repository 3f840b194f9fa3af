//! The terminal WebSocket: checks Origin, login and policy before upgrading, then hands the socket to
//! the broker as a [`TerminalTransport`].

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use sallyport_core::frames::{
    ClientMessage, FrameError, MAX_CONTROL_LEN, MAX_INPUT_LEN, ServerControl, parse_client_binary,
    parse_client_text,
};
use sallyport_relay::{TerminalTransport, TransportClosed};
use sallyport_state::AuditEvent;

use crate::Portal;
use crate::access::{AccessError, decide};
use crate::auth::{CurrentUser, same_origin};

/// `GET /ws/terminal/{target_id}`.
pub async fn terminal(
    State(portal): State<Arc<Portal>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    Path(target_id): Path<i64>,
    headers: HeaderMap,
    user: CurrentUser,
    upgrade: WebSocketUpgrade,
) -> Response {
    let refuse = |status: StatusCode, detail: &str| {
        portal.broker.audit(AuditEvent {
            kind: "connect_refused".into(),
            actor: Some(user.user.username.clone()),
            client_addr: Some(client.to_string()),
            detail: Some(detail.to_owned()),
            ..AuditEvent::default()
        });
        (status, detail.to_owned()).into_response()
    };
    if !same_origin(&headers) {
        return refuse(
            StatusCode::FORBIDDEN,
            "websocket refused: foreign or missing Origin",
        );
    }
    let target = match portal.broker.state().target(target_id) {
        Ok(Some(target)) => target,
        _ => return refuse(StatusCode::NOT_FOUND, "no such target"),
    };
    let decision = match decide(&portal, &user.user, &target) {
        Ok(decision) => decision,
        Err(AccessError::Denied(denied)) => {
            return refuse(StatusCode::FORBIDDEN, &format!("not allowed: {denied}"));
        }
        Err(AccessError::State(error)) => {
            return refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("state database: {error}"),
            );
        }
    };
    let broker = portal.broker.clone();
    upgrade
        .max_message_size(MAX_CONTROL_LEN.max(MAX_INPUT_LEN) + 1024)
        .on_upgrade(move |socket| async move {
            broker
                .run_terminal(decision, client, WsTransport { socket })
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

    async fn send_control(&mut self, msg: &ServerControl) -> Result<(), TransportClosed> {
        self.socket
            .send(Message::Text(msg.to_json().into()))
            .await
            .map_err(|_| TransportClosed)
    }

    async fn close(&mut self) {
        let frame = CloseFrame {
            code: close_code::NORMAL,
            reason: "session ended".into(),
        };
        let send = self.socket.send(Message::Close(Some(frame)));
        // A client that stopped reading must not hold the session task.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), send).await;
    }
}
