//! Watches an SFTP subsystem channel passing through the SSH proxy and reports file transfers: which
//! file, which way, how many bytes. It reads the two byte streams (client requests, server responses)
//! without changing them, parses only packet headers and the fields it needs, and is bounded: a packet
//! larger than [`MAX_PACKET`] or more than [`MAX_OPEN`] files open at once make it stop watching (and
//! say so) rather than grow.

use std::collections::HashMap;

/// Largest SFTP packet it follows (OpenSSH sends at most 256 KiB).
pub const MAX_PACKET: usize = 512 * 1024;
/// Most files followed at once.
pub const MAX_OPEN: usize = 1024;

const FXP_OPEN: u8 = 3;
const FXP_CLOSE: u8 = 4;
const FXP_READ: u8 = 5;
const FXP_WRITE: u8 = 6;
const FXP_REMOVE: u8 = 13;
const FXP_RENAME: u8 = 18;
const FXP_HANDLE: u8 = 102;
const FXP_DATA: u8 = 103;
const FXF_WRITE: u32 = 0x02;

#[derive(Debug, Default)]
struct OpenFile {
    name: String,
    write: bool,
    written: u64,
    read: u64,
}

/// What the watcher saw worth recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SftpEvent {
    /// A file was closed after data went through it.
    Transfer {
        /// The path the client named.
        name: String,
        /// `upload` (client to target) or `download`.
        direction: &'static str,
        /// Bytes moved.
        bytes: u64,
    },
    /// A file was removed or renamed.
    Change(String),
    /// The watcher stopped following this channel (and why).
    GaveUp(String),
}

impl std::fmt::Display for SftpEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SftpEvent::Transfer {
                name,
                direction,
                bytes,
            } => write!(f, "file transfer: {direction} {name} ({bytes} bytes)"),
            SftpEvent::Change(what) => write!(f, "file change: {what}"),
            SftpEvent::GaveUp(why) => write!(f, "sftp watching stopped: {why}"),
        }
    }
}

/// Follows one SFTP channel.
#[derive(Debug, Default)]
pub struct SftpWatch {
    requests: Vec<u8>,
    responses: Vec<u8>,
    opening: HashMap<u32, (String, bool)>,
    reading: HashMap<u32, Vec<u8>>,
    files: HashMap<Vec<u8>, OpenFile>,
    stopped: bool,
}

/// A cursor over one packet's fields.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = rest;
        Some(head)
    }
    fn u32(&mut self) -> Option<u32> {
        let b = self.take(4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Option<u64> {
        let high = u64::from(self.u32()?);
        let low = u64::from(self.u32()?);
        Some(high << 32 | low)
    }
    fn string(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.u32()?).ok()?;
        self.take(len)
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .take(1024)
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect()
}

/// Splits complete packets off `buffer`, calling `each` with (type, body after the type byte).
fn packets(buffer: &mut Vec<u8>, mut each: impl FnMut(u8, &[u8])) -> Result<(), String> {
    loop {
        let Some(len) = buffer.get(..4) else {
            return Ok(());
        };
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        if len == 0 || len > MAX_PACKET {
            return Err(format!("a packet of {len} bytes"));
        }
        if buffer.len() < 4 + len {
            return Ok(());
        }
        each(buffer[4], &buffer[5..4 + len]);
        buffer.drain(..4 + len);
    }
}

impl SftpWatch {
    fn give_up(&mut self, why: String, out: &mut Vec<SftpEvent>) {
        self.stopped = true;
        self.requests = Vec::new();
        self.responses = Vec::new();
        self.files.clear();
        out.push(SftpEvent::GaveUp(why));
    }

    /// Bytes from the client (requests).
    pub fn client_bytes(&mut self, bytes: &[u8]) -> Vec<SftpEvent> {
        let mut out = Vec::new();
        if self.stopped {
            return out;
        }
        self.requests.extend_from_slice(bytes);
        let mut requests = std::mem::take(&mut self.requests);
        let result = packets(&mut requests, |kind, body| {
            self.request(kind, body, &mut out)
        });
        self.requests = requests;
        if let Err(why) = result {
            self.give_up(why, &mut out);
        }
        if self.files.len() + self.opening.len() > MAX_OPEN || self.reading.len() > 64 * MAX_OPEN {
            self.give_up("too many open files".into(), &mut out);
        }
        out
    }

    /// Bytes from the target (responses).
    pub fn server_bytes(&mut self, bytes: &[u8]) -> Vec<SftpEvent> {
        let mut out = Vec::new();
        if self.stopped {
            return out;
        }
        self.responses.extend_from_slice(bytes);
        let mut responses = std::mem::take(&mut self.responses);
        let result = packets(&mut responses, |kind, body| self.response(kind, body));
        self.responses = responses;
        if let Err(why) = result {
            self.give_up(why, &mut out);
        }
        out
    }

    fn request(&mut self, kind: u8, body: &[u8], out: &mut Vec<SftpEvent>) {
        let mut fields = Fields(body);
        let Some(id) = fields.u32() else { return };
        match kind {
            FXP_OPEN => {
                if let (Some(name), Some(flags)) = (fields.string(), fields.u32()) {
                    self.opening
                        .insert(id, (text(name), flags & FXF_WRITE != 0));
                }
            }
            FXP_WRITE => {
                if let (Some(handle), Some(_offset), Some(data)) =
                    (fields.string(), fields.u64(), fields.string())
                    && let Some(file) = self.files.get_mut(handle)
                {
                    file.written += data.len() as u64;
                }
            }
            FXP_READ => {
                if let Some(handle) = fields.string() {
                    self.reading.insert(id, handle.to_vec());
                }
            }
            FXP_CLOSE => {
                if let Some(handle) = fields.string()
                    && let Some(file) = self.files.remove(handle)
                {
                    if file.write || file.written > 0 {
                        out.push(SftpEvent::Transfer {
                            name: file.name,
                            direction: "upload",
                            bytes: file.written,
                        });
                    } else if file.read > 0 {
                        out.push(SftpEvent::Transfer {
                            name: file.name,
                            direction: "download",
                            bytes: file.read,
                        });
                    }
                }
            }
            FXP_REMOVE => {
                if let Some(name) = fields.string() {
                    out.push(SftpEvent::Change(format!("remove {}", text(name))));
                }
            }
            FXP_RENAME => {
                if let (Some(from), Some(to)) = (fields.string(), fields.string()) {
                    out.push(SftpEvent::Change(format!(
                        "rename {} to {}",
                        text(from),
                        text(to)
                    )));
                }
            }
            _ => {}
        }
    }

    fn response(&mut self, kind: u8, body: &[u8]) {
        let mut fields = Fields(body);
        let Some(id) = fields.u32() else { return };
        match kind {
            FXP_HANDLE => {
                if let (Some((name, write)), Some(handle)) =
                    (self.opening.remove(&id), fields.string())
                {
                    self.files.insert(
                        handle.to_vec(),
                        OpenFile {
                            name,
                            write,
                            ..OpenFile::default()
                        },
                    );
                }
            }
            FXP_DATA => {
                if let (Some(handle), Some(data)) = (self.reading.remove(&id), fields.string())
                    && let Some(file) = self.files.get_mut(&handle)
                {
                    file.read += data.len() as u64;
                }
            }
            _ => {
                // A status (or anything else) answers the request: forget it.
                self.opening.remove(&id);
                self.reading.remove(&id);
            }
        }
    }
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

    #[test]
    fn uploads_and_downloads_are_reported_across_splits() {
        let id = |n: u32| n.to_be_bytes().to_vec();
        let client = [
            packet(
                FXP_OPEN,
                &[
                    &id(1),
                    &string(b"/tmp/up.bin"),
                    &0x1au32.to_be_bytes(),
                    &[0, 0, 0, 0],
                ],
            ),
            packet(
                FXP_WRITE,
                &[
                    &id(2),
                    &string(b"H1"),
                    &0u64.to_be_bytes(),
                    &string(&[7; 1000]),
                ],
            ),
            packet(
                FXP_WRITE,
                &[
                    &id(3),
                    &string(b"H1"),
                    &1000u64.to_be_bytes(),
                    &string(&[7; 24]),
                ],
            ),
            packet(FXP_CLOSE, &[&id(4), &string(b"H1")]),
            packet(
                FXP_OPEN,
                &[
                    &id(5),
                    &string(b"/etc/hostname"),
                    &1u32.to_be_bytes(),
                    &[0, 0, 0, 0],
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
        ];
        let server = [
            packet(FXP_HANDLE, &[&id(1), &string(b"H1")]),
            packet(FXP_HANDLE, &[&id(5), &string(b"H2")]),
            packet(FXP_DATA, &[&id(6), &string(b"gateway\n")]),
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
        ];
        for (index, from_client) in order {
            let bytes = if from_client {
                &client[index]
            } else {
                &server[index]
            };
            for piece in bytes.chunks(7) {
                if from_client {
                    events.extend(watch.client_bytes(piece));
                } else {
                    events.extend(watch.server_bytes(piece));
                }
            }
        }
        assert_eq!(
            events,
            vec![
                SftpEvent::Transfer {
                    name: "/tmp/up.bin".into(),
                    direction: "upload",
                    bytes: 1024
                },
                SftpEvent::Transfer {
                    name: "/etc/hostname".into(),
                    direction: "download",
                    bytes: 8
                },
            ]
        );
        assert_eq!(
            events[0].to_string(),
            "file transfer: upload /tmp/up.bin (1024 bytes)"
        );
    }

    #[test]
    fn garbage_and_huge_packets_stop_the_watch_without_growing() {
        let mut watch = SftpWatch::default();
        let events = watch.client_bytes(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3]);
        assert!(matches!(events.as_slice(), [SftpEvent::GaveUp(_)]));
        assert!(watch.client_bytes(&[0; 100_000]).is_empty());
        assert_eq!(watch.requests.len(), 0);
        let mut watch = SftpWatch::default();
        let mut seed = 7u64;
        for _ in 0..2000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let bytes = seed.to_be_bytes();
            let _ = watch.client_bytes(&bytes[..(seed % 8) as usize]);
            let _ = watch.server_bytes(&bytes);
        }
        assert!(watch.requests.len() <= MAX_PACKET + 8 && watch.responses.len() <= MAX_PACKET + 8);
    }
}
