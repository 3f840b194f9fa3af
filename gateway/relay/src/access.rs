//! Access decisions every transport shares: the user's groups, the stored policies and networks turned
//! into the core's [`authorize`] decision, and the list of targets a user may reach. The portal's
//! WebSocket and the QUIC endpoint both ask here, so a target is allowed or refused the same way
//! whichever way the user comes.

use sallyport_core::egress::{Host, parse_host};
use sallyport_core::policy::{
    Authenticated, Authorized, Policy, PolicyDenied, TargetRef, authorize, may_reach,
};
use sallyport_state::{NetworkRecord, StateDb, StateError, TargetRecord};

/// What a decision needs besides the user: their groups, every policy and every network, read fresh so
/// an admin's change applies at once.
struct Context {
    groups: Vec<String>,
    policies: Vec<Policy>,
    networks: Vec<NetworkRecord>,
}

fn context(state: &StateDb, user: &Authenticated) -> Result<Context, StateError> {
    Ok(Context {
        groups: state.user_groups(user.user_id())?,
        policies: state.policies()?.into_iter().map(|p| p.policy).collect(),
        networks: state.networks()?,
    })
}

/// The policy's view of a target, with the networks its address lies in (for `network:` selectors).
pub(crate) fn target_ref(target: &TargetRecord, networks: &[NetworkRecord]) -> TargetRef {
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

/// Why a connect was refused before a session started.
#[derive(Debug)]
pub enum AccessError {
    /// The policy said no.
    Denied(PolicyDenied),
    /// The state database failed.
    State(StateError),
}

/// The policy decision for `user` opening a session to `target` over its protocol.
pub fn decide(
    state: &StateDb,
    user: &Authenticated,
    target: &TargetRecord,
) -> Result<Authorized, AccessError> {
    let context = context(state, user).map_err(AccessError::State)?;
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
    state: &StateDb,
    user: &Authenticated,
) -> Result<Vec<TargetRecord>, StateError> {
    let context = context(state, user)?;
    let targets = state.targets()?;
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
