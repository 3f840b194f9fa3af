//! [`ApiError`]: the one refusal of the portal's JSON APIs (the CLI's login, the review API), in words
//! a person can read: an HTTP status, a machine-readable kind and a message, sent as the
//! [`CliError`] JSON shape both APIs' clients parse, with a `Retry-After` when waiting helps. Handlers
//! return `Result<Response, ApiError>` and use `?`.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use sallyport_core::quic::CliError;

/// Why a JSON API request was refused.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    kind: &'static str,
    message: String,
    /// Seconds to wait before trying again, sent as `Retry-After`.
    pub(crate) retry_after: Option<u64>,
}

impl ApiError {
    /// A refusal with `status`, the kind `kind` (`bad_request`, `login_required`, …) and `message`.
    pub(crate) fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            kind,
            message: message.into(),
            retry_after: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = CliError {
            error: self.kind.to_owned(),
            message: self.message,
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(value) = self.retry_after.and_then(|s| s.to_string().parse().ok()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn renders_the_json_shape_the_clients_parse_with_its_status_and_wait() {
        let mut refusal = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "throttled", "wait");
        refusal.retry_after = Some(7);
        let response = refusal.into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "7");
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap();
        assert_eq!(&body[..], br#"{"error":"throttled","message":"wait"}"#);
        let plain = ApiError::new(StatusCode::NOT_FOUND, "no_such_session", "none").into_response();
        assert!(plain.headers().get(header::RETRY_AFTER).is_none());
    }
}
