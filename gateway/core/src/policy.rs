//! Who may connect to what: the proof values a connect path requires.
//!
//! [`Authenticated`] says a user proved who they are (made by the code that checks passwords);
//! [`Authorized`] says the policy allowed that user this target and protocol. `Authorized` can only be
//! made by [`authorize`], and every function that dials a target takes one, so no path reaches a target
//! without a decision.

use serde::{Deserialize, Serialize};

/// A user's role on the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Manages users, targets, networks, policies and live sessions; may connect.
    Admin,
    /// Reviews recordings; may not connect to targets.
    Auditor,
    /// Connects to targets as policy allows.
    User,
}

impl Role {
    /// The stored name of the role.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Auditor => "auditor",
            Role::User => "user",
        }
    }

    /// Parses a stored role name.
    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "admin" => Some(Role::Admin),
            "auditor" => Some(Role::Auditor),
            "user" => Some(Role::User),
            _ => None,
        }
    }
}

/// The protocol of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// An SSH terminal.
    Ssh,
}

impl Protocol {
    /// The stored name of the protocol.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Ssh => "ssh",
        }
    }

    /// Parses a stored protocol name.
    pub fn parse(text: &str) -> Option<Protocol> {
        match text {
            "ssh" => Some(Protocol::Ssh),
            _ => None,
        }
    }
}

/// A user who proved their identity in this login session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    /// Database id of the user.
    pub user_id: i64,
    /// Login name.
    pub username: String,
    /// Role at login time.
    pub role: Role,
}

/// A target as the policy sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetRef {
    /// Database id of the target.
    pub id: i64,
    /// Display name.
    pub name: String,
    /// Host as configured (IP literal or DNS name).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Protocol the target speaks.
    pub protocol: Protocol,
}

/// Proof that `user` may open `protocol` to `target`. Only [`authorize`] makes one.
#[derive(Debug, Clone)]
pub struct Authorized {
    user: Authenticated,
    target: TargetRef,
    protocol: Protocol,
}

impl Authorized {
    /// The user the decision was made for.
    pub fn user(&self) -> &Authenticated {
        &self.user
    }
    /// The target the decision allows.
    pub fn target(&self) -> &TargetRef {
        &self.target
    }
    /// The protocol the decision allows.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }
}

/// Why a connect was refused by policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyDenied {
    /// The role may not open sessions at all.
    #[error("the {0} role may not open sessions")]
    RoleMayNotConnect(&'static str),
    /// The target does not speak the requested protocol.
    #[error("the target does not offer {0}")]
    WrongProtocol(&'static str),
}

/// The policy decision. Until per-target policies exist, admins and users may reach every registered
/// target over its own protocol, and auditors may reach none.
pub fn authorize(
    user: &Authenticated,
    target: &TargetRef,
    protocol: Protocol,
) -> Result<Authorized, PolicyDenied> {
    if user.role == Role::Auditor {
        return Err(PolicyDenied::RoleMayNotConnect(user.role.as_str()));
    }
    if target.protocol != protocol {
        return Err(PolicyDenied::WrongProtocol(protocol.as_str()));
    }
    Ok(Authorized {
        user: user.clone(),
        target: target.clone(),
        protocol,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    fn user(role: Role) -> Authenticated {
        Authenticated {
            user_id: 1,
            username: "u".into(),
            role,
        }
    }
    fn target() -> TargetRef {
        TargetRef {
            id: 7,
            name: "web".into(),
            host: "10.0.0.5".into(),
            port: 22,
            protocol: Protocol::Ssh,
        }
    }

    #[test]
    fn roles_decide() {
        assert!(authorize(&user(Role::User), &target(), Protocol::Ssh).is_ok());
        assert!(authorize(&user(Role::Admin), &target(), Protocol::Ssh).is_ok());
        assert_eq!(
            authorize(&user(Role::Auditor), &target(), Protocol::Ssh).unwrap_err(),
            PolicyDenied::RoleMayNotConnect("auditor")
        );
        let decision = authorize(&user(Role::User), &target(), Protocol::Ssh).unwrap();
        assert_eq!(decision.target().id, 7);
    }
}
