//! Unit tests of the policy: who reaches which target, and with which forwarding and clipboard rights.

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

#[test]
fn evaluate_names_the_granting_policies_and_agrees_with_authorize() {
    let web = target();
    let mut by_group = policy(&["group:ops"], &["tag:prod"]);
    by_group.name = "ops-prod".into();
    let mut by_user = policy(&["user:u"], &["name:web"]);
    by_user.name = "u-web".into();
    let mut other = policy(&["user:someone"], &["*"]);
    other.name = "other".into();
    let policies = [by_group, other, by_user];
    let groups = vec!["ops".to_owned()];
    for role in [Role::Admin, Role::Auditor, Role::User] {
        for groups in [&groups[..], &[][..]] {
            let principal = Principal {
                username: "u",
                role,
                groups,
            };
            let grant = evaluate(&principal, &web, Protocol::Ssh, &policies);
            let proof = authorize(&user(role), groups, &web, Protocol::Ssh, &policies);
            assert_eq!(grant.is_ok(), proof.is_ok(), "{role:?} {groups:?}");
            if let (Ok(grant), Ok(proof)) = (&grant, &proof) {
                assert_eq!(grant.forwarding, proof.forwarding());
                assert_eq!(grant.clipboard, proof.clipboard());
            }
        }
    }
    let principal = Principal {
        username: "u",
        role: Role::User,
        groups: &groups,
    };
    let grant = evaluate(&principal, &web, Protocol::Ssh, &policies).unwrap();
    assert_eq!(grant.policies, ["ops-prod", "u-web"]);
    let admin = Principal {
        username: "root",
        role: Role::Admin,
        groups: &[],
    };
    assert!(
        evaluate(&admin, &web, Protocol::Ssh, &policies)
            .unwrap()
            .policies
            .is_empty()
    );
    assert_eq!(
        evaluate(&admin, &web, Protocol::Rdp, &policies),
        Err(PolicyDenied::WrongProtocol("rdp"))
    );
}
