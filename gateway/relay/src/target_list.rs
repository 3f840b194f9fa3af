//! A user's target list as the people's pages show it: each target they may reach (the same
//! [`visible_targets`] rule every transport uses), with its tags, when *they* last connected to it and
//! the target username they used then (never a credential), plus the search box's filter.
//!
//! The last use is written by the session pipeline once a target accepted the login
//! (`StateDb::record_target_use`); this module only reads it.

use sallyport_core::policy::Authenticated;
use sallyport_state::{StateDb, StateError, TargetRecord};

use crate::access::visible_targets;

/// One line of a user's target list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetEntry {
    /// The target (name, address, port, protocol, tags).
    pub target: TargetRecord,
    /// When this user last connected to it (unix ms); `None` if never.
    pub last_used_ms: Option<u64>,
    /// The target username this user logged in with last time, to fill in the connect form.
    pub remembered_username: Option<String>,
}

/// The targets `user` may reach, by name, each with the user's own last use of it.
pub fn target_list(state: &StateDb, user: &Authenticated) -> Result<Vec<TargetEntry>, StateError> {
    let mut uses = state.target_uses(user.user_id())?;
    Ok(visible_targets(state, user)?
        .into_iter()
        .map(|target| {
            let used = uses.remove(&target.id);
            TargetEntry {
                last_used_ms: used.as_ref().map(|u| u.last_used_ms),
                remembered_username: used.and_then(|u| u.username),
                target,
            }
        })
        .collect())
}

/// The at most `count` entries used most recently, newest first (a "recent" row above the list).
pub fn recently_used(entries: &[TargetEntry], count: usize) -> Vec<&TargetEntry> {
    let mut used: Vec<&TargetEntry> = entries
        .iter()
        .filter(|e| e.last_used_ms.is_some())
        .collect();
    used.sort_by(|a, b| {
        b.last_used_ms
            .cmp(&a.last_used_ms)
            .then_with(|| a.target.name.cmp(&b.target.name))
    });
    used.truncate(count);
    used
}

/// Whether `target` matches the search `query`: every word of the query (split on white space) must
/// be a case-insensitive substring of its name, its address (`host` or `host:port`) or one of its tags.
/// An empty query matches everything.
pub fn matches(target: &TargetRecord, query: &str) -> bool {
    let address = format!("{}:{}", target.host, target.port).to_lowercase();
    let name = target.name.to_lowercase();
    let tags: Vec<String> = target.tags.iter().map(|t| t.to_lowercase()).collect();
    query.split_whitespace().all(|word| {
        let word = word.to_lowercase();
        name.contains(&word) || address.contains(&word) || tags.iter().any(|t| t.contains(&word))
    })
}

/// The entries matching `query` (see [`matches`]), in their order.
pub fn search<'a>(entries: &'a [TargetEntry], query: &str) -> Vec<&'a TargetEntry> {
    entries
        .iter()
        .filter(|e| matches(&e.target, query))
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use sallyport_core::policy::{
        ClipboardAccess, Policy, Protocol, Role, Subject, TargetSelector,
    };
    use sallyport_state::TargetSpec;

    use super::*;

    fn record(name: &str, host: &str, port: u16, tags: &[&str]) -> TargetRecord {
        TargetRecord {
            id: 1,
            name: name.into(),
            host: host.into(),
            port,
            protocol: Protocol::Ssh,
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        }
    }

    fn entry(name: &str, last_used_ms: Option<u64>) -> TargetEntry {
        TargetEntry {
            target: record(name, "10.0.0.1", 22, &[]),
            last_used_ms,
            remembered_username: None,
        }
    }

    #[test]
    fn search_matches_name_address_and_tags_case_insensitively() {
        let web = record("Web-Prod", "10.1.2.3", 22, &["Linux", "frontend"]);
        for query in [
            "",
            "  ",
            "web",
            "PROD",
            "10.1.2",
            "2.3:22",
            "linux",
            "FRONT",
            "web linux",
        ] {
            assert!(matches(&web, query), "{query:?}");
        }
        for query in ["db", "10.9", ":3389", "windows", "web windows"] {
            assert!(!matches(&web, query), "{query:?}");
        }
        let entries = [
            TargetEntry {
                target: web,
                last_used_ms: None,
                remembered_username: None,
            },
            entry("db", None),
        ];
        let found: Vec<&str> = search(&entries, "10.")
            .iter()
            .map(|e| e.target.name.as_str())
            .collect();
        assert_eq!(found, ["Web-Prod", "db"]);
        assert_eq!(search(&entries, "DB").len(), 1);
    }

    #[test]
    fn recently_used_is_newest_first_and_bounded() {
        let entries = [
            entry("a", Some(10)),
            entry("b", None),
            entry("c", Some(30)),
            entry("d", Some(20)),
        ];
        let names: Vec<&str> = recently_used(&entries, 2)
            .iter()
            .map(|e| e.target.name.as_str())
            .collect();
        assert_eq!(names, ["c", "d"]);
        assert_eq!(recently_used(&entries, 10).len(), 3);
    }

    #[test]
    fn the_list_is_what_policy_shows_with_this_users_own_last_use() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDb::open(&dir.path().join("state.db")).unwrap();
        for (name, tags) in [("web", vec!["prod".to_owned()]), ("db", vec![])] {
            state
                .upsert_target(&TargetSpec {
                    name: name.into(),
                    host: "10.0.0.5".into(),
                    port: 22,
                    protocol: Protocol::Ssh,
                    tags,
                })
                .unwrap();
        }
        state
            .add_policy(&Policy {
                name: "prod".into(),
                subjects: vec![Subject::Role(Role::User)],
                targets: vec![TargetSelector::Tag("prod".into())],
                protocols: vec![Protocol::Ssh],
                forwarding: false,
                clipboard: ClipboardAccess::Both,
            })
            .unwrap();
        let ann = state
            .create_user("ann", "pw", Role::User, false, 0)
            .unwrap();
        let bob = state
            .create_user("bob", "pw", Role::User, false, 0)
            .unwrap();
        let web = state
            .targets()
            .unwrap()
            .into_iter()
            .find(|t| t.name == "web")
            .unwrap();
        state
            .record_target_use(bob.id, web.id, 500, Some("bob"))
            .unwrap();
        state
            .record_target_use(ann.id, web.id, 400, Some("deploy"))
            .unwrap();

        let list = target_list(&state, &ann.authenticated()).unwrap();
        assert_eq!(list.len(), 1, "db is granted by no policy");
        assert_eq!(list[0].target.name, "web");
        assert_eq!(list[0].target.tags, ["prod"]);
        assert_eq!(list[0].last_used_ms, Some(400));
        assert_eq!(list[0].remembered_username.as_deref(), Some("deploy"));
    }
}
