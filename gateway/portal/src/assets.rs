//! The web assets embedded in the binary: xterm.js from npm (installed by build.rs) and our own files.

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

macro_rules! web {
    ($path:literal) => {
        include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/web/", $path))
    };
}

const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "xterm.js",
        "text/javascript",
        web!("node_modules/@xterm/xterm/lib/xterm.js"),
    ),
    (
        "xterm.css",
        "text/css",
        web!("node_modules/@xterm/xterm/css/xterm.css"),
    ),
    (
        "addon-fit.js",
        "text/javascript",
        web!("node_modules/@xterm/addon-fit/lib/addon-fit.js"),
    ),
    ("terminal.js", "text/javascript", web!("src/terminal.js")),
    (
        "desktop-protocol.js",
        "text/javascript",
        web!("src/desktop-protocol.js"),
    ),
    ("desktop.js", "text/javascript", web!("src/desktop.js")),
    ("watch.js", "text/javascript", web!("src/watch.js")),
    ("passkeys.js", "text/javascript", web!("src/passkeys.js")),
    (
        "local-time.js",
        "text/javascript",
        web!("src/local-time.js"),
    ),
    ("style.css", "text/css", web!("src/style.css")),
];

/// `GET /assets/{name}`.
pub async fn serve_asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(asset, _, _)| *asset == name) {
        Some((_, content_type, body)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                (header::CACHE_CONTROL, "public, max-age=3600"),
            ],
            *body,
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
