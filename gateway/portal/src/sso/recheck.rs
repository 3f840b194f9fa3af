//! The re-check of signed-in provider accounts: each account's latest tokens are kept (in memory, like
//! login sessions) for as long as a login session or certificate from that sign-in can live, and every
//! provider's `recheck_interval` the gateway asks the provider again ([`Provider::recheck`]: the refresh
//! token, then userinfo) and maps the answer again. An account the provider refuses (disabled, deleted,
//! its refresh token revoked) or whose groups no longer map, or changed, loses its login sessions, live
//! sessions and CLI certificates at once ([`Portal::revoke_user`]); one the provider cannot be asked
//! about for three intervals in a row loses them too (the gateway does not keep vouching blind).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sallyport_sso::{SsoError, Tokens, map_identity};
use sallyport_state::AuditEvent;
use tracing::warn;

use super::lock;
use crate::Portal;

/// How often the loop looks for accounts due.
const TICK: Duration = Duration::from_secs(1);
/// Intervals without a successful check after which the account's sessions end.
const BLIND_INTERVALS: u32 = 3;

struct Tracked {
    provider: String,
    tokens: Tokens,
    next: Instant,
    last_ok: Instant,
    until: Instant,
}

/// The accounts being re-checked, by user id.
#[derive(Default)]
pub(crate) struct Rechecks {
    tracked: Mutex<HashMap<i64, Tracked>>,
}

impl Rechecks {
    /// Keeps (or replaces) a user's tokens from a sign-in whose sessions can live for `horizon`; the
    /// first check is one `interval` later.
    pub(crate) fn track(
        &self,
        user_id: i64,
        provider: &str,
        tokens: Tokens,
        horizon: Duration,
        interval: Duration,
    ) {
        let now = Instant::now();
        let until = now + horizon;
        let mut tracked = lock(&self.tracked);
        let until = tracked
            .get(&user_id)
            .map_or(until, |old| old.until.max(until));
        tracked.insert(
            user_id,
            Tracked {
                provider: provider.to_owned(),
                tokens,
                next: now + interval,
                last_ok: now,
                until,
            },
        );
    }

    /// Stops re-checking a user (their sessions ended anyway).
    pub(crate) fn forget(&self, user_id: i64) {
        lock(&self.tracked).remove(&user_id);
    }

    /// The accounts due now, with what their check needs; the expired are dropped.
    fn due(&self, portal: &Portal, now: Instant) -> Vec<(i64, String, Tokens, Instant)> {
        let mut tracked = lock(&self.tracked);
        tracked.retain(|_, t| now < t.until);
        tracked
            .iter_mut()
            .filter(|(_, t)| t.next <= now)
            .filter_map(|(id, t)| {
                let interval = portal.sso.provider(&t.provider)?.config().recheck_interval;
                t.next = now + interval;
                Some((*id, t.provider.clone(), t.tokens.clone(), t.last_ok))
            })
            .collect()
    }

    fn checked(&self, user_id: i64, tokens: Tokens) {
        if let Some(t) = lock(&self.tracked).get_mut(&user_id) {
            t.tokens = tokens;
            t.last_ok = Instant::now();
        }
    }
}

/// Runs the re-checks until the portal is dropped.
pub(crate) async fn run(portal: std::sync::Weak<Portal>) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(portal) = portal.upgrade() else {
            return;
        };
        for (user_id, provider, tokens, last_ok) in portal.sso.rechecks.due(&portal, Instant::now())
        {
            let portal = portal.clone();
            tokio::spawn(async move {
                recheck_one(&portal, user_id, &provider, &tokens, last_ok).await;
            });
        }
    }
}

fn audit(portal: &Portal, kind: &str, username: &str, detail: String) {
    portal.broker.audit(AuditEvent {
        kind: kind.into(),
        actor: Some(username.to_owned()),
        detail: Some(detail),
        ..AuditEvent::default()
    });
}

async fn recheck_one(
    portal: &Arc<Portal>,
    user_id: i64,
    provider_name: &str,
    tokens: &Tokens,
    last_ok: Instant,
) {
    let Some(provider) = portal.sso.provider(provider_name) else {
        return;
    };
    let username = match portal.broker.state().user(user_id) {
        Ok(Some(user)) => user.username,
        _ => {
            portal.sso.rechecks.forget(user_id);
            return;
        }
    };
    let end = |reason: String| {
        audit(
            portal,
            "sso_recheck_refused",
            &username,
            format!("provider {provider_name}: {reason}; sessions and certificates ended"),
        );
        portal.revoke_user(
            user_id,
            &format!("{provider_name} no longer vouches for your account ({reason})"),
        );
    };
    let sign_in = match provider.recheck(tokens).await {
        Ok(sign_in) => sign_in,
        Err(SsoError::Refused(reason)) => return end(reason),
        Err(SsoError::Unreachable(reason)) => {
            let interval = provider.config().recheck_interval;
            if last_ok.elapsed() >= interval * BLIND_INTERVALS {
                return end(format!(
                    "it could not be asked for {} s ({reason})",
                    last_ok.elapsed().as_secs()
                ));
            }
            warn!(provider = %provider_name, %reason, "provider re-check failed; trying again");
            audit(
                portal,
                "sso_recheck_failed",
                &username,
                format!("provider {provider_name}: {reason}; trying again"),
            );
            return;
        }
    };
    let identity = match map_identity(provider.config(), &sign_in.claims) {
        Ok(identity) => identity,
        Err(refusal) => return end(refusal.to_string()),
    };
    match super::store_account(portal, provider_name, &identity).await {
        Ok(Ok(outcome)) if outcome.user.id == user_id && outcome.changes.is_empty() => {
            portal.sso.rechecks.checked(user_id, sign_in.tokens);
        }
        Ok(Ok(outcome)) if outcome.user.id == user_id => end(format!(
            "the account changed at the provider ({})",
            outcome.changes.join("; ")
        )),
        Ok(Ok(_)) => end("the provider now names another account".into()),
        Ok(Err(error)) => end(format!(
            "the account could not be brought in line ({error})"
        )),
        Err(error) => warn!(%error, "re-check task failed"),
    }
}
