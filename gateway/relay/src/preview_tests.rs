//! Tests of the policy preview against a real state database file: the matrix must agree with the
//! access decision every connect makes, pair by pair.

#![allow(clippy::unwrap_used, clippy::panic)]

use sallyport_core::policy::{ClipboardAccess, Policy, Protocol, Role, Subject, TargetSelector};
use sallyport_state::{StateDb, TargetSpec};

use super::*;
use crate::access::decide;

/// A policy over text selectors, as an admin types them in the form.
fn policy(name: &str, subjects: &[&str], targets: &[&str], protocols: &[Protocol]) -> Policy {
    let subjects = subjects.iter().filter_map(|s| Subject::parse(s));
    let targets = targets.iter().filter_map(|t| TargetSelector::parse(t));
    let policy = Policy {
        name: name.into(),
        subjects: subjects.collect(),
        targets: targets.collect(),
        protocols: protocols.to_vec(),
        forwarding: false,
        clipboard: ClipboardAccess::Both,
    };
    assert!(
        !policy.subjects.is_empty() && !policy.targets.is_empty(),
        "{policy:?}"
    );
    policy
}

/// ann (group ops), bob, carol (auditor), root (admin), dave (disabled); web and db in network lab,
/// win (RDP) in office, named (a DNS name, in no network); ops-prod and bob-lab.
fn site() -> (tempfile::TempDir, StateDb) {
    let dir = tempfile::tempdir().unwrap();
    let state = StateDb::open(&dir.path().join("state.db")).unwrap();
    state
        .add_network("lab", "10.0.0.0/16".parse().unwrap())
        .unwrap();
    state
        .add_network("office", "10.1.0.0/16".parse().unwrap())
        .unwrap();
    for (name, host, protocol, tags) in [
        ("web", "10.0.0.5", Protocol::Ssh, &["prod"][..]),
        ("db", "10.0.0.6", Protocol::Ssh, &["db"][..]),
        ("win", "10.1.0.5", Protocol::Rdp, &["windows"][..]),
        ("named", "named.example", Protocol::Ssh, &["prod"][..]),
    ] {
        state
            .upsert_target(&TargetSpec {
                name: name.into(),
                host: host.into(),
                port: 22,
                protocol,
                tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            })
            .unwrap();
    }
    for (name, role) in [
        ("ann", Role::User),
        ("bob", Role::User),
        ("carol", Role::Auditor),
        ("root", Role::Admin),
        ("dave", Role::User),
    ] {
        let user = state.create_user(name, "pw", role, false, 0).unwrap();
        if name == "ann" || name == "dave" {
            state.set_user_groups(user.id, &["ops".into()]).unwrap();
        }
        if name == "dave" {
            state.set_disabled(user.id, true).unwrap();
        }
    }
    state
        .add_policy(&policy(
            "ops-prod",
            &["group:ops"],
            &["tag:prod"],
            &[Protocol::Ssh],
        ))
        .unwrap();
    state
        .add_policy(&policy(
            "bob-lab",
            &["user:bob"],
            &["network:lab"],
            &[Protocol::Ssh],
        ))
        .unwrap();
    (dir, state)
}

fn pairs(reaches: &[Reach]) -> Vec<(String, String)> {
    reaches
        .iter()
        .map(|r| (r.username.clone(), r.target.clone()))
        .collect()
}

fn pair(user: &str, target: &str) -> (String, String) {
    (user.to_owned(), target.to_owned())
}

#[test]
fn the_matrix_is_the_access_decision_pair_by_pair() {
    let (_dir, state) = site();
    let matrix = reach_matrix(&state).unwrap();
    assert_eq!(
        pairs(&matrix),
        [
            pair("ann", "named"),
            pair("ann", "web"),
            pair("bob", "db"),
            pair("bob", "web"),
            pair("root", "db"),
            pair("root", "named"),
            pair("root", "web"),
            pair("root", "win"),
        ]
    );
    let via = |user: &str, target: &str| {
        matrix
            .iter()
            .find(|r| r.username == user && r.target == target)
            .unwrap()
            .via
            .clone()
    };
    assert_eq!(via("ann", "web"), Via::Policies(vec!["ops-prod".into()]));
    assert_eq!(via("bob", "db"), Via::Policies(vec!["bob-lab".into()]));
    assert_eq!(via("root", "win"), Via::AdminRole);
    // The same answer as a real connect for every enabled user and every target.
    for user in state.users().unwrap().into_iter().filter(|u| !u.disabled) {
        for target in state.targets().unwrap() {
            let allowed = decide(&state, &user.authenticated(), &target).is_ok();
            let listed = matrix
                .iter()
                .any(|r| r.user_id == user.id && r.target_id == target.id);
            assert_eq!(allowed, listed, "{} → {}", user.username, target.name);
        }
    }
}

#[test]
fn a_new_policy_previews_what_it_adds_and_an_edit_what_it_removes() {
    let (_dir, state) = site();
    let rdp = policy(
        "rdp-users",
        &["role:user", "role:admin"],
        &["tag:windows"],
        &[Protocol::Rdp],
    );
    let preview = preview_policy(&state, &rdp, None).unwrap();
    assert_eq!(
        pairs(&preview.added),
        [pair("ann", "win"), pair("bob", "win")]
    );
    assert!(preview.removed.is_empty());
    assert_eq!(
        pairs(&preview.granted),
        [pair("ann", "win"), pair("bob", "win"), pair("root", "win")],
        "admins already reach it, but the policy grants it too"
    );
    assert!(
        reach_matrix(&state).unwrap().len() == 8,
        "nothing was saved"
    );

    let bob_lab = state
        .policies()
        .unwrap()
        .into_iter()
        .find(|p| p.policy.name == "bob-lab")
        .unwrap();
    let narrowed = policy("bob-lab", &["user:bob"], &["name:web"], &[Protocol::Ssh]);
    let preview = preview_policy(&state, &narrowed, Some(bob_lab.id)).unwrap();
    assert!(preview.added.is_empty());
    assert_eq!(pairs(&preview.removed), [pair("bob", "db")]);
    assert_eq!(pairs(&preview.granted), [pair("bob", "web")]);
}

#[test]
fn pickers_list_every_name_once_sorted() {
    let (_dir, state) = site();
    let lists = picker_lists(&state).unwrap();
    let users: Vec<&str> = lists.users.iter().map(|(u, _)| u.as_str()).collect();
    assert_eq!(users, ["ann", "bob", "carol", "dave", "root"]);
    assert_eq!(lists.groups, ["ops"]);
    assert_eq!(lists.roles, [Role::Admin, Role::Auditor, Role::User]);
    let targets: Vec<&str> = lists.targets.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(targets, ["db", "named", "web", "win"]);
    assert_eq!(lists.tags, ["db", "prod", "windows"]);
    let networks: Vec<&str> = lists.networks.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(networks, ["lab", "office"]);
}

#[test]
fn a_broken_database_is_an_error_in_words() {
    let (dir, state) = site();
    // A policy row no gateway wrote: the preview says which policy is invalid instead of panicking.
    let other = rusqlite::Connection::open(dir.path().join("state.db")).unwrap();
    other
        .execute(
            "UPDATE policies SET subjects = 'nobody' WHERE name = 'bob-lab'",
            [],
        )
        .unwrap();
    let error = reach_matrix(&state).unwrap_err();
    assert!(error.to_string().contains("policy bob-lab"), "{error}");
    let draft = policy("x", &["user:ann"], &["*"], &[Protocol::Ssh]);
    assert!(preview_policy(&state, &draft, None).is_err());
}
