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
mod tests {
    use super::*;

    fn encode(events: &[TimedEvent]) -> Vec<u8> {
        let mut buf = Vec::new();
        let mut prev: Option<u64> = None;
        for e in events {
            let time = prev.map_or(e.at_ms, |p| e.at_ms - p);
            prev = Some(e.at_ms);
            match &e.event {
                Event::Output(d) => put_record(&mut buf, time, KIND_OUTPUT, d),
                Event::Input(d) => put_record(&mut buf, time, KIND_INPUT, d),
                Event::Resize { cols, rows } => {
                    put_record(&mut buf, time, KIND_RESIZE, &resize_payload(*cols, *rows))
                }
                Event::Marker(m) => put_record(&mut buf, time, KIND_MARKER, m.as_bytes()),
                Event::Desktop(d) => {
                    let (kind, payload) = desktop_record(d);
                    put_record(&mut buf, time, kind, &payload)
                }
                Event::FileTransfer(t) => {
                    put_record(&mut buf, time, KIND_FILE_TRANSFER, &transfer_payload(t))
                }
            }
        }
        buf
    }

    #[test]
    fn desktop_events_round_trip_and_malformed_ones_fail() {
        let desktop = [
            DesktopEvent::Activation {
                width: 1024,
                height: 768,
                io_channel_id: 1003,
                user_channel_id: 1007,
                share_id: 0x1_0203,
                drdynvc_channel_id: Some(1004),
            },
            DesktopEvent::ServerPdu {
                fast_path: true,
                data: vec![0, 1, 2],
            },
            DesktopEvent::ServerPdu {
                fast_path: false,
                data: vec![3],
            },
            DesktopEvent::Keyframe {
                width: 2,
                height: 3,
                png: vec![0x89, b'P'],
            },
            DesktopEvent::Input(vec![6]),
            DesktopEvent::Resize {
                width: 800,
                height: 600,
            },
            DesktopEvent::Clipboard {
                to_target: true,
                bytes: 70_000,
            },
            DesktopEvent::Clipboard {
                to_target: false,
                bytes: 0,
            },
        ];
        let events: Vec<TimedEvent> = desktop
            .iter()
            .enumerate()
            .map(|(i, d)| TimedEvent {
                at_ms: i as u64,
                event: Event::Desktop(d.clone()),
            })
            .collect();
        assert_eq!(decode_events(&encode(&events)).unwrap(), events);
        for (kind, payload) in [
            (KIND_DESKTOP_ACTIVATION, &[0u8; 14][..]),
            (KIND_DESKTOP_PDU, &[2, 0][..]),
            (KIND_DESKTOP_PDU, &[][..]),
            (KIND_DESKTOP_KEYFRAME, &[0, 1, 0][..]),
            (KIND_DESKTOP_RESIZE, &[0, 1, 0][..]),
            (KIND_DESKTOP_CLIPBOARD, &[2, 0, 0, 0, 1][..]),
            (KIND_DESKTOP_CLIPBOARD, &[1, 0, 0, 1][..]),
        ] {
            let mut raw = Vec::new();
            put_record(&mut raw, 0, kind, payload);
            assert!(decode_events(&raw).is_err(), "{kind} {payload:?}");
        }
    }

    #[test]
    fn file_transfers_round_trip_and_malformed_ones_fail() {
        let transfers = [
            FileTransfer {
                protocol: TransferProtocol::Sftp,
                direction: TransferDirection::Upload,
                path: "/home/u/é.bin".into(),
                name: String::new(),
                bytes: 100_000,
                complete: true,
            },
            FileTransfer {
                protocol: TransferProtocol::Scp,
                direction: TransferDirection::Download,
                path: "/etc".into(),
                name: "hostname".into(),
                bytes: u64::MAX,
                complete: false,
            },
        ];
        let events: Vec<TimedEvent> = transfers
            .iter()
            .map(|t| TimedEvent {
                at_ms: 5,
                event: Event::FileTransfer(t.clone()),
            })
            .collect();
        assert_eq!(decode_events(&encode(&events)).unwrap(), events);
        assert_eq!(
            transfers[1].to_string(),
            "file transfer (scp): download /etc (as hostname), 18446744073709551615 bytes, cut off"
        );
        let good = transfer_payload(&transfers[0]);
        let mut bad_protocol = good.clone();
        bad_protocol[0] = 3;
        let mut bad_complete = good.clone();
        bad_complete[2] = 2;
        let mut long_path = good.clone();
        long_path[11] = 0xff;
        let mut not_utf8 = good.clone();
        not_utf8[13] = 0xff;
        for payload in [
            &good[..12],
            &bad_protocol,
            &bad_complete,
            &long_path,
            &not_utf8,
        ] {
            let mut raw = Vec::new();
            put_record(&mut raw, 0, KIND_FILE_TRANSFER, payload);
            assert!(decode_events(&raw).is_err(), "{payload:?}");
        }
    }

    #[test]
    fn varint_lengths_match_encoding() {
        for v in [
            0,
            1,
            127,
            128,
            16383,
            16384,
            u64::from(u32::MAX),
            u64::MAX - 1,
            u64::MAX,
        ] {
            let mut buf = Vec::new();
            put_varint(&mut buf, v);
            assert_eq!(buf.len(), varint_len(v), "{v}");
            let mut r = Reader {
                bytes: &buf,
                pos: 0,
            };
            assert_eq!(r.varint(), Some(v));
        }
    }

    #[test]
    fn overlong_varint_is_rejected() {
        let mut r = Reader {
            bytes: &[0xff; 11],
            pos: 0,
        };
        assert_eq!(r.varint(), None);
        // Ten bytes whose last one carries more than the top bit of a u64.
        let mut bytes = vec![0xff; 9];
        bytes.push(0x02);
        let mut r = Reader {
            bytes: &bytes,
            pos: 0,
        };
        assert_eq!(r.varint(), None);
    }

    #[test]
    fn records_round_trip() {
        let events = vec![
            TimedEvent {
                at_ms: 70_000,
                event: Event::Marker("connected".into()),
            },
            TimedEvent {
                at_ms: 70_000,
                event: Event::Resize { cols: 80, rows: 24 },
            },
            TimedEvent {
                at_ms: 70_001,
                event: Event::Input(b"l".to_vec()),
            },
            TimedEvent {
                at_ms: 70_300,
                event: Event::Output(vec![0, 255, 27, b'[']),
            },
            TimedEvent {
                at_ms: 99_999_999,
                event: Event::Output(Vec::new()),
            },
        ];
        let raw = encode(&events);
        assert_eq!(decode_events(&raw).unwrap(), events);
    }

    #[test]
    fn bad_records_are_errors() {
        let check = |bytes: &[u8], what: &str| {
            let err = decode_events(bytes).unwrap_err();
            assert_eq!(err.what, what, "{bytes:?}");
        };
        check(&[0x80], "bad time varint");
        check(&[0], "truncated record kind");
        check(&[0, KIND_OUTPUT], "bad length varint");
        check(&[0, KIND_OUTPUT, 5, 1, 2], "payload longer than the chunk");
        check(&[0, 12, 0], "unknown record kind");
        check(&[0, 0, 0], "unknown record kind");
        check(
            &[0, KIND_RESIZE, 3, 1, 2, 3],
            "resize payload is not 4 bytes",
        );
        check(&[0, KIND_MARKER, 1, 0xff], "marker is not UTF-8");
        // u64::MAX then a delta of one.
        let mut raw = Vec::new();
        put_record(&mut raw, u64::MAX, KIND_INPUT, b"");
        put_record(&mut raw, 1, KIND_INPUT, b"");
        check(&raw, "time overflows");
    }

    /// A small deterministic generator (xorshift64*), so the garbage is the same on every run.
    struct Prng(u64);
    impl Prng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
    }

    #[test]
    fn garbage_never_panics() {
        let mut rng = Prng(0x9e37_79b9_7f4a_7c15);
        let valid = encode(&[
            TimedEvent {
                at_ms: 5,
                event: Event::Output(b"hello world".to_vec()),
            },
            TimedEvent {
                at_ms: 9,
                event: Event::Resize {
                    cols: 120,
                    rows: 40,
                },
            },
            TimedEvent {
                at_ms: 12,
                event: Event::Marker("exit status 0".into()),
            },
        ]);
        let mut decoded_ok = 0;
        for round in 0..20_000 {
            let len = (rng.next() % 64) as usize;
            let bytes: Vec<u8> = if round % 2 == 0 {
                // Pure garbage, biased towards small bytes so that valid kinds and lengths appear.
                (0..len)
                    .map(|_| (rng.next() % if round % 4 == 0 { 8 } else { 256 }) as u8)
                    .collect()
            } else {
                // A valid chunk with a few bytes flipped or cut.
                let mut b = valid.clone();
                for _ in 0..1 + rng.next() % 3 {
                    let i = (rng.next() as usize) % b.len();
                    b[i] ^= rng.next() as u8;
                }
                b.truncate((rng.next() as usize) % (b.len() + 1));
                b
            };
            if let Ok(events) = decode_events(&bytes) {
                decoded_ok += 1;
                // Whatever decodes cannot hold more payload than there were bytes.
                assert!(events.len() <= bytes.len());
            }
        }
        assert!(
            decoded_ok > 0,
            "the generator should also produce some decodable input"
        );
    }

    #[test]
    fn truncation_keeps_characters_whole() {
        assert_eq!(truncate_utf8("héllo", 2), "h");
        assert_eq!(truncate_utf8("héllo", 3), "hé");
        assert_eq!(truncate_utf8("abc", 10), "abc");
    }
}
