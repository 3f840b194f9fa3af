//! Accounts an identity provider owns: keyed by provider and subject (never by username), created at
//! their first sign-in and brought in line with the provider's mapping at every one, in one
//! transaction, so a refused or failed sign-in leaves nothing half-made. They have no local password
//! (the stored hash is empty, which no password matches).

use rusqlite::{OptionalExtension, params};
use sallyport_core::policy::Role;

use crate::db::{StateDb, StateError};
use crate::users::UserRecord;

/// The provider and subject that own an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderAccount {
    /// The provider's configured name.
    pub provider: String,
    /// The provider's subject identifier.
    pub subject: String,
}

/// What the mapping says the account must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappedAccount<'a> {
    /// The provider's configured name.
    pub provider: &'a str,
    /// The provider's subject identifier.
    pub subject: &'a str,
    /// The username its claim gives.
    pub username: &'a str,
    /// The role its groups give.
    pub role: Role,
    /// The Sallyport groups its groups give.
    pub groups: &'a [String],
}

/// What a provider sign-in did to the account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderSignInOutcome {
    /// The account as it is now.
    pub user: UserRecord,
    /// True when this sign-in created it.
    pub created: bool,
    /// What changed at an existing account, in words (`role user → admin`, `groups -ops +eng`).
    pub changes: Vec<String>,
}

impl StateDb {
    /// Creates or updates the account `mapped` names. An account an admin disabled stays disabled
    /// (the caller refuses it); a username held by another account is [`StateError::Exists`], since
    /// taking over a local account by naming it at a provider must not be possible.
    pub fn sign_in_provider_user(
        &self,
        mapped: &MappedAccount<'_>,
        now_ms: u64,
    ) -> Result<ProviderSignInOutcome, StateError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let found: Option<(i64, String, String, bool)> = tx
            .query_row(
                "SELECT id, username, role, disabled FROM users WHERE provider = ?1 AND subject = ?2",
                params![mapped.provider, mapped.subject],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
        let taken =
            |tx: &rusqlite::Transaction<'_>, except: Option<i64>| -> Result<bool, StateError> {
                Ok(tx
                    .query_row(
                        "SELECT id FROM users WHERE username = ?1",
                        [mapped.username],
                        |r| r.get::<_, i64>(0),
                    )
                    .optional()?
                    .is_some_and(|id| Some(id) != except))
            };
        let mut changes = Vec::new();
        let (id, created, disabled) = match found {
            Some((id, username, role, disabled)) => {
                if username != mapped.username {
                    if taken(&tx, Some(id))? {
                        return Err(StateError::Exists(format!("user {}", mapped.username)));
                    }
                    changes.push(format!("username {username} → {}", mapped.username));
                }
                if role != mapped.role.as_str() {
                    changes.push(format!("role {role} → {}", mapped.role.as_str()));
                }
                tx.execute(
                    "UPDATE users SET username = ?1, role = ?2 WHERE id = ?3",
                    params![mapped.username, mapped.role.as_str(), id],
                )?;
                (id, false, disabled)
            }
            None => {
                if taken(&tx, None)? {
                    return Err(StateError::Exists(format!("user {}", mapped.username)));
                }
                tx.execute(
                    "INSERT INTO users (username, password_hash, role, must_change_password, created_at_ms, provider, subject)
                     VALUES (?1, '', ?2, 0, ?3, ?4, ?5)",
                    params![mapped.username, mapped.role.as_str(), now_ms, mapped.provider, mapped.subject],
                )?;
                (tx.last_insert_rowid(), true, false)
            }
        };
        let before: Vec<String> = {
            let mut stmt = tx.prepare("SELECT group_name FROM user_groups WHERE user_id = ?1")?;
            stmt.query_map([id], |r| r.get(0))?
                .collect::<Result<_, _>>()?
        };
        let removed: Vec<&String> = before
            .iter()
            .filter(|g| !mapped.groups.contains(g))
            .collect();
        let added: Vec<&String> = mapped
            .groups
            .iter()
            .filter(|g| !before.contains(g))
            .collect();
        if !created && (!removed.is_empty() || !added.is_empty()) {
            let mut words = String::from("groups");
            for group in &removed {
                words.push_str(&format!(" -{group}"));
            }
            for group in &added {
                words.push_str(&format!(" +{group}"));
            }
            changes.push(words);
        }
        tx.execute("DELETE FROM user_groups WHERE user_id = ?1", [id])?;
        for group in mapped.groups {
            tx.execute(
                "INSERT OR IGNORE INTO user_groups (user_id, group_name) VALUES (?1, ?2)",
                params![id, group],
            )?;
        }
        tx.commit()?;
        Ok(ProviderSignInOutcome {
            user: UserRecord {
                id,
                username: mapped.username.to_owned(),
                role: mapped.role,
                disabled,
                must_change_password: false,
            },
            created,
            changes,
        })
    }

    /// Every provider-owned account's provider and subject, by user id (for the users page).
    pub fn provider_accounts(
        &self,
    ) -> Result<std::collections::HashMap<i64, ProviderAccount>, StateError> {
        let conn = self.lock();
        let mut stmt = conn.prepare(
            "SELECT id, provider, subject FROM users WHERE provider IS NOT NULL AND subject IS NOT NULL",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                ProviderAccount {
                    provider: r.get(1)?,
                    subject: r.get(2)?,
                },
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// True when an admin turned password sign-in off for everyone but admins (provider sign-in
    /// then being the way in; local admin accounts stay for break-glass).
    pub fn password_sign_in_admins_only(&self) -> Result<bool, StateError> {
        let value: Option<String> = self
            .lock()
            .query_row(
                "SELECT value FROM settings WHERE key = 'password_sign_in'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        Ok(value.as_deref() == Some("admins"))
    }

    /// Turns password sign-in off for everyone but admins, or on for everyone.
    pub fn set_password_sign_in_admins_only(&self, admins_only: bool) -> Result<(), StateError> {
        let value = if admins_only { "admins" } else { "everyone" };
        self.lock().execute(
            "INSERT INTO settings (key, value) VALUES ('password_sign_in', ?1) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [value],
        )?;
        Ok(())
    }

    /// The provider that owns an account, if one does.
    pub fn provider_account(&self, user_id: i64) -> Result<Option<ProviderAccount>, StateError> {
        let found: Option<(Option<String>, Option<String>)> = self
            .lock()
            .query_row(
                "SELECT provider, subject FROM users WHERE id = ?1",
                [user_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        Ok(match found {
            Some((Some(provider), Some(subject))) => Some(ProviderAccount { provider, subject }),
            _ => None,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::LoginOutcome;

    fn mapped<'a>(username: &'a str, role: Role, groups: &'a [String]) -> MappedAccount<'a> {
        MappedAccount {
            provider: "TestIdP",
            subject: "sub-1",
            username,
            role,
            groups,
        }
    }

    #[test]
    fn the_first_sign_in_creates_and_later_ones_follow_the_provider() {
        let db = StateDb::open_in_memory().unwrap();
        let eng = ["eng".to_owned(), "ops".to_owned()];
        let first = db
            .sign_in_provider_user(&mapped("alice", Role::User, &eng), 1)
            .unwrap();
        assert!(first.created);
        assert_eq!(db.user_groups(first.user.id).unwrap(), eng);
        assert_eq!(
            db.provider_account(first.user.id).unwrap(),
            Some(ProviderAccount {
                provider: "TestIdP".into(),
                subject: "sub-1".into()
            })
        );
        let fewer = ["eng".to_owned(), "sre".to_owned()];
        let again = db
            .sign_in_provider_user(&mapped("alice2", Role::Admin, &fewer), 2)
            .unwrap();
        assert_eq!(again.user.id, first.user.id);
        assert!(!again.created);
        assert_eq!(
            again.changes,
            [
                "username alice → alice2",
                "role user → admin",
                "groups -ops +sre"
            ]
        );
        assert_eq!(db.user_groups(first.user.id).unwrap(), fewer);
        assert_eq!(db.user(first.user.id).unwrap().unwrap().role, Role::Admin);
        // No password opens a provider account.
        assert_eq!(
            db.verify_login("alice2", "").unwrap(),
            LoginOutcome::Failure
        );
    }

    #[test]
    fn a_local_username_is_never_taken_over() {
        let db = StateDb::open_in_memory().unwrap();
        let local = db
            .create_user("alice", "correct horse battery", Role::Admin, false, 0)
            .unwrap();
        let refused = db.sign_in_provider_user(&mapped("alice", Role::User, &[]), 1);
        assert!(matches!(refused, Err(StateError::Exists(_))), "{refused:?}");
        assert_eq!(db.user_count().unwrap(), 1);
        assert_eq!(db.provider_account(local.id).unwrap(), None);
    }

    #[test]
    fn password_sign_in_can_be_kept_for_admins() {
        let db = StateDb::open_in_memory().unwrap();
        assert!(!db.password_sign_in_admins_only().unwrap());
        db.set_password_sign_in_admins_only(true).unwrap();
        assert!(db.password_sign_in_admins_only().unwrap());
        db.set_password_sign_in_admins_only(false).unwrap();
        assert!(!db.password_sign_in_admins_only().unwrap());
    }

    #[test]
    fn an_account_an_admin_disabled_stays_disabled() {
        let db = StateDb::open_in_memory().unwrap();
        let first = db
            .sign_in_provider_user(&mapped("alice", Role::User, &[]), 1)
            .unwrap();
        db.set_disabled(first.user.id, true).unwrap();
        let again = db
            .sign_in_provider_user(&mapped("alice", Role::User, &[]), 2)
            .unwrap();
        assert!(again.user.disabled);
    }
}
