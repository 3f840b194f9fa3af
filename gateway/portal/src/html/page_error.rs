//! [`PageError`]: the one refusal of the HTML handlers, the [`Refusal`] the JSON APIs send as
//! [`crate::api_error::ApiError`], shown as a page in words: a heading, what went wrong (`#error`) and
//! what to do next, with the refusal's status and wait. Handlers return `Result<_, PageError>` and use
//! `?`; a state database error converts as the APIs' do, and [`ShownTo`] keeps the viewer's header.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::html;
use sallyport_core::policy::Authenticated;
use sallyport_state::StateError;

use super::components::error;
use super::layout::page;
use crate::auth::CurrentUser;
use crate::refusal::Refusal;

/// Why a page request was not done, on its way to the page that says so (boxed: it travels as the
/// `Err` of every handler and helper that may refuse).
#[derive(Debug)]
pub(crate) struct PageError(Box<Details>);

#[derive(Debug)]
struct Details {
    refusal: Refusal,
    title: Option<&'static str>,
    /// A way on that fits better than the status's general advice: `(href, text)`.
    link: Option<(&'static str, &'static str)>,
    viewer: Option<Authenticated>,
}

impl PageError {
    /// A refusal with `status` and `message` (lower case, as the state database and the CLI word them).
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Refusal::new(status, "refused", message).into()
    }

    /// The form said something that cannot be done (400).
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        PageError::new(StatusCode::BAD_REQUEST, message)
    }

    /// The viewer may not do this (403).
    pub(crate) fn forbidden(message: impl Into<String>) -> Self {
        PageError::new(StatusCode::FORBIDDEN, message)
    }

    /// There is no such thing (404).
    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        PageError::new(StatusCode::NOT_FOUND, message)
    }

    /// The gateway failed at its own part (500); why belongs in the log, not on the page.
    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Refusal::internal(message).into()
    }

    /// The page's heading instead of the status's.
    pub(crate) fn titled(mut self, title: &'static str) -> Self {
        self.0.title = Some(title);
        self
    }

    /// A link on, instead of the status's general advice.
    pub(crate) fn link(mut self, href: &'static str, text: &'static str) -> Self {
        self.0.link = Some((href, text));
        self
    }

    /// Shown to `viewer`: the page keeps their header (navigation, logout).
    pub(crate) fn shown_to(mut self, viewer: &CurrentUser) -> Self {
        self.0.viewer = Some(viewer.user.clone());
        self
    }

    /// The status's heading and its advice on what to do next.
    fn words(&self) -> (&'static str, String) {
        let status = self.0.refusal.status;
        match status {
            StatusCode::BAD_REQUEST => (
                "Not done",
                "Go back, correct what is named above and send the form again.".to_owned(),
            ),
            StatusCode::CONFLICT => (
                "Not done",
                "Go back and choose another name.".to_owned(),
            ),
            StatusCode::FORBIDDEN => (
                "Not allowed",
                "If you need this, ask an administrator.".to_owned(),
            ),
            StatusCode::NOT_FOUND => (
                "Not found",
                "It may have been removed or ended; start again from the list it was in.".to_owned(),
            ),
            _ => match self.0.refusal.retry_after {
                Some(seconds) => (
                    "Busy",
                    format!("Wait {seconds} seconds, then try again."),
                ),
                None => (
                    "Not done",
                    "Try again; if it keeps failing, an administrator finds why in the gateway's log."
                        .to_owned(),
                ),
            },
        }
    }
}

impl From<Refusal> for PageError {
    fn from(refusal: Refusal) -> Self {
        PageError(Box::new(Details {
            refusal,
            title: None,
            link: None,
            viewer: None,
        }))
    }
}

impl From<StateError> for PageError {
    fn from(error: StateError) -> Self {
        Refusal::from(error).into()
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (heading, advice) = self.words();
        let details = *self.0;
        let title = details.title.unwrap_or(heading);
        let markup = page(
            title,
            details.viewer.as_ref(),
            html! {
                h1 { (title) }
                (error(&details.refusal.message))
                p.next {
                    @match details.link {
                        Some((href, text)) => a href=(href) { (text) },
                        None => (advice),
                    }
                }
            },
        );
        details.refusal.respond(markup)
    }
}

/// A result whose error becomes a [`PageError`] shown to the viewer of the page.
pub(crate) trait ShownTo<T> {
    /// The value, or the page saying why not with `viewer`'s header.
    fn shown_to(self, viewer: &CurrentUser) -> Result<T, PageError>;
}

impl<T, E: Into<PageError>> ShownTo<T> for Result<T, E> {
    fn shown_to(self, viewer: &CurrentUser) -> Result<T, PageError> {
        self.map_err(|error| error.into().shown_to(viewer))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use axum::http::header;

    use super::*;

    async fn body(response: Response) -> String {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn a_refusal_is_a_page_in_words_with_its_status() {
        let response = PageError::bad_request("<b> is not a CIDR").into_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        let page = body(response).await;
        assert!(page.contains("<h1>Not done</h1>"), "{page}");
        assert!(
            page.contains(
                r#"<p class="error" id="error" role="alert">&lt;b&gt; is not a CIDR</p>"#
            ),
            "{page}"
        );
        assert!(page.contains("send the form again"), "{page}");
        assert!(!page.contains("Log out"), "no viewer, no logout: {page}");
    }

    #[tokio::test]
    async fn state_errors_wait_or_hide_their_details() {
        let busy =
            PageError::from(StateError::Busy("too many sign-ins at once".into())).into_response();
        assert_eq!(busy.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(busy.headers().contains_key(header::RETRY_AFTER));
        assert!(body(busy).await.contains("then try again"));
        let broken = PageError::from(StateError::Invalid("secret table layout".into()))
            .titled("Not saved")
            .link("/admin/users", "Back to users")
            .into_response();
        assert_eq!(broken.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let page = body(broken).await;
        assert!(!page.contains("secret table layout"), "{page}");
        assert!(page.contains("<h1>Not saved</h1>"), "{page}");
        assert!(
            page.contains(r#"<a href="/admin/users">Back to users</a>"#),
            "{page}"
        );
    }
}
