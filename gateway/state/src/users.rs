//! Portal users: creation, argon2id password hashes, login verification without user enumeration.

use std::sync::OnceLock;

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier, phc::PasswordHash};
use rusqlite::{OptionalExtension, params};
use sallyport_core::policy::Role;

use crate::db::{StateDb, StateError};
use crate::password_work::with_password_slot;

/// A portal user as stored (without the password hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// Row id.
    pub id: i64,
    /// Login name.
    pub username: String,
    /// Role.
    pub role: Role,
    /// Disabled users cannot log in.
    pub disabled: bool,
    /// The password is one-time and must be replaced at the next login.
    pub must_change_password: bool,
}

/// The result of a login attempt. Unknown users and wrong passwords are the same outcome on purpose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginOutcome {
    /// The password matched an enabled user.
    Success(UserRecord),
    /// Unknown user, wrong password or disabled user.
    Failure,
}

/// A random password of 20 characters from an alphabet without look-alikes (about 116 bits), for
/// one-time passwords that are shown once.
pub fn random_password() -> Result<String, StateError> {
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut bytes = [0u8; 20];
    getrandom::fill(&mut bytes).map_err(|e| StateError::Hash(format!("no randomness: {e}")))?;
    // 256 is not a multiple of 57; the bias (under 2%) does not matter at this length.
    Ok(bytes
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect())
}

fn hash_password(password: &str) -> Result<String, StateError> {
    with_password_slot(|| argon2id_hash(password))?
}

fn argon2id_hash(password: &str) -> Result<String, StateError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|e| StateError::Hash(e.to_string()))
}

/// A hash to verify against when the user does not exist, so that an unknown user costs the same
/// argon2 work as a known one and timing does not reveal which usernames exist.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    // Outside the bound: it runs once per process, and a refusal here would leave no dummy.
    DUMMY.get_or_init(|| argon2id_hash("sallyport-dummy-password").unwrap_or_default())
}

fn password_matches(password: &str, stored: &str) -> Result<bool, StateError> {
    let Ok(parsed) = PasswordHash::new(stored) else {
        return Ok(false);
    };
    with_password_slot(|| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

impl StateDb {
    /// Number of users.
    pub fn user_count(&self) -> Result<u64, StateError> {
        Ok(self
            .lock()
            .query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0))?)
    }

    /// Creates a user with an argon2id hash of `password`.
    pub fn create_user(
        &self,
        username: &str,
        password: &str,
        role: Role,
        must_change_password: bool,
        now_ms: u64,
    ) -> Result<UserRecord, StateError> {
        let hash = hash_password(password)?;
        let conn = self.lock();
        let inserted = conn.execute(
            "INSERT INTO users (username, password_hash, role, must_change_password, created_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT(username) DO NOTHING",
            params![username, hash, role.as_str(), must_change_password, now_ms],
        )?;
        if inserted == 0 {
            return Err(StateError::Exists(format!("user {username}")));
        }
        Ok(UserRecord {
            id: conn.last_insert_rowid(),
            username: username.to_owned(),
            role,
            disabled: false,
            must_change_password,
        })
    }

    /// Checks a login. Slow on purpose (argon2id) and bounded (see `password_work`): call it from a
    /// blocking thread in async code. [`StateError::Busy`] when too many run at once.
    pub fn verify_login(&self, username: &str, password: &str) -> Result<LoginOutcome, StateError> {
        let found = {
            let conn = self.lock();
            conn.query_row(
                "SELECT id, username, role, disabled, must_change_password, password_hash FROM users WHERE username = ?1",
                [username],
                |r| Ok((user_from_row(r)?, r.get::<_, String>(5)?)),
            )
            .optional()?
        };
        match found {
            // An account an identity provider owns has no password: the same work as a wrong one.
            Some((_, hash)) if hash.is_empty() => {
                password_matches(password, dummy_hash())?;
                Ok(LoginOutcome::Failure)
            }
            Some((user, hash)) => {
                let user = user?;
                if password_matches(password, &hash)? && !user.disabled {
                    Ok(LoginOutcome::Success(user))
                } else {
                    Ok(LoginOutcome::Failure)
                }
            }
            None => {
                password_matches(password, dummy_hash())?;
                Ok(LoginOutcome::Failure)
            }
        }
    }

    /// One user by id.
    pub fn user(&self, id: i64) -> Result<Option<UserRecord>, StateError> {
        let conn = self.lock();
        let found = conn
            .query_row(
                "SELECT id, username, role, disabled, must_change_password FROM users WHERE id = ?1",
                [id],
                user_from_row,
            )
            .optional()?;
        found.transpose()
    }

    /// Sets a new password and clears the one-time flag.
    pub fn set_password(&self, id: i64, password: &str) -> Result<(), StateError> {
        let hash = hash_password(password)?;
        self.lock().execute(
            "UPDATE users SET password_hash = ?1, must_change_password = 0 WHERE id = ?2",
            params![hash, id],
        )?;
        Ok(())
    }
}

fn user_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Result<UserRecord, StateError>> {
    let role: String = row.get(2)?;
    Ok(match Role::parse(&role) {
        Some(role) => Ok(UserRecord {
            id: row.get(0)?,
            username: row.get(1)?,
            role,
            disabled: row.get(3)?,
            must_change_password: row.get(4)?,
        }),
        None => Err(StateError::Invalid(format!("user role {role}"))),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn login_checks_password_and_hides_unknown_users() {
        let db = StateDb::open_in_memory().unwrap();
        let alice = db
            .create_user("alice", "correct horse", Role::User, false, 1)
            .unwrap();
        assert_eq!(
            db.verify_login("alice", "correct horse").unwrap(),
            LoginOutcome::Success(alice.clone())
        );
        assert_eq!(
            db.verify_login("alice", "wrong").unwrap(),
            LoginOutcome::Failure
        );
        assert_eq!(
            db.verify_login("mallory", "correct horse").unwrap(),
            LoginOutcome::Failure
        );
        assert!(matches!(
            db.create_user("alice", "x", Role::User, false, 2),
            Err(StateError::Exists(_))
        ));
        db.set_password(alice.id, "new one").unwrap();
        assert_eq!(
            db.verify_login("alice", "correct horse").unwrap(),
            LoginOutcome::Failure
        );
        assert!(matches!(
            db.verify_login("alice", "new one").unwrap(),
            LoginOutcome::Success(_)
        ));
        let stored: String = db
            .lock()
            .query_row("SELECT password_hash FROM users", [], |r| r.get(0))
            .unwrap();
        assert!(stored.starts_with("$argon2id$"), "{stored}");
    }
}
