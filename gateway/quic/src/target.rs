//! The target a session stream names, decided by the relay's shared access rules. An unknown name
//! gets the same words as a forbidden one, so names are not disclosed; refusals are handed to the
//! caller to audit.

use sallyport_core::errors::ErrorKind;
use sallyport_core::policy::Authorized;
use sallyport_relay::access::{AccessError, decide};
use sallyport_state::StateDb;
use tracing::warn;

use crate::identity::Identity;

/// The policy decision for `identity` opening a session to the target named `target_name`, or what
/// the user is told. `refused` hears the audit detail of each refusal.
pub(crate) fn decide_target(
    state: &StateDb,
    identity: &Identity,
    target_name: &str,
    refused: impl Fn(String),
) -> Result<Authorized, (ErrorKind, String)> {
    let target = match state.targets() {
        Ok(targets) => targets.into_iter().find(|t| t.name == target_name),
        Err(error) => {
            warn!(%error, "could not read targets");
            return Err((ErrorKind::Internal, "the target list is unavailable".into()));
        }
    };
    let Some(target) = target else {
        refused("no such target".into());
        return Err((
            ErrorKind::NotAllowed,
            format!("no target {target_name} for you"),
        ));
    };
    match decide(state, &identity.user, &target) {
        Ok(decision) => Ok(decision),
        Err(AccessError::Denied(denied)) => {
            refused(format!("not allowed: {denied}"));
            Err((ErrorKind::NotAllowed, denied.to_string()))
        }
        Err(AccessError::State(error)) => {
            warn!(%error, "could not decide access");
            Err((
                ErrorKind::Internal,
                "the access decision is unavailable".into(),
            ))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use std::cell::RefCell;

    use sallyport_core::policy::{Protocol, Role};
    use sallyport_state::TargetSpec;

    use super::*;

    fn state_with_target() -> StateDb {
        let state = StateDb::open_in_memory().unwrap();
        state
            .upsert_target(&TargetSpec {
                name: "web".into(),
                host: "10.0.0.5".into(),
                port: 22,
                protocol: Protocol::Ssh,
                tags: Vec::new(),
            })
            .unwrap();
        state
    }

    fn identity(state: &StateDb, role: Role) -> Identity {
        let user = state
            .create_user("alice", "correct horse battery", role, false, 0)
            .unwrap();
        Identity {
            user: user.authenticated(),
            fingerprint: "00".repeat(32),
            expires_at_ms: u64::MAX,
        }
    }

    #[test]
    fn an_unknown_target_gets_the_words_of_a_forbidden_one() {
        let state = state_with_target();
        let identity = identity(&state, Role::Admin);
        let audited = RefCell::new(Vec::new());
        let refused = decide_target(&state, &identity, "secret-db", |detail| {
            audited.borrow_mut().push(detail);
        })
        .unwrap_err();
        assert_eq!(
            refused,
            (ErrorKind::NotAllowed, "no target secret-db for you".into())
        );
        assert_eq!(audited.into_inner(), ["no such target"]);
    }

    #[test]
    fn a_target_no_policy_grants_is_refused_and_audited() {
        let state = state_with_target();
        let identity = identity(&state, Role::User);
        let audited = RefCell::new(Vec::new());
        let refused = decide_target(&state, &identity, "web", |detail| {
            audited.borrow_mut().push(detail);
        })
        .unwrap_err();
        assert_eq!(
            refused,
            (
                ErrorKind::NotAllowed,
                "no policy allows you to reach this target".into()
            )
        );
        assert_eq!(
            audited.into_inner(),
            ["not allowed: no policy allows you to reach this target"]
        );
    }

    #[test]
    fn an_allowed_target_is_decided_without_an_audit() {
        let state = state_with_target();
        let identity = identity(&state, Role::Admin);
        let decision = decide_target(&state, &identity, "web", |detail| {
            panic!("nothing is refused, yet: {detail}")
        })
        .unwrap();
        assert_eq!(decision.target().name, "web");
        assert_eq!(decision.protocol(), Protocol::Ssh);
    }
}
