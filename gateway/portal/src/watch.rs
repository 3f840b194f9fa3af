//! Live sessions for admins: the list (who, what, since when, from where, bytes each way), terminate,
//! and read-only watching of a terminal over its own WebSocket.

use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use tokio::sync::broadcast::error::RecvError;

use crate::Portal;
use crate::access::AdminUser;
use crate::admin::AdminChange;
use crate::html::components::{post_button, table};
use crate::html::{Asset, Layout, PageError, admin_page};

/// `GET /admin/sessions`.
pub async fn sessions(State(portal): State<Arc<Portal>>, AdminUser(admin): AdminUser) -> Markup {
    let now = sallyport_relay::now_ms();
    let rows: Vec<Markup> = portal
        .broker
        .live()
        .list()
        .iter()
        .map(|s| {
            let terminate = format!("/admin/sessions/{}/terminate", s.session_id);
            html! {
                tr data-session=(s.session_id) data-user=(s.username) {
                    td { (s.username) }
                    td { (s.target) }
                    td { (s.client_addr) }
                    td { (now.saturating_sub(s.started_at_ms) / 1000) " s" }
                    td { (s.bytes_up) }
                    td { (s.bytes_down) }
                    td {
                        a.watch href={ "/admin/sessions/" (s.session_id) "/watch" } { "Watch" }
                        " "
                        (post_button(&terminate, "Terminate").class("terminate"))
                    }
                }
            }
        })
        .collect();
    admin_page(
        "Live sessions",
        &admin,
        &[],
        html! {
            (table(
                "sessions",
                &["User", "Target", "From", "For", "Bytes up", "Bytes down", ""],
                &rows,
                "No session is live.",
            ))
            p { a href="/admin/sessions" { "Refresh" } }
        },
    )
}

/// `POST /admin/sessions/{id}/terminate`.
pub async fn terminate(
    Path(session_id): Path<String>,
    change: AdminChange,
) -> Result<Redirect, PageError> {
    let reason = format!(
        "terminated by administrator {}",
        change.admin.user.username()
    );
    if !change.portal.broker.live().terminate(&session_id, &reason) {
        return Err(not_live().shown_to(&change.admin));
    }
    change.audit("terminate", None, format!("session {session_id}"));
    Ok(Redirect::to("/admin/sessions"))
}

/// The answer for a session id that is not (or no longer) live.
fn not_live() -> PageError {
    PageError::not_found("that session is not live")
        .link("/admin/sessions", "Back to live sessions")
}

/// `GET /admin/sessions/{id}/watch`: a read-only terminal.
pub async fn watch_page(
    State(portal): State<Arc<Portal>>,
    Path(session_id): Path<String>,
    AdminUser(admin): AdminUser,
) -> Result<Markup, PageError> {
    let Some((info, _)) = portal.broker.live().watch(&session_id) else {
        return Err(not_live().shown_to(&admin));
    };
    let assets = [Asset::XTERM.as_slice(), &[Asset::Script("watch.js")]].concat();
    Ok(Layout {
        title: "Watch",
        viewer: Some(&admin.user),
        assets: &assets,
        ws_path: Some(format!("/ws/watch/{session_id}")),
    }
    .render(html! {
        h1 { "Watching " (info.username) " on " (info.target) }
        p { "Read-only. Output from now on." }
        div id="status" data-state="idle" role="status" {}
        div id="terminal" {}
    }))
}

/// `GET /ws/watch/{id}`: the watched session's output, read-only.
pub async fn watch_socket(
    Path(session_id): Path<String>,
    change: AdminChange,
    upgrade: WebSocketUpgrade,
) -> Response {
    let Some((info, output)) = change.portal.broker.live().watch(&session_id) else {
        return not_live().into_response();
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
