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
    fn grants(
        &self,
        user: &Authenticated,
        groups: &[String],
        target: &TargetRef,
        protocol: Protocol,
    ) -> bool {
        let subject = self.subjects.iter().any(|s| match s {
            Subject::User(name) => name == &user.username,
            Subject::Group(group) => groups.contains(group),
            Subject::Role(role) => *role == user.role,
        });
        subject
            && self.protocols.contains(&protocol)
            && self.targets.iter().any(|t| t.matches(target))
    }
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

/// The policy decision. Auditors never open sessions; admins may reach every target (they manage them
/// all anyway); users reach what a policy grants them, directly, through a group or through their role.
pub fn authorize(
    user: &Authenticated,
    groups: &[String],
    target: &TargetRef,
    protocol: Protocol,
    policies: &[Policy],
) -> Result<Authorized, PolicyDenied> {
    if user.role == Role::Auditor {
        return Err(PolicyDenied::RoleMayNotConnect(user.role.as_str()));
    }
    if target.protocol != protocol {
        return Err(PolicyDenied::WrongProtocol(protocol.as_str()));
    }
    let mut granting = policies
        .iter()
        .filter(|p| p.grants(user, groups, target, protocol))
        .peekable();
    let granted = granting.peek().is_some();
    let (mut forwarding, mut to_target, mut to_client) = (false, !granted, !granted);
    for policy in granting {
        forwarding |= policy.forwarding;
        to_target |= policy.clipboard.to_target();
        to_client |= policy.clipboard.to_client();
    }
    if !granted && user.role != Role::Admin {
        return Err(PolicyDenied::NoPolicy);
    }
    Ok(Authorized {
        user: user.clone(),
        target: target.clone(),
        protocol,
        forwarding,
        clipboard: ClipboardAccess::from_directions(to_target, to_client),
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
            tags: vec!["prod".into()],
            networks: vec!["vnet".into()],
        }
    }

    fn policy(subjects: &[&str], targets: &[&str]) -> Policy {
        Policy {
            name: "p".into(),
            subjects: subjects
                .iter()
                .map(|s| Subject::parse(s).unwrap())
                .collect(),
            targets: targets
                .iter()
                .map(|t| TargetSelector::parse(t).unwrap())
                .collect(),
            protocols: vec![Protocol::Ssh],
            forwarding: false,
            clipboard: ClipboardAccess::Both,
        }
    }

    #[test]
    fn forwarding_needs_a_granting_policy_that_allows_it() {
        let web = target();
        let mut forwarding = policy(&["role:admin", "user:u"], &["name:web"]);
        forwarding.forwarding = true;
        let mut elsewhere = policy(&["user:u"], &["name:db"]);
        elsewhere.forwarding = true;
        let check = |role: Role, policies: &[Policy], expected: bool| {
            let decision = authorize(&user(role), &[], &web, Protocol::Ssh, policies).unwrap();
            assert_eq!(decision.forwarding(), expected, "{role:?} {policies:?}");
        };
        check(Role::Admin, &[], false);
        check(Role::Admin, std::slice::from_ref(&forwarding), true);
        check(Role::User, &[policy(&["user:u"], &["*"])], false);
        check(
            Role::User,
            &[policy(&["user:u"], &["*"]), elsewhere.clone()],
            false,
        );
        check(
            Role::User,
            &[policy(&["user:u"], &["*"]), forwarding.clone()],
            true,
        );
    }

    #[test]
    fn clipboard_directions_are_the_union_of_the_granting_policies() {
        let web = target();
        let with = |clipboard: ClipboardAccess, targets: &[&str]| Policy {
            clipboard,
            ..policy(&["user:u"], targets)
        };
        let check = |role: Role, policies: &[Policy], expected: ClipboardAccess| {
            let decision = authorize(&user(role), &[], &web, Protocol::Ssh, policies).unwrap();
            assert_eq!(decision.clipboard(), expected, "{role:?} {policies:?}");
        };
        check(Role::Admin, &[], ClipboardAccess::Both);
        check(
            Role::User,
            &[with(ClipboardAccess::Off, &["*"])],
            ClipboardAccess::Off,
        );
        // An admin reaching a target through no policy: only the gateway's setting applies; a policy
        // naming the admin limits them like anyone.
        let for_users = Policy {
            clipboard: ClipboardAccess::Off,
            ..policy(&["role:user"], &["*"])
        };
        check(Role::Admin, &[for_users], ClipboardAccess::Both);
        check(
            Role::Admin,
            &[with(ClipboardAccess::Off, &["*"])],
            ClipboardAccess::Off,
        );
        check(
            Role::User,
            &[
                with(ClipboardAccess::ToTarget, &["*"]),
                with(ClipboardAccess::ToClient, &["name:web"]),
            ],
            ClipboardAccess::Both,
        );
        // A policy for another target grants nothing here.
        check(
            Role::User,
            &[
                with(ClipboardAccess::ToTarget, &["*"]),
                with(ClipboardAccess::Both, &["name:db"]),
            ],
            ClipboardAccess::ToTarget,
        );
        for access in ClipboardAccess::ALL {
            assert_eq!(ClipboardAccess::parse(access.as_str()), Some(access));
            assert_eq!(
                ClipboardAccess::from_directions(access.to_target(), access.to_client()),
                access
            );
        }
        assert_eq!(ClipboardAccess::parse("sideways"), None);
    }

    #[test]
    fn roles_and_policies_decide() {
        let web = target();
        let none: Vec<Policy> = vec![];
        assert!(authorize(&user(Role::Admin), &[], &web, Protocol::Ssh, &none).is_ok());
        assert_eq!(
            authorize(&user(Role::User), &[], &web, Protocol::Ssh, &none).unwrap_err(),
            PolicyDenied::NoPolicy
        );
        assert_eq!(
            authorize(
                &user(Role::Auditor),
                &[],
                &web,
                Protocol::Ssh,
                &[policy(&["role:auditor"], &["*"])]
            )
            .unwrap_err(),
            PolicyDenied::RoleMayNotConnect("auditor")
        );
        /// Subjects, target selectors, the user's groups, and whether access follows.
        type Case<'a> = (&'a [&'a str], &'a [&'a str], &'a [&'a str], bool);
        let cases: &[Case] = &[
            (&["user:u"], &["name:web"], &[], true),
            (&["user:someone-else"], &["name:web"], &[], false),
            (&["group:ops"], &["tag:prod"], &["ops"], true),
            (&["group:ops"], &["tag:prod"], &["dev"], false),
            (&["group:ops"], &["tag:staging"], &["ops"], false),
            (&["role:user"], &["*"], &[], true),
            (&["role:user"], &["network:vnet"], &[], true),
            (&["role:user"], &["network:other"], &[], false),
            (&["role:admin"], &["*"], &[], false),
            (&["user:u"], &["name:db"], &[], false),
        ];
        for (subjects, targets, groups, expected) in cases {
            let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
            let decision = authorize(
                &user(Role::User),
                &groups,
                &web,
                Protocol::Ssh,
                &[policy(subjects, targets)],
            );
            assert_eq!(
                decision.is_ok(),
                *expected,
                "{subjects:?} {targets:?} {groups:?}"
            );
        }
        let decision = authorize(
            &user(Role::User),
            &[],
            &web,
            Protocol::Ssh,
            &[policy(&["user:u"], &["name:web"])],
        )
        .unwrap();
        assert_eq!(decision.target().id, 7);
    }

    #[test]
    fn selectors_parse_and_print() {
        for text in ["user:alice", "group:ops", "role:auditor"] {
            assert_eq!(Subject::parse(text).unwrap().to_text(), text);
        }
        for text in ["name:web-1", "tag:prod", "network:vnet", "*"] {
            assert_eq!(TargetSelector::parse(text).unwrap().to_text(), text);
        }
        for bad in ["alice", "user:", "role:root", "team:x"] {
            assert_eq!(Subject::parse(bad), None, "{bad}");
        }
        assert_eq!(TargetSelector::parse("host:x"), None);
    }
}
