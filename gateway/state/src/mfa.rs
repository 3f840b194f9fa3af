//! Stored MFA state: each user's TOTP secret, the last accepted step (replay protection), hashed
//! recovery codes, and which roles must use a second factor or a passkey.

use rusqlite::{OptionalExtension, params};
use sallyport_core::policy::Role;
use sha2::{Digest, Sha256};

use crate::db::{StateDb, StateError};

/// A user's enrolled TOTP.
#[derive(Clone, PartialEq, Eq)]
pub struct TotpState {
    /// The shared secret.
    pub secret: Vec<u8>,
    /// The last step a code was accepted for.
    pub last_step: Option<u64>,
}

impl std::fmt::Debug for TotpState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TotpState")
            .field("secret", &"<redacted>")
            .field("last_step", &self.last_step)
            .finish()
    }
}

/// Recovery codes are random (80 bits), so a plain SHA-256 is enough to keep them unreadable at rest.
fn hash_code(normalized: &str) -> String {
    hex::encode(Sha256::digest(normalized.as_bytes()))
}

impl StateDb {
    /// The user's TOTP, if enrolled.
    pub fn totp(&self, user_id: i64) -> Result<Option<TotpState>, StateError> {
        let row: Option<(Option<Vec<u8>>, Option<u64>)> = self
            .lock()
            .query_row(
                "SELECT totp_secret, totp_last_step FROM users WHERE id = ?1",
                [user_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        Ok(
            row.and_then(|(secret, last_step)| {
                secret.map(|secret| TotpState { secret, last_step })
            }),
        )
    }

    /// Enrolls TOTP with `secret` and replaces the recovery codes (given normalized, stored hashed).
    pub fn enable_totp(
        &self,
        user_id: i64,
        secret: &[u8],
        accepted_step: u64,
        recovery_codes: &[String],
    ) -> Result<(), StateError> {
        let hashes = recovery_codes
            .iter()
            .map(|c| hash_code(c))
            .collect::<Vec<_>>()
            .join(",");
        self.lock().execute(
            "UPDATE users SET totp_secret = ?1, totp_last_step = ?2, recovery_codes = ?3 WHERE id = ?4",
            params![secret, accepted_step, hashes, user_id],
        )?;
        Ok(())
    }

    /// Removes a user's TOTP and recovery codes (an admin's "reset MFA").
    pub fn reset_totp(&self, user_id: i64) -> Result<(), StateError> {
        self.lock().execute(
            "UPDATE users SET totp_secret = NULL, totp_last_step = NULL, recovery_codes = '' WHERE id = ?1",
            [user_id],
        )?;
        Ok(())
    }

    /// Records that a code for `step` was accepted; false when that step (or a later one) was used
    /// already, which makes the code a replay.
    pub fn accept_totp_step(&self, user_id: i64, step: u64) -> Result<bool, StateError> {
        let changed = self.lock().execute(
            "UPDATE users SET totp_last_step = ?1 WHERE id = ?2 AND (totp_last_step IS NULL OR totp_last_step < ?1)",
            params![step, user_id],
        )?;
        Ok(changed == 1)
    }

    /// Consumes a recovery code (normalized); true when it was valid and unused.
    pub fn use_recovery_code(&self, user_id: i64, normalized: &str) -> Result<bool, StateError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let stored: Option<String> = tx
            .query_row(
                "SELECT recovery_codes FROM users WHERE id = ?1",
                [user_id],
                |r| r.get(0),
            )
            .optional()?;
        let Some(stored) = stored else {
            return Ok(false);
        };
        let wanted = hash_code(normalized);
        let codes: Vec<&str> = stored.split(',').filter(|c| !c.is_empty()).collect();
        if !codes.contains(&wanted.as_str()) {
            return Ok(false);
        }
        let rest = codes
            .into_iter()
            .filter(|c| *c != wanted)
            .collect::<Vec<_>>()
            .join(",");
        tx.execute(
            "UPDATE users SET recovery_codes = ?1 WHERE id = ?2",
            params![rest, user_id],
        )?;
        tx.commit()?;
        Ok(true)
    }

    /// Roles whose users must use a second factor (TOTP or a passkey).
    pub fn mfa_required_roles(&self) -> Result<Vec<Role>, StateError> {
        self.roles_setting("mfa_required_roles")
    }

    /// Sets the roles whose users must use a second factor.
    pub fn set_mfa_required_roles(&self, roles: &[Role]) -> Result<(), StateError> {
        self.set_roles_setting("mfa_required_roles", roles)
    }

    /// Roles whose users must sign in with a passkey (TOTP is not enough for them).
    pub fn passkey_required_roles(&self) -> Result<Vec<Role>, StateError> {
        self.roles_setting("passkey_required_roles")
    }

    /// Sets the roles whose users must sign in with a passkey.
    pub fn set_passkey_required_roles(&self, roles: &[Role]) -> Result<(), StateError> {
        self.set_roles_setting("passkey_required_roles", roles)
    }

    fn roles_setting(&self, key: &str) -> Result<Vec<Role>, StateError> {
        let value: Option<String> = self
            .lock()
            .query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()?;
        Ok(value
            .unwrap_or_default()
            .split(',')
            .filter_map(Role::parse)
            .collect())
    }

    fn set_roles_setting(&self, key: &str, roles: &[Role]) -> Result<(), StateError> {
        let value = roles
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join(",");
        self.lock().execute(
            "INSERT INTO settings (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [key, value.as_str()],
        )?;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn enroll_replay_recovery_reset_and_roles() {
        let db = StateDb::open_in_memory().unwrap();
        let user = db
            .create_user("erin", "pw-erin-1234567", Role::User, false, 1)
            .unwrap();
        assert_eq!(db.totp(user.id).unwrap(), None);
        db.enable_totp(user.id, &[7; 20], 100, &["aaaa".into(), "bbbb".into()])
            .unwrap();
        assert_eq!(
            db.totp(user.id).unwrap(),
            Some(TotpState {
                secret: vec![7; 20],
                last_step: Some(100)
            })
        );
        assert!(
            !db.accept_totp_step(user.id, 100).unwrap(),
            "the enrollment step must not be reusable"
        );
        assert!(db.accept_totp_step(user.id, 101).unwrap());
        assert!(db.use_recovery_code(user.id, "aaaa").unwrap());
        assert!(
            !db.use_recovery_code(user.id, "aaaa").unwrap(),
            "a recovery code works once"
        );
        assert!(!db.use_recovery_code(user.id, "cccc").unwrap());
        let stored: String = db
            .lock()
            .query_row("SELECT recovery_codes FROM users", [], |r| r.get(0))
            .unwrap();
        assert!(
            !stored.contains("bbbb"),
            "recovery codes must be stored hashed"
        );
        db.reset_totp(user.id).unwrap();
        assert_eq!(db.totp(user.id).unwrap(), None);
        assert!(!db.use_recovery_code(user.id, "bbbb").unwrap());
        assert!(db.mfa_required_roles().unwrap().is_empty());
        db.set_mfa_required_roles(&[Role::Admin, Role::User])
            .unwrap();
        assert_eq!(
            db.mfa_required_roles().unwrap(),
            vec![Role::Admin, Role::User]
        );
        assert!(db.passkey_required_roles().unwrap().is_empty());
        db.set_passkey_required_roles(&[Role::Admin]).unwrap();
        assert_eq!(db.passkey_required_roles().unwrap(), vec![Role::Admin]);
        assert_eq!(
            db.mfa_required_roles().unwrap(),
            vec![Role::Admin, Role::User],
            "the two settings are separate"
        );
    }
}
