//! The policy editor, drawn without JavaScript: "Who" and "Targets" as grouped checkboxes from the
//! relay's [`PickerLists`], with an "other" text field each for a selector no list holds yet (a group
//! with no members, a target still to be added), protocols as checkboxes, then forwarding and the
//! clipboard; a "Preview" button that posts the same form to the preview route. Also the tables of
//! "who reaches what": a draft's [`PolicyPreview`] and the whole [`Reach`] matrix.
//!
//! Every checkbox's id is derived from its value alone (`subject-user-dave`, `target-tag-prod`), so
//! tests and bookmarks find the same box whatever else the lists hold.

use std::fmt::Write as _;

use maud::{Markup, html};
use sallyport_core::policy::{ClipboardAccess, Protocol, Role};
use sallyport_relay::preview::{PickerLists, PolicyPreview, Reach, Via};

use super::policy_form::Draft;
use crate::html::components::{error, field, options, table};

/// An id part for `value`: letters, digits and `-` as they are, any other byte as `_` and two hex
/// digits, so that two different values never share an id and every id is a plain CSS identifier.
pub(super) fn id_part(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'-' {
            out.push(char::from(byte));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "_{byte:02x}");
        }
    }
    out
}

/// The stable id of a picker's checkbox: `prefix` (`subject`, `target`, `protocol`) and its value,
/// `kind:name` turned into `kind-name` (`*` is `target-any`).
pub(super) fn checkbox_id(prefix: &str, value: &str) -> String {
    match value.split_once(':') {
        Some((kind, name)) => format!("{prefix}-{}-{}", id_part(kind), id_part(name)),
        None if value == "*" => format!("{prefix}-any"),
        None => format!("{prefix}-{}", id_part(value)),
    }
}

/// One checkbox: `(value, label)` sent under `name`, ticked when the draft holds its value.
fn checkbox(name: &str, prefix: &str, value: &str, label: &str, chosen: &[String]) -> Markup {
    let id = checkbox_id(prefix, value);
    html! {
        label.check for=(id) {
            input type="checkbox" name=(name) value=(value) id=(id) checked[chosen.iter().any(|c| c == value)];
            " " (label)
        }
    }
}

/// A group of checkboxes with its legend, in a box that scrolls when the list is long; `empty` says
/// what to do when the list has nothing.
fn group(legend: &str, boxes: &[Markup], empty: &str) -> Markup {
    html! {
        fieldset.picker-group {
            legend { (legend) }
            @if boxes.is_empty() {
                p.hint { (empty) }
            } @else {
                div.picks { @for b in boxes { (b) } }
            }
        }
    }
}

/// The draft's selectors that no checkbox offers, for the "other" field.
fn others(chosen: &[String], offered: &[String]) -> String {
    chosen
        .iter()
        .filter(|c| !offered.contains(c))
        .cloned()
        .collect::<Vec<_>>()
        .join(", ")
}

/// Picker values and labels, built once so the checkboxes and the "other" field agree.
type Picks = Vec<(String, String)>;

fn boxes(name: &str, prefix: &str, picks: &Picks, chosen: &[String]) -> Vec<Markup> {
    picks
        .iter()
        .map(|(value, label)| checkbox(name, prefix, value, label, chosen))
        .collect()
}

fn values(groups: &[&Picks]) -> Vec<String> {
    groups
        .iter()
        .flat_map(|g| g.iter().map(|(v, _)| v.clone()))
        .collect()
}

/// The picks of `items`, each `(value, label)`.
fn picks<T>(items: &[T], pick: impl Fn(&T) -> (String, String)) -> Picks {
    items.iter().map(pick).collect()
}

/// A pick named `name` of selector `kind`, labelled with a note: (`kind:name`, `name (note)`).
fn noted(kind: &str, name: &str, note: &str) -> (String, String) {
    (format!("{kind}:{name}"), format!("{name} ({note})"))
}

/// A pick labelled by its name alone.
fn plain(kind: &str, name: &str) -> (String, String) {
    (format!("{kind}:{name}"), name.to_owned())
}

/// The "Who" fieldset.
fn who(lists: &PickerLists, draft: &Draft) -> Markup {
    let users = picks(&lists.users, |(name, role)| {
        noted("user", name, role.as_str())
    });
    let groups = picks(&lists.groups, |g| plain("group", g));
    let roles = picks(&lists.roles, |r| {
        (format!("role:{}", r.as_str()), role_words(*r).to_owned())
    });
    let other = others(&draft.subjects, &values(&[&users, &groups, &roles]));
    let chosen = &draft.subjects;
    html! {
        fieldset.picker id="policy-who" {
            legend { "Who" }
            (group("Users", &boxes("subjects", "subject", &users, chosen), "No users yet."))
            (group("Groups", &boxes("subjects", "subject", &groups, chosen), "No groups yet: a group appears here once a user is in it."))
            (group("Roles", &boxes("subjects", "subject", &roles, chosen), ""))
            (field("Other (comma-separated, e.g. group:NAME for a group with no members yet)", html! {
                input name="subjects" id="policy-subjects-other" value=(other) autocapitalize="off" spellcheck="false";
            }))
        }
    }
}

/// The "Targets" fieldset.
fn targets(lists: &PickerLists, draft: &Draft) -> Markup {
    let any: Picks = vec![("*".to_owned(), "All targets".to_owned())];
    let tags = picks(&lists.tags, |t| plain("tag", t));
    let named = picks(&lists.targets, |(name, protocol)| {
        noted("name", name, protocol.as_str())
    });
    let networks = picks(&lists.networks, |n| {
        noted("network", &n.name, &n.cidr.to_string())
    });
    let other = others(&draft.targets, &values(&[&any, &tags, &named, &networks]));
    let chosen = &draft.targets;
    html! {
        fieldset.picker id="policy-target-picker" {
            legend { "Targets" }
            div.picks { @for b in boxes("targets", "target", &any, chosen) { (b) } }
            (group("Tags", &boxes("targets", "target", &tags, chosen), "No tags yet: add one to a target."))
            (group("Targets by name", &boxes("targets", "target", &named, chosen), "No targets yet."))
            (group("Networks (every target whose address is inside)", &boxes("targets", "target", &networks, chosen), "No networks yet."))
            (field("Other (comma-separated, e.g. tag:TAG for a tag no target carries yet)", html! {
                input name="targets" id="policy-targets-other" value=(other) autocapitalize="off" spellcheck="false";
            }))
        }
    }
}

/// How the pickers word a role.
fn role_words(role: Role) -> &'static str {
    match role {
        Role::Admin => "every admin (admins reach every target anyway)",
        Role::Auditor => "every auditor (auditors never connect)",
        Role::User => "every user",
    }
}

/// How the policy pages word a clipboard setting.
pub(super) fn clipboard_words(access: ClipboardAccess) -> &'static str {
    match access {
        ClipboardAccess::Both => "both ways",
        ClipboardAccess::ToTarget => "to the target only",
        ClipboardAccess::ToClient => "from the target only",
        ClipboardAccess::Off => "off",
    }
}

/// The policy form: for a new policy (`editing: None`) or the stored one with that id, with what to
/// fix (`problem`) above it.
pub(super) fn editor(
    lists: &PickerLists,
    draft: &Draft,
    editing: Option<i64>,
    problem: Option<&str>,
) -> Markup {
    let (action, preview, save) = match editing {
        None => (
            "/admin/policies".to_owned(),
            "/admin/policies/preview".to_owned(),
            "Add policy",
        ),
        Some(id) => (
            format!("/admin/policies/{id}/update"),
            format!("/admin/policies/{id}/preview"),
            "Save policy",
        ),
    };
    let protocols: Picks = [Protocol::Ssh, Protocol::Rdp]
        .iter()
        .map(|p| (p.as_str().to_owned(), p.as_str().to_uppercase()))
        .collect();
    let clipboard_choices: Vec<(&str, &str)> = ClipboardAccess::ALL
        .iter()
        .map(|access| (access.as_str(), clipboard_words(*access)))
        .collect();
    let clipboard = (!draft.clipboard.is_empty()).then_some(draft.clipboard.as_str());
    html! {
        form.card.policy-editor method="post" action=(action) id="policy-form" {
            @if let Some(problem) = problem { (error(problem)) }
            (field("Name", html! { input name="name" id="policy-name" value=(draft.name) required; }))
            (who(lists, draft))
            (targets(lists, draft))
            (group("Protocols", &boxes("protocols", "protocol", &protocols, &draft.protocols), ""))
            label.check for="policy-forwarding" {
                input type="checkbox" name="forwarding" value="on" id="policy-forwarding" checked[draft.forwarding];
                // One span each: in the label's flex and grid layouts every bare text run and the
                // `code` between them would otherwise be a column of its own.
                span { "Allow SSH port forwarding (local, remote, agent, X11) in " code { "sallyport proxy" }
                " sessions; every forward is audited" }
            }
            label {
                span { "Desktop clipboard (text; within the gateway's own " code { "[desktop] clipboard" } " setting)" }
                select name="clipboard" id="policy-clipboard" { (options(&clipboard_choices, clipboard)) }
            }
            div.buttons {
                button type="submit" id="save-policy" { (save) }
                button type="submit" id="preview-policy" formaction=(preview) { "Preview" }
            }
        }
    }
}

/// The rows of a list of reaches: user, role, target, protocol, and how when `via` is asked for.
fn reach_rows(reaches: &[Reach], via: bool) -> Vec<Markup> {
    reaches
        .iter()
        .map(|r| {
            html! {
                tr data-user=(r.username) data-target=(r.target) {
                    td { (r.username) }
                    td { (r.role.as_str()) }
                    td { (r.target) }
                    td { (r.protocol.as_str()) }
                    @if via { td { (via_words(&r.via)) } }
                }
            }
        })
        .collect()
}

fn via_words(via: &Via) -> String {
    match via {
        Via::AdminRole => "the admin role".to_owned(),
        Via::Policies(names) => names.join(", "),
    }
}

const REACH_HEADERS: [&str; 4] = ["User", "Role", "Target", "Protocol"];

/// What saving the draft would do: what it grants, and what it adds to and removes from today's reach.
pub(super) fn preview_tables(preview: &PolicyPreview) -> Markup {
    html! {
        section.preview id="preview" aria-labelledby="preview-heading" {
            h2 id="preview-heading" { "Preview (nothing is saved yet)" }
            p role="status" {
                "Pairs of user and target this policy would connect: " (preview.granted.len())
                ". Saving it adds " (preview.added.len()) " and removes " (preview.removed.len())
                " compared with now."
            }
            h3 { "What it grants" }
            (table("preview-granted", &REACH_HEADERS, &reach_rows(&preview.granted, false), "Nobody: no enabled user and target match it."))
            h3 { "Added compared with now" }
            (table("preview-added", &REACH_HEADERS, &reach_rows(&preview.added, false), "Nothing new: everyone it names reaches these already."))
            h3 { "Removed compared with now" }
            (table("preview-removed", &REACH_HEADERS, &reach_rows(&preview.removed, false), "Nothing removed."))
        }
    }
}

/// The whole "who reaches what" under the stored policies.
pub(super) fn reach_table(reaches: &[Reach]) -> Markup {
    table(
        "reach",
        &["User", "Role", "Target", "Protocol", "Via"],
        &reach_rows(reaches, true),
        "Nobody reaches any target yet.",
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn checkbox_ids_come_from_the_value_alone_and_never_collide() {
        assert_eq!(checkbox_id("subject", "user:dave"), "subject-user-dave");
        assert_eq!(checkbox_id("target", "tag:prod"), "target-tag-prod");
        assert_eq!(checkbox_id("target", "*"), "target-any");
        assert_eq!(checkbox_id("protocol", "ssh"), "protocol-ssh");
        assert_eq!(checkbox_id("target", "name:web.1"), "target-name-web_2e1");
        assert_ne!(id_part("a b"), id_part("a_b"));
        assert_ne!(id_part("a b"), id_part("a_20"));
    }

    #[test]
    fn the_editor_ticks_what_the_draft_holds_and_keeps_the_rest_as_typed() {
        let lists = PickerLists {
            users: vec![("dave".into(), Role::User)],
            groups: vec!["ops".into()],
            roles: vec![Role::User],
            targets: vec![("web".into(), Protocol::Ssh)],
            tags: vec!["prod".into()],
            networks: vec![],
        };
        let draft = Draft {
            name: "d".into(),
            subjects: vec!["user:dave".into(), "group:new".into()],
            targets: vec!["tag:prod".into()],
            protocols: vec!["ssh".into()],
            ..Draft::default()
        };
        let page = editor(&lists, &draft, Some(4), Some("fix <this>")).into_string();
        assert!(page.contains(r#"value="user:dave" id="subject-user-dave" checked"#));
        assert!(page.contains(r#"value="group:ops" id="subject-group-ops">"#));
        assert!(page.contains(r#"value="tag:prod" id="target-tag-prod" checked"#));
        assert!(page.contains(r#"id="policy-subjects-other" value="group:new""#));
        assert!(page.contains(r#"id="protocol-ssh" checked"#));
        assert!(page.contains(r#"formaction="/admin/policies/4/preview""#));
        assert!(page.contains(r#"action="/admin/policies/4/update""#));
        assert!(page.contains("fix &lt;this&gt;"));
        assert!(page.contains("<legend>Who</legend>"));
    }
}
