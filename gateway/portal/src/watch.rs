//! Live sessions for admins: the list (who, what, since when, from where, bytes each way), terminate,
//! and read-only watching of a terminal over its own WebSocket.

use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use tokio::sync::broadcast::error::RecvError;

use crate::Portal;
use crate::access::AdminUser;
use crate::admin::{AdminChange, page, post_button};
use crate::pages::{escape, layout};

/// `GET /admin/sessions`.
pub async fn sessions(State(portal): State<Arc<Portal>>, AdminUser(admin): AdminUser) -> Response {
    let now = sallyport_relay::now_ms();
    let rows: String = portal
        .broker
        .live()
        .list()
        .iter()
        .map(|s| {
            format!(
                r#"<tr data-session="{id}" data-user="{user}"><td>{user}</td><td>{target}</td><td>{client}</td><td>{secs} s</td><td>{up}</td><td>{down}</td><td><a class="watch" href="/admin/sessions/{id}/watch">Watch</a> {terminate}</td></tr>"#,
                id = escape(&s.session_id),
                terminate = post_button(
                    &format!("/admin/sessions/{}/terminate", escape(&s.session_id)),
                    r#" class="terminate""#,
                    "Terminate"
                ),
                user = escape(&s.username),
                target = escape(&s.target),
                client = s.client_addr,
                secs = now.saturating_sub(s.started_at_ms) / 1000,
                up = s.bytes_up,
                down = s.bytes_down
            )
        })
        .collect();
    let body = format!(
        r#"<table id="sessions"><thead><tr><th>User</th><th>Target</th><th>From</th><th>For</th><th>Bytes up</th><th>Bytes down</th><th></th></tr></thead><tbody>{rows}</tbody></table>
<p><a href="/admin/sessions">Refresh</a></p>"#
    );
    page("Live sessions", &admin, &body)
}

/// `POST /admin/sessions/{id}/terminate`.
pub async fn terminate(Path(session_id): Path<String>, change: AdminChange) -> Response {
    let reason = format!(
        "terminated by administrator {}",
        change.admin.user.username()
    );
    if !change.portal.broker.live().terminate(&session_id, &reason) {
        return not_live();
    }
    change.audit("terminate", None, format!("session {session_id}"));
    Redirect::to("/admin/sessions").into_response()
}

/// The answer for a session id that is not (or no longer) live.
fn not_live() -> Response {
    (StatusCode::NOT_FOUND, "that session is not live").into_response()
}

/// `GET /admin/sessions/{id}/watch`: a read-only terminal.
pub async fn watch_page(
    State(portal): State<Arc<Portal>>,
    Path(session_id): Path<String>,
    AdminUser(admin): AdminUser,
) -> Response {
    let Some((info, _)) = portal.broker.live().watch(&session_id) else {
        return not_live();
    };
    let body = format!(
        r#"<h1>Watching {user} on {target}</h1><p>Read-only. Output from now on.</p><div id="status" data-state="idle"></div><div id="terminal"></div>"#,
        user = escape(&info.username),
        target = escape(&info.target)
    );
    let head = r#"<link rel="stylesheet" href="/assets/xterm.css"><script src="/assets/xterm.js" defer></script><script src="/assets/addon-fit.js" defer></script><script src="/assets/watch.js" defer></script>"#;
    layout(
        "Watch",
        Some(&admin.user),
        &body,
        &format!(r#" data-ws-path="/ws/watch/{}""#, escape(&session_id)),
        head,
    )
    .into_response()
}

/// `GET /ws/watch/{id}`: the watched session's output, read-only.
pub async fn watch_socket(
    Path(session_id): Path<String>,
    change: AdminChange,
    upgrade: WebSocketUpgrade,
) -> Response {
    let Some((info, output)) = change.portal.broker.live().watch(&session_id) else {
        return not_live();
    };
    change.audit(
        "watch",
        Some(&info.target),
        format!("session {session_id} of {}", info.username),
    );
    upgrade.on_upgrade(move |socket| relay_output(socket, output))
}

async fn relay_output(
    mut socket: WebSocket,
    mut output: tokio::sync::broadcast::Receiver<Vec<u8>>,
) {
    loop {
        tokio::select! {
            received = output.recv() => match received {
                Ok(data) => {
                    if socket.send(Message::Binary(data.into())).await.is_err() {
                        return;
                    }
                }
                // Fell behind: skip ahead rather than queue.
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => break,
            },
            incoming = socket.recv() => match incoming {
                // Watchers are read-only: whatever they send is ignored, except leaving.
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => continue,
            },
        }
    }
    let _ = socket.send(Message::Close(None)).await;
}
