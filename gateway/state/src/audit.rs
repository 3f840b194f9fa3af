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

/// A filter over audit events; empty fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Acting user.
    pub actor: Option<String>,
    /// Target name.
    pub target: Option<String>,
    /// Event kind.
    pub kind: Option<String>,
    /// From this time (unix ms), inclusive.
    pub from_ms: Option<u64>,
    /// Until this time (unix ms), inclusive.
    pub to_ms: Option<u64>,
    /// Only events older than this event id (the next page, newest first).
    pub before_id: Option<i64>,
    /// Only events newer than this event id (the previous page: the oldest `limit` of them, still
    /// returned newest first).
    pub after_id: Option<i64>,
    /// At most this many, newest first.
    pub limit: u32,
}

/// A stored audit event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// The event's id: it grows with every event stored, so pages are keyed on it.
    pub id: i64,
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

    /// Audit events matching `filter`, newest first.
    pub fn audit_query(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>, StateError> {
        // A previous page walks up from `after_id`, so it is read oldest first and turned around.
        let order = if filter.after_id.is_some() {
            "ASC"
        } else {
            "DESC"
        };
        let conn = self.lock();
        let mut stmt = conn.prepare(&format!(
            "SELECT id, at_ms, kind, actor, client_addr, target, session_id, detail FROM audit_events
             WHERE (?1 IS NULL OR actor = ?1) AND (?2 IS NULL OR target = ?2) AND (?3 IS NULL OR kind = ?3)
               AND (?4 IS NULL OR at_ms >= ?4) AND (?5 IS NULL OR at_ms <= ?5)
               AND (?6 IS NULL OR id < ?6) AND (?7 IS NULL OR id > ?7)
             ORDER BY id {order} LIMIT ?8"
        ))?;
        let rows = stmt.query_map(
            params![
                filter.actor,
                filter.target,
                filter.kind,
                filter.from_ms,
                filter.to_ms,
                filter.before_id,
                filter.after_id,
                filter.limit.max(1)
            ],
            record_from_row,
        )?;
        let mut records = rows.collect::<Result<Vec<_>, _>>()?;
        if filter.after_id.is_some() {
            records.reverse();
        }
        Ok(records)
    }
}

impl StateDb {
    /// The newest `limit` events of any of `kinds`, newest first (the dashboard's recent sign-ins and
    /// refusals). No kinds: no events.
    pub fn audit_recent(&self, kinds: &[&str], limit: u32) -> Result<Vec<AuditRecord>, StateError> {
        if kinds.is_empty() {
            return Ok(Vec::new());
        }
        let marks = vec!["?"; kinds.len()].join(", ");
        let conn = self.lock();
        let mut stmt = conn.prepare(&format!(
            "SELECT id, at_ms, kind, actor, client_addr, target, session_id, detail FROM audit_events
             WHERE kind IN ({marks}) ORDER BY id DESC LIMIT {}",
            limit.max(1)
        ))?;
        let rows = stmt.query_map(rusqlite::params_from_iter(kinds), record_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// One row of `SELECT id, at_ms, kind, actor, client_addr, target, session_id, detail`.
fn record_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuditRecord> {
    Ok(AuditRecord {
        id: r.get(0)?,
        at_ms: r.get(1)?,
        event: AuditEvent {
            kind: r.get(2)?,
            actor: r.get(3)?,
            client_addr: r.get(4)?,
            target: r.get(5)?,
            session_id: r.get(6)?,
            detail: r.get(7)?,
        },
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn audit_filters() {
        let db = StateDb::open_in_memory().unwrap();
        for (at, kind, actor) in [
            (10, "login", "a"),
            (20, "login_failed", "b"),
            (30, "connect", "a"),
        ] {
            db.audit(
                at,
                &AuditEvent {
                    kind: kind.into(),
                    actor: Some(actor.into()),
                    ..AuditEvent::default()
                },
            )
            .unwrap();
        }
        let all = AuditFilter {
            limit: 100,
            ..AuditFilter::default()
        };
        assert_eq!(db.audit_query(&all).unwrap().len(), 3);
        let by_a = AuditFilter {
            actor: Some("a".into()),
            ..all.clone()
        };
        assert_eq!(
            db.audit_query(&by_a)
                .unwrap()
                .iter()
                .map(|r| r.at_ms)
                .collect::<Vec<_>>(),
            vec![30, 10]
        );
        let window = AuditFilter {
            from_ms: Some(15),
            to_ms: Some(25),
            ..all.clone()
        };
        assert_eq!(
            db.audit_query(&window).unwrap()[0].event.kind,
            "login_failed"
        );
    }

    #[test]
    fn pages_walk_back_and_forth_on_the_event_id() {
        let db = StateDb::open_in_memory().unwrap();
        for at in 1..=7 {
            db.audit(
                at,
                &AuditEvent {
                    kind: if at % 2 == 0 { "even" } else { "odd" }.into(),
                    ..AuditEvent::default()
                },
            )
            .unwrap();
        }
        let times = |filter: &AuditFilter| {
            db.audit_query(filter)
                .unwrap()
                .iter()
                .map(|r| r.at_ms)
                .collect::<Vec<_>>()
        };
        let first = AuditFilter {
            kind: Some("odd".into()),
            limit: 2,
            ..AuditFilter::default()
        };
        let page = db.audit_query(&first).unwrap();
        assert_eq!(page.iter().map(|r| r.at_ms).collect::<Vec<_>>(), [7, 5]);
        let next = AuditFilter {
            before_id: Some(page[1].id),
            ..first.clone()
        };
        let second = db.audit_query(&next).unwrap();
        assert_eq!(second.iter().map(|r| r.at_ms).collect::<Vec<_>>(), [3, 1]);
        // Back from the second page: the page just newer than its first event, newest first.
        let previous = AuditFilter {
            after_id: Some(second[0].id),
            ..first.clone()
        };
        assert_eq!(times(&previous), [7, 5]);
        let previous_of_one = AuditFilter {
            after_id: Some(second[1].id),
            limit: 1,
            ..first.clone()
        };
        assert_eq!(times(&previous_of_one), [3]);
    }

    #[test]
    fn recent_events_of_several_kinds_newest_first() {
        let db = StateDb::open_in_memory().unwrap();
        for (at, kind) in [
            (1, "login"),
            (2, "connect"),
            (3, "login_failed"),
            (4, "login"),
        ] {
            db.audit(
                at,
                &AuditEvent {
                    kind: kind.into(),
                    ..AuditEvent::default()
                },
            )
            .unwrap();
        }
        let times = |kinds: &[&str], limit| {
            db.audit_recent(kinds, limit)
                .unwrap()
                .iter()
                .map(|r| r.at_ms)
                .collect::<Vec<_>>()
        };
        assert_eq!(times(&["login", "login_failed"], 10), [4, 3, 1]);
        assert_eq!(times(&["login", "login_failed"], 2), [4, 3]);
        assert_eq!(times(&[], 10), Vec::<u64>::new());
    }
}
