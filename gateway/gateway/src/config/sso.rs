//! `[[oidc]]`: the identity providers users may sign in with, and `[portal] public_url`, which their
//! redirects (and passkeys) need. The TOML shape is checked when the file is read; the secret and CA
//! files are read, and each provider checked by `sallyport-sso`, when the daemon starts
//! ([`Config::identity_providers`]).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use sallyport_core::policy::Role;
use sallyport_sso::{GroupRule, ProviderConfig};
use serde::Deserialize;

use super::Config;

/// One `[[oidc]]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcEntry {
    /// Shown on the login page's button ("Sign in with NAME").
    pub name: String,
    /// The provider's issuer URL (https).
    pub issuer: String,
    /// This gateway's client id at the provider.
    pub client_id: String,
    /// A file holding the client secret (only the secret, surrounding whitespace ignored).
    pub client_secret_file: PathBuf,
    /// Scopes asked for besides `openid`.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// The claim that names the account.
    #[serde(default = "default_username_claim")]
    pub username_claim: String,
    /// The claim that lists the account's groups.
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// When not empty, only verified addresses in these domains may sign in.
    #[serde(default)]
    pub allowed_email_domains: Vec<String>,
    /// PEM certificates to trust for the provider's HTTPS besides the public roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Seconds between checks of a signed-in account at the provider.
    #[serde(default = "default_recheck_secs")]
    pub recheck_interval_secs: u64,
    /// Which provider groups give which Sallyport groups and role.
    #[serde(default)]
    pub map: Vec<MapEntry>,
}

/// One `[[oidc.map]]` rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MapEntry {
    /// The provider's group.
    pub group: String,
    /// The role it gives (`user`, `auditor`, `admin`).
    #[serde(default = "default_role")]
    pub role: String,
    /// The Sallyport groups it gives.
    #[serde(default)]
    pub groups: Vec<String>,
}

fn default_scopes() -> Vec<String> {
    vec!["profile".into(), "email".into()]
}

fn default_username_claim() -> String {
    "preferred_username".into()
}

fn default_groups_claim() -> String {
    "groups".into()
}

fn default_recheck_secs() -> u64 {
    300
}

fn default_role() -> String {
    "user".into()
}

/// An `https://` URL with a host and nothing after it but an optional `/`.
pub(super) fn parse_public_url(text: &str) -> anyhow::Result<url::Url> {
    let url = url::Url::parse(text)?;
    if url.scheme() != "https" {
        bail!("it must start with https://");
    }
    if url.host_str().is_none_or(str::is_empty) {
        bail!("it names no host");
    }
    if url.path() != "/"
        || url.query().is_some()
        || url.fragment().is_some()
        || !url.username().is_empty()
    {
        bail!("it must be the portal's origin only (scheme, host and port)");
    }
    Ok(url)
}

/// The checks that need no file: names unique, roles known, and a public URL to come back to.
pub(super) fn validate(entries: &[OidcEntry], has_public_url: bool) -> anyhow::Result<()> {
    if !entries.is_empty() && !has_public_url {
        bail!(
            "[[oidc]] needs portal.public_url: the address users open the portal at, where the provider sends them back"
        );
    }
    let mut names = std::collections::HashSet::new();
    for entry in entries {
        if !names.insert(&entry.name) {
            bail!("oidc provider {:?} is declared twice", entry.name);
        }
        for rule in &entry.map {
            if Role::parse(&rule.role).is_none() {
                bail!(
                    "oidc provider {:?}: map rule for group {:?} has unknown role {:?} (known: user, auditor, admin)",
                    entry.name,
                    rule.group,
                    rule.role
                );
            }
        }
    }
    Ok(())
}

impl OidcEntry {
    fn provider_config(&self) -> anyhow::Result<ProviderConfig> {
        let secret = std::fs::read_to_string(&self.client_secret_file)
            .with_context(|| format!("reading {}", self.client_secret_file.display()))?;
        let extra_roots_pem = self
            .ca_file
            .as_ref()
            .map(|path| std::fs::read(path).with_context(|| format!("reading {}", path.display())))
            .transpose()?;
        let config = ProviderConfig {
            name: self.name.clone(),
            issuer: self.issuer.clone(),
            client_id: self.client_id.clone(),
            client_secret: secret.trim().to_owned(),
            scopes: self.scopes.clone(),
            username_claim: self.username_claim.clone(),
            groups_claim: self.groups_claim.clone(),
            group_rules: self
                .map
                .iter()
                .map(|rule| GroupRule {
                    provider_group: rule.group.clone(),
                    groups: rule.groups.clone(),
                    role: Role::parse(&rule.role).unwrap_or(Role::User),
                })
                .collect(),
            allowed_email_domains: self.allowed_email_domains.clone(),
            extra_roots_pem,
            recheck_interval: Duration::from_secs(self.recheck_interval_secs),
        };
        config.validate().map_err(anyhow::Error::msg)?;
        sallyport_sso::Provider::new(config.clone()).map_err(anyhow::Error::msg)?;
        Ok(config)
    }
}

impl Config {
    /// The identity providers, their secret and CA files read and each checked.
    pub fn identity_providers(&self) -> anyhow::Result<Vec<ProviderConfig>> {
        self.oidc
            .iter()
            .map(|entry| {
                entry
                    .provider_config()
                    .with_context(|| format!("oidc provider {:?}", entry.name))
            })
            .collect()
    }
}
