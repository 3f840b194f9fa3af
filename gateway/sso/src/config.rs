//! One identity provider's settings, as the daemon's `[[oidc]]` sections give them (the secret already
//! read from its file), and the checks that refuse a provider that could never sign anyone in.

use std::time::Duration;

use sallyport_core::policy::Role;

/// One OpenID provider.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// Shown on the login button ("Sign in with NAME") and used in the portal's paths and the audit.
    pub name: String,
    /// The issuer URL; discovery is `ISSUER/.well-known/openid-configuration`.
    pub issuer: String,
    /// This gateway's client id at the provider.
    pub client_id: String,
    /// The client secret.
    pub client_secret: String,
    /// Scopes asked for besides `openid`.
    pub scopes: Vec<String>,
    /// The claim that names the Sallyport account (`preferred_username`, `email`, …).
    pub username_claim: String,
    /// The claim that lists the account's groups at the provider.
    pub groups_claim: String,
    /// Which provider groups give which Sallyport groups and role; an account matching none is refused.
    pub group_rules: Vec<GroupRule>,
    /// When not empty, only verified e-mail addresses in these domains may sign in.
    pub allowed_email_domains: Vec<String>,
    /// PEM certificates trusted for the provider's HTTPS besides the public roots (a private CA).
    pub extra_roots_pem: Option<Vec<u8>>,
    /// How often a signed-in account is checked again at the provider (refresh token or userinfo):
    /// an account the provider disabled, or whose groups no longer map, loses its sessions and
    /// certificates within this.
    pub recheck_interval: Duration,
}

/// One group mapping rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRule {
    /// The group's name as the provider lists it.
    pub provider_group: String,
    /// The Sallyport groups it gives (what policies name as `group:NAME`).
    pub groups: Vec<String>,
    /// The role it gives; the highest of all matched rules wins.
    pub role: Role,
}

/// The longest provider name: it is a button label and a path segment.
const MAX_NAME: usize = 40;

impl ProviderConfig {
    /// Refuses settings that cannot work, naming what to change.
    pub fn validate(&self) -> Result<(), String> {
        if self.name.is_empty()
            || self.name.len() > MAX_NAME
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(format!(
                "name {:?}: 1 to {MAX_NAME} letters, digits, dots, dashes or underscores (it is part of the portal's sign-in paths)",
                self.name
            ));
        }
        let issuer = url::Url::parse(&self.issuer).map_err(|e| format!("issuer: {e}"))?;
        if issuer.scheme() != "https" {
            return Err(format!(
                "issuer {}: it must be an https:// URL",
                self.issuer
            ));
        }
        if self.client_id.is_empty() {
            return Err("client_id is empty".into());
        }
        if self.client_secret.trim().is_empty() {
            return Err("the client secret file is empty".into());
        }
        if self.username_claim.is_empty() || self.groups_claim.is_empty() {
            return Err("username_claim and groups_claim must name claims".into());
        }
        if self.group_rules.is_empty() {
            return Err(
                "no [[oidc.map]] rule: nobody could sign in, since access is given by group".into(),
            );
        }
        if self.recheck_interval < Duration::from_secs(10) {
            return Err("recheck_interval_secs must be at least 10".into());
        }
        Ok(())
    }

    /// Settings for unit tests: a provider at `https://idp.example/` with no rules.
    #[cfg(test)]
    pub(crate) fn for_tests(name: &str) -> ProviderConfig {
        ProviderConfig {
            name: name.into(),
            issuer: "https://idp.example/".into(),
            client_id: "sallyport".into(),
            client_secret: "secret".into(),
            scopes: vec!["profile".into(), "email".into()],
            username_claim: "preferred_username".into(),
            groups_claim: "groups".into(),
            group_rules: Vec::new(),
            allowed_email_domains: Vec::new(),
            extra_roots_pem: None,
            recheck_interval: Duration::from_secs(300),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_that_cannot_sign_anyone_in_are_refused() {
        let rule = GroupRule {
            provider_group: "eng".into(),
            groups: vec![],
            role: Role::User,
        };
        let good = ProviderConfig {
            group_rules: vec![rule],
            ..ProviderConfig::for_tests("TestIdP")
        };
        assert_eq!(good.validate(), Ok(()));
        let cases = [
            ProviderConfig {
                name: "a/b".into(),
                ..good.clone()
            },
            ProviderConfig {
                issuer: "http://idp.example/".into(),
                ..good.clone()
            },
            ProviderConfig {
                client_secret: " \n".into(),
                ..good.clone()
            },
            ProviderConfig {
                group_rules: vec![],
                ..good.clone()
            },
            ProviderConfig {
                recheck_interval: Duration::from_secs(1),
                ..good.clone()
            },
        ];
        for case in cases {
            assert!(case.validate().is_err(), "{case:?}");
        }
    }
}
