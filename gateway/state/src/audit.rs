//! Audit events: who did what, from where, to which target, kept in the state database.
//!
//! The gateway also emits each event to the log (journald on the appliance) on the `audit` target; this
//! module is the durable copy admins query.

use rusqlite::params;

use crate::db::{StateDb, StateError};

/// One audit event to store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditEvent {
    /// What happened: `login`, `login_failed`, `logout`, `connect`, `connect_refused`, `disconnect`,
    /// `host_key_pinned`, `host_key_mismatch`, `user_created`, `password_changed`.
    pub kind: String,
    /// The portal user who acted, if known.
    pub actor: Option<String>,
    /// The client's address.
    pub client_addr: Option<String>,
    /// The target name, if any.
    pub target: Option<String>,
    /// The recording's session id, if any.
    pub session_id: Option<String>,
    /// Free detail (reason, error).
    pub detail: Option<String>,
}

/// A stored audit event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// When (unix ms).
    pub at_ms: u64,
    /// The event.
    pub event: AuditEvent,
}

impl StateDb {
    /// Stores an audit event.
    pub fn audit(&self, at_ms: u64, event: &AuditEvent) -> Result<(), StateError> {
        self.lock().execute(
            "INSERT INTO audit_events (at_ms, kind, actor, client_addr, target, session_id, detail)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                at_ms,
                event.kind,
                event.actor,
                event.client_addr,
                event.target,
                event.session_id,
                event.detail
            ],
        )?;
        Ok(())
    }

    /// The newest `limit` audit events, newest first.
    pub fn recent_audit(&self, limit: u32) -> Result<Vec<AuditRecord>, StateError> {
        let conn = self.lock();
        let mut stmt = conn.prepare(
            "SELECT at_ms, kind, actor, client_addr, target, session_id, detail FROM audit_events
             ORDER BY id DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map([limit], |r| {
            Ok(AuditRecord {
                at_ms: r.get(0)?,
                event: AuditEvent {
                    kind: r.get(1)?,
                    actor: r.get(2)?,
                    client_addr: r.get(3)?,
                    target: r.get(4)?,
                    session_id: r.get(5)?,
                    detail: r.get(6)?,
                },
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
