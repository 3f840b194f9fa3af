//! Access decisions for pages and WebSockets: the user's groups and the stored policies turned into the
//! core's [`authorize`] decision, and the extractors that gate admin and auditor pages.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use sallyport_core::policy::{
    Authenticated, Authorized, Policy, PolicyDenied, Role, authorize, may_reach,
};
use sallyport_state::{StateError, TargetRecord};

use crate::Portal;
use crate::auth::CurrentUser;

/// The user's groups and every policy, read fresh so an admin's change applies at once.
fn context(
    portal: &Portal,
    user: &Authenticated,
) -> Result<(Vec<String>, Vec<Policy>), StateError> {
    let state = portal.broker.state();
    let groups = state.user_groups(user.user_id)?;
    let policies = state.policies()?.into_iter().map(|p| p.policy).collect();
    Ok((groups, policies))
}

/// Why a connect was refused before the WebSocket opened.
pub enum AccessError {
    /// The policy said no.
    Denied(PolicyDenied),
    /// The state database failed.
    State(StateError),
}

/// The policy decision for `user` opening a session to `target` over its protocol.
pub fn decide(
    portal: &Portal,
    user: &Authenticated,
    target: &TargetRecord,
) -> Result<Authorized, AccessError> {
    let (groups, policies) = context(portal, user).map_err(AccessError::State)?;
    authorize(user, &groups, &target.to_ref(), target.protocol, &policies)
        .map_err(AccessError::Denied)
}

/// The targets `user` may reach.
pub fn visible_targets(
    portal: &Portal,
    user: &Authenticated,
) -> Result<Vec<TargetRecord>, StateError> {
    let (groups, policies) = context(portal, user)?;
    let targets = portal.broker.state().targets()?;
    Ok(targets
        .into_iter()
        .filter(|t| may_reach(user, &groups, &t.to_ref(), &policies))
        .collect())
}

fn forbidden() -> Response {
    (
        StatusCode::FORBIDDEN,
        "not allowed: this page is for administrators",
    )
        .into_response()
}

/// A logged-in admin.
pub struct AdminUser(pub CurrentUser);

impl FromRequestParts<Arc<Portal>> for AdminUser {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        portal: &Arc<Portal>,
    ) -> Result<Self, Self::Rejection> {
        let user = CurrentUser::from_request_parts(parts, portal).await?;
        if user.user.role != Role::Admin {
            return Err(forbidden());
        }
        Ok(AdminUser(user))
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
        let user = CurrentUser::from_request_parts(parts, portal).await?;
        if !matches!(user.user.role, Role::Admin | Role::Auditor) {
            return Err((
                StatusCode::FORBIDDEN,
                "not allowed: this page is for administrators and auditors",
            )
                .into_response());
        }
        Ok(ReviewerUser(user))
    }
}
