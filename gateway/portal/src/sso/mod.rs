//! Single sign-on with the configured OpenID providers (`[[oidc]]`), on top of `sallyport-sso`:
//!
//! - `browser`: "Sign in with NAME" on the login page, the code flow's start and its callback;
//! - `device`: the device flow for the CLI and the reviewer (`/api/sso/device`, `/api/sso/device/poll`);
//! - `recheck`: signed-in provider accounts asked about again at their provider's interval, their
//!   sessions and certificates ended when the provider no longer vouches for them.
//!
//! Both flows end in [`Sso::admit`]: the claims mapped to an identity, the account created or
//! brought in line in one transaction, and every refusal audited with its reason before anything
//! is written.

pub(crate) mod browser;
pub(crate) mod device;
pub(crate) mod recheck;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sallyport_sso::{Identity, Provider, ProviderConfig, SignIn, map_identity};
use sallyport_state::{MappedAccount, ProviderSignInOutcome, StateError, UserRecord};
use tracing::warn;

use crate::Portal;
pub(crate) use crate::auth::token_key as key;

/// How long a started sign-in waits for its callback.
const PENDING_TTL: Duration = Duration::from_secs(600);
/// Bound on sign-ins waiting at once (each is a few hundred bytes).
const MAX_PENDING: usize = 10_000;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A code-flow sign-in between its start and its callback.
struct PendingLogin {
    provider: String,
    login: sallyport_sso::CodeLogin,
    /// SHA-256 of the browser-binding cookie set at the start: the callback must bring it.
    binding: [u8; 32],
    created: Instant,
}

/// The providers and what their sign-ins hold between requests.
pub struct Sso {
    providers: Vec<Arc<Provider>>,
    /// Code-flow sign-ins by the SHA-256 of their `state`.
    pending: Mutex<HashMap<[u8; 32], PendingLogin>>,
    pub(crate) devices: device::DeviceLogins,
    pub(crate) rechecks: recheck::Rechecks,
}

/// Why a verified provider sign-in is still not let in, in words for the user and the audit.
pub(crate) struct Refused {
    pub reason: String,
    /// The account's name, when the claims gave one.
    pub username: Option<String>,
}

impl Sso {
    /// The providers of these settings; one whose client cannot be made is left out and logged
    /// (the daemon's configuration check has refused such settings already).
    pub fn new(configs: &[ProviderConfig]) -> Sso {
        let providers = configs
            .iter()
            .filter_map(|config| match Provider::new(config.clone()) {
                Ok(provider) => Some(Arc::new(provider)),
                Err(error) => {
                    warn!(provider = %config.name, %error, "identity provider left out");
                    None
                }
            })
            .collect();
        Sso {
            providers,
            pending: Mutex::default(),
            devices: device::DeviceLogins::default(),
            rechecks: recheck::Rechecks::default(),
        }
    }

    /// The configured providers' names, in configuration order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.providers.iter().map(|p| p.config().name.as_str())
    }

    /// A provider by name.
    pub(crate) fn provider(&self, name: &str) -> Option<Arc<Provider>> {
        self.providers
            .iter()
            .find(|p| p.config().name == name)
            .cloned()
    }

    fn remember(&self, state: &str, pending: PendingLogin) -> bool {
        let mut all = lock(&self.pending);
        all.retain(|_, p| p.created.elapsed() < PENDING_TTL);
        if all.len() >= MAX_PENDING {
            return false;
        }
        all.insert(key(state), pending);
        true
    }

    /// The sign-in `state` names, taken: a state is good for one callback only.
    fn take(&self, state: &str) -> Option<PendingLogin> {
        let found = lock(&self.pending).remove(&key(state))?;
        (found.created.elapsed() < PENDING_TTL).then_some(found)
    }
}

/// The audit event of a provider sign-in step.
pub(crate) fn audit(
    portal: &Portal,
    kind: &str,
    actor: Option<&str>,
    client: SocketAddr,
    detail: String,
) {
    portal.audit_from(kind, actor, client, Some(detail));
}

/// How a provider sign-in is named in the audit: `provider NAME subject SUB`.
pub(crate) fn first_factor(provider: &str, identity: &Identity) -> String {
    format!("provider {provider} subject {}", identity.subject)
}

/// Creates or brings in line the account `identity` names at `provider` (on a blocking thread: SQLite).
pub(crate) async fn store_account(
    portal: &Portal,
    provider: &str,
    identity: &Identity,
) -> Result<Result<ProviderSignInOutcome, StateError>, tokio::task::JoinError> {
    let state = portal.broker.state().clone();
    let (provider, identity) = (provider.to_owned(), identity.clone());
    tokio::task::spawn_blocking(move || {
        state.sign_in_provider_user(
            &MappedAccount {
                provider: &provider,
                subject: &identity.subject,
                username: &identity.username,
                role: identity.role,
                groups: &identity.groups,
            },
            sallyport_relay::now_ms(),
        )
    })
    .await
}

/// Lets a verified provider sign-in in, or says why not: the claims mapped by the provider's rules,
/// the account created or updated (one transaction; nothing is written for a refusal), the tokens
/// kept for the re-check, the account change audited. `via` names the flow for the audit.
pub(crate) async fn admit(
    portal: &Portal,
    provider: &Provider,
    sign_in: SignIn,
    client: SocketAddr,
    via: &str,
) -> Result<(UserRecord, Identity), Refused> {
    let config = provider.config();
    let identity = map_identity(config, &sign_in.claims).map_err(|refusal| Refused {
        reason: refusal.to_string(),
        username: sign_in
            .claims
            .get(&config.username_claim)
            .and_then(|v| v.as_str())
            .map(str::to_owned),
    })?;
    let refused = |reason: String| Refused {
        reason,
        username: Some(identity.username.clone()),
    };
    let outcome = match store_account(portal, &config.name, &identity).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(StateError::Exists(_))) => {
            return Err(refused(format!(
                "an account named {} already exists here and is not {}'s; an administrator must rename or remove it first",
                identity.username, config.name
            )));
        }
        Ok(Err(error)) => {
            warn!(%error, "could not store a provider account");
            return Err(refused(
                "the account could not be stored; try again shortly".into(),
            ));
        }
        Err(error) => {
            warn!(%error, "provider account task failed");
            return Err(refused(
                "the sign-in could not be completed; try again".into(),
            ));
        }
    };
    let user = outcome.user;
    if user.disabled {
        return Err(refused(
            "this account was disabled by an administrator of this gateway".into(),
        ));
    }
    if outcome.created {
        audit(
            portal,
            "sso_account_created",
            Some(&user.username),
            client,
            format!(
                "{} ({via}): role {}, groups [{}] from provider groups [{}]",
                first_factor(&config.name, &identity),
                user.role.as_str(),
                identity.groups.join(", "),
                identity.matched_provider_groups.join(", ")
            ),
        );
    } else if !outcome.changes.is_empty() {
        audit(
            portal,
            "sso_account_updated",
            Some(&user.username),
            client,
            format!(
                "{} ({via}): {}",
                first_factor(&config.name, &identity),
                outcome.changes.join("; ")
            ),
        );
    }
    portal.sso.rechecks.track(
        user.id,
        &config.name,
        sign_in.tokens,
        portal.recheck_horizon(),
        config.recheck_interval,
    );
    Ok((user, identity))
}
