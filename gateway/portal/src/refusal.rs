//! [`Refusal`]: what the portal answers when it does not do what was asked (a status, a machine-readable
//! kind, words a person can read and, when waiting helps, how long), before it is dressed as JSON
//! ([`crate::api_error::ApiError`]) or as a page ([`crate::html::PageError`]). The mapping of the state
//! database's errors lives here once, so the APIs and the pages refuse alike.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sallyport_state::{BUSY_RETRY_AFTER_SECONDS, StateError};
use tracing::warn;

/// Why a request was not done.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub(crate) status: StatusCode,
    /// `bad_request`, `busy`, `exists`, `internal`, …: what the JSON APIs send as `error`.
    pub(crate) kind: &'static str,
    /// What went wrong, in words (lower case, no final full stop, as the CLI prints them).
    pub(crate) message: String,
    /// Seconds to wait before trying again, sent as `Retry-After`.
    pub(crate) retry_after: Option<u64>,
}

impl Refusal {
    /// A refusal with `status`, `kind` and `message`, with no wait.
    pub(crate) fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Refusal {
            status,
            kind,
            message: message.into(),
            retry_after: None,
        }
    }

    /// A failure of the gateway's own (500), in `words`; what failed belongs in the log.
    pub(crate) fn internal(words: impl Into<String>) -> Self {
        Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", words)
    }

    /// The refusal for a state database error: too busy (503 with its words and wait), a name taken
    /// (409), or a failure of the gateway's own (500 with `internal`, the error itself only in the log,
    /// since it may name tables and paths).
    pub(crate) fn state(error: StateError, internal: &str) -> Self {
        match error {
            StateError::Busy(words) => Refusal {
                retry_after: Some(BUSY_RETRY_AFTER_SECONDS),
                ..Refusal::new(StatusCode::SERVICE_UNAVAILABLE, "busy", words)
            },
            StateError::Exists(_) => {
                Refusal::new(StatusCode::CONFLICT, "exists", error.to_string())
            }
            error => {
                warn!(%error, "state database request failed");
                Refusal::internal(internal)
            }
        }
    }

    /// `body` sent with this refusal's status and wait.
    pub(crate) fn respond(&self, body: impl IntoResponse) -> Response {
        let mut response = (self.status, body).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// What a failed password check says (the browser's and the programs' logins alike).
pub(crate) const LOGIN_UNCHECKED: &str = "the login could not be checked; try again";

/// What a state database failure says when nothing more particular fits.
pub(crate) const STATE_FAILED: &str = "the gateway's state database failed; try again, and if it keeps failing the gateway's log says why";

impl From<StateError> for Refusal {
    fn from(error: StateError) -> Self {
        Refusal::state(error, STATE_FAILED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_errors_map_to_a_status_in_words() {
        let busy = Refusal::from(StateError::Busy("too many sign-ins at once".into()));
        assert_eq!(
            (busy.status, busy.kind, busy.retry_after),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                Some(BUSY_RETRY_AFTER_SECONDS)
            )
        );
        assert_eq!(busy.message, "too many sign-ins at once");
        let taken = Refusal::from(StateError::Exists("user carol".into()));
        assert_eq!((taken.status, taken.kind), (StatusCode::CONFLICT, "exists"));
        assert_eq!(taken.message, "user carol already exists");
        let broken = Refusal::state(StateError::Invalid("role 7".into()), "not saved");
        assert_eq!(
            (broken.status, broken.kind, broken.message.as_str()),
            (StatusCode::INTERNAL_SERVER_ERROR, "internal", "not saved")
        );
        let response = broken.respond("x");
        assert!(response.headers().get(header::RETRY_AFTER).is_none());
        assert_eq!(
            busy.respond("x").headers()[header::RETRY_AFTER],
            BUSY_RETRY_AFTER_SECONDS.to_string().as_str()
        );
    }
}
