//! Client certificates issued to the `sallyport` CLI: which user each belongs to, until when, and
//! whether it was revoked (logout, or any revocation of the user).
//!
//! Certificates are identified by the SHA-256 of their DER, so the gateway needs no X.509 parser to
//! map a presented certificate to its user.

use rusqlite::{OptionalExtension, params};

use crate::db::{StateDb, StateError};

/// An issued client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertRecord {
    /// SHA-256 of the certificate's DER, lowercase hex.
    pub fingerprint: String,
    /// The user it was issued to.
    pub user_id: i64,
    /// When it was issued (unix ms).
    pub issued_at_ms: u64,
    /// When it expires (unix ms).
    pub expires_at_ms: u64,
    /// When it was revoked (unix ms), if it was.
    pub revoked_at_ms: Option<u64>,
}

impl ClientCertRecord {
    /// Usable at `now_ms`: not revoked and not expired.
    pub fn valid_at(&self, now_ms: u64) -> bool {
        self.revoked_at_ms.is_none() && now_ms < self.expires_at_ms
    }
}

impl StateDb {
    /// Records a newly issued certificate, and forgets certificates that expired over a day ago.
    pub fn add_client_cert(&self, record: &ClientCertRecord) -> Result<(), StateError> {
        let conn = self.lock();
        conn.execute(
            "DELETE FROM client_certs WHERE expires_at_ms < ?1",
            [record.issued_at_ms.saturating_sub(24 * 3600 * 1000)],
        )?;
        conn.execute(
            "INSERT INTO client_certs (fingerprint, user_id, issued_at_ms, expires_at_ms, revoked_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                record.fingerprint,
                record.user_id,
                record.issued_at_ms,
                record.expires_at_ms,
                record.revoked_at_ms
            ],
        )?;
        Ok(())
    }

    /// The certificate with this fingerprint, if it was issued here.
    pub fn client_cert(&self, fingerprint: &str) -> Result<Option<ClientCertRecord>, StateError> {
        Ok(self
            .lock()
            .query_row(
                "SELECT fingerprint, user_id, issued_at_ms, expires_at_ms, revoked_at_ms
                 FROM client_certs WHERE fingerprint = ?1",
                [fingerprint],
                |r| {
                    Ok(ClientCertRecord {
                        fingerprint: r.get(0)?,
                        user_id: r.get(1)?,
                        issued_at_ms: r.get(2)?,
                        expires_at_ms: r.get(3)?,
                        revoked_at_ms: r.get(4)?,
                    })
                },
            )
            .optional()?)
    }

    /// Revokes one certificate (the CLI's logout). True if it was valid until now.
    pub fn revoke_client_cert(&self, fingerprint: &str, now_ms: u64) -> Result<bool, StateError> {
        Ok(self.lock().execute(
            "UPDATE client_certs SET revoked_at_ms = ?2 WHERE fingerprint = ?1 AND revoked_at_ms IS NULL",
            params![fingerprint, now_ms],
        )? > 0)
    }

    /// Revokes every certificate of a user (logout in the browser, password change, disable, role
    /// change, MFA reset). Returns how many were still unrevoked.
    pub fn revoke_user_client_certs(&self, user_id: i64, now_ms: u64) -> Result<usize, StateError> {
        Ok(self.lock().execute(
            "UPDATE client_certs SET revoked_at_ms = ?2 WHERE user_id = ?1 AND revoked_at_ms IS NULL",
            params![user_id, now_ms],
        )?)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use sallyport_core::policy::Role;

    use super::*;

    #[test]
    fn certificates_are_issued_revoked_and_purged() {
        let db = StateDb::open_in_memory().unwrap();
        let user = db
            .create_user("alice", "pw-long-enough", Role::User, false, 0)
            .unwrap();
        let record = |fingerprint: &str, issued: u64| ClientCertRecord {
            fingerprint: fingerprint.into(),
            user_id: user.id,
            issued_at_ms: issued,
            expires_at_ms: issued + 1000,
            revoked_at_ms: None,
        };
        db.add_client_cert(&record("aa", 0)).unwrap();
        db.add_client_cert(&record("bb", 10)).unwrap();
        let aa = db.client_cert("aa").unwrap().unwrap();
        assert!(aa.valid_at(999) && !aa.valid_at(1000));
        assert!(db.revoke_client_cert("aa", 5).unwrap());
        assert!(!db.revoke_client_cert("aa", 6).unwrap());
        assert!(!db.client_cert("aa").unwrap().unwrap().valid_at(7));
        assert_eq!(db.revoke_user_client_certs(user.id, 8).unwrap(), 1);
        assert!(!db.client_cert("bb").unwrap().unwrap().valid_at(9));
        assert_eq!(db.client_cert("cc").unwrap(), None);
        // A day after they expired, old certificates are forgotten when a new one is issued.
        db.add_client_cert(&record("cc", 100_000_000)).unwrap();
        assert_eq!(db.client_cert("aa").unwrap(), None);
        // Deleting the user deletes their certificates.
        db.delete_user(user.id).unwrap();
        assert_eq!(db.client_cert("cc").unwrap(), None);
    }
}
