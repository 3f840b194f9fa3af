//! Stored passkeys (WebAuthn credentials): several per user, each with a name the user chose, the
//! credential as the WebAuthn library serialized it (opaque here: this crate checks no signatures),
//! and each user's random WebAuthn user handle, by which a discoverable passkey names its account.
//!
//! The credential is rewritten after every sign-in because it carries the authenticator's signature
//! counter, which is how a cloned authenticator shows itself.

use rusqlite::{OptionalExtension, params};

use crate::db::{StateDb, StateError};

/// Length of a WebAuthn user handle (a UUID's bytes).
pub const PASSKEY_HANDLE_LEN: usize = 16;

/// One stored passkey.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasskeyRecord {
    /// Row id.
    pub id: i64,
    /// The user it signs in.
    pub user_id: i64,
    /// The name its owner gave it ("laptop", "YubiKey 5").
    pub name: String,
    /// The credential id the authenticator chose.
    pub credential_id: Vec<u8>,
    /// The WebAuthn library's serialized credential (public key, counter, flags).
    pub credential: String,
    /// When it was registered.
    pub created_ms: u64,
    /// When it last signed in.
    pub last_used_ms: Option<u64>,
}

const COLUMNS: &str = "id, user_id, name, credential_id, credential, created_ms, last_used_ms";

fn record_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<PasskeyRecord> {
    Ok(PasskeyRecord {
        id: row.get(0)?,
        user_id: row.get(1)?,
        name: row.get(2)?,
        credential_id: row.get(3)?,
        credential: row.get(4)?,
        created_ms: row.get(5)?,
        last_used_ms: row.get(6)?,
    })
}

impl StateDb {
    /// The user's WebAuthn user handle, made (random) the first time it is asked for.
    pub fn passkey_handle(&self, user_id: i64) -> Result<[u8; PASSKEY_HANDLE_LEN], StateError> {
        let conn = self.lock();
        let stored: Option<Option<Vec<u8>>> = conn
            .query_row(
                "SELECT passkey_handle FROM users WHERE id = ?1",
                [user_id],
                |r| r.get(0),
            )
            .optional()?;
        let Some(stored) = stored else {
            return Err(StateError::Invalid(format!("no user {user_id}")));
        };
        if let Some(handle) = stored.and_then(|h| <[u8; PASSKEY_HANDLE_LEN]>::try_from(h).ok()) {
            return Ok(handle);
        }
        let mut handle = [0u8; PASSKEY_HANDLE_LEN];
        getrandom::fill(&mut handle)
            .map_err(|_| StateError::Invalid("no randomness for the passkey handle".into()))?;
        conn.execute(
            "UPDATE users SET passkey_handle = ?1 WHERE id = ?2",
            params![handle.as_slice(), user_id],
        )?;
        Ok(handle)
    }

    /// The user whose WebAuthn user handle is `handle`.
    pub fn user_by_passkey_handle(&self, handle: &[u8]) -> Result<Option<i64>, StateError> {
        Ok(self
            .lock()
            .query_row(
                "SELECT id FROM users WHERE passkey_handle = ?1",
                [handle],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Stores a newly registered passkey; a name the user already gave another one is
    /// [`StateError::Exists`], and so is a credential already registered (to anyone).
    pub fn add_passkey(
        &self,
        user_id: i64,
        name: &str,
        credential_id: &[u8],
        credential: &str,
        now_ms: u64,
    ) -> Result<PasskeyRecord, StateError> {
        let conn = self.lock();
        let taken: bool = conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM passkeys WHERE (user_id = ?1 AND name = ?2) OR credential_id = ?3)",
            params![user_id, name, credential_id],
            |r| r.get(0),
        )?;
        if taken {
            return Err(StateError::Exists(format!("a passkey named {name}")));
        }
        conn.execute(
            "INSERT INTO passkeys (user_id, name, credential_id, credential, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![user_id, name, credential_id, credential, now_ms],
        )?;
        Ok(PasskeyRecord {
            id: conn.last_insert_rowid(),
            user_id,
            name: name.to_owned(),
            credential_id: credential_id.to_vec(),
            credential: credential.to_owned(),
            created_ms: now_ms,
            last_used_ms: None,
        })
    }

    /// The user's passkeys, oldest first.
    pub fn passkeys(&self, user_id: i64) -> Result<Vec<PasskeyRecord>, StateError> {
        let conn = self.lock();
        let mut statement = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM passkeys WHERE user_id = ?1 ORDER BY id"
        ))?;
        let rows = statement.query_map([user_id], record_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Whether the user has a passkey (asked at every page, so without reading the credentials).
    pub fn has_passkeys(&self, user_id: i64) -> Result<bool, StateError> {
        Ok(self.lock().query_row(
            "SELECT EXISTS (SELECT 1 FROM passkeys WHERE user_id = ?1)",
            [user_id],
            |r| r.get(0),
        )?)
    }

    /// The passkey with `credential_id`, whoever owns it.
    pub fn passkey_by_credential_id(
        &self,
        credential_id: &[u8],
    ) -> Result<Option<PasskeyRecord>, StateError> {
        Ok(self
            .lock()
            .query_row(
                &format!("SELECT {COLUMNS} FROM passkeys WHERE credential_id = ?1"),
                [credential_id],
                record_from_row,
            )
            .optional()?)
    }

    /// Records a sign-in with passkey `id`: its credential as updated (the new counter) and the time.
    pub fn passkey_used(&self, id: i64, credential: &str, now_ms: u64) -> Result<(), StateError> {
        self.lock().execute(
            "UPDATE passkeys SET credential = ?1, last_used_ms = ?2 WHERE id = ?3",
            params![credential, now_ms, id],
        )?;
        Ok(())
    }

    /// Removes the user's passkey `id`; returns its name, or `None` when the user has no such passkey.
    pub fn remove_passkey(&self, user_id: i64, id: i64) -> Result<Option<String>, StateError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let name: Option<String> = tx
            .query_row(
                "SELECT name FROM passkeys WHERE id = ?1 AND user_id = ?2",
                params![id, user_id],
                |r| r.get(0),
            )
            .optional()?;
        if name.is_some() {
            tx.execute("DELETE FROM passkeys WHERE id = ?1", [id])?;
        }
        tx.commit()?;
        Ok(name)
    }

    /// Removes all of a user's passkeys (an admin's "reset MFA"); returns how many there were.
    pub fn reset_passkeys(&self, user_id: i64) -> Result<usize, StateError> {
        Ok(self
            .lock()
            .execute("DELETE FROM passkeys WHERE user_id = ?1", [user_id])?)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use sallyport_core::policy::Role;

    #[test]
    fn passkeys_are_per_user_named_updated_and_removable() {
        let db = StateDb::open_in_memory().unwrap();
        let erin = db
            .create_user("erin", "pw-erin-1234567", Role::User, false, 1)
            .unwrap();
        let finn = db
            .create_user("finn", "pw-finn-1234567", Role::User, false, 1)
            .unwrap();
        let handle = db.passkey_handle(erin.id).unwrap();
        assert_eq!(db.passkey_handle(erin.id).unwrap(), handle, "made once");
        assert_ne!(db.passkey_handle(finn.id).unwrap(), handle);
        assert_eq!(db.user_by_passkey_handle(&handle).unwrap(), Some(erin.id));
        assert!(db.passkey_handle(999).is_err());

        let laptop = db
            .add_passkey(erin.id, "laptop", b"cred-1", "{}", 10)
            .unwrap();
        db.add_passkey(erin.id, "key", b"cred-2", "{}", 11).unwrap();
        assert!(matches!(
            db.add_passkey(erin.id, "laptop", b"cred-3", "{}", 12),
            Err(StateError::Exists(_))
        ));
        assert!(matches!(
            db.add_passkey(finn.id, "phone", b"cred-1", "{}", 12),
            Err(StateError::Exists(_))
        ));
        db.add_passkey(finn.id, "laptop", b"cred-4", "{}", 12)
            .unwrap();
        let names: Vec<String> = db
            .passkeys(erin.id)
            .unwrap()
            .into_iter()
            .map(|p| p.name)
            .collect();
        assert_eq!(names, ["laptop", "key"]);
        assert!(db.has_passkeys(erin.id).unwrap());

        db.passkey_used(laptop.id, "{\"counter\":2}", 20).unwrap();
        let found = db.passkey_by_credential_id(b"cred-1").unwrap().unwrap();
        assert_eq!(found.credential, "{\"counter\":2}");
        assert_eq!(found.last_used_ms, Some(20));
        assert_eq!(found.user_id, erin.id);

        assert_eq!(db.remove_passkey(finn.id, laptop.id).unwrap(), None);
        assert_eq!(
            db.remove_passkey(erin.id, laptop.id).unwrap().as_deref(),
            Some("laptop")
        );
        assert_eq!(db.passkey_by_credential_id(b"cred-1").unwrap(), None);
        assert_eq!(db.reset_passkeys(erin.id).unwrap(), 1);
        assert!(!db.has_passkeys(erin.id).unwrap());
        db.delete_user(finn.id).unwrap();
        assert_eq!(db.passkey_by_credential_id(b"cred-4").unwrap(), None);
    }
}
