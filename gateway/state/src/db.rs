//! The database handle, schema migrations, targets, networks and pinned host keys.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use ipnet::IpNet;
use rusqlite::{Connection, OptionalExtension, params};
use sallyport_core::policy::{Protocol, TargetRef};

/// Errors of the state database.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// SQLite failed.
    #[error("state database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A stored value is not what the schema promises.
    #[error("state database holds an invalid value: {0}")]
    Invalid(String),
    /// Password hashing failed.
    #[error("password hashing failed: {0}")]
    Hash(String),
    /// Too many password hashes or verifications at once; the words say to try again shortly.
    #[error("{0}")]
    Busy(String),
    /// A name is already taken.
    #[error("{0} already exists")]
    Exists(String),
    /// The database was written by a newer Sallyport.
    #[error("state database schema version {0} is newer than this gateway understands ({1})")]
    TooNew(i64, i64),
}

/// Schema migrations, applied in order; `user_version` counts how many ran.
const MIGRATIONS: &[&str] = &[
    r#"
    CREATE TABLE users (
        id INTEGER PRIMARY KEY,
        username TEXT NOT NULL UNIQUE,
        password_hash TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('admin', 'auditor', 'user')),
        disabled INTEGER NOT NULL DEFAULT 0,
        must_change_password INTEGER NOT NULL DEFAULT 0,
        created_at_ms INTEGER NOT NULL
    );
    CREATE TABLE networks (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        cidr TEXT NOT NULL UNIQUE,
        source TEXT NOT NULL
    );
    CREATE TABLE targets (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        host TEXT NOT NULL,
        port INTEGER NOT NULL CHECK (port BETWEEN 1 AND 65535),
        protocol TEXT NOT NULL,
        source TEXT NOT NULL
    );
    CREATE TABLE host_keys (
        target_id INTEGER PRIMARY KEY REFERENCES targets(id) ON DELETE CASCADE,
        public_key TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        first_seen_ms INTEGER NOT NULL
    );
    CREATE TABLE audit_events (
        id INTEGER PRIMARY KEY,
        at_ms INTEGER NOT NULL,
        kind TEXT NOT NULL,
        actor TEXT,
        client_addr TEXT,
        target TEXT,
        session_id TEXT,
        detail TEXT
    );
    CREATE INDEX audit_events_at ON audit_events(at_ms);
"#,
    r#"
    ALTER TABLE targets ADD COLUMN tags TEXT NOT NULL DEFAULT '';
    CREATE TABLE user_groups (
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        group_name TEXT NOT NULL,
        PRIMARY KEY (user_id, group_name)
    );
    CREATE TABLE policies (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        subjects TEXT NOT NULL,
        targets TEXT NOT NULL,
        protocols TEXT NOT NULL
    );
"#,
    r#"
    ALTER TABLE users ADD COLUMN totp_secret BLOB;
    ALTER TABLE users ADD COLUMN totp_last_step INTEGER;
    ALTER TABLE users ADD COLUMN recovery_codes TEXT NOT NULL DEFAULT '';
    CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"#,
    r#"
    ALTER TABLE networks ADD COLUMN connect_by_ip INTEGER NOT NULL DEFAULT 0;
"#,
    r#"
    CREATE TABLE client_certs (
        fingerprint TEXT PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        issued_at_ms INTEGER NOT NULL,
        expires_at_ms INTEGER NOT NULL,
        revoked_at_ms INTEGER
    );
    CREATE INDEX client_certs_user ON client_certs(user_id);
"#,
    r#"
    ALTER TABLE policies ADD COLUMN forwarding INTEGER NOT NULL DEFAULT 0;
"#,
    r#"
    ALTER TABLE policies ADD COLUMN clipboard TEXT NOT NULL DEFAULT 'both';
"#,
    r#"
    CREATE TABLE target_use (
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        target_id INTEGER NOT NULL REFERENCES targets(id) ON DELETE CASCADE,
        last_used_ms INTEGER NOT NULL,
        target_username TEXT,
        PRIMARY KEY (user_id, target_id)
    );
"#,
    // Accounts an identity provider owns: keyed by provider and subject; their password hash is empty.
    r#"
    ALTER TABLE users ADD COLUMN provider TEXT;
    ALTER TABLE users ADD COLUMN subject TEXT;
    CREATE UNIQUE INDEX users_provider_subject ON users(provider, subject);
"#,
    // Passkeys (WebAuthn credentials): the library's serialized credential, kept opaque here, and
    // each user's random WebAuthn user handle (a passkey names its account by it, not by the row id).
    r#"
    ALTER TABLE users ADD COLUMN passkey_handle BLOB;
    CREATE TABLE passkeys (
        id INTEGER PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        credential_id BLOB NOT NULL UNIQUE,
        credential TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        last_used_ms INTEGER,
        UNIQUE (user_id, name)
    );
"#,
];

/// A handle to the state database, cheap to clone and shareable between threads.
#[derive(Clone)]
pub struct StateDb {
    conn: Arc<Mutex<Connection>>,
}

/// A target as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetRecord {
    /// Row id.
    pub id: i64,
    /// Display name, unique.
    pub name: String,
    /// IP literal or DNS name, as written by the admin.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Protocol.
    pub protocol: Protocol,
    /// Labels for policies.
    pub tags: Vec<String>,
}

impl TargetRecord {
    /// The view of this target the policy decides on.
    pub fn to_ref(&self) -> TargetRef {
        TargetRef {
            id: self.id,
            name: self.name.clone(),
            host: self.host.clone(),
            port: self.port,
            protocol: self.protocol,
            tags: self.tags.clone(),
            networks: Vec::new(),
        }
    }
}

/// A target as declared in configuration or by an admin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetSpec {
    /// Display name, unique.
    pub name: String,
    /// IP literal or DNS name.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Protocol.
    pub protocol: Protocol,
    /// Labels for policies.
    pub tags: Vec<String>,
}

/// Tags are stored as one comma-separated column.
pub(crate) fn join_tags(tags: &[String]) -> String {
    tags.iter()
        .map(|t| t.trim())
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join(",")
}

pub(crate) fn split_tags(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A network targets may live in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkRecord {
    /// Display name.
    pub name: String,
    /// The address range.
    pub cidr: IpNet,
    /// Users may type an address inside this network instead of picking a named target.
    pub connect_by_ip: bool,
}

/// A pinned SSH host key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostKeyPin {
    /// OpenSSH public key line (`ssh-ed25519 AAAA...`).
    pub public_key: String,
    /// `SHA256:...` fingerprint.
    pub fingerprint: String,
    /// When it was first seen (unix ms).
    pub first_seen_ms: u64,
}

impl StateDb {
    /// Opens (creating if needed) the database at `path` and migrates it.
    pub fn open(path: &Path) -> Result<StateDb, StateError> {
        let conn = Connection::open(path)?;
        Self::with_connection(conn)
    }

    /// An in-memory database, for tests.
    pub fn open_in_memory() -> Result<StateDb, StateError> {
        Self::with_connection(Connection::open_in_memory()?)
    }

    fn with_connection(mut conn: Connection) -> Result<StateDb, StateError> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", true)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
        let known = MIGRATIONS.len() as i64;
        if version > known {
            return Err(StateError::TooNew(version, known));
        }
        for (index, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = conn.transaction()?;
            tx.execute_batch(migration)?;
            tx.pragma_update(None, "user_version", index as i64 + 1)?;
            tx.commit()?;
        }
        Ok(StateDb {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent (transactions roll back), so
        // a poisoned lock is still usable.
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Replaces the networks that came from configuration with `networks`.
    pub fn sync_config_networks(&self, networks: &[NetworkRecord]) -> Result<(), StateError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        tx.execute("DELETE FROM networks WHERE source = 'config'", [])?;
        for net in networks {
            tx.execute(
                "INSERT INTO networks (name, cidr, connect_by_ip, source) VALUES (?1, ?2, ?3, 'config')
                 ON CONFLICT(cidr) DO UPDATE SET name = excluded.name, connect_by_ip = excluded.connect_by_ip",
                params![net.name, net.cidr.to_string(), net.connect_by_ip],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// All networks.
    pub fn networks(&self) -> Result<Vec<NetworkRecord>, StateError> {
        let conn = self.lock();
        let mut stmt =
            conn.prepare("SELECT name, cidr, connect_by_ip FROM networks ORDER BY id")?;
        let rows = stmt.query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, bool>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (name, cidr, connect_by_ip) = row?;
            let cidr = cidr
                .parse()
                .map_err(|_| StateError::Invalid(format!("network cidr {cidr}")))?;
            out.push(NetworkRecord {
                name,
                cidr,
                connect_by_ip,
            });
        }
        Ok(out)
    }

    /// Makes the configuration's targets exist with the given address, port and protocol. Targets that
    /// left the configuration are removed (with their pinned keys); a target whose address changed
    /// loses its pinned key, since it is another machine now.
    pub fn sync_config_targets(&self, targets: &[TargetSpec]) -> Result<(), StateError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let existing: Vec<(i64, String, String, u16)> = {
            let mut stmt =
                tx.prepare("SELECT id, name, host, port FROM targets WHERE source = 'config'")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
            rows.collect::<Result<_, _>>()?
        };
        for (id, name, host, port) in &existing {
            match targets.iter().find(|t| &t.name == name) {
                None => {
                    tx.execute("DELETE FROM targets WHERE id = ?1", [id])?;
                }
                Some(spec) if &spec.host != host || spec.port != *port => {
                    tx.execute("DELETE FROM host_keys WHERE target_id = ?1", [id])?;
                }
                Some(_) => {}
            }
        }
        for spec in targets {
            tx.execute(
                "INSERT INTO targets (name, host, port, protocol, tags, source) VALUES (?1, ?2, ?3, ?4, ?5, 'config')
                 ON CONFLICT(name) DO UPDATE SET host = excluded.host, port = excluded.port,
                    protocol = excluded.protocol, tags = excluded.tags, source = 'config'",
                params![spec.name, spec.host, spec.port, spec.protocol.as_str(), join_tags(&spec.tags)],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// All targets, by name.
    pub fn targets(&self) -> Result<Vec<TargetRecord>, StateError> {
        let conn = self.lock();
        let mut stmt =
            conn.prepare("SELECT id, name, host, port, protocol, tags FROM targets ORDER BY name")?;
        let rows = stmt.query_map([], target_from_row)?;
        let mut out = Vec::new();
        for row in rows {
            out.push(row??);
        }
        Ok(out)
    }

    /// One target by id.
    pub fn target(&self, id: i64) -> Result<Option<TargetRecord>, StateError> {
        let conn = self.lock();
        let found = conn
            .query_row(
                "SELECT id, name, host, port, protocol, tags FROM targets WHERE id = ?1",
                [id],
                target_from_row,
            )
            .optional()?;
        found.transpose()
    }

    /// The pinned host key of a target, if any.
    pub fn pinned_host_key(&self, target_id: i64) -> Result<Option<HostKeyPin>, StateError> {
        let conn = self.lock();
        Ok(conn
            .query_row(
                "SELECT public_key, fingerprint, first_seen_ms FROM host_keys WHERE target_id = ?1",
                [target_id],
                |r| {
                    Ok(HostKeyPin {
                        public_key: r.get(0)?,
                        fingerprint: r.get(1)?,
                        first_seen_ms: r.get(2)?,
                    })
                },
            )
            .optional()?)
    }

    /// Pins a host key unless one is pinned already; returns whether this call pinned it.
    pub fn pin_host_key(&self, target_id: i64, pin: &HostKeyPin) -> Result<bool, StateError> {
        let conn = self.lock();
        let changed = conn.execute(
            "INSERT INTO host_keys (target_id, public_key, fingerprint, first_seen_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(target_id) DO NOTHING",
            params![target_id, pin.public_key, pin.fingerprint, pin.first_seen_ms],
        )?;
        Ok(changed == 1)
    }

    /// Forgets a target's pinned host key.
    pub fn forget_host_key(&self, target_id: i64) -> Result<(), StateError> {
        self.lock()
            .execute("DELETE FROM host_keys WHERE target_id = ?1", [target_id])?;
        Ok(())
    }

    /// Runs `PRAGMA integrity_check`; true when SQLite answers "ok".
    pub fn integrity_check(&self) -> Result<bool, StateError> {
        let answer: String = self
            .lock()
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
        Ok(answer == "ok")
    }
}

fn target_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Result<TargetRecord, StateError>> {
    let protocol: String = row.get(4)?;
    Ok(match Protocol::parse(&protocol) {
        Some(protocol) => Ok(TargetRecord {
            id: row.get(0)?,
            name: row.get(1)?,
            host: row.get(2)?,
            port: row.get(3)?,
            protocol,
            tags: split_tags(&row.get::<_, String>(5)?),
        }),
        None => Err(StateError::Invalid(format!("target protocol {protocol}"))),
    })
}
