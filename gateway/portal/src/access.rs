//! Access decisions for pages and WebSockets: the user's groups and the stored policies turned into the
//! core's [`authorize`] decision, and the extractors that gate admin and auditor pages.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use sallyport_core::egress::{Host, parse_host};
use sallyport_core::policy::TargetRef;
use sallyport_core::policy::{
    Authenticated, Authorized, Policy, PolicyDenied, Role, authorize, may_reach,
};
use sallyport_state::{NetworkRecord, StateError, TargetRecord};

use crate::Portal;
use crate::auth::CurrentUser;

/// The user's groups and every policy, read fresh so an admin's change applies at once.
/// What a decision needs besides the user: their groups, every policy and every network, read fresh so
/// an admin's change applies at once.
struct Context {
    groups: Vec<String>,
    policies: Vec<Policy>,
    networks: Vec<NetworkRecord>,
}

fn context(portal: &Portal, user: &Authenticated) -> Result<Context, StateError> {
    let state = portal.broker.state();
    Ok(Context {
        groups: state.user_groups(user.user_id)?,
        policies: state.policies()?.into_iter().map(|p| p.policy).collect(),
        networks: state.networks()?,
    })
}

/// The policy's view of a target, with the networks its address lies in (for `network:` selectors).
fn target_ref(target: &TargetRecord, networks: &[NetworkRecord]) -> TargetRef {
    let mut view = target.to_ref();
    if let Ok(Host::Ip(ip)) = parse_host(&target.host) {
        view.networks = networks
            .iter()
            .filter(|n| n.cidr.contains(&ip))
            .map(|n| n.name.clone())
            .collect();
    }
    view
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
    let context = context(portal, user).map_err(AccessError::State)?;
    authorize(
        user,
        &context.groups,
        &target_ref(target, &context.networks),
        target.protocol,
        &context.policies,
    )
    .map_err(AccessError::Denied)
}

/// The targets `user` may reach.
pub fn visible_targets(
    portal: &Portal,
    user: &Authenticated,
) -> Result<Vec<TargetRecord>, StateError> {
    let context = context(portal, user)?;
    let targets = portal.broker.state().targets()?;
    Ok(targets
        .into_iter()
        .filter(|t| {
            may_reach(
                user,
                &context.groups,
                &target_ref(t, &context.networks),
                &context.policies,
            )
        })
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
