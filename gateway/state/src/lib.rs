//! Sallyport's state database: users (local, and those an identity provider owns), their TOTP and passkeys, targets, networks, pinned host keys, the CLI's client
//! certificates, each user's last use of each target, and audit events.
//!
//! One SQLite file (WAL) on the data partition, schema migrated by `PRAGMA user_version`. The API is
//! synchronous and quick; the one slow call, password verification (argon2id), is meant to be run on a
//! blocking thread by async callers. This crate never talks to the network and never stores a target
//! credential: target passwords and keys pass through the gateway without touching this database.

mod admin;
mod audit;
mod authenticated;
mod client_certs;
mod db;
mod mfa;
mod passkeys;
mod password_work;
mod provider_users;
mod target_use;
mod users;

pub use admin::{PinnedKey, PolicyRecord};
pub use audit::{AuditEvent, AuditFilter, AuditRecord};
pub use client_certs::ClientCertRecord;
pub use db::{HostKeyPin, NetworkRecord, StateDb, StateError, TargetRecord, TargetSpec};
pub use mfa::TotpState;
pub use passkeys::{PASSKEY_HANDLE_LEN, PasskeyRecord};
pub use password_work::{
    BUSY_RETRY_AFTER_SECONDS, BUSY_WORDS, PasswordWorkFigures, password_work_figures,
};
pub use provider_users::{MappedAccount, ProviderAccount, ProviderSignInOutcome};
pub use target_use::TargetUse;
pub use users::{LoginOutcome, UserRecord, random_password};
