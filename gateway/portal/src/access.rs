//! Access decisions for pages and WebSockets (the relay's [`sallyport_relay::access`], shared with the
//! QUIC endpoint), and the extractors that gate admin and auditor pages.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use sallyport_core::policy::{Authenticated, Authorized, Role};
use sallyport_state::TargetRecord;

use crate::Portal;
use crate::auth::CurrentUser;
use crate::html::PageError;

pub use sallyport_relay::access::AccessError;

/// The policy decision for `user` opening a session to `target` over its protocol (the relay's, shared
/// with the QUIC endpoint).
pub fn decide(
    portal: &Portal,
    user: &Authenticated,
    target: &TargetRecord,
) -> Result<Authorized, AccessError> {
    sallyport_relay::access::decide(portal.broker.state(), user, target)
}

/// The logged-in user of a request whose role `allowed` accepts; any other gets 403 with `refusal`.
async fn user_with_role(
    parts: &mut Parts,
    portal: &Arc<Portal>,
    allowed: fn(Role) -> bool,
    refusal: &'static str,
) -> Result<CurrentUser, Response> {
    let user = CurrentUser::from_request_parts(parts, portal).await?;
    if !allowed(user.user.role()) {
        return Err(PageError::forbidden(refusal)
            .link("/targets", "Back to your targets")
            .shown_to(&user)
            .into_response());
    }
    Ok(user)
}

/// A logged-in admin.
pub struct AdminUser(pub CurrentUser);

impl FromRequestParts<Arc<Portal>> for AdminUser {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        portal: &Arc<Portal>,
    ) -> Result<Self, Self::Rejection> {
        let allowed = |role| role == Role::Admin;
        user_with_role(
            parts,
            portal,
            allowed,
            "not allowed: this page is for administrators",
        )
        .await
        .map(AdminUser)
    }
}

/// A logged-in admin or auditor (read-only pages: the audit log).
pub struct ReviewerUser(pub CurrentUser);

impl FromRequestParts<Arc<Portal>> for ReviewerUser {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        portal: &Arc<Portal>,
    ) -> Result<Self, Self::Rejection> {
        let allowed = |role| matches!(role, Role::Admin | Role::Auditor);
        user_with_role(
            parts,
            portal,
            allowed,
            "not allowed: this page is for administrators and auditors",
        )
        .await
        .map(ReviewerUser)
    }
}
