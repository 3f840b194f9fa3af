//! The native client protocol: what a `sallyport` CLI says on a QUIC stream to the gateway.
//!
//! A connection (ALPN [`ALPN`], client certificate issued by the gateway's user CA) carries one
//! bidirectional stream per request. Every stream starts with a [`Preamble`]: the magic `SP`, a
//! version byte, a kind byte and a length-prefixed argument (the target name where the kind needs one).
//! After it, both directions carry [`Frame`]s: a type byte, a 32-bit big-endian length and the payload.
//! Control frames hold the same JSON as the browser's WebSocket text messages ([`crate::frames`]); data
//! frames hold terminal bytes. Everything here is sans-io and bounded: parsers take the bytes received
//! so far, return `Ok(None)` when more are needed, and never panic or allocate past their limits.

use serde::{Deserialize, Serialize};

use crate::frames::{ClientMessage, FrameError, parse_client_binary, parse_client_text};

/// The ALPN protocol id of the native client.
pub const ALPN: &[u8] = b"sallyport/1";
/// The preamble's first two bytes.
pub const MAGIC: [u8; 2] = *b"SP";
/// The preamble version this code speaks.
pub const VERSION: u8 = 1;
/// Longest preamble argument (a target name), in bytes.
pub const MAX_ARGUMENT_LEN: usize = 255;
/// Longest preamble: magic, version, kind, two length bytes and the argument.
pub const MAX_PREAMBLE_LEN: usize = 6 + MAX_ARGUMENT_LEN;
/// Bytes of a frame header (type and length).
pub const FRAME_HEADER_LEN: usize = 5;
/// QUIC application close code: the gateway refused the connection (the reason says why in words).
pub const CLOSE_REFUSED: u32 = 1;
/// QUIC application close code: the client is done (logout, or the command finished).
pub const CLOSE_DONE: u32 = 0;

/// What a stream is for, with its argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Preamble {
    /// A terminal session to the named target (then frames both ways, as the browser's terminal).
    Terminal {
        /// The target's name.
        target: String,
    },
    /// The targets this user may reach (one control frame back, then the stream ends).
    Targets,
    /// Who the certificate belongs to and when it expires (one control frame back).
    Status,
    /// Revokes the certificate of this connection (one control frame back).
    Logout,
    /// SSH to the named target, terminated by the gateway (OpenSSH `ProxyCommand`): the gateway answers
    /// `connected` (or an error), then the SSH bytes travel in data frames both ways; an error frame may
    /// end the stream.
    Proxy {
        /// The target's name.
        target: String,
    },
}

impl Preamble {
    fn kind(&self) -> u8 {
        match self {
            Preamble::Terminal { .. } => 1,
            Preamble::Targets => 2,
            Preamble::Status => 3,
            Preamble::Logout => 4,
            Preamble::Proxy { .. } => 5,
        }
    }

    fn argument(&self) -> &str {
        match self {
            Preamble::Terminal { target } | Preamble::Proxy { target } => target,
            Preamble::Targets | Preamble::Status | Preamble::Logout => "",
        }
    }

    /// The wire form. Fails only for an argument that [`Preamble::parse`] would refuse.
    pub fn encode(&self) -> Result<Vec<u8>, PreambleError> {
        let argument = self.argument();
        check_target(argument, self.kind())?;
        let mut out = Vec::with_capacity(6 + argument.len());
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.push(self.kind());
        out.extend_from_slice(&(argument.len() as u16).to_be_bytes());
        out.extend_from_slice(argument.as_bytes());
        Ok(out)
    }

    /// Parses the start of a stream. `Ok(None)`: not enough bytes yet (never more than
    /// [`MAX_PREAMBLE_LEN`] are needed); `Ok(Some((preamble, used)))`: the preamble and how many bytes
    /// it took, the rest being frames.
    pub fn parse(bytes: &[u8]) -> Result<Option<(Preamble, usize)>, PreambleError> {
        // Check what is there as early as possible, so garbage is refused after its first bytes.
        for (index, expected) in MAGIC.iter().enumerate() {
            match bytes.get(index) {
                Some(byte) if byte == expected => {}
                Some(_) => return Err(PreambleError::BadMagic),
                None => return Ok(None),
            }
        }
        let Some(&version) = bytes.get(2) else {
            return Ok(None);
        };
        if version != VERSION {
            return Err(PreambleError::UnsupportedVersion(version));
        }
        let Some(&kind) = bytes.get(3) else {
            return Ok(None);
        };
        if !(1..=5).contains(&kind) {
            return Err(PreambleError::UnknownKind(kind));
        }
        let (Some(&high), Some(&low)) = (bytes.get(4), bytes.get(5)) else {
            return Ok(None);
        };
        let len = usize::from(u16::from_be_bytes([high, low]));
        if len > MAX_ARGUMENT_LEN {
            return Err(PreambleError::TooLong(len));
        }
        let Some(argument) = bytes.get(6..6 + len) else {
            return Ok(None);
        };
        let argument = std::str::from_utf8(argument).map_err(|_| PreambleError::BadTarget)?;
        check_target(argument, kind)?;
        let target = argument.to_owned();
        let preamble = match kind {
            1 => Preamble::Terminal { target },
            2 => Preamble::Targets,
            3 => Preamble::Status,
            4 => Preamble::Logout,
            _ => Preamble::Proxy { target },
        };
        Ok(Some((preamble, 6 + len)))
    }
}

/// Kinds 1 and 5 need a target name; the others take no argument.
fn check_target(argument: &str, kind: u8) -> Result<(), PreambleError> {
    let needs_target = matches!(kind, 1 | 5);
    if !needs_target {
        return if argument.is_empty() {
            Ok(())
        } else {
            Err(PreambleError::UnexpectedArgument)
        };
    }
    if argument.is_empty()
        || argument.len() > MAX_ARGUMENT_LEN
        || argument.chars().any(char::is_control)
    {
        return Err(PreambleError::BadTarget);
    }
    Ok(())
}

/// Why a stream's preamble was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PreambleError {
    /// The stream does not start with `SP`.
    #[error("the stream does not start with the sallyport preamble")]
    BadMagic,
    /// A version this gateway does not speak.
    #[error("preamble version {0} is not supported (this gateway speaks version 1)")]
    UnsupportedVersion(u8),
    /// A stream kind this gateway does not know.
    #[error("unknown stream kind {0}")]
    UnknownKind(u8),
    /// The argument is longer than allowed.
    #[error("the preamble argument of {0} bytes is too long")]
    TooLong(usize),
    /// The target name is empty, not UTF-8 or has control characters.
    #[error("the target name is not valid")]
    BadTarget,
    /// A kind that takes no argument got one.
    #[error("this stream kind takes no argument")]
    UnexpectedArgument,
}

/// A frame type byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameType {
    /// JSON control message.
    Control = 1,
    /// Terminal bytes (keystrokes up, output down) or raw SSH bytes on a proxy stream.
    Data = 2,
}

/// One frame after the preamble.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A JSON control message (not yet parsed).
    Control(Vec<u8>),
    /// Terminal bytes.
    Data(Vec<u8>),
}

impl Frame {
    /// The wire form of a frame with this type and payload.
    pub fn encode(kind: FrameType, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(FRAME_HEADER_LEN + payload.len());
        out.push(kind as u8);
        // Payloads are bounded far below 4 GiB by every sender; saturate rather than wrap.
        out.extend_from_slice(
            &u32::try_from(payload.len())
                .unwrap_or(u32::MAX)
                .to_be_bytes(),
        );
        out.extend_from_slice(payload);
        out
    }

    /// The frame as a client message to the gateway, with the browser protocol's bounds and checks.
    pub fn into_client_message(self) -> Result<ClientMessage, FrameError> {
        match self {
            Frame::Control(bytes) => {
                let text = std::str::from_utf8(&bytes)
                    .map_err(|_| FrameError::Malformed("control frame is not UTF-8".into()))?;
                parse_client_text(text)
            }
            Frame::Data(bytes) => parse_client_binary(&bytes),
        }
    }
}

/// Why the frame stream was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// An unknown frame type byte.
    #[error("unknown frame type {0}")]
    UnknownType(u8),
    /// A frame larger than this side accepts.
    #[error("frame of {0} bytes is larger than allowed")]
    TooLarge(u64),
}

/// Incremental frame decoder with a bound on the payload it accepts: feed it bytes as they arrive,
/// take frames out. It buffers at most one frame plus what was fed since.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    max_payload: usize,
}

impl FrameDecoder {
    /// A decoder refusing payloads over `max_payload` bytes.
    pub fn new(max_payload: usize) -> Self {
        FrameDecoder {
            buf: Vec::new(),
            max_payload,
        }
    }

    /// Appends received bytes.
    pub fn extend(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes held but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete frame, `Ok(None)` when more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, StreamError> {
        let Some(&kind) = self.buf.first() else {
            return Ok(None);
        };
        if kind != FrameType::Control as u8 && kind != FrameType::Data as u8 {
            return Err(StreamError::UnknownType(kind));
        }
        let Some(len) = self.buf.get(1..FRAME_HEADER_LEN) else {
            return Ok(None);
        };
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]);
        let len_usize = usize::try_from(len).unwrap_or(usize::MAX);
        if len_usize > self.max_payload {
            return Err(StreamError::TooLarge(u64::from(len)));
        }
        let end = FRAME_HEADER_LEN + len_usize;
        if self.buf.len() < end {
            return Ok(None);
        }
        let payload = self.buf[FRAME_HEADER_LEN..end].to_vec();
        self.buf.drain(..end);
        Ok(Some(if kind == FrameType::Control as u8 {
            Frame::Control(payload)
        } else {
            Frame::Data(payload)
        }))
    }
}

/// `POST /api/cli/login`: what the CLI sends.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CliLoginRequest {
    /// Portal username.
    pub username: String,
    /// Portal password.
    pub password: String,
    /// The TOTP or recovery code, for users with a second factor.
    #[serde(default)]
    pub code: Option<String>,
    /// The client's Ed25519 public key (32 bytes, hex) the certificate is issued for.
    pub public_key: String,
}

impl std::fmt::Debug for CliLoginRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CliLoginRequest")
            .field("username", &self.username)
            .field("public_key", &self.public_key)
            .finish_non_exhaustive()
    }
}

/// `POST /api/cli/login`: the answer on success.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CliLoginResponse {
    /// The user the certificate is for.
    pub username: String,
    /// The client certificate (PEM).
    pub certificate: String,
    /// When it expires (unix ms).
    pub expires_at_ms: u64,
}

/// `POST /api/cli/login` and QUIC streams: an error in plain words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CliError {
    /// Stable kind for programs (`bad_credentials`, `code_required`, `throttled`, ...).
    pub error: String,
    /// Plain words for people.
    pub message: String,
}

/// One reachable target, as `sallyport targets` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetInfo {
    /// Its name (what `sallyport ssh` takes).
    pub name: String,
    /// Host as configured.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Protocol (`ssh`).
    pub protocol: String,
}

/// The answer to a [`Preamble::Status`] stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusInfo {
    /// The user the certificate is for.
    pub username: String,
    /// Their role.
    pub role: String,
    /// When the certificate expires (unix ms).
    pub expires_at_ms: u64,
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn preambles_round_trip_and_report_their_length() {
        for preamble in [
            Preamble::Terminal {
                target: "alpha".into(),
            },
            Preamble::Targets,
            Preamble::Status,
            Preamble::Logout,
            Preamble::Proxy {
                target: "db-1.example".into(),
            },
        ] {
            let mut bytes = preamble.encode().unwrap();
            let len = bytes.len();
            bytes.extend_from_slice(b"\x02\x00\x00\x00\x01x");
            assert_eq!(Preamble::parse(&bytes), Ok(Some((preamble.clone(), len))));
            // Every strict prefix asks for more.
            for cut in 0..len {
                assert_eq!(
                    Preamble::parse(&bytes[..cut]),
                    Ok(None),
                    "{preamble:?} {cut}"
                );
            }
        }
    }

    #[test]
    fn bad_preambles_are_refused_early() {
        let cases: &[(&[u8], PreambleError)] = &[
            (b"GET / HTTP/1.1", PreambleError::BadMagic),
            (b"S\x00", PreambleError::BadMagic),
            (b"SP\x02", PreambleError::UnsupportedVersion(2)),
            (b"SP\x01\x00", PreambleError::UnknownKind(0)),
            (b"SP\x01\x09", PreambleError::UnknownKind(9)),
            (b"SP\x01\x01\x01\x00", PreambleError::TooLong(256)),
            (b"SP\x01\x01\x00\x00", PreambleError::BadTarget),
            (b"SP\x01\x01\x00\x02a\n", PreambleError::BadTarget),
            (b"SP\x01\x01\x00\x01\xff", PreambleError::BadTarget),
            (b"SP\x01\x02\x00\x01a", PreambleError::UnexpectedArgument),
        ];
        for (bytes, expected) in cases {
            assert_eq!(
                Preamble::parse(bytes),
                Err(expected.clone()),
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
        assert!(
            Preamble::Terminal {
                target: String::new()
            }
            .encode()
            .is_err()
        );
    }

    #[test]
    fn frames_decode_across_arbitrary_splits() {
        let mut wire = Frame::encode(
            FrameType::Control,
            br#"{"type":"resize","cols":80,"rows":24}"#,
        );
        wire.extend(Frame::encode(FrameType::Data, b"ls -l\r"));
        wire.extend(Frame::encode(FrameType::Data, b""));
        for split in 1..wire.len() {
            let mut decoder = FrameDecoder::new(1024);
            let mut frames = Vec::new();
            for chunk in wire.chunks(split) {
                decoder.extend(chunk);
                while let Some(frame) = decoder.next_frame().unwrap() {
                    frames.push(frame);
                }
            }
            assert_eq!(frames.len(), 3, "split {split}");
            assert_eq!(frames[1], Frame::Data(b"ls -l\r".to_vec()));
            assert_eq!(decoder.buffered(), 0);
        }
    }

    #[test]
    fn oversized_and_unknown_frames_are_refused_before_buffering() {
        let mut decoder = FrameDecoder::new(16);
        decoder.extend(&[2, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(
            decoder.next_frame(),
            Err(StreamError::TooLarge(u64::from(u32::MAX)))
        );
        let mut decoder = FrameDecoder::new(16);
        decoder.extend(&[7]);
        assert_eq!(decoder.next_frame(), Err(StreamError::UnknownType(7)));
    }

    #[test]
    fn frames_become_client_messages_with_the_browser_rules() {
        let connect = Frame::Control(
            br#"{"type":"connect","username":"a","password":"p","cols":80,"rows":24}"#.to_vec(),
        );
        assert!(matches!(
            connect.into_client_message(),
            Ok(ClientMessage::Connect(_))
        ));
        assert!(
            Frame::Control(vec![0xff, 0xfe])
                .into_client_message()
                .is_err()
        );
        assert_eq!(
            Frame::Data(b"x".to_vec()).into_client_message(),
            Ok(ClientMessage::Input(b"x".to_vec()))
        );
    }

    #[test]
    fn login_requests_do_not_print_secrets() {
        let request = CliLoginRequest {
            username: "alice".into(),
            password: "hunter2".into(),
            code: Some("123456".into()),
            public_key: "00".into(),
        };
        let printed = format!("{request:?}");
        assert!(!printed.contains("hunter2") && !printed.contains("123456"));
    }
}
