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

/// True for a name a Sallyport account may have: 1 to 64 of ASCII letters, digits and `._-@` (an
/// identity provider's e-mail address fits). One rule for accounts made by admins and by providers.
pub fn valid_username(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c))
}

/// The protocol of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// An SSH terminal.
    Ssh,
    /// An RDP desktop.
    Rdp,
}

impl Protocol {
    /// The stored name of the protocol.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Ssh => "ssh",
            Protocol::Rdp => "rdp",
        }
    }

    /// Parses a stored protocol name.
    pub fn parse(text: &str) -> Option<Protocol> {
        match text {
            "ssh" => Some(Protocol::Ssh),
            "rdp" => Some(Protocol::Rdp),
            _ => None,
        }
    }
}

/// A user who proved their identity: a password (and second factor), a login session's token or a
/// client certificate, checked against the state database. The fields are private so that nothing
/// can edit one into another user; [`Authenticated::new`] is called in one place only,
/// `sallyport_state::UserRecord::authenticated`, on a user record the state database just read for
/// the credential it checked (this sans-io crate cannot see the database, so tidy enforces that
/// nothing else calls it). An [`Authorized`] is made only from one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    user_id: i64,
    username: String,
    role: Role,
}

impl Authenticated {
    /// The user of a checked credential. Only `sallyport_state::UserRecord::authenticated` calls
    /// this (and this crate's tests): see the type's documentation.
    #[doc(hidden)]
    pub fn new(user_id: i64, username: String, role: Role) -> Authenticated {
        Authenticated {
            user_id,
            username,
            role,
        }
    }

    /// Database id of the user.
    pub fn user_id(&self) -> i64 {
        self.user_id
    }

    /// Login name.
    pub fn username(&self) -> &str {
        &self.username
    }

    /// Role when the credential was checked.
    pub fn role(&self) -> Role {
        self.role
    }
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
    /// Labels policies can select targets by.
    pub tags: Vec<String>,
    /// Names of the configured networks the target's address lies in (filled by the caller, which
    /// knows the networks; empty for DNS names).
    pub networks: Vec<String>,
}

/// Who a policy grants access to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// One user, by login name.
    User(String),
    /// Every member of a group.
    Group(String),
    /// Everyone with a role.
    Role(Role),
}

/// Which targets a policy grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetSelector {
    /// One target, by name.
    Name(String),
    /// Every target carrying a tag.
    Tag(String),
    /// Every target whose address lies in the named network (named or typed by IP).
    Network(String),
    /// Every target.
    Any,
}

/// One access rule: these subjects may reach these targets over these protocols.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Display name.
    pub name: String,
    /// Who.
    pub subjects: Vec<Subject>,
    /// What.
    pub targets: Vec<TargetSelector>,
    /// How.
    pub protocols: Vec<Protocol>,
    /// Whether SSH port forwarding (local, remote, agent, X11) is allowed through `sallyport proxy`
    /// sessions this policy grants. Off unless an admin turns it on; what is allowed is audited.
    pub forwarding: bool,
    /// Which way clipboard text may cross in desktop sessions this policy grants (within the gateway's
    /// own `[desktop] clipboard` setting, which caps every policy).
    pub clipboard: ClipboardAccess,
}

/// Which way clipboard text may cross a desktop session, as a policy grants it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClipboardAccess {
    /// Both ways (the default, as in Azure Bastion and Guacamole).
    #[default]
    Both,
    /// Only from the user to the target (paste in, never copy out).
    ToTarget,
    /// Only from the target to the user.
    ToClient,
    /// Neither way.
    Off,
}

impl ClipboardAccess {
    /// Every value, in the order forms offer them.
    pub const ALL: [ClipboardAccess; 4] = [
        ClipboardAccess::Both,
        ClipboardAccess::ToTarget,
        ClipboardAccess::ToClient,
        ClipboardAccess::Off,
    ];

    /// `both`, `to-target`, `to-client` or `off`, as stored and configured.
    pub fn as_str(self) -> &'static str {
        match self {
            ClipboardAccess::Both => "both",
            ClipboardAccess::ToTarget => "to-target",
            ClipboardAccess::ToClient => "to-client",
            ClipboardAccess::Off => "off",
        }
    }

    /// Parses what [`ClipboardAccess::as_str`] writes.
    pub fn parse(text: &str) -> Option<ClipboardAccess> {
        ClipboardAccess::ALL
            .into_iter()
            .find(|a| a.as_str() == text)
    }

    /// From its two directions.
    pub fn from_directions(to_target: bool, to_client: bool) -> ClipboardAccess {
        match (to_target, to_client) {
            (true, true) => ClipboardAccess::Both,
            (true, false) => ClipboardAccess::ToTarget,
            (false, true) => ClipboardAccess::ToClient,
            (false, false) => ClipboardAccess::Off,
        }
    }

    /// The user's clipboard text may reach the target.
    pub fn to_target(self) -> bool {
        matches!(self, ClipboardAccess::Both | ClipboardAccess::ToTarget)
    }

    /// The target's clipboard text may reach the user.
    pub fn to_client(self) -> bool {
        matches!(self, ClipboardAccess::Both | ClipboardAccess::ToClient)
    }
}

impl Subject {
    /// Parses `user:NAME`, `group:NAME` or `role:ROLE`.
    pub fn parse(text: &str) -> Option<Subject> {
        let (kind, value) = text.trim().split_once(':')?;
        let value = value.trim();
        if value.is_empty() {
            return None;
        }
        match kind.trim() {
            "user" => Some(Subject::User(value.to_owned())),
            "group" => Some(Subject::Group(value.to_owned())),
            "role" => Role::parse(value).map(Subject::Role),
            _ => None,
        }
    }

    /// The text form [`Subject::parse`] reads.
    pub fn to_text(&self) -> String {
        match self {
            Subject::User(name) => format!("user:{name}"),
            Subject::Group(name) => format!("group:{name}"),
            Subject::Role(role) => format!("role:{}", role.as_str()),
        }
    }
}

impl TargetSelector {
    /// Parses `name:NAME`, `tag:TAG` or `*`.
    pub fn parse(text: &str) -> Option<TargetSelector> {
        let text = text.trim();
        if text == "*" {
            return Some(TargetSelector::Any);
        }
        let (kind, value) = text.split_once(':')?;
        let value = value.trim();
        if value.is_empty() {
            return None;
        }
        match kind.trim() {
            "name" => Some(TargetSelector::Name(value.to_owned())),
            "tag" => Some(TargetSelector::Tag(value.to_owned())),
            "network" => Some(TargetSelector::Network(value.to_owned())),
            _ => None,
        }
    }

    /// The text form [`TargetSelector::parse`] reads.
    pub fn to_text(&self) -> String {
        match self {
            TargetSelector::Name(name) => format!("name:{name}"),
            TargetSelector::Tag(tag) => format!("tag:{tag}"),
            TargetSelector::Network(name) => format!("network:{name}"),
            TargetSelector::Any => "*".to_owned(),
        }
    }

    fn matches(&self, target: &TargetRef) -> bool {
        match self {
            TargetSelector::Name(name) => &target.name == name,
            TargetSelector::Tag(tag) => target.tags.iter().any(|t| t == tag),
            TargetSelector::Network(name) => target.networks.iter().any(|n| n == name),
            TargetSelector::Any => true,
        }
    }
}

impl Policy {
    fn grants(&self, principal: &Principal<'_>, target: &TargetRef, protocol: Protocol) -> bool {
        let subject = self.subjects.iter().any(|s| match s {
            Subject::User(name) => name == principal.username,
            Subject::Group(group) => principal.groups.contains(group),
            Subject::Role(role) => *role == principal.role,
        });
        subject
            && self.protocols.contains(&protocol)
            && self.targets.iter().any(|t| t.matches(target))
    }
}

/// Whom a decision is about: a user's name, role and groups. [`authorize`] makes one from an
/// [`Authenticated`]; the admin's policy preview makes one from a stored user, so that "who reaches
/// what" is answered by the same rules as a real connect, without a proof value anyone could dial with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Principal<'a> {
    /// Login name.
    pub username: &'a str,
    /// Role.
    pub role: Role,
    /// The groups the user is in.
    pub groups: &'a [String],
}

/// What [`evaluate`] allows: through which policies, and with which rights.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Names of the policies that grant this user this target over this protocol, in the order given.
    /// Empty when an admin reaches the target through no policy.
    pub policies: Vec<String>,
    /// Whether SSH port forwarding is allowed (see [`Authorized::forwarding`]).
    pub forwarding: bool,
    /// Which way clipboard text may cross (see [`Authorized::clipboard`]).
    pub clipboard: ClipboardAccess,
}

/// The policy rules themselves, without a proof: [`authorize`] is this plus the [`Authorized`] value.
/// Auditors never open sessions; admins may reach every target (they manage them all anyway); users
/// reach what a policy grants them, directly, through a group or through their role.
pub fn evaluate(
    principal: &Principal<'_>,
    target: &TargetRef,
    protocol: Protocol,
    policies: &[Policy],
) -> Result<Grant, PolicyDenied> {
    if principal.role == Role::Auditor {
        return Err(PolicyDenied::RoleMayNotConnect(principal.role.as_str()));
    }
    if target.protocol != protocol {
        return Err(PolicyDenied::WrongProtocol(protocol.as_str()));
    }
    let granting: Vec<&Policy> = policies
        .iter()
        .filter(|p| p.grants(principal, target, protocol))
        .collect();
    if granting.is_empty() && principal.role != Role::Admin {
        return Err(PolicyDenied::NoPolicy);
    }
    // An admin reaching a target through no policy gets both clipboard directions (within the
    // gateway's ceiling) and no forwarding; otherwise each right is the union of the granting policies'.
    let none = granting.is_empty();
    let (mut forwarding, mut to_target, mut to_client) = (false, none, none);
    for policy in &granting {
        forwarding |= policy.forwarding;
        to_target |= policy.clipboard.to_target();
        to_client |= policy.clipboard.to_client();
    }
    Ok(Grant {
        policies: granting.iter().map(|p| p.name.clone()).collect(),
        forwarding,
        clipboard: ClipboardAccess::from_directions(to_target, to_client),
    })
}

/// Proof that `user` may open `protocol` to `target`. Only [`authorize`] makes one.
#[derive(Debug, Clone)]
pub struct Authorized {
    user: Authenticated,
    target: TargetRef,
    protocol: Protocol,
    forwarding: bool,
    clipboard: ClipboardAccess,
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
    /// Whether SSH port forwarding is allowed in this session: a policy granting this user this target
    /// says so (admins too need such a policy; reaching every target does not include forwarding).
    pub fn forwarding(&self) -> bool {
        self.forwarding
    }
    /// Which way clipboard text may cross in this session: each direction that a policy granting this
    /// user this target allows (admins reaching a target through no policy: both, within the gateway's
    /// own setting).
    pub fn clipboard(&self) -> ClipboardAccess {
        self.clipboard
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
    /// No policy grants this user this target.
    #[error("no policy allows you to reach this target")]
    NoPolicy,
}

/// The policy decision: [`evaluate`]'s rules for an authenticated user, and the proof value every
/// dial requires.
pub fn authorize(
    user: &Authenticated,
    groups: &[String],
    target: &TargetRef,
    protocol: Protocol,
    policies: &[Policy],
) -> Result<Authorized, PolicyDenied> {
    let principal = Principal {
        username: &user.username,
        role: user.role,
        groups,
    };
    let grant = evaluate(&principal, target, protocol, policies)?;
    Ok(Authorized {
        user: user.clone(),
        target: target.clone(),
        protocol,
        forwarding: grant.forwarding,
        clipboard: grant.clipboard,
    })
}

/// Whether `user` may see `target` in their list (the same rule as [`authorize`], without a proof).
pub fn may_reach(
    user: &Authenticated,
    groups: &[String],
    target: &TargetRef,
    policies: &[Policy],
) -> bool {
    authorize(user, groups, target, target.protocol, policies).is_ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests;
