//! What the admin pages change: users and their groups, admin-made targets and networks, policies,
//! pinned host keys, and audit queries.

use ipnet::IpNet;
use rusqlite::{OptionalExtension, params};
use sallyport_core::policy::{ClipboardAccess, Policy, Protocol, Role, Subject, TargetSelector};

use crate::db::{HostKeyPin, StateDb, StateError, TargetSpec, join_tags};
use crate::users::UserRecord;

/// A stored policy and its row id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRecord {
    /// Row id.
    pub id: i64,
    /// The rule.
    pub policy: Policy,
}

/// A pinned host key with its target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinnedKey {
    /// Target id.
    pub target_id: i64,
    /// Target name.
    pub target: String,
    /// The pin.
    pub pin: HostKeyPin,
}

fn join<T>(items: &[T], text: impl Fn(&T) -> String) -> String {
    items.iter().map(text).collect::<Vec<_>>().join(",")
}

/// Runs `sql` with a policy's columns as ?1 to ?6 (name, subjects, targets, protocols, forwarding,
/// clipboard) and `id` as ?7: the one place a policy becomes a row, for adding and editing alike.
fn write_policy(
    conn: &rusqlite::Connection,
    sql: &str,
    policy: &Policy,
    id: Option<i64>,
) -> Result<usize, rusqlite::Error> {
    conn.execute(
        sql,
        params![
            policy.name,
            join(&policy.subjects, Subject::to_text),
            join(&policy.targets, TargetSelector::to_text),
            join(&policy.protocols, |p| p.as_str().to_owned()),
            policy.forwarding,
            policy.clipboard.as_str(),
            id,
        ],
    )
}

fn policy_from_columns(
    name: String,
    subjects: &str,
    targets: &str,
    protocols: &str,
    forwarding: bool,
    clipboard: &str,
) -> Result<Policy, StateError> {
    let bad = |what: &str| StateError::Invalid(format!("policy {name}: {what}"));
    let subjects = subjects
        .split(',')
        .map(|s| Subject::parse(s).ok_or_else(|| bad(s)))
        .collect::<Result<_, _>>()?;
    let targets = targets
        .split(',')
        .map(|t| TargetSelector::parse(t).ok_or_else(|| bad(t)))
        .collect::<Result<_, _>>()?;
    let protocols = protocols
        .split(',')
        .map(|p| Protocol::parse(p).ok_or_else(|| bad(p)))
        .collect::<Result<_, _>>()?;
    let clipboard = ClipboardAccess::parse(clipboard).ok_or_else(|| bad(clipboard))?;
    Ok(Policy {
        name,
        subjects,
        targets,
        protocols,
        forwarding,
        clipboard,
    })
}

impl StateDb {
    /// All users, by name.
    pub fn users(&self) -> Result<Vec<UserRecord>, StateError> {
        let ids: Vec<i64> = {
            let conn = self.lock();
            let mut stmt = conn.prepare("SELECT id FROM users ORDER BY username")?;
            stmt.query_map([], |r| r.get(0))?
                .collect::<Result<_, _>>()?
        };
        let mut users = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(user) = self.user(id)? {
                users.push(user);
            }
        }
        Ok(users)
    }

    /// A user by login name.
    pub fn user_by_name(&self, username: &str) -> Result<Option<UserRecord>, StateError> {
        let id: Option<i64> = self
            .lock()
            .query_row(
                "SELECT id FROM users WHERE username = ?1",
                [username],
                |r| r.get(0),
            )
            .optional()?;
        match id {
            Some(id) => self.user(id),
            None => Ok(None),
        }
    }

    /// Enables or disables a user.
    pub fn set_disabled(&self, id: i64, disabled: bool) -> Result<(), StateError> {
        self.lock().execute(
            "UPDATE users SET disabled = ?1 WHERE id = ?2",
            params![disabled, id],
        )?;
        Ok(())
    }

    /// Changes a user's role.
    pub fn set_role(&self, id: i64, role: Role) -> Result<(), StateError> {
        self.lock().execute(
            "UPDATE users SET role = ?1 WHERE id = ?2",
            params![role.as_str(), id],
        )?;
        Ok(())
    }

    /// Deletes a user (and their group memberships).
    pub fn delete_user(&self, id: i64) -> Result<(), StateError> {
        self.lock()
            .execute("DELETE FROM users WHERE id = ?1", [id])?;
        Ok(())
    }

    /// Sets a one-time password the user must replace at next login.
    pub fn reset_password(&self, id: i64, one_time_password: &str) -> Result<(), StateError> {
        self.set_password(id, one_time_password)?;
        self.lock().execute(
            "UPDATE users SET must_change_password = 1 WHERE id = ?1",
            [id],
        )?;
        Ok(())
    }

    /// The groups a user belongs to.
    pub fn user_groups(&self, user_id: i64) -> Result<Vec<String>, StateError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare("SELECT group_name FROM user_groups WHERE user_id = ?1 ORDER BY group_name")?;
        Ok(stmt
            .query_map([user_id], |r| r.get(0))?
            .collect::<Result<_, _>>()?)
    }

    /// Every user's groups, by user id (one query for the policy preview's whole matrix).
    pub fn all_user_groups(
        &self,
    ) -> Result<std::collections::HashMap<i64, Vec<String>>, StateError> {
        let conn = self.lock();
        let mut stmt =
            conn.prepare("SELECT user_id, group_name FROM user_groups ORDER BY group_name")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?;
        let mut groups = std::collections::HashMap::<i64, Vec<String>>::new();
        for row in rows {
            let (user_id, group) = row?;
            groups.entry(user_id).or_default().push(group);
        }
        Ok(groups)
    }

    /// Every group some user is in, by name (groups exist only through their members).
    pub fn group_names(&self) -> Result<Vec<String>, StateError> {
        let conn = self.lock();
        let mut stmt =
            conn.prepare("SELECT DISTINCT group_name FROM user_groups ORDER BY group_name")?;
        Ok(stmt
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?)
    }

    /// Replaces a user's groups.
    pub fn set_user_groups(&self, user_id: i64, groups: &[String]) -> Result<(), StateError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        tx.execute("DELETE FROM user_groups WHERE user_id = ?1", [user_id])?;
        for group in groups.iter().map(|g| g.trim()).filter(|g| !g.is_empty()) {
            tx.execute(
                "INSERT OR IGNORE INTO user_groups (user_id, group_name) VALUES (?1, ?2)",
                params![user_id, group],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Creates or updates an admin-made target (configuration targets are managed by the file).
    pub fn upsert_target(&self, spec: &TargetSpec) -> Result<(), StateError> {
        let conn = self.lock();
        let source: Option<String> = conn
            .query_row(
                "SELECT source FROM targets WHERE name = ?1",
                [&spec.name],
                |r| r.get(0),
            )
            .optional()?;
        if source.as_deref() == Some("config") {
            return Err(StateError::Exists(format!(
                "target {} (declared in the configuration file)",
                spec.name
            )));
        }
        let old: Option<(i64, String, u16)> = conn
            .query_row(
                "SELECT id, host, port FROM targets WHERE name = ?1",
                [&spec.name],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        if let Some((id, host, port)) = old
            && (host != spec.host || port != spec.port)
        {
            // Another address is another machine: its old key proves nothing.
            conn.execute("DELETE FROM host_keys WHERE target_id = ?1", [id])?;
        }
        conn.execute(
            "INSERT INTO targets (name, host, port, protocol, tags, source) VALUES (?1, ?2, ?3, ?4, ?5, 'admin')
             ON CONFLICT(name) DO UPDATE SET host = excluded.host, port = excluded.port,
                protocol = excluded.protocol, tags = excluded.tags",
            params![spec.name, spec.host, spec.port, spec.protocol.as_str(), join_tags(&spec.tags)],
        )?;
        Ok(())
    }

    /// Deletes an admin-made target.
    pub fn delete_target(&self, id: i64) -> Result<bool, StateError> {
        Ok(self.lock().execute(
            "DELETE FROM targets WHERE id = ?1 AND source IN ('admin', 'adhoc')",
            [id],
        )? == 1)
    }

    /// Adds an admin-made network.
    pub fn add_network(&self, name: &str, cidr: IpNet) -> Result<(), StateError> {
        let inserted = self.lock().execute(
            "INSERT INTO networks (name, cidr, source) VALUES (?1, ?2, 'admin') ON CONFLICT(cidr) DO NOTHING",
            params![name, cidr.to_string()],
        )?;
        if inserted == 0 {
            return Err(StateError::Exists(format!("network {cidr}")));
        }
        Ok(())
    }

    /// Turns "connect by IP" on or off for a network (configuration networks too: the flag is an
    /// admin decision, though the file's value applies again at the next start).
    pub fn set_connect_by_ip(&self, cidr: IpNet, on: bool) -> Result<bool, StateError> {
        Ok(self.lock().execute(
            "UPDATE networks SET connect_by_ip = ?1 WHERE cidr = ?2",
            params![on, cidr.to_string()],
        )? == 1)
    }

    /// The target row for an address typed by a user ("connect by IP"), made on first use so that host
    /// key pinning, audit and recordings treat it like any target. Its name is `ADDRESS:PORT`.
    pub fn adhoc_target(
        &self,
        ip: std::net::IpAddr,
        port: u16,
    ) -> Result<crate::TargetRecord, StateError> {
        let name = match ip {
            std::net::IpAddr::V4(v4) => format!("{v4}:{port}"),
            std::net::IpAddr::V6(v6) => format!("[{v6}]:{port}"),
        };
        let id: i64 = {
            let conn = self.lock();
            conn.execute(
                "INSERT INTO targets (name, host, port, protocol, tags, source) VALUES (?1, ?2, ?3, 'ssh', '', 'adhoc')
                 ON CONFLICT(name) DO NOTHING",
                params![name, ip.to_string(), port],
            )?;
            conn.query_row("SELECT id FROM targets WHERE name = ?1", [&name], |r| {
                r.get(0)
            })?
        };
        self.target(id)?
            .ok_or_else(|| StateError::Invalid(format!("target {name} vanished")))
    }

    /// Deletes an admin-made network.
    pub fn delete_network(&self, cidr: IpNet) -> Result<bool, StateError> {
        Ok(self.lock().execute(
            "DELETE FROM networks WHERE cidr = ?1 AND source = 'admin'",
            [cidr.to_string()],
        )? == 1)
    }

    /// All policies, by name.
    pub fn policies(&self) -> Result<Vec<PolicyRecord>, StateError> {
        type Row = (i64, String, String, String, String, bool, String);
        let rows: Vec<Row> = {
            let conn = self.lock();
            let mut stmt = conn.prepare(
                "SELECT id, name, subjects, targets, protocols, forwarding, clipboard FROM policies ORDER BY name",
            )?;
            stmt.query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                ))
            })?
            .collect::<Result<_, _>>()?
        };
        rows.into_iter()
            .map(
                |(id, name, subjects, targets, protocols, forwarding, clipboard)| {
                    Ok(PolicyRecord {
                        id,
                        policy: policy_from_columns(
                            name, &subjects, &targets, &protocols, forwarding, &clipboard,
                        )?,
                    })
                },
            )
            .collect()
    }

    /// Adds a policy.
    pub fn add_policy(&self, policy: &Policy) -> Result<(), StateError> {
        // A NULL id gives the row a new one.
        let inserted = write_policy(
            &self.lock(),
            "INSERT INTO policies (name, subjects, targets, protocols, forwarding, clipboard, id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT(name) DO NOTHING",
            policy,
            None,
        )?;
        if inserted == 0 {
            return Err(StateError::Exists(format!("policy {}", policy.name)));
        }
        Ok(())
    }

    /// Replaces the policy with row id `id` by `policy` (its name may change): false when there is no
    /// such policy, [`StateError::Exists`] when another policy has the new name.
    pub fn update_policy(&self, id: i64, policy: &Policy) -> Result<bool, StateError> {
        let conn = self.lock();
        // Checked under the same lock as the write, so no other change slips between them.
        let exists: Option<i64> = conn
            .query_row("SELECT id FROM policies WHERE id = ?1", [id], |r| r.get(0))
            .optional()?;
        if exists.is_none() {
            return Ok(false);
        }
        let taken: Option<i64> = conn
            .query_row(
                "SELECT id FROM policies WHERE name = ?1 AND id != ?2",
                params![policy.name, id],
                |r| r.get(0),
            )
            .optional()?;
        if taken.is_some() {
            return Err(StateError::Exists(format!("policy {}", policy.name)));
        }
        let updated = write_policy(
            &conn,
            "UPDATE policies SET name = ?1, subjects = ?2, targets = ?3, protocols = ?4, forwarding = ?5, clipboard = ?6 WHERE id = ?7",
            policy,
            Some(id),
        )?;
        Ok(updated == 1)
    }

    /// Deletes a policy.
    pub fn delete_policy(&self, id: i64) -> Result<(), StateError> {
        self.lock()
            .execute("DELETE FROM policies WHERE id = ?1", [id])?;
        Ok(())
    }

    /// Every pinned host key with its target's name.
    pub fn pinned_keys(&self) -> Result<Vec<PinnedKey>, StateError> {
        let conn = self.lock();
        let mut stmt = conn.prepare(
            "SELECT h.target_id, t.name, h.public_key, h.fingerprint, h.first_seen_ms
             FROM host_keys h JOIN targets t ON t.id = h.target_id ORDER BY t.name",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(PinnedKey {
                target_id: r.get(0)?,
                target: r.get(1)?,
                pin: HostKeyPin {
                    public_key: r.get(2)?,
                    fingerprint: r.get(3)?,
                    first_seen_ms: r.get(4)?,
                },
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn policies_groups_targets_round_trip() {
        let db = StateDb::open_in_memory().unwrap();
        let alice = db
            .create_user("alice", "pw-alice-123456", Role::User, false, 1)
            .unwrap();
        db.set_user_groups(alice.id, &["ops".into(), " ".into(), "dev".into()])
            .unwrap();
        assert_eq!(
            db.user_groups(alice.id).unwrap(),
            vec!["dev".to_owned(), "ops".to_owned()]
        );
        let policy = Policy {
            name: "ops-prod".into(),
            subjects: vec![Subject::Group("ops".into()), Subject::User("bob".into())],
            targets: vec![TargetSelector::Tag("prod".into())],
            protocols: vec![Protocol::Ssh],
            forwarding: false,
            clipboard: ClipboardAccess::Both,
        };
        db.add_policy(&policy).unwrap();
        assert!(matches!(db.add_policy(&policy), Err(StateError::Exists(_))));
        assert_eq!(db.policies().unwrap()[0].policy, policy);
        let forwarding = Policy {
            name: "tunnels".into(),
            forwarding: true,
            clipboard: ClipboardAccess::ToTarget,
            ..policy.clone()
        };
        db.add_policy(&forwarding).unwrap();
        assert_eq!(db.policies().unwrap()[1].policy, forwarding);
        // An edit replaces the row in place, may rename it, but never onto another policy's name.
        let id = db.policies().unwrap()[1].id;
        let narrowed = Policy {
            name: "tunnels-eu".into(),
            targets: vec![TargetSelector::Name("web".into())],
            protocols: vec![Protocol::Ssh, Protocol::Rdp],
            ..forwarding.clone()
        };
        assert!(db.update_policy(id, &narrowed).unwrap());
        let stored = db.policies().unwrap();
        assert_eq!(stored.len(), 2);
        assert_eq!((stored[1].id, &stored[1].policy), (id, &narrowed));
        let onto_other = Policy {
            name: "ops-prod".into(),
            ..narrowed.clone()
        };
        assert!(matches!(
            db.update_policy(id, &onto_other),
            Err(StateError::Exists(_))
        ));
        assert!(!db.update_policy(999_999, &narrowed).unwrap());
        assert_eq!(db.policies().unwrap()[1].policy, narrowed);

        let spec = TargetSpec {
            name: "web".into(),
            host: "10.0.0.5".into(),
            port: 22,
            protocol: Protocol::Ssh,
            tags: vec!["prod".into(), "eu".into()],
        };
        db.upsert_target(&spec).unwrap();
        let web = db
            .targets()
            .unwrap()
            .into_iter()
            .find(|t| t.name == "web")
            .unwrap();
        assert_eq!(web.tags, vec!["prod".to_owned(), "eu".to_owned()]);
        let pin = HostKeyPin {
            public_key: "ssh-ed25519 AAAA".into(),
            fingerprint: "SHA256:x".into(),
            first_seen_ms: 5,
        };
        assert!(db.pin_host_key(web.id, &pin).unwrap());
        assert_eq!(db.pinned_keys().unwrap().len(), 1);
        // A new address drops the old pin.
        db.upsert_target(&TargetSpec {
            host: "10.0.0.6".into(),
            ..spec
        })
        .unwrap();
        assert!(db.pinned_keys().unwrap().is_empty());
        assert!(db.delete_target(web.id).unwrap());

        db.delete_user(alice.id).unwrap();
        assert!(db.user_groups(alice.id).unwrap().is_empty());
    }
}
