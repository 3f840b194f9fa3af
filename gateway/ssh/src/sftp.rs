//! Watches an SFTP subsystem channel passing through the SSH proxy and reports file transfers (which
//! file, which way, how many bytes) and changes (remove, rename, mkdir, rmdir, symlink). It reads the two
//! byte streams (the client's requests, the server's responses) without changing them.
//!
//! It is a sans-io parser of hostile bytes, bounded whatever arrives: of each packet it keeps at most
//! [`MAX_HEAD`] bytes (the fields it reads come first; file data is counted, never buffered); a packet
//! longer than [`MAX_PACKET`] (OpenSSH's sftp-server refuses those too), more than [`MAX_OPEN`] open files
//! or [`MAX_PENDING`] unanswered requests are errors, and the caller ends the session: a channel whose
//! transfers cannot be followed is not let through unrecorded.

use std::collections::HashMap;

use sallyport_relay::{FileTransfer, TransferDirection, TransferProtocol};

/// Largest SFTP packet followed: OpenSSH's sftp-server (`SFTP_MAX_MSG_LENGTH`) and client refuse larger.
pub const MAX_PACKET: usize = 256 * 1024;
/// Bytes of a packet kept for parsing: type, id and the fields read (two paths, a handle, lengths).
pub const MAX_HEAD: usize = 9 * 1024;
/// Most files followed at once.
pub const MAX_OPEN: usize = 1024;
/// Most requests awaiting an answer that are followed (OpenSSH's client keeps at most 64 in flight).
pub const MAX_PENDING: usize = 4096;
/// Path names are reported up to this many characters.
const MAX_NAME_CHARS: usize = 1024;

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
pub(crate) fn clean_name(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .take(MAX_NAME_CHARS)
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect()
}

/// One direction's packet framing: the head of the current packet and how much of it is still to come.
#[derive(Debug, Default)]
struct Framer {
    /// Length prefix bytes seen of the next packet (0..4).
    len_bytes: Vec<u8>,
    /// The current packet's length (after the length field), once known.
    len: Option<usize>,
    /// The kept head of the current packet.
    head: Vec<u8>,
    /// Bytes of the current packet consumed so far (kept or skipped).
    seen: usize,
}

/// A whole packet: its kept head and its real length.
struct Packet {
    head: Vec<u8>,
    len: usize,
}

impl Framer {
    /// Feeds bytes; calls `each` for every packet that completes. Errors on a packet too long.
    fn feed(
        &mut self,
        mut bytes: &[u8],
        mut each: impl FnMut(Packet) -> Result<(), String>,
    ) -> Result<(), String> {
        while !bytes.is_empty() {
            let Some(len) = self.len else {
                let want = 4 - self.len_bytes.len();
                let (take, rest) = bytes.split_at(want.min(bytes.len()));
                self.len_bytes.extend_from_slice(take);
                bytes = rest;
                if let [a, b, c, d] = self.len_bytes[..] {
                    let len = u32::from_be_bytes([a, b, c, d]) as usize;
                    if len == 0 || len > MAX_PACKET {
                        return Err(format!(
                            "a packet of {len} bytes (at most {MAX_PACKET} are allowed)"
                        ));
                    }
                    self.len = Some(len);
                    self.len_bytes.clear();
                }
                continue;
            };
            let take = (len - self.seen).min(bytes.len());
            let keep = take.min(MAX_HEAD.saturating_sub(self.head.len()));
            self.head.extend_from_slice(&bytes[..keep]);
            self.seen += take;
            bytes = &bytes[take..];
            if self.seen == len {
                let head = std::mem::take(&mut self.head);
                self.len = None;
                self.seen = 0;
                each(Packet { head, len })?;
            }
        }
        Ok(())
    }
}

/// A cursor over one packet's head.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u32(&mut self) -> Option<u32> {
        let b = self.take(4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Option<u64> {
        let b = self.take(8)?;
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(b);
        Some(u64::from_be_bytes(bytes))
    }
    fn string(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.u32()?).ok()?;
        self.take(len)
    }
    /// The length a string claims, and how many of its bytes the head holds (file data is not kept).
    fn string_len(&mut self) -> Option<u32> {
        self.u32()
    }
}

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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn packet(kind: u8, fields: &[&[u8]]) -> Vec<u8> {
        let body: Vec<u8> = fields.concat();
        let mut out = ((body.len() + 1) as u32).to_be_bytes().to_vec();
        out.push(kind);
        out.extend(body);
        out
    }

    fn string(s: &[u8]) -> Vec<u8> {
        [(s.len() as u32).to_be_bytes().as_slice(), s].concat()
    }

    fn id(n: u32) -> Vec<u8> {
        n.to_be_bytes().to_vec()
    }

    fn transfer(
        direction: TransferDirection,
        path: &str,
        bytes: u64,
        complete: bool,
    ) -> TransferEvent {
        TransferEvent::Transfer(FileTransfer {
            protocol: TransferProtocol::Sftp,
            direction,
            path: path.into(),
            name: String::new(),
            bytes,
            complete,
        })
    }

    #[test]
    fn uploads_downloads_and_changes_are_reported_across_splits() {
        let big = vec![7u8; 200_000];
        let client = [
            packet(
                FXP_OPEN,
                &[
                    &id(1),
                    &string(b"/tmp/up.bin"),
                    &0x1au32.to_be_bytes(),
                    &[0; 4],
                ],
            ),
            packet(
                FXP_WRITE,
                &[&id(2), &string(b"H1"), &0u64.to_be_bytes(), &string(&big)],
            ),
            packet(
                FXP_WRITE,
                &[
                    &id(3),
                    &string(b"H1"),
                    &200_000u64.to_be_bytes(),
                    &string(&[7; 24]),
                ],
            ),
            packet(FXP_CLOSE, &[&id(4), &string(b"H1")]),
            packet(
                FXP_OPEN,
                &[
                    &id(5),
                    &string(b"/etc/host\x1bname"),
                    &1u32.to_be_bytes(),
                    &[0; 4],
                ],
            ),
            packet(
                FXP_READ,
                &[
                    &id(6),
                    &string(b"H2"),
                    &0u64.to_be_bytes(),
                    &32768u32.to_be_bytes(),
                ],
            ),
            packet(FXP_CLOSE, &[&id(7), &string(b"H2")]),
            packet(FXP_REMOVE, &[&id(8), &string(b"/tmp/up.bin")]),
            packet(
                FXP_EXTENDED,
                &[
                    &id(9),
                    &string(b"posix-rename@openssh.com"),
                    &string(b"/a"),
                    &string(b"/b"),
                ],
            ),
            packet(
                FXP_OPEN,
                &[
                    &id(10),
                    &string(b"/tmp/cut"),
                    &0x1au32.to_be_bytes(),
                    &[0; 4],
                ],
            ),
            packet(
                FXP_WRITE,
                &[
                    &id(11),
                    &string(b"H3"),
                    &0u64.to_be_bytes(),
                    &string(&[1; 10]),
                ],
            ),
        ];
        let server = [
            packet(FXP_HANDLE, &[&id(1), &string(b"H1")]),
            packet(FXP_HANDLE, &[&id(5), &string(b"H2")]),
            packet(FXP_DATA, &[&id(6), &string(b"gateway\n")]),
            packet(FXP_HANDLE, &[&id(10), &string(b"H3")]),
        ];
        let mut watch = SftpWatch::default();
        let mut events = Vec::new();
        // Requests and answers interleave as on the wire; bytes arrive in odd pieces.
        let order = [
            (0, true),
            (0, false),
            (1, true),
            (2, true),
            (3, true),
            (4, true),
            (1, false),
            (5, true),
            (2, false),
            (6, true),
            (7, true),
            (8, true),
            (9, true),
            (3, false),
            (10, true),
        ];
        for (index, from_client) in order {
            let bytes = if from_client {
                &client[index]
            } else {
                &server[index]
            };
            for piece in bytes.chunks(7777) {
                if from_client {
                    events.extend(watch.client_bytes(piece).unwrap());
                } else {
                    watch.server_bytes(piece).unwrap();
                }
            }
        }
        events.extend(watch.finish());
        assert_eq!(
            events,
            vec![
                transfer(TransferDirection::Upload, "/tmp/up.bin", 200_024, true),
                transfer(
                    TransferDirection::Download,
                    "/etc/host\u{fffd}name",
                    8,
                    true
                ),
                TransferEvent::Change("remove /tmp/up.bin".into()),
                TransferEvent::Change("rename /a to /b".into()),
                transfer(TransferDirection::Upload, "/tmp/cut", 10, false),
            ]
        );
        assert_eq!(
            events[0].to_string(),
            "file transfer (sftp): upload /tmp/up.bin, 200024 bytes"
        );
        // Nothing of the file data was kept.
        assert!(watch.requests.head.capacity() <= MAX_HEAD);
    }

    #[test]
    fn a_packet_over_the_limit_is_an_error() {
        let mut watch = SftpWatch::default();
        let error = watch
            .client_bytes(&[0x00, 0x10, 0x00, 0x01, 3])
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "client broke the sftp protocol: a packet of 1048577 bytes (at most 262144 are allowed)"
        );
        let mut watch = SftpWatch::default();
        assert!(watch.server_bytes(&[0, 0, 0, 0]).is_err());
    }

    #[test]
    fn too_many_open_files_or_pending_requests_are_errors() {
        let mut watch = SftpWatch::default();
        for n in 0..MAX_OPEN as u32 {
            let name = format!("/f{n}");
            watch
                .client_bytes(&packet(
                    FXP_OPEN,
                    &[
                        &id(n),
                        &string(name.as_bytes()),
                        &1u32.to_be_bytes(),
                        &[0; 4],
                    ],
                ))
                .unwrap();
            watch
                .server_bytes(&packet(FXP_HANDLE, &[&id(n), &string(name.as_bytes())]))
                .unwrap();
        }
        watch
            .client_bytes(&packet(
                FXP_OPEN,
                &[
                    &id(99_999),
                    &string(b"/one-more"),
                    &1u32.to_be_bytes(),
                    &[0; 4],
                ],
            ))
            .unwrap();
        let error = watch
            .server_bytes(&packet(FXP_HANDLE, &[&id(99_999), &string(b"X")]))
            .unwrap_err();
        assert!(error.what.contains("files open at once"), "{error}");

        let mut watch = SftpWatch::default();
        let mut result = Ok(Vec::new());
        for n in 0..=MAX_PENDING as u32 {
            result = watch.client_bytes(&packet(
                FXP_OPEN,
                &[&id(n), &string(b"/x"), &1u32.to_be_bytes(), &[0; 4]],
            ));
        }
        assert!(result.unwrap_err().what.contains("unanswered"));
    }

    #[test]
    fn random_bytes_never_panic_and_memory_stays_bounded() {
        let mut watch = SftpWatch::default();
        let mut seed = 7u64;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let bytes = seed.to_be_bytes();
            // Small lengths keep the framer inside the limit most of the time, so parsing is reached.
            let piece = [
                0,
                0,
                0,
                bytes[0] % 40,
                bytes[1] % 8,
                bytes[2],
                bytes[3],
                bytes[4],
            ];
            if watch.client_bytes(&piece).is_err() {
                watch = SftpWatch::default();
            }
            if watch.server_bytes(&bytes).is_err() {
                watch = SftpWatch::default();
            }
            assert!(
                watch.requests.head.len() <= MAX_HEAD && watch.responses.head.len() <= MAX_HEAD
            );
            assert!(watch.files.len() <= MAX_OPEN && watch.opening.len() <= MAX_PENDING);
        }
    }
}
