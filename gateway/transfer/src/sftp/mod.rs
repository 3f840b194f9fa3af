//! Follows an SFTP subsystem channel passing through the SSH proxy and reports file transfers (which
//! file, which way, how many bytes) and changes (remove, rename, mkdir, rmdir, symlink). It reads the two
//! byte streams (the client's requests, the server's responses) without changing them.
//!
//! It is a sans-io parser of hostile bytes, bounded whatever arrives: of each packet it keeps at most
//! [`MAX_HEAD`] bytes (the fields it reads come first; file data is counted, never buffered); a packet
//! longer than [`MAX_PACKET`] (OpenSSH's sftp-server refuses those too), more than [`MAX_OPEN`] open files
//! or [`MAX_PENDING`] unanswered requests are errors, and the caller ends the session: a channel whose
//! transfers cannot be followed is not let through unrecorded. Framing and field reading are in `packet`; this
//! file tracks requests, handles and files.

use std::collections::HashMap;

use sallyport_recordings::{FileTransfer, TransferDirection, TransferProtocol};

use crate::{TransferEvent, WatchError, clean_name};

mod packet;
#[cfg(test)]
mod tests;

use packet::{Fields, Framer, Packet};
pub use packet::{MAX_HEAD, MAX_PACKET};

/// Most files followed at once.
pub const MAX_OPEN: usize = 1024;
/// Most requests awaiting an answer that are followed (OpenSSH's client keeps at most 64 in flight).
pub const MAX_PENDING: usize = 4096;

const FXP_OPEN: u8 = 3;
const FXP_CLOSE: u8 = 4;
const FXP_READ: u8 = 5;
const FXP_WRITE: u8 = 6;
const FXP_REMOVE: u8 = 13;
const FXP_MKDIR: u8 = 14;
const FXP_RMDIR: u8 = 15;
const FXP_RENAME: u8 = 18;
const FXP_SYMLINK: u8 = 20;
const FXP_STATUS: u8 = 101;
const FXP_HANDLE: u8 = 102;
const FXP_DATA: u8 = 103;
const FXP_EXTENDED: u8 = 200;
const FXF_READ: u32 = 0x01;
const FXF_WRITE: u32 = 0x02;

#[derive(Debug)]
struct OpenFile {
    name: String,
    read: bool,
    write: bool,
    written: u64,
    read_bytes: u64,
    reads_asked: bool,
}

/// Follows one SFTP channel.
#[derive(Debug, Default)]
pub struct SftpWatch {
    requests: Framer,
    responses: Framer,
    /// OPEN requests awaiting their handle: id → (path, read, write).
    opening: HashMap<u32, (String, bool, bool)>,
    /// READ requests awaiting data: id → handle.
    reading: HashMap<u32, Vec<u8>>,
    /// Open files by handle.
    files: HashMap<Vec<u8>, OpenFile>,
}

impl SftpWatch {
    /// Bytes from the client (requests), before they are passed on.
    pub fn client_bytes(&mut self, bytes: &[u8]) -> Result<Vec<TransferEvent>, WatchError> {
        let mut out = Vec::new();
        let mut requests = std::mem::take(&mut self.requests);
        let result = requests.feed(bytes, |packet| self.request(&packet, &mut out));
        self.requests = requests;
        result.map_err(|what| WatchError {
            side: "client",
            protocol: "sftp",
            what,
        })?;
        Ok(out)
    }

    /// Bytes from the target (responses), before they are passed on.
    pub fn server_bytes(&mut self, bytes: &[u8]) -> Result<(), WatchError> {
        let mut responses = std::mem::take(&mut self.responses);
        let result = responses.feed(bytes, |packet| self.response(&packet));
        self.responses = responses;
        result.map_err(|what| WatchError {
            side: "target",
            protocol: "sftp",
            what,
        })
    }

    /// The channel ended: files still open were cut off.
    pub fn finish(&mut self) -> Vec<TransferEvent> {
        let mut files: Vec<OpenFile> = self.files.drain().map(|(_, file)| file).collect();
        files.sort_by(|a, b| a.name.cmp(&b.name));
        files
            .into_iter()
            .flat_map(|file| transfers(file, false))
            .collect()
    }

    fn request(&mut self, packet: &Packet, out: &mut Vec<TransferEvent>) -> Result<(), String> {
        let mut fields = Fields(&packet.head);
        let (Some(kind), Some(id)) = (fields.u8(), fields.u32()) else {
            return Ok(());
        };
        match kind {
            FXP_OPEN => {
                if let (Some(name), Some(flags)) = (fields.string(), fields.u32()) {
                    if self.opening.len() >= MAX_PENDING {
                        return Err(format!("more than {MAX_PENDING} unanswered requests"));
                    }
                    self.opening.insert(
                        id,
                        (
                            clean_name(name),
                            flags & FXF_READ != 0,
                            flags & FXF_WRITE != 0,
                        ),
                    );
                }
            }
            FXP_WRITE => {
                if let (Some(handle), Some(_offset), Some(claimed)) =
                    (fields.string(), fields.u64(), fields.string_len())
                    && let Some(file) = self.files.get_mut(handle)
                {
                    // The data is what the packet really carries after its header, whatever the field says.
                    let header = 1 + 4 + 4 + handle.len() + 8 + 4;
                    let carried = packet.len.saturating_sub(header) as u64;
                    file.written = file.written.saturating_add(u64::from(claimed).min(carried));
                }
            }
            FXP_READ => {
                if let Some(handle) = fields.string()
                    && let Some(file) = self.files.get_mut(handle)
                {
                    file.reads_asked = true;
                    if self.reading.len() >= MAX_PENDING {
                        return Err(format!("more than {MAX_PENDING} unanswered requests"));
                    }
                    self.reading.insert(id, handle.to_vec());
                }
            }
            FXP_CLOSE => {
                if let Some(handle) = fields.string()
                    && let Some(file) = self.files.remove(handle)
                {
                    out.extend(transfers(file, true));
                }
            }
            FXP_REMOVE => {
                if let Some(name) = fields.string() {
                    out.push(TransferEvent::Change(format!(
                        "remove {}",
                        clean_name(name)
                    )));
                }
            }
            FXP_MKDIR | FXP_RMDIR => {
                if let Some(name) = fields.string() {
                    let verb = if kind == FXP_MKDIR { "mkdir" } else { "rmdir" };
                    out.push(TransferEvent::Change(format!(
                        "{verb} {}",
                        clean_name(name)
                    )));
                }
            }
            FXP_RENAME => {
                if let (Some(from), Some(to)) = (fields.string(), fields.string()) {
                    out.push(TransferEvent::Change(format!(
                        "rename {} to {}",
                        clean_name(from),
                        clean_name(to)
                    )));
                }
            }
            FXP_SYMLINK => {
                // OpenSSH sends (target, link) in the reverse of the draft's order; name both.
                if let (Some(a), Some(b)) = (fields.string(), fields.string()) {
                    out.push(TransferEvent::Change(format!(
                        "symlink {} and {}",
                        clean_name(a),
                        clean_name(b)
                    )));
                }
            }
            FXP_EXTENDED => {
                if let Some(name) = fields.string() {
                    match name {
                        b"posix-rename@openssh.com" => {
                            if let (Some(from), Some(to)) = (fields.string(), fields.string()) {
                                out.push(TransferEvent::Change(format!(
                                    "rename {} to {}",
                                    clean_name(from),
                                    clean_name(to)
                                )));
                            }
                        }
                        b"hardlink@openssh.com" => {
                            if let (Some(from), Some(to)) = (fields.string(), fields.string()) {
                                out.push(TransferEvent::Change(format!(
                                    "hardlink {} to {}",
                                    clean_name(to),
                                    clean_name(from)
                                )));
                            }
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn response(&mut self, packet: &Packet) -> Result<(), String> {
        let mut fields = Fields(&packet.head);
        let (Some(kind), Some(id)) = (fields.u8(), fields.u32()) else {
            return Ok(());
        };
        match kind {
            FXP_HANDLE => {
                if let (Some((name, read, write)), Some(handle)) =
                    (self.opening.remove(&id), fields.string())
                {
                    if self.files.len() >= MAX_OPEN && !self.files.contains_key(handle) {
                        return Err(format!("more than {MAX_OPEN} files open at once"));
                    }
                    self.files.insert(
                        handle.to_vec(),
                        OpenFile {
                            name,
                            read,
                            write,
                            written: 0,
                            read_bytes: 0,
                            reads_asked: false,
                        },
                    );
                }
            }
            FXP_DATA => {
                if let (Some(handle), Some(claimed)) =
                    (self.reading.remove(&id), fields.string_len())
                    && let Some(file) = self.files.get_mut(&handle)
                {
                    let carried = packet.len.saturating_sub(1 + 4 + 4) as u64;
                    file.read_bytes = file
                        .read_bytes
                        .saturating_add(u64::from(claimed).min(carried));
                }
            }
            FXP_STATUS => {
                // A status answers the request (an error, or the end of a file): forget it.
                self.opening.remove(&id);
                self.reading.remove(&id);
            }
            _ => {
                self.opening.remove(&id);
                self.reading.remove(&id);
            }
        }
        Ok(())
    }
}

/// The transfers a closed (or cut-off) file stands for: an upload when it was opened for writing or
/// written to, a download when it was read from (a file opened both ways may be both).
fn transfers(file: OpenFile, complete: bool) -> Vec<TransferEvent> {
    let mut out = Vec::new();
    let make = |direction, bytes| {
        TransferEvent::Transfer(FileTransfer {
            protocol: TransferProtocol::Sftp,
            direction,
            path: file.name.clone(),
            name: String::new(),
            bytes,
            complete,
        })
    };
    if file.write || file.written > 0 {
        out.push(make(TransferDirection::Upload, file.written));
    }
    if (file.read && !file.write) || file.reads_asked || file.read_bytes > 0 {
        out.push(make(TransferDirection::Download, file.read_bytes));
    }
    out
}
