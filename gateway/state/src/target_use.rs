//! Which targets each user used last, when, and as which target username: one row per (user, target),
//! written when a session to the target is connected, read for the user's target list (sorted by
//! recent use, the username field filled in).
//!
//! Only the username is kept, never a password or key: target credentials pass through the gateway
//! without touching this database. Rows go with their user or target (`ON DELETE CASCADE`).

use std::collections::HashMap;

use rusqlite::{OptionalExtension, params};

use crate::db::{StateDb, StateError};

/// A user's last use of one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetUse {
    /// When the last session to it connected (unix ms).
    pub last_used_ms: u64,
    /// The username they logged in to the target with last time it was known (a use recorded without
    /// one keeps the one remembered before).
    pub username: Option<String>,
}

/// The longest target username kept; longer ones (never a real login name) are not remembered.
const MAX_USERNAME_BYTES: usize = 256;

impl StateDb {
    /// Records that `user_id` connected to `target_id` at `at_ms`, as `username` when the session
    /// says which (`None` keeps the username remembered before).
    pub fn record_target_use(
        &self,
        user_id: i64,
        target_id: i64,
        at_ms: u64,
        username: Option<&str>,
    ) -> Result<(), StateError> {
        let username = username
            .map(str::trim)
            .filter(|u| !u.is_empty() && u.len() <= MAX_USERNAME_BYTES);
        self.lock().execute(
            "INSERT INTO target_use (user_id, target_id, last_used_ms, target_username)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(user_id, target_id) DO UPDATE SET
                last_used_ms = MAX(last_used_ms, excluded.last_used_ms),
                target_username = COALESCE(excluded.target_username, target_username)",
            params![user_id, target_id, at_ms, username],
        )?;
        Ok(())
    }

    /// The user's last use of the target, if they ever connected to it.
    pub fn target_use(
        &self,
        user_id: i64,
        target_id: i64,
    ) -> Result<Option<TargetUse>, StateError> {
        Ok(self
            .lock()
            .query_row(
                "SELECT last_used_ms, target_username FROM target_use WHERE user_id = ?1 AND target_id = ?2",
                params![user_id, target_id],
                |r| {
                    Ok(TargetUse {
                        last_used_ms: r.get(0)?,
                        username: r.get(1)?,
                    })
                },
            )
            .optional()?)
    }

    /// When the user last connected to the target (unix ms).
    pub fn last_used(&self, user_id: i64, target_id: i64) -> Result<Option<u64>, StateError> {
        Ok(self.target_use(user_id, target_id)?.map(|u| u.last_used_ms))
    }

    /// The username the user logged in to the target with last time.
    pub fn remembered_username(
        &self,
        user_id: i64,
        target_id: i64,
    ) -> Result<Option<String>, StateError> {
        Ok(self
            .target_use(user_id, target_id)?
            .and_then(|u| u.username))
    }

    /// Every target the user has used, by target id (one query for a whole target list).
    pub fn target_uses(&self, user_id: i64) -> Result<HashMap<i64, TargetUse>, StateError> {
        let conn = self.lock();
        let mut stmt = conn.prepare(
            "SELECT target_id, last_used_ms, target_username FROM target_use WHERE user_id = ?1",
        )?;
        let rows = stmt.query_map([user_id], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                TargetUse {
                    last_used_ms: r.get(1)?,
                    username: r.get(2)?,
                },
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use sallyport_core::policy::{Protocol, Role};

    use crate::db::{StateDb, TargetSpec};

    fn db_with_target() -> (StateDb, i64, i64) {
        let db = StateDb::open_in_memory().unwrap();
        let user = db.create_user("ann", "pw", Role::User, false, 1).unwrap();
        db.upsert_target(&TargetSpec {
            name: "web".into(),
            host: "10.0.0.5".into(),
            port: 22,
            protocol: Protocol::Ssh,
            tags: vec![],
        })
        .unwrap();
        let target = db.targets().unwrap()[0].id;
        (db, user.id, target)
    }

    #[test]
    fn remembers_the_last_use_and_username_per_user_and_target() {
        let (db, user, target) = db_with_target();
        assert_eq!(db.last_used(user, target).unwrap(), None);
        assert_eq!(db.remembered_username(user, target).unwrap(), None);
        db.record_target_use(user, target, 100, Some("root"))
            .unwrap();
        db.record_target_use(user, target, 200, Some(" deploy "))
            .unwrap();
        assert_eq!(db.last_used(user, target).unwrap(), Some(200));
        assert_eq!(
            db.remembered_username(user, target).unwrap().as_deref(),
            Some("deploy")
        );
        // A proxied session tells no username: the one remembered stays; an older time never wins.
        db.record_target_use(user, target, 150, None).unwrap();
        assert_eq!(db.last_used(user, target).unwrap(), Some(200));
        assert_eq!(
            db.remembered_username(user, target).unwrap().as_deref(),
            Some("deploy")
        );
        let long = "x".repeat(300);
        db.record_target_use(user, target, 300, Some(&long))
            .unwrap();
        let uses = db.target_uses(user).unwrap();
        assert_eq!(uses.len(), 1);
        assert_eq!(uses[&target].last_used_ms, 300);
        assert_eq!(uses[&target].username.as_deref(), Some("deploy"));
        assert!(db.target_uses(user + 1).unwrap().is_empty());
    }

    #[test]
    fn rows_go_with_their_target_and_user() {
        let (db, user, target) = db_with_target();
        db.record_target_use(user, target, 100, Some("root"))
            .unwrap();
        assert!(db.delete_target(target).unwrap());
        assert!(db.target_uses(user).unwrap().is_empty());
        // An unknown user or target is an error in words, not a panic.
        let error = db.record_target_use(user, 9999, 1, None).unwrap_err();
        assert!(error.to_string().contains("state database"), "{error}");
    }
}
