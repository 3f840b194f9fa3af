//! [`moving_on`]: a redirect turned into a page that moves on by itself (`Refresh`, and a link), for
//! where a plain redirect does not do: after a provider's callback (a `Strict` cookie the answer sets
//! rides along only on a request that starts from this portal's own page), and to a program's loopback
//! port (the pages' `form-action 'self'` policy stops a form's redirect anywhere else).

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::html;

use super::page;

/// `response`, a redirect, as a page titled `title` that goes where it pointed; anything else as it is.
pub(crate) fn moving_on(response: Response, title: &str) -> Response {
    let Some(location) = response
        .headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
    else {
        return response;
    };
    let (mut parts, _) = response.into_parts();
    parts.status = StatusCode::OK;
    parts.headers.remove(header::LOCATION);
    if let Ok(refresh) = format!("0;url={location}").parse() {
        parts.headers.insert(header::REFRESH, refresh);
    }
    parts.headers.remove(header::CONTENT_TYPE);
    parts.headers.remove(header::CONTENT_LENGTH);
    let body = page(
        title,
        None,
        html! {
            h1 { (title) }
            p { a #continue href=(location) { "Continue" } }
        },
    );
    let (body_parts, body) = body.into_response().into_parts();
    for (name, value) in &body_parts.headers {
        parts.headers.insert(name.clone(), value.clone());
    }
    Response::from_parts(parts, body)
}
