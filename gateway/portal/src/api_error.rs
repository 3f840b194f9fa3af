//! [`ApiError`]: the one refusal of the portal's JSON APIs (the CLI's login, the review API), in words
//! a person can read: a [`Refusal`] (status, machine-readable kind, message, wait) sent as the
//! [`CliError`] JSON shape both APIs' clients parse, with a `Retry-After` when waiting helps. Handlers
//! return `Result<Response, ApiError>` and use `?`; state database errors convert as the pages' do.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use sallyport_core::quic::CliError;
use sallyport_state::StateError;

use crate::refusal::Refusal;

/// Why a JSON API request was refused.
#[derive(Debug)]
pub(crate) struct ApiError(pub(crate) Refusal);

impl ApiError {
    /// A refusal with `status`, the kind `kind` (`bad_request`, `login_required`, …) and `message`.
    pub(crate) fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError(Refusal::new(status, kind, message))
    }

    /// The throttle's refusal: too many failed logins from this source, and how long to wait.
    pub(crate) fn throttled(wait: std::time::Duration) -> Self {
        let seconds = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "throttled",
            format!("too many failed logins; try again in {seconds} seconds"),
        )
        .retry_after(seconds)
    }

    /// The status and JSON body this refusal answers with (for an answer kept to be sent later).
    pub(crate) fn into_parts(self) -> (StatusCode, serde_json::Value) {
        let ApiError(refusal) = self;
        let body = CliError {
            error: refusal.kind.to_owned(),
            message: refusal.message.clone(),
        };
        (
            refusal.status,
            serde_json::to_value(body).unwrap_or_default(),
        )
    }

    /// The same refusal, with a wait of `seconds` before trying again.
    pub(crate) fn retry_after(mut self, seconds: u64) -> Self {
        self.0.retry_after = Some(seconds);
        self
    }
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        ApiError(refusal)
    }
}

impl From<StateError> for ApiError {
    fn from(error: StateError) -> Self {
        ApiError(error.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let ApiError(refusal) = self;
        let body = CliError {
            error: refusal.kind.to_owned(),
            message: refusal.message.clone(),
        };
        refusal.respond(axum::Json(body))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use axum::http::header;

    use super::*;

    #[tokio::test]
    async fn renders_the_json_shape_the_clients_parse_with_its_status_and_wait() {
        let refusal =
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, "throttled", "wait").retry_after(7);
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
