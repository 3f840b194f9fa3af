//! From a provider's verified claims to a Sallyport identity: the username claim, the e-mail domain
//! rule and the group mapping that decides role and groups. Sans-io: claims in (one JSON object, the ID
//! token's merged with userinfo's), an [`Identity`] or a [`MappingRefusal`] in words out.

use std::collections::BTreeSet;
use std::fmt;

use sallyport_core::policy::{Role, valid_username};
use serde_json::{Map, Value};

use crate::config::ProviderConfig;

/// Who the provider says signed in, mapped to Sallyport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The provider's stable subject identifier (`sub`): the account's key, never the username.
    pub subject: String,
    /// The Sallyport username (from the configured username claim).
    pub username: String,
    /// The e-mail address, when the provider gave one.
    pub email: Option<String>,
    /// The highest role any matched group rule gives.
    pub role: Role,
    /// The Sallyport groups of every matched rule, sorted.
    pub groups: Vec<String>,
    /// The provider's groups that matched a rule, sorted (for the audit).
    pub matched_provider_groups: Vec<String>,
}

/// Why a verified sign-in is still refused, in words a user can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MappingRefusal {
    /// The token names no subject.
    NoSubject,
    /// The configured username claim is missing or not a string.
    NoUsername {
        /// The claim's name.
        claim: String,
    },
    /// The username claim's value is not a valid Sallyport username.
    BadUsername {
        /// The value.
        value: String,
    },
    /// Only some e-mail domains may sign in, and this account's address is not in one (or is not
    /// verified, or missing).
    EmailDomain {
        /// The address, if any.
        email: Option<String>,
    },
    /// None of the account's provider groups maps to a Sallyport role.
    NoMappedGroup {
        /// The groups the provider listed.
        provider_groups: Vec<String>,
    },
}

impl fmt::Display for MappingRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MappingRefusal::NoSubject => write!(f, "the identity provider named no subject"),
            MappingRefusal::NoUsername { claim } => write!(
                f,
                "the identity provider sent no {claim:?} claim to name the account by"
            ),
            MappingRefusal::BadUsername { value } => write!(
                f,
                "the account name {value:?} from the identity provider is not a valid username (1 to 64 letters, digits, dots, dashes, underscores or @)"
            ),
            MappingRefusal::EmailDomain { email: Some(email) } => write!(
                f,
                "the e-mail address {email} is not verified or not in a domain allowed to sign in here"
            ),
            MappingRefusal::EmailDomain { email: None } => write!(
                f,
                "the identity provider sent no verified e-mail address, and only some domains may sign in here"
            ),
            MappingRefusal::NoMappedGroup { provider_groups } if provider_groups.is_empty() => {
                write!(
                    f,
                    "your account is in no group at the identity provider, and access here is given by group; ask an administrator"
                )
            }
            MappingRefusal::NoMappedGroup { provider_groups } => write!(
                f,
                "none of your groups at the identity provider ({}) gives access here; ask an administrator",
                provider_groups.join(", ")
            ),
        }
    }
}

/// The claim as text, if it is a string.
fn text<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    claims.get(name).and_then(Value::as_str)
}

/// The provider's groups: an array of strings (as most providers send), or one string.
fn provider_groups(claims: &Map<String, Value>, name: &str) -> Vec<String> {
    let groups: BTreeSet<String> = match claims.get(name) {
        Some(Value::Array(values)) => values
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        Some(Value::String(one)) => [one.clone()].into(),
        _ => BTreeSet::new(),
    };
    groups.into_iter().collect()
}

fn rank(role: Role) -> u8 {
    match role {
        Role::User => 0,
        Role::Auditor => 1,
        Role::Admin => 2,
    }
}

/// Maps verified claims to an identity by the provider's rules.
pub fn map_identity(
    config: &ProviderConfig,
    claims: &Map<String, Value>,
) -> Result<Identity, MappingRefusal> {
    let subject = text(claims, "sub")
        .filter(|sub| !sub.is_empty())
        .ok_or(MappingRefusal::NoSubject)?;
    let username =
        text(claims, &config.username_claim).ok_or_else(|| MappingRefusal::NoUsername {
            claim: config.username_claim.clone(),
        })?;
    if !valid_username(username) {
        return Err(MappingRefusal::BadUsername {
            value: username.chars().take(80).collect(),
        });
    }
    let email = text(claims, "email").map(str::to_owned);
    if !config.allowed_email_domains.is_empty() {
        let verified = claims
            .get("email_verified")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let allowed = email
            .as_deref()
            .and_then(|e| e.rsplit_once('@'))
            .is_some_and(|(_, domain)| {
                config
                    .allowed_email_domains
                    .iter()
                    .any(|allowed| allowed.eq_ignore_ascii_case(domain))
            });
        if !(verified && allowed) {
            return Err(MappingRefusal::EmailDomain { email });
        }
    }
    let listed = provider_groups(claims, &config.groups_claim);
    let mut role = None;
    let mut groups = BTreeSet::new();
    let mut matched = BTreeSet::new();
    for rule in &config.group_rules {
        if listed.contains(&rule.provider_group) {
            matched.insert(rule.provider_group.clone());
            groups.extend(rule.groups.iter().cloned());
            if role.is_none_or(|r| rank(rule.role) > rank(r)) {
                role = Some(rule.role);
            }
        }
    }
    let Some(role) = role else {
        return Err(MappingRefusal::NoMappedGroup {
            provider_groups: listed,
        });
    };
    Ok(Identity {
        subject: subject.to_owned(),
        username: username.to_owned(),
        email,
        role,
        groups: groups.into_iter().collect(),
        matched_provider_groups: matched.into_iter().collect(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::config::GroupRule;

    fn config() -> ProviderConfig {
        ProviderConfig {
            group_rules: vec![
                GroupRule {
                    provider_group: "engineers".into(),
                    groups: vec!["eng".into()],
                    role: Role::User,
                },
                GroupRule {
                    provider_group: "sre".into(),
                    groups: vec!["eng".into(), "oncall".into()],
                    role: Role::Admin,
                },
                GroupRule {
                    provider_group: "audit".into(),
                    groups: vec![],
                    role: Role::Auditor,
                },
            ],
            ..ProviderConfig::for_tests("TestIdP")
        }
    }

    fn claims(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    #[test]
    fn groups_map_to_the_highest_role_and_every_rules_groups() {
        let identity = map_identity(
            &config(),
            &claims(json!({"sub": "s1", "preferred_username": "alice", "groups": ["sre", "engineers", "other"]})),
        )
        .unwrap();
        assert_eq!(identity.role, Role::Admin);
        assert_eq!(identity.groups, ["eng", "oncall"]);
        assert_eq!(identity.matched_provider_groups, ["engineers", "sre"]);
        let auditor = map_identity(
            &config(),
            &claims(json!({"sub": "s2", "preferred_username": "bob", "groups": "audit"})),
        )
        .unwrap();
        assert_eq!((auditor.role, auditor.groups.len()), (Role::Auditor, 0));
    }

    #[test]
    fn an_account_in_no_mapped_group_is_refused_in_words() {
        let refusal = map_identity(
            &config(),
            &claims(json!({"sub": "s1", "preferred_username": "carol", "groups": ["sales"]})),
        )
        .unwrap_err();
        assert_eq!(
            refusal.to_string(),
            "none of your groups at the identity provider (sales) gives access here; ask an administrator"
        );
        let none = map_identity(
            &config(),
            &claims(json!({"sub": "s1", "preferred_username": "carol"})),
        )
        .unwrap_err();
        assert!(none.to_string().contains("in no group"), "{none}");
    }

    #[test]
    fn the_username_must_be_there_and_valid() {
        let missing = map_identity(&config(), &claims(json!({"sub": "s1", "groups": ["sre"]})));
        assert_eq!(
            missing.unwrap_err(),
            MappingRefusal::NoUsername {
                claim: "preferred_username".into()
            }
        );
        let bad = map_identity(
            &config(),
            &claims(json!({"sub": "s1", "preferred_username": "a b", "groups": ["sre"]})),
        );
        assert!(matches!(bad, Err(MappingRefusal::BadUsername { .. })));
        let no_subject = map_identity(
            &config(),
            &claims(json!({"preferred_username": "a", "groups": ["sre"]})),
        );
        assert_eq!(no_subject.unwrap_err(), MappingRefusal::NoSubject);
    }

    #[test]
    fn allowed_domains_need_a_verified_address_in_one_of_them() {
        let config = ProviderConfig {
            allowed_email_domains: vec!["example.org".into()],
            ..config()
        };
        let base = json!({"sub": "s1", "preferred_username": "alice", "groups": ["engineers"]});
        let with = |email: &str, verified: bool| {
            let mut map = claims(base.clone());
            map.insert("email".into(), json!(email));
            map.insert("email_verified".into(), json!(verified));
            map_identity(&config, &map)
        };
        assert!(with("alice@EXAMPLE.org", true).is_ok());
        assert!(matches!(
            with("alice@example.org", false),
            Err(MappingRefusal::EmailDomain { .. })
        ));
        assert!(matches!(
            with("alice@example.org.evil", true),
            Err(MappingRefusal::EmailDomain { .. })
        ));
        assert!(matches!(
            map_identity(&config, &claims(base)),
            Err(MappingRefusal::EmailDomain { email: None })
        ));
    }
}
