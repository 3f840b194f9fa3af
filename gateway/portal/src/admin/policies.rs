//! The policies page: who may reach which targets over which protocols, with port forwarding and the
//! desktop clipboard; adding (the form parsed into a [`Policy`]) and deleting.

use std::sync::Arc;

use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use maud::{Markup, html};
use sallyport_core::policy::{ClipboardAccess, Policy, Protocol, Subject, TargetSelector};
use serde::Deserialize;

use super::{AdminChange, Answer, split_list};
use crate::Portal;
use crate::access::AdminUser;
use crate::html::components::{field, options, post_button, table};
use crate::html::{PageError, ShownTo, admin_page};

/// Items shown as their text, joined with commas.
fn joined<T>(items: &[T], text: impl Fn(&T) -> String) -> String {
    items.iter().map(text).collect::<Vec<_>>().join(", ")
}

/// `GET /admin/policies`.
pub(super) async fn list(
    State(portal): State<Arc<Portal>>,
    AdminUser(admin): AdminUser,
) -> Result<Markup, PageError> {
    let policies = portal.broker.state().policies().shown_to(&admin)?;
    let rows: Vec<Markup> = policies
        .iter()
        .map(|record| {
            let p = &record.policy;
            let delete = format!("/admin/policies/{}/delete", record.id);
            html! {
                tr data-policy=(p.name) {
                    td { (p.name) }
                    td { (joined(&p.subjects, Subject::to_text)) }
                    td { (joined(&p.targets, TargetSelector::to_text)) }
                    td { (joined(&p.protocols, |p| p.as_str().to_owned())) }
                    td { (if p.forwarding { "allowed" } else { "refused" }) }
                    td { (clipboard_words(p.clipboard)) }
                    td { (post_button(&delete, "Delete")) }
                }
            }
        })
        .collect();
    let clipboard_choices: Vec<(&str, &str)> = ClipboardAccess::ALL
        .iter()
        .map(|access| (access.as_str(), clipboard_words(*access)))
        .collect();
    Ok(admin_page(
        "Policies",
        &admin,
        &[],
        html! {
            p {
                "Users reach a target when a policy names them (" code { "user:NAME" } "), a group of theirs ("
                code { "group:NAME" } ") or their role (" code { "role:user" } "), and the target ("
                code { "name:NAME" } ", " code { "tag:TAG" } " or " code { "*" } "). Admins reach every target; auditors none."
            }
            (table(
                "policies",
                &["Name", "Who", "Targets", "Protocols", "Port forwarding", "Desktop clipboard", ""],
                &rows,
                "No policies yet: users reach no target until one names them.",
            ))
            h2 { "Add a policy" }
            form.card method="post" action="/admin/policies" id="add-policy" {
                (field("Name", html! { input name="name" id="policy-name" required; }))
                (field("Who (comma-separated)", html! {
                    input name="subjects" id="policy-subjects" placeholder="group:ops, user:alice" required autocapitalize="off";
                }))
                (field("Targets (comma-separated)", html! {
                    input name="targets" id="policy-targets" placeholder="tag:prod, name:web-1" required autocapitalize="off";
                }))
                (field("Protocols", html! { input name="protocols" value="ssh" required autocapitalize="off"; }))
                label.check {
                    input type="checkbox" name="forwarding" value="on" id="policy-forwarding";
                    " Allow SSH port forwarding (local, remote, agent, X11) in " code { "sallyport proxy" }
                    " sessions; every forward is audited"
                }
                label {
                    "Desktop clipboard (text; within the gateway's own " code { "[desktop] clipboard" } " setting) "
                    select name="clipboard" id="policy-clipboard" { (options(&clipboard_choices, None)) }
                }
                button type="submit" id="save-policy" { "Add policy" }
            }
        },
    ))
}

/// How the policy pages word a clipboard setting.
fn clipboard_words(access: ClipboardAccess) -> &'static str {
    match access {
        ClipboardAccess::Both => "both ways",
        ClipboardAccess::ToTarget => "to the target only",
        ClipboardAccess::ToClient => "from the target only",
        ClipboardAccess::Off => "off",
    }
}

/// The policy form.
#[derive(Deserialize)]
pub(super) struct PolicyForm {
    name: String,
    subjects: String,
    targets: String,
    protocols: String,
    /// A checkbox: present (`on`) when ticked.
    #[serde(default)]
    forwarding: Option<String>,
    /// `both`, `to-target`, `to-client` or `off`; both when absent.
    #[serde(default)]
    clipboard: Option<String>,
}

/// Parses each item of a comma-separated list with `parse`, or names the first that does not parse
/// (`expected` says what it should have been).
fn parse_list<T>(
    text: &str,
    parse: impl Fn(&str) -> Option<T>,
    expected: &str,
) -> Result<Vec<T>, String> {
    split_list(text)
        .iter()
        .map(|item| parse(item).ok_or_else(|| format!("{item:?} is not {expected}")))
        .collect()
}

/// Parses the policy form into a policy, naming the first thing that does not parse.
fn parse_policy(form: &PolicyForm) -> Result<Policy, String> {
    let name = form.name.trim();
    if name.is_empty() || name.len() > 64 {
        return Err("a policy name is 1 to 64 characters".into());
    }
    let subjects = parse_list(
        &form.subjects,
        Subject::parse,
        "user:NAME, group:NAME or role:ROLE",
    )?;
    let targets = parse_list(
        &form.targets,
        TargetSelector::parse,
        "name:NAME, tag:TAG or *",
    )?;
    let protocols = parse_list(&form.protocols, Protocol::parse, "a protocol (ssh)")?;
    if subjects.is_empty() || targets.is_empty() || protocols.is_empty() {
        return Err("a policy needs at least one subject, one target and one protocol".into());
    }
    let clipboard = match form.clipboard.as_deref() {
        None | Some("") => ClipboardAccess::Both,
        Some(text) => ClipboardAccess::parse(text).ok_or_else(|| {
            format!("{text:?} is not a clipboard setting (both, to-target, to-client, off)")
        })?,
    };
    Ok(Policy {
        name: name.to_owned(),
        subjects,
        targets,
        protocols,
        forwarding: form.forwarding.as_deref() == Some("on"),
        clipboard,
    })
}

/// `POST /admin/policies`.
pub(super) async fn add(change: AdminChange, Form(form): Form<PolicyForm>) -> Answer {
    let policy =
        parse_policy(&form).map_err(|message| change.refuse(StatusCode::BAD_REQUEST, message))?;
    change.check(change.portal.broker.state().add_policy(&policy))?;
    change.done(
        "policy_added",
        None,
        format!(
            "{}: {} -> {}{}, desktop clipboard {}",
            policy.name,
            form.subjects,
            form.targets,
            if policy.forwarding {
                " (port forwarding allowed)"
            } else {
                ""
            },
            clipboard_words(policy.clipboard)
        ),
        "/admin/policies",
    )
}

/// `POST /admin/policies/{id}/delete`.
pub(super) async fn delete(Path(id): Path<i64>, change: AdminChange) -> Answer {
    change.check(change.portal.broker.state().delete_policy(id))?;
    change.done(
        "policy_deleted",
        None,
        format!("policy {id}"),
        "/admin/policies",
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn form(subjects: &str, targets: &str, protocols: &str) -> PolicyForm {
        PolicyForm {
            name: " ops ".into(),
            subjects: subjects.into(),
            targets: targets.into(),
            protocols: protocols.into(),
            forwarding: Some("on".into()),
            clipboard: None,
        }
    }

    #[test]
    fn a_policy_form_parses_into_a_policy() {
        let policy = parse_policy(&form("group:ops, user:alice", "tag:prod", "ssh")).unwrap();
        assert_eq!(policy.name, "ops");
        assert_eq!(policy.subjects.len(), 2);
        assert_eq!(policy.targets.len(), 1);
        assert_eq!(policy.protocols, [Protocol::Ssh]);
        assert!(policy.forwarding);
        assert_eq!(policy.clipboard, ClipboardAccess::Both);
    }

    #[test]
    fn the_first_item_that_does_not_parse_is_named() {
        let refused = |f: PolicyForm| parse_policy(&f).unwrap_err();
        assert_eq!(
            refused(form("alice", "tag:prod", "ssh")),
            r#""alice" is not user:NAME, group:NAME or role:ROLE"#
        );
        assert_eq!(
            refused(form("user:alice", "prod", "ssh")),
            r#""prod" is not name:NAME, tag:TAG or *"#
        );
        assert_eq!(
            refused(form("user:alice", "*", "ssh, telnet")),
            r#""telnet" is not a protocol (ssh)"#
        );
        assert_eq!(
            refused(form("user:alice", "*", " , ")),
            "a policy needs at least one subject, one target and one protocol"
        );
    }
}
