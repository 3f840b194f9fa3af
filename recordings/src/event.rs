//! The event format: what happens in a session, and the compact binary records that carry events inside a chunk.
//!
//! A chunk's raw (uncompressed) bytes are a sequence of records, each
//! `varint time | u8 kind | varint length | payload`. The time of a chunk's first record is the event's absolute
//! `at_ms`; every later record stores the (non-negative) delta from the record before it, which keeps the common case
//! to one byte. Varints are unsigned LEB128 of at most ten bytes.
//!
//! The decoder reads bytes from disk that may have been tampered with: it never panics, bounds every length by the
//! bytes that remain, and reports the offset of the first thing it cannot parse.

use std::fmt;

/// One thing that happened in a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Bytes from the target to the user's terminal.
    Output(Vec<u8>),
    /// Bytes from the user to the target (keystrokes, pastes).
    Input(Vec<u8>),
    /// The user's terminal changed size.
    Resize {
        /// Columns.
        cols: u16,
        /// Rows.
        rows: u16,
    },
    /// Free text from the gateway: "connected", "exit status 0", an error.
    Marker(String),
    /// Something of a desktop (RDP) session.
    Desktop(DesktopEvent),
    /// A file moved through an SSH session (sftp or scp), as metadata: the file, the way, the size.
    FileTransfer(FileTransfer),
}

/// How a file was moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferProtocol {
    /// The SFTP subsystem (also what OpenSSH's scp speaks since 9.0).
    Sftp,
    /// The legacy scp protocol (`scp -t` / `scp -f` run as a command).
    Scp,
}

/// Which way a file went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferDirection {
    /// From the user to the target.
    Upload,
    /// From the target to the user.
    Download,
}

/// One file moved through a session, recorded when the transfer ends (closed, finished or cut off).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileTransfer {
    /// SFTP or scp.
    pub protocol: TransferProtocol,
    /// Upload or download.
    pub direction: TransferDirection,
    /// The file on the target as far as the gateway can tell: the path SFTP opened, or the path scp
    /// was given (with the directories and name of a recursive copy).
    pub path: String,
    /// The name the scp protocol carried, when it may differ from the end of `path` (an upload into
    /// a directory); empty otherwise.
    pub name: String,
    /// Bytes of file content moved.
    pub bytes: u64,
    /// False when the transfer was cut off (the channel closed before the file was closed or sent whole).
    pub complete: bool,
}

impl fmt::Display for FileTransfer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let protocol = match self.protocol {
            TransferProtocol::Sftp => "sftp",
            TransferProtocol::Scp => "scp",
        };
        let direction = match self.direction {
            TransferDirection::Upload => "upload",
            TransferDirection::Download => "download",
        };
        write!(f, "file transfer ({protocol}): {direction} {}", self.path)?;
        if !self.name.is_empty() {
            write!(f, " (as {})", self.name)?;
        }
        write!(f, ", {} bytes", self.bytes)?;
        if !self.complete {
            write!(f, ", cut off")?;
        }
        Ok(())
    }
}

/// What a desktop (RDP) session records: the decrypted server→client PDU stream, enough to replay it into
/// a fresh decoder, plus keyframes of the gateway's framebuffer for seeking, and the user's input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DesktopEvent {
    /// The RDP stage was (re)activated: a black framebuffer of this size, and the identifiers a decoder
    /// needs to follow the PDUs after this point.
    Activation {
        /// Desktop width.
        width: u16,
        /// Desktop height.
        height: u16,
        /// MCS I/O channel.
        io_channel_id: u16,
        /// MCS user channel.
        user_channel_id: u16,
        /// Share id.
        share_id: u32,
        /// The dynamic virtual channel's static channel id, if joined.
        drdynvc_channel_id: Option<u16>,
    },
    /// One server PDU, as it was decoded.
    ServerPdu {
        /// Fast-path (true) or X.224 framing.
        fast_path: bool,
        /// The PDU bytes.
        data: Vec<u8>,
    },
    /// The whole framebuffer as a PNG, after every PDU before it was decoded.
    Keyframe {
        /// Width.
        width: u16,
        /// Height.
        height: u16,
        /// The PNG.
        png: Vec<u8>,
    },
    /// Input from the user, in the desktop stream's encoding (`sallyport_core::display::encode_input`).
    Input(Vec<u8>),
    /// The user's window asked for this desktop size.
    Resize {
        /// Width.
        width: u16,
        /// Height.
        height: u16,
    },
    /// Clipboard text crossed the gateway: its direction and size, never its content (as Teleport audits
    /// it); refused transfers are markers.
    Clipboard {
        /// From the user to the target (true) or from the target to the user.
        to_target: bool,
        /// Its size in UTF-8 bytes.
        bytes: u32,
    },
}

/// An event with the time it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimedEvent {
    /// Milliseconds since the session started.
    pub at_ms: u64,
    /// What happened.
    pub event: Event,
}

/// Record kind of [`Event::Output`]. Zero is not a kind, so that zeroed bytes do not decode.
pub(crate) const KIND_OUTPUT: u8 = 1;
/// Record kind of [`Event::Input`].
pub(crate) const KIND_INPUT: u8 = 2;
/// Record kind of [`Event::Resize`]; the payload is `cols u16 BE | rows u16 BE`.
pub(crate) const KIND_RESIZE: u8 = 3;
/// Record kind of [`Event::Marker`]; the payload is UTF-8.
pub(crate) const KIND_MARKER: u8 = 4;

/// Record kind of [`DesktopEvent::Activation`]: `w, h, io, user u16 BE | share u32 BE | has_dvc u8 | dvc u16 BE`.
pub(crate) const KIND_DESKTOP_ACTIVATION: u8 = 5;
/// Record kind of [`DesktopEvent::ServerPdu`]: `fast_path u8 | bytes`.
pub(crate) const KIND_DESKTOP_PDU: u8 = 6;
/// Record kind of [`DesktopEvent::Keyframe`]: `w u16 BE | h u16 BE | png`.
pub(crate) const KIND_DESKTOP_KEYFRAME: u8 = 7;
/// Record kind of [`DesktopEvent::Input`].
pub(crate) const KIND_DESKTOP_INPUT: u8 = 8;
/// Record kind of [`DesktopEvent::Resize`]: `w u16 BE | h u16 BE`.
pub(crate) const KIND_DESKTOP_RESIZE: u8 = 9;
/// Record kind of [`DesktopEvent::Clipboard`]: `to_target u8 | bytes u32 BE`.
pub(crate) const KIND_DESKTOP_CLIPBOARD: u8 = 10;
/// Record kind of [`Event::FileTransfer`]:
/// `protocol u8 | direction u8 | complete u8 | bytes u64 BE | path length u16 BE | path | name` (UTF-8).
pub(crate) const KIND_FILE_TRANSFER: u8 = 11;
/// The path and the name of a file transfer are each cut to this many bytes.
pub(crate) const MAX_TRANSFER_NAME_BYTES: usize = 4096;

/// The payload of a file transfer record (path and name cut to [`MAX_TRANSFER_NAME_BYTES`]).
pub(crate) fn transfer_payload(transfer: &FileTransfer) -> Vec<u8> {
    let path = truncate_utf8(&transfer.path, MAX_TRANSFER_NAME_BYTES);
    let name = truncate_utf8(&transfer.name, MAX_TRANSFER_NAME_BYTES);
    let mut p = Vec::with_capacity(13 + path.len() + name.len());
    p.push(match transfer.protocol {
        TransferProtocol::Sftp => 1,
        TransferProtocol::Scp => 2,
    });
    p.push(match transfer.direction {
        TransferDirection::Upload => 1,
        TransferDirection::Download => 2,
    });
    p.push(u8::from(transfer.complete));
    p.extend_from_slice(&transfer.bytes.to_be_bytes());
    // At most 4096 bytes, so the length fits.
    p.extend_from_slice(&(path.len() as u16).to_be_bytes());
    p.extend_from_slice(path.as_bytes());
    p.extend_from_slice(name.as_bytes());
    p
}

/// Reads a file transfer record's payload; `None` when it is malformed.
fn transfer_event(p: &[u8]) -> Option<FileTransfer> {
    let (head, rest) = p.split_at_checked(13)?;
    let protocol = match head[0] {
        1 => TransferProtocol::Sftp,
        2 => TransferProtocol::Scp,
        _ => return None,
    };
    let direction = match head[1] {
        1 => TransferDirection::Upload,
        2 => TransferDirection::Download,
        _ => return None,
    };
    let complete = match head[2] {
        0 => false,
        1 => true,
        _ => return None,
    };
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&head[3..11]);
    let path_len = usize::from(be16(head, 11));
    let (path, name) = rest.split_at_checked(path_len)?;
    if path.len() > MAX_TRANSFER_NAME_BYTES || name.len() > MAX_TRANSFER_NAME_BYTES {
        return None;
    }
    Some(FileTransfer {
        protocol,
        direction,
        path: std::str::from_utf8(path).ok()?.to_owned(),
        name: std::str::from_utf8(name).ok()?.to_owned(),
        bytes: u64::from_be_bytes(bytes),
        complete,
    })
}

/// The record kind and payload of a desktop event.
pub(crate) fn desktop_record(event: &DesktopEvent) -> (u8, Vec<u8>) {
    match event {
        DesktopEvent::Activation {
            width,
            height,
            io_channel_id,
            user_channel_id,
            share_id,
            drdynvc_channel_id,
        } => {
            let mut p = Vec::with_capacity(15);
            for v in [*width, *height, *io_channel_id, *user_channel_id] {
                p.extend_from_slice(&v.to_be_bytes());
            }
            p.extend_from_slice(&share_id.to_be_bytes());
            p.push(u8::from(drdynvc_channel_id.is_some()));
            p.extend_from_slice(&drdynvc_channel_id.unwrap_or(0).to_be_bytes());
            (KIND_DESKTOP_ACTIVATION, p)
        }
        DesktopEvent::ServerPdu { fast_path, data } => {
            let mut p = Vec::with_capacity(data.len() + 1);
            p.push(u8::from(*fast_path));
            p.extend_from_slice(data);
            (KIND_DESKTOP_PDU, p)
        }
        DesktopEvent::Keyframe { width, height, png } => {
            let mut p = Vec::with_capacity(png.len() + 4);
            p.extend_from_slice(&resize_payload(*width, *height));
            p.extend_from_slice(png);
            (KIND_DESKTOP_KEYFRAME, p)
        }
        DesktopEvent::Input(data) => (KIND_DESKTOP_INPUT, data.clone()),
        DesktopEvent::Resize { width, height } => (
            KIND_DESKTOP_RESIZE,
            resize_payload(*width, *height).to_vec(),
        ),
        DesktopEvent::Clipboard { to_target, bytes } => {
            let mut p = vec![u8::from(*to_target)];
            p.extend_from_slice(&bytes.to_be_bytes());
            (KIND_DESKTOP_CLIPBOARD, p)
        }
    }
}

fn be16(p: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([p[at], p[at + 1]])
}

/// Reads a desktop record's payload; `None` when it is malformed.
fn desktop_event(kind: u8, p: &[u8]) -> Option<DesktopEvent> {
    Some(match kind {
        KIND_DESKTOP_ACTIVATION if p.len() == 15 => DesktopEvent::Activation {
            width: be16(p, 0),
            height: be16(p, 2),
            io_channel_id: be16(p, 4),
            user_channel_id: be16(p, 6),
            share_id: u32::from_be_bytes([p[8], p[9], p[10], p[11]]),
            drdynvc_channel_id: match p[12] {
                0 => None,
                1 => Some(be16(p, 13)),
                _ => return None,
            },
        },
        KIND_DESKTOP_PDU => match p.split_first() {
            Some((0, data)) => DesktopEvent::ServerPdu {
                fast_path: false,
                data: data.to_vec(),
            },
            Some((1, data)) => DesktopEvent::ServerPdu {
                fast_path: true,
                data: data.to_vec(),
            },
            _ => return None,
        },
        KIND_DESKTOP_KEYFRAME if p.len() >= 4 => DesktopEvent::Keyframe {
            width: be16(p, 0),
            height: be16(p, 2),
            png: p[4..].to_vec(),
        },
        KIND_DESKTOP_INPUT => DesktopEvent::Input(p.to_vec()),
        KIND_DESKTOP_RESIZE if p.len() == 4 => DesktopEvent::Resize {
            width: be16(p, 0),
            height: be16(p, 2),
        },
        KIND_DESKTOP_CLIPBOARD if p.len() == 5 && p[0] <= 1 => DesktopEvent::Clipboard {
            to_target: p[0] == 1,
            bytes: u32::from_be_bytes([p[1], p[2], p[3], p[4]]),
        },
        _ => return None,
    })
}

/// The longest varint.
const MAX_VARINT_LEN: usize = 10;
/// The longest record header (time, kind, length).
pub(crate) const MAX_RECORD_HEADER: usize = 2 * MAX_VARINT_LEN + 1;
/// Markers are cut to this many bytes (at a character boundary) so that a runaway error message cannot fill a chunk.
pub(crate) const MAX_MARKER_BYTES: usize = 4096;

/// Appends `value` as an unsigned LEB128 varint.
pub(crate) fn put_varint(buf: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        // Truncation is the point: the low seven bits, with the continuation bit set.
        buf.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    buf.push(value as u8);
}

/// How many bytes [`put_varint`] writes for `value`.
pub(crate) fn varint_len(value: u64) -> usize {
    let bits = 64 - value.leading_zeros() as usize;
    bits.div_ceil(7).max(1)
}

/// How many bytes a record with this time field and payload length takes.
pub(crate) fn record_len(time_field: u64, payload_len: usize) -> usize {
    varint_len(time_field) + 1 + varint_len(payload_len as u64) + payload_len
}

/// Appends one record.
pub(crate) fn put_record(buf: &mut Vec<u8>, time_field: u64, kind: u8, payload: &[u8]) {
    put_varint(buf, time_field);
    buf.push(kind);
    put_varint(buf, payload.len() as u64);
    buf.extend_from_slice(payload);
}

/// The payload of a resize record.
pub(crate) fn resize_payload(cols: u16, rows: u16) -> [u8; 4] {
    let [c0, c1] = cols.to_be_bytes();
    let [r0, r1] = rows.to_be_bytes();
    [c0, c1, r0, r1]
}

/// Why a chunk's raw bytes did not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DecodeError {
    /// Offset in the chunk's raw bytes of the record that failed.
    pub offset: usize,
    /// What was wrong.
    pub what: &'static str,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.what, self.offset)
    }
}

/// A cursor over untrusted bytes.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Option<u8> {
        let b = *self.bytes.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    fn varint(&mut self) -> Option<u64> {
        let mut value: u64 = 0;
        for i in 0..MAX_VARINT_LEN {
            let b = self.byte()?;
            let bits = u64::from(b & 0x7f);
            // The tenth byte may only hold the top bit of a u64.
            if i == MAX_VARINT_LEN - 1 && bits > 1 {
                return None;
            }
            value |= bits << (7 * i);
            if b & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }

    fn take(&mut self, len: u64) -> Option<&'a [u8]> {
        let remaining = self.bytes.len() - self.pos;
        let len = usize::try_from(len).ok().filter(|&l| l <= remaining)?;
        let out = &self.bytes[self.pos..self.pos + len];
        self.pos += len;
        Some(out)
    }
}

/// Decodes all records of one chunk's raw bytes.
pub(crate) fn decode_events(raw: &[u8]) -> Result<Vec<TimedEvent>, DecodeError> {
    let mut reader = Reader { bytes: raw, pos: 0 };
    let mut events = Vec::new();
    let mut prev: Option<u64> = None;
    while reader.pos < raw.len() {
        let offset = reader.pos;
        let err = |what| DecodeError { offset, what };
        let time = reader.varint().ok_or(err("bad time varint"))?;
        let at_ms = match prev {
            None => time,
            Some(p) => p.checked_add(time).ok_or(err("time overflows"))?,
        };
        prev = Some(at_ms);
        let kind = reader.byte().ok_or(err("truncated record kind"))?;
        let len = reader.varint().ok_or(err("bad length varint"))?;
        let payload = reader
            .take(len)
            .ok_or(err("payload longer than the chunk"))?;
        let event = match kind {
            KIND_OUTPUT => Event::Output(payload.to_vec()),
            KIND_INPUT => Event::Input(payload.to_vec()),
            KIND_RESIZE => match payload {
                &[c0, c1, r0, r1] => Event::Resize {
                    cols: u16::from_be_bytes([c0, c1]),
                    rows: u16::from_be_bytes([r0, r1]),
                },
                _ => return Err(err("resize payload is not 4 bytes")),
            },
            KIND_MARKER => {
                if payload.len() > MAX_MARKER_BYTES {
                    return Err(err("marker too long"));
                }
                let text = std::str::from_utf8(payload).map_err(|_| err("marker is not UTF-8"))?;
                Event::Marker(text.to_owned())
            }
            KIND_DESKTOP_ACTIVATION..=KIND_DESKTOP_CLIPBOARD => {
                Event::Desktop(desktop_event(kind, payload).ok_or(err("malformed desktop record"))?)
            }
            KIND_FILE_TRANSFER => Event::FileTransfer(
                transfer_event(payload).ok_or(err("malformed file transfer record"))?,
            ),
            _ => return Err(err("unknown record kind")),
        };
        events.push(TimedEvent { at_ms, event });
    }
    Ok(events)
}

/// Cuts `text` to at most `max` bytes at a character boundary.
pub(crate) fn truncate_utf8(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
