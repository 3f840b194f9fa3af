//! The policy form as it was sent, a [`Draft`], and its parsing into a [`Policy`].
//!
//! The pickers send one selector a ticked checkbox (`subjects=user:dave`, `targets=tag:prod`,
//! `protocols=ssh`), and the "other" text fields send comma-separated selectors under the same names,
//! so a form posted by a program with the old comma-separated fields still means what it meant. Keys
//! repeat, which axum's `Form` (serde_urlencoded) cannot gather into a `Vec<String>` field; it can
//! deserialize the whole body as `Vec<(String, String)>` pairs, which keeps every value in order and
//! needs no extra crate (axum-extra's `Form` would only move the same loop into a dependency).

use sallyport_core::policy::{ClipboardAccess, Policy, Protocol, Subject, TargetSelector};

use super::split_list;

/// What an admin put into the policy form, kept as text so the form can be drawn again as it was.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Draft {
    pub(super) name: String,
    /// Every selector under "Who", ticked or typed, trimmed, each once, in the order sent.
    pub(super) subjects: Vec<String>,
    /// Every selector under "Targets", likewise.
    pub(super) targets: Vec<String>,
    pub(super) protocols: Vec<String>,
    pub(super) forwarding: bool,
    /// A clipboard setting's stored name; empty means both ways.
    pub(super) clipboard: String,
}

/// Adds each comma-separated item of `text` to `list` unless it is there already.
fn push_items(list: &mut Vec<String>, text: &str) {
    for item in split_list(text) {
        if !list.contains(&item) {
            list.push(item);
        }
    }
}

/// Parses each item with `parse`, or names the first that does not parse (`expected` says what it
/// should have been, `place` where on the form it was).
fn parse_items<T>(
    items: &[String],
    parse: impl Fn(&str) -> Option<T>,
    expected: &str,
    place: &str,
) -> Result<Vec<T>, String> {
    items
        .iter()
        .map(|item| {
            parse(item).ok_or_else(|| format!("{item:?} is not {expected} (under {place})"))
        })
        .collect()
}

impl Draft {
    /// An empty form for a new policy: SSH ticked, since most targets speak it.
    pub(super) fn new_policy() -> Draft {
        Draft {
            protocols: vec![Protocol::Ssh.as_str().to_owned()],
            ..Draft::default()
        }
    }

    /// The form as posted; unknown keys (none today) are ignored.
    pub(super) fn from_pairs(pairs: &[(String, String)]) -> Draft {
        let mut draft = Draft::default();
        for (key, value) in pairs {
            match key.as_str() {
                "name" => draft.name = value.clone(),
                "subjects" => push_items(&mut draft.subjects, value),
                "targets" => push_items(&mut draft.targets, value),
                "protocols" => push_items(&mut draft.protocols, value),
                // A checkbox: present (`on`) when ticked.
                "forwarding" => draft.forwarding = value == "on",
                "clipboard" => draft.clipboard = value.trim().to_owned(),
                _ => {}
            }
        }
        draft
    }

    /// A stored policy as the form shows it, to edit.
    pub(super) fn from_policy(policy: &Policy) -> Draft {
        Draft {
            name: policy.name.clone(),
            subjects: policy.subjects.iter().map(Subject::to_text).collect(),
            targets: policy.targets.iter().map(TargetSelector::to_text).collect(),
            protocols: policy
                .protocols
                .iter()
                .map(|p| p.as_str().to_owned())
                .collect(),
            forwarding: policy.forwarding,
            clipboard: policy.clipboard.as_str().to_owned(),
        }
    }

    /// The policy the form describes, or what to fix, in words naming the field.
    pub(super) fn parse(&self) -> Result<Policy, String> {
        let name = self.name.trim();
        if name.is_empty() || name.len() > 64 {
            return Err("a policy name is 1 to 64 characters".into());
        }
        let subjects = parse_items(
            &self.subjects,
            Subject::parse,
            "user:NAME, group:NAME or role:ROLE",
            "Who",
        )?;
        let targets = parse_items(
            &self.targets,
            TargetSelector::parse,
            "name:NAME, tag:TAG, network:NAME or *",
            "Targets",
        )?;
        let protocols = parse_items(
            &self.protocols,
            Protocol::parse,
            "a protocol (ssh or rdp)",
            "Protocols",
        )?;
        if subjects.is_empty() {
            return Err("pick at least one user, group or role under Who".into());
        }
        if targets.is_empty() {
            return Err("pick at least one target, tag or all targets under Targets".into());
        }
        if protocols.is_empty() {
            return Err("pick at least one protocol".into());
        }
        let clipboard = match self.clipboard.as_str() {
            "" => ClipboardAccess::Both,
            text => ClipboardAccess::parse(text).ok_or_else(|| {
                format!("{text:?} is not a clipboard setting (both, to-target, to-client, off)")
            })?,
        };
        Ok(Policy {
            name: name.to_owned(),
            subjects,
            targets,
            protocols,
            forwarding: self.forwarding,
            clipboard,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn draft(subjects: &str, targets: &str, protocols: &str) -> Draft {
        Draft::from_pairs(&pairs(&[
            ("name", " ops "),
            ("subjects", subjects),
            ("targets", targets),
            ("protocols", protocols),
            ("forwarding", "on"),
        ]))
    }

    #[test]
    fn ticked_boxes_and_typed_lists_gather_under_one_name_each_once() {
        let form = Draft::from_pairs(&pairs(&[
            ("name", "ops"),
            ("subjects", "user:dave"),
            ("subjects", "role:user"),
            ("subjects", "group:new, user:dave"),
            ("targets", "tag:prod"),
            ("targets", ""),
            ("protocols", "ssh"),
            ("protocols", "rdp"),
            ("clipboard", "off"),
        ]));
        assert_eq!(form.subjects, ["user:dave", "role:user", "group:new"]);
        assert_eq!(form.targets, ["tag:prod"]);
        let policy = form.parse().unwrap();
        assert_eq!(policy.subjects.len(), 3);
        assert_eq!(policy.protocols, [Protocol::Ssh, Protocol::Rdp]);
        assert!(!policy.forwarding);
        assert_eq!(policy.clipboard, ClipboardAccess::Off);
        // A stored policy comes back as the same draft.
        assert_eq!(Draft::from_policy(&policy).parse().unwrap(), policy);
    }

    #[test]
    fn the_old_comma_separated_form_still_parses() {
        let policy = draft("group:ops, user:alice", "tag:prod", "ssh")
            .parse()
            .unwrap();
        assert_eq!(policy.name, "ops");
        assert_eq!(policy.subjects.len(), 2);
        assert_eq!(policy.targets.len(), 1);
        assert_eq!(policy.protocols, [Protocol::Ssh]);
        assert!(policy.forwarding);
        assert_eq!(policy.clipboard, ClipboardAccess::Both);
    }

    #[test]
    fn what_to_fix_is_named_in_words() {
        let refused = |d: Draft| d.parse().unwrap_err();
        assert_eq!(
            refused(draft("alice", "tag:prod", "ssh")),
            r#""alice" is not user:NAME, group:NAME or role:ROLE (under Who)"#
        );
        assert_eq!(
            refused(draft("user:alice", "prod", "ssh")),
            r#""prod" is not name:NAME, tag:TAG, network:NAME or * (under Targets)"#
        );
        assert_eq!(
            refused(draft("user:alice", "*", "ssh, telnet")),
            r#""telnet" is not a protocol (ssh or rdp) (under Protocols)"#
        );
        assert_eq!(
            refused(draft(" , ", "*", "ssh")),
            "pick at least one user, group or role under Who"
        );
        assert_eq!(
            refused(draft("user:a", "", "ssh")),
            "pick at least one target, tag or all targets under Targets"
        );
        assert_eq!(
            refused(draft("user:a", "*", "")),
            "pick at least one protocol"
        );
        assert_eq!(
            refused(Draft::new_policy()),
            "a policy name is 1 to 64 characters"
        );
        let mut sideways = draft("user:a", "*", "ssh");
        sideways.clipboard = "sideways".into();
        assert!(refused(sideways).contains("not a clipboard setting"));
    }
}
