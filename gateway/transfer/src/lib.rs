//! Sans-io watchers of file transfers through the SSH proxy: [`sftp::SftpWatch`] follows an SFTP subsystem
//! channel, [`scp::ScpWatch`] a legacy scp (`scp -t` / `scp -f`) exec channel. They read copies of the bytes
//! that pass (never change them) and report [`TransferEvent`]s; hostile bytes give a [`WatchError`], bounded
//! in memory whatever arrives. No I/O and no async runtime: the SSH proxy feeds them, and the fuzz target
//! `ssh_transfers` drives them directly.

pub mod scp;
pub mod sftp;

use sallyport_recordings::FileTransfer;

/// Path names are reported up to this many characters.
const MAX_NAME_CHARS: usize = 1024;

/// What a watcher saw worth recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferEvent {
    /// A file was closed (or cut off) after it was opened for reading or writing.
    Transfer(FileTransfer),
    /// A file or directory was removed, renamed, made or linked (the words say which).
    Change(String),
}

impl std::fmt::Display for TransferEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TransferEvent::Transfer(transfer) => transfer.fmt(f),
            TransferEvent::Change(what) => write!(f, "file change: {what}"),
        }
    }
}

/// Why a transfer channel could not be followed (the session is ended).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{side} broke the {protocol} protocol: {what}")]
pub struct WatchError {
    /// `client` or `target`.
    pub side: &'static str,
    /// `sftp` or `scp`.
    pub protocol: &'static str,
    /// What was wrong.
    pub what: String,
}

/// A path as reported: lossy UTF-8, control characters replaced, bounded.
pub fn clean_name(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .take(MAX_NAME_CHARS)
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect()
}
