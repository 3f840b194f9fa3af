//! The admin's policy preview, "who reaches what": for every enabled user and every target, whether
//! the user may reach it and through which policies, decided by the core's [`evaluate`], the very
//! rules [`authorize`](sallyport_core::policy::authorize) applies at every connect (the target seen
//! with its networks exactly as [`access`](crate::access) sees it). Nothing here restates a rule.
//!
//! Also what a policy being edited would change before it is saved ([`preview_policy`]), and the
//! lists a policy form's pickers offer ([`picker_lists`]).

use std::collections::BTreeSet;

use sallyport_core::policy::{Policy, Principal, Protocol, Role, TargetRef, evaluate};
use sallyport_state::{NetworkRecord, StateDb, StateError, TargetRecord, UserRecord};

use crate::access::target_ref;

/// How a user reaches a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// Through these policies (by name).
    Policies(Vec<String>),
    /// As an admin, through no policy (admins reach every target).
    AdminRole,
}

/// One user reaching one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reach {
    /// User id.
    pub user_id: i64,
    /// Login name.
    pub username: String,
    /// The user's role.
    pub role: Role,
    /// Target id.
    pub target_id: i64,
    /// Target name.
    pub target: String,
    /// The target's protocol.
    pub protocol: Protocol,
    /// How.
    pub via: Via,
}

/// What saving a policy would change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyPreview {
    /// Every pair the edited policy would grant (whether or not something else grants it too).
    pub granted: Vec<Reach>,
    /// Pairs nobody reached before that would be reachable after saving.
    pub added: Vec<Reach>,
    /// Pairs reachable before that would no longer be (an edit narrowing a policy).
    pub removed: Vec<Reach>,
}

/// The names a policy form's pickers offer, each sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PickerLists {
    /// Users and their roles.
    pub users: Vec<(String, Role)>,
    /// Groups some user is in.
    pub groups: Vec<String>,
    /// Every role.
    pub roles: Vec<Role>,
    /// Targets and their protocols.
    pub targets: Vec<(String, Protocol)>,
    /// Every tag some target carries.
    pub tags: Vec<String>,
    /// Networks (name and range).
    pub networks: Vec<NetworkRecord>,
}

/// Everything a matrix is computed from, read once.
struct Snapshot {
    users: Vec<(UserRecord, Vec<String>)>,
    targets: Vec<(TargetRecord, TargetRef)>,
    policies: Vec<(i64, Policy)>,
}

fn snapshot(state: &StateDb) -> Result<Snapshot, StateError> {
    let mut groups = state.all_user_groups()?;
    let networks = state.networks()?;
    Ok(Snapshot {
        // A disabled user cannot sign in, so reaches nothing.
        users: state
            .users()?
            .into_iter()
            .filter(|u| !u.disabled)
            .map(|u| {
                let groups = groups.remove(&u.id).unwrap_or_default();
                (u, groups)
            })
            .collect(),
        targets: state
            .targets()?
            .into_iter()
            .map(|t| {
                let view = target_ref(&t, &networks);
                (t, view)
            })
            .collect(),
        policies: state
            .policies()?
            .into_iter()
            .map(|p| (p.id, p.policy))
            .collect(),
    })
}

/// Every (user, target) pair that `policies` let reach, users then targets by name.
fn matrix(snapshot: &Snapshot, policies: &[Policy]) -> Vec<Reach> {
    let mut out = Vec::new();
    for (user, groups) in &snapshot.users {
        let principal = Principal {
            username: &user.username,
            role: user.role,
            groups,
        };
        for (target, view) in &snapshot.targets {
            let Ok(grant) = evaluate(&principal, view, target.protocol, policies) else {
                continue;
            };
            let via = if grant.policies.is_empty() {
                Via::AdminRole
            } else {
                Via::Policies(grant.policies)
            };
            out.push(Reach {
                user_id: user.id,
                username: user.username.clone(),
                role: user.role,
                target_id: target.id,
                target: target.name.clone(),
                protocol: target.protocol,
                via,
            });
        }
    }
    out
}

/// Who reaches what under the stored policies.
pub fn reach_matrix(state: &StateDb) -> Result<Vec<Reach>, StateError> {
    let snapshot = snapshot(state)?;
    let policies: Vec<Policy> = snapshot.policies.iter().map(|(_, p)| p.clone()).collect();
    Ok(matrix(&snapshot, &policies))
}

/// What saving `draft` would change: as a new policy (`replacing: None`) or in place of the stored
/// policy with that id (an edit). Nothing is written.
pub fn preview_policy(
    state: &StateDb,
    draft: &Policy,
    replacing: Option<i64>,
) -> Result<PolicyPreview, StateError> {
    let snapshot = snapshot(state)?;
    let before: Vec<Policy> = snapshot.policies.iter().map(|(_, p)| p.clone()).collect();
    let mut after: Vec<Policy> = snapshot
        .policies
        .iter()
        .filter(|(id, _)| Some(*id) != replacing)
        .map(|(_, p)| p.clone())
        .collect();
    after.push(draft.clone());
    let key = |r: &Reach| (r.user_id, r.target_id);
    let before = matrix(&snapshot, &before);
    let after = matrix(&snapshot, &after);
    let before_keys: BTreeSet<(i64, i64)> = before.iter().map(key).collect();
    let after_keys: BTreeSet<(i64, i64)> = after.iter().map(key).collect();
    let granted = matrix(&snapshot, std::slice::from_ref(draft))
        .into_iter()
        .filter(|r| matches!(&r.via, Via::Policies(names) if names.contains(&draft.name)))
        .collect();
    Ok(PolicyPreview {
        granted,
        added: after
            .into_iter()
            .filter(|r| !before_keys.contains(&key(r)))
            .collect(),
        removed: before
            .into_iter()
            .filter(|r| !after_keys.contains(&key(r)))
            .collect(),
    })
}

/// The users, groups, roles, targets, tags and networks a policy form offers.
pub fn picker_lists(state: &StateDb) -> Result<PickerLists, StateError> {
    let targets = state.targets()?;
    let tags: BTreeSet<String> = targets.iter().flat_map(|t| t.tags.clone()).collect();
    Ok(PickerLists {
        users: state
            .users()?
            .into_iter()
            .map(|u| (u.username, u.role))
            .collect(),
        groups: state.group_names()?,
        roles: vec![Role::Admin, Role::Auditor, Role::User],
        targets: targets
            .iter()
            .map(|t| (t.name.clone(), t.protocol))
            .collect(),
        tags: tags.into_iter().collect(),
        networks: state.networks()?,
    })
}

#[cfg(test)]
#[path = "preview_tests.rs"]
mod tests;
