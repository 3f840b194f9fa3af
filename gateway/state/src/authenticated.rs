//! The one place a user becomes [`Authenticated`]: a [`UserRecord`] the state database just read for
//! a credential that was checked. Kept apart from `users.rs` so that the constructor's one caller is
//! easy to find (tidy checks that nothing else calls [`Authenticated::new`]).

use sallyport_core::policy::Authenticated;

use crate::UserRecord;

impl UserRecord {
    /// This user as [`Authenticated`]: call it only on a record just read for a credential that was
    /// checked (the password, a login session, a client certificate) and found enabled.
    pub fn authenticated(&self) -> Authenticated {
        Authenticated::new(self.id, self.username.clone(), self.role)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use sallyport_core::policy::Role;

    use crate::StateDb;

    #[test]
    fn a_stored_user_is_authenticated_as_itself() {
        let state = StateDb::open_in_memory().unwrap();
        let record = state
            .create_user("alice", "correct horse battery", Role::Auditor, false, 0)
            .unwrap();
        let user = record.authenticated();
        assert_eq!(
            (user.user_id(), user.username(), user.role()),
            (record.id, "alice", Role::Auditor)
        );
    }
}
