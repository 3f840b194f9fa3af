//! The desktop (RDP) stream between the browser and the gateway: the same framing over a WebSocket now
//! and over a QUIC stream later.
//!
//! Client → gateway:
//! - text: JSON control tagged by `type`: [`DesktopControl::Connect`] first and exactly once (username,
//!   password, initial size), then [`DesktopControl::Resize`] when the browser's area changes and
//!   [`DesktopControl::Clipboard`] when the user's clipboard text should reach the target;
//! - binary: a batch of input events ([`InputEvent`]), each `u8 tag` then fixed fields in big-endian
//!   order (see [`parse_input`] and [`encode_input`]).
//!
//! Gateway → client:
//! - text: the terminal protocol's [`ServerControl`](crate::frames::ServerControl) (connected, error), and
//!   [`DesktopServerControl::Clipboard`] when the target's clipboard text may reach the user;
//! - binary: display updates (see [`UpdateWriter`] and [`parse_update`]): `u8 1 | u16 width | u16 height |
//!   u16 count` then `count` rectangles `u16 x | u16 y | u16 w | u16 h | u8 encoding | u32 len | len bytes`.
//!   The width and height are the remote desktop's current size; the browser resizes its canvas when they
//!   change. Encodings are [`Encoding::Solid`] (4 bytes RGBA), [`Encoding::Png`] (a PNG of the rectangle) and
//!   [`Encoding::Jpeg`] (photo-like rectangles only, see [`encode_rect`]).
//!
//! [`Damage`] accumulates the damaged rectangles between two sends with bounded memory: a slow browser
//! gets fewer, fresher frames instead of a queue. Everything from the browser is untrusted; every parser
//! here bounds sizes and never panics.

use serde::{Deserialize, Serialize};

use crate::frames::{Credential, FrameError};

/// Largest binary input message accepted from a client, in bytes.
pub const MAX_INPUT_MESSAGE: usize = 4096;
/// Desktop sizes are clamped to `MIN_DIMENSION..=MAX_DIMENSION` (the display control channel's range).
pub const MIN_DIMENSION: u16 = 200;
/// See [`MIN_DIMENSION`].
pub const MAX_DIMENSION: u16 = 8192;
/// Most rectangles one display update carries, and most kept by [`Damage`] before it merges them.
pub const MAX_RECTS: usize = 64;
/// Largest display update a client accepts (a full 8192×8192 frame of uncompressible PNG fits).
pub const MAX_UPDATE_LEN: usize = 300 * 1024 * 1024;
/// Largest clipboard text either way, in UTF-8 bytes, whatever the configuration says.
pub const MAX_CLIPBOARD_BYTES: usize = 1024 * 1024;
/// Largest text message from a client: a clipboard message of [`MAX_CLIPBOARD_BYTES`] with JSON escaping.
pub const MAX_DESKTOP_TEXT: usize = 6 * MAX_CLIPBOARD_BYTES + 64;

/// A control message from the desktop client.
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum DesktopControl {
    /// Opens the desktop. Must come first, exactly once.
    Connect {
        /// The account on the target.
        username: String,
        /// Its password.
        password: String,
        /// The Windows domain, if any.
        #[serde(default)]
        domain: Option<String>,
        /// Initial desktop width in pixels.
        width: u16,
        /// Initial desktop height in pixels.
        height: u16,
    },
    /// The browser's desktop area changed size.
    Resize {
        /// Width in pixels.
        width: u16,
        /// Height in pixels.
        height: u16,
    },
    /// The user's clipboard text, for the target's clipboard.
    Clipboard {
        /// The text.
        text: String,
    },
}

/// Which way clipboard text may cross a desktop session, and how much. Text only: files and pictures
/// never cross.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClipboardPolicy {
    /// The user's clipboard text may reach the target.
    pub to_target: bool,
    /// The target's clipboard text may reach the user.
    pub to_client: bool,
    /// Largest text either way, in UTF-8 bytes (at most [`MAX_CLIPBOARD_BYTES`]).
    pub max_bytes: usize,
}

impl ClipboardPolicy {
    /// No clipboard either way.
    pub const OFF: ClipboardPolicy = ClipboardPolicy {
        to_target: false,
        to_client: false,
        max_bytes: 0,
    };

    /// Whether any clipboard text may cross.
    pub fn enabled(&self) -> bool {
        (self.to_target || self.to_client) && self.max_bytes > 0
    }

    /// The size cap, never above [`MAX_CLIPBOARD_BYTES`].
    pub fn cap(&self) -> usize {
        self.max_bytes.min(MAX_CLIPBOARD_BYTES)
    }
}

impl Default for ClipboardPolicy {
    /// Both ways, up to 256 KiB.
    fn default() -> Self {
        ClipboardPolicy {
            to_target: true,
            to_client: true,
            max_bytes: 256 * 1024,
        }
    }
}

/// A desktop-only message from the gateway to the client (beside the shared
/// [`ServerControl`](crate::frames::ServerControl)).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum DesktopServerControl {
    /// Text copied on the target, for the user's clipboard.
    Clipboard {
        /// The text.
        text: String,
    },
    /// A clipboard transfer the gateway refused (policy or size), in plain words; the session goes on.
    ClipboardRefused {
        /// Why.
        message: String,
    },
}

impl DesktopServerControl {
    /// The JSON text sent to the client.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| {
            r#"{"type":"clipboard_refused","message":"internal error"}"#.to_owned()
        })
    }
}

impl std::fmt::Debug for DesktopControl {
    // Credentials never reach a log through Debug.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DesktopControl::Connect {
                username,
                width,
                height,
                ..
            } => f
                .debug_struct("Connect")
                .field("username", username)
                .field("width", width)
                .field("height", height)
                .finish_non_exhaustive(),
            DesktopControl::Resize { width, height } => f
                .debug_struct("Resize")
                .field("width", width)
                .field("height", height)
                .finish(),
            // Clipboard text never reaches a log either; its size does.
            DesktopControl::Clipboard { text } => f
                .debug_struct("Clipboard")
                .field("bytes", &text.len())
                .finish_non_exhaustive(),
        }
    }
}

/// A desktop size in pixels, clamped to what the display control channel accepts (even width).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DesktopSize {
    /// Width.
    pub width: u16,
    /// Height.
    pub height: u16,
}

impl DesktopSize {
    /// Clamps a size a client reported.
    pub fn clamped(width: u16, height: u16) -> Self {
        DesktopSize {
            width: width.clamp(MIN_DIMENSION, MAX_DIMENSION) & !1,
            height: height.clamp(MIN_DIMENSION, MAX_DIMENSION),
        }
    }
}

/// A validated desktop connect request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesktopConnectRequest {
    /// The account on the target.
    pub username: String,
    /// The domain, if any.
    pub domain: Option<String>,
    /// The password (always [`Credential::Password`]).
    pub credential: Credential,
    /// Initial size.
    pub size: DesktopSize,
}

/// One input event from the browser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputEvent {
    /// A key by its PC/AT scancode; extended keys carry `0xE0` in the high byte (e.g. `0xE04B` left arrow).
    Key {
        /// The scancode.
        scancode: u16,
        /// Pressed (true) or released.
        down: bool,
    },
    /// A character the layout mapping could not express as a scancode.
    Unicode {
        /// The character.
        ch: char,
        /// Pressed (true) or released.
        down: bool,
    },
    /// The pointer moved to a desktop pixel.
    MouseMove {
        /// Column.
        x: u16,
        /// Row.
        y: u16,
    },
    /// A mouse button at a desktop pixel.
    MouseButton {
        /// 0 left, 1 middle, 2 right, 3 back, 4 forward (the DOM's numbering).
        button: u8,
        /// Pressed (true) or released.
        down: bool,
        /// Column.
        x: u16,
        /// Row.
        y: u16,
    },
    /// Wheel rotation, in units of 1/120 of a notch as the RDP wheel counts.
    Wheel {
        /// Vertical (true) or horizontal.
        vertical: bool,
        /// Signed rotation; positive is away from the user (up) or right.
        units: i16,
    },
    /// The secure attention sequence Ctrl+Alt+Del.
    CtrlAltDel,
    /// The browser lost focus: release every key and button it holds.
    ReleaseAll,
}

const TAG_KEY: u8 = 1;
const TAG_UNICODE: u8 = 2;
const TAG_MOVE: u8 = 3;
const TAG_BUTTON: u8 = 4;
const TAG_WHEEL: u8 = 5;
const TAG_CAD: u8 = 6;
const TAG_RELEASE_ALL: u8 = 7;

/// A cursor over untrusted bytes.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, pos: 0 }
    }

    fn done(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len())
            .ok_or_else(|| FrameError::Malformed(format!("truncated at byte {}", self.pos)))?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, FrameError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, FrameError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, FrameError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn flag(&mut self) -> Result<bool, FrameError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(FrameError::Malformed(format!("flag byte {other}"))),
        }
    }
}

/// Parses a text (control) message from a desktop client.
pub fn parse_control(text: &str) -> Result<DesktopControl, FrameError> {
    if text.len() > crate::frames::MAX_CONTROL_LEN {
        return Err(FrameError::TooLarge(text.len()));
    }
    serde_json::from_str(text).map_err(|e| FrameError::Malformed(e.to_string()))
}

/// Validates a connect's fields.
pub fn connect_request(control: DesktopControl) -> Result<DesktopConnectRequest, FrameError> {
    let DesktopControl::Connect {
        username,
        password,
        domain,
        width,
        height,
    } = control
    else {
        return Err(FrameError::Malformed(
            "the first message must be a connect".into(),
        ));
    };
    let valid = |s: &str| !s.is_empty() && s.len() <= 256 && !s.chars().any(char::is_control);
    if !valid(&username) {
        return Err(FrameError::BadUsername);
    }
    if domain.as_deref().is_some_and(|d| !valid(d)) {
        return Err(FrameError::BadUsername);
    }
    if password.is_empty() || password.len() > 1024 {
        return Err(FrameError::BadCredential);
    }
    Ok(DesktopConnectRequest {
        username,
        domain,
        credential: Credential::Password(password),
        size: DesktopSize::clamped(width, height),
    })
}

/// A desktop client message after validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DesktopMessage {
    /// Open the desktop.
    Connect(DesktopConnectRequest),
    /// The browser's area changed size.
    Resize(DesktopSize),
    /// Keyboard and mouse.
    Input(Vec<InputEvent>),
    /// The user's clipboard text (at most [`MAX_CLIPBOARD_BYTES`]).
    Clipboard(String),
}

/// Parses a text message of the desktop stream. Clipboard messages may be longer than other control
/// messages (up to [`MAX_DESKTOP_TEXT`]); the rest keep the control limit.
pub fn parse_desktop_text(text: &str) -> Result<DesktopMessage, FrameError> {
    if text.len() > MAX_DESKTOP_TEXT {
        return Err(FrameError::TooLarge(text.len()));
    }
    let control: DesktopControl =
        serde_json::from_str(text).map_err(|e| FrameError::Malformed(e.to_string()))?;
    if text.len() > crate::frames::MAX_CONTROL_LEN
        && !matches!(control, DesktopControl::Clipboard { .. })
    {
        return Err(FrameError::TooLarge(text.len()));
    }
    match control {
        DesktopControl::Clipboard { text } => {
            if text.len() > MAX_CLIPBOARD_BYTES {
                return Err(FrameError::TooLarge(text.len()));
            }
            Ok(DesktopMessage::Clipboard(text))
        }
        DesktopControl::Resize { width, height } => {
            Ok(DesktopMessage::Resize(DesktopSize::clamped(width, height)))
        }
        connect @ DesktopControl::Connect { .. } => {
            Ok(DesktopMessage::Connect(connect_request(connect)?))
        }
    }
}

/// Parses a binary message of the desktop stream (input events).
pub fn parse_desktop_binary(bytes: &[u8]) -> Result<DesktopMessage, FrameError> {
    parse_input(bytes).map(DesktopMessage::Input)
}

/// Parses a binary input message: one or more events, nothing left over.
pub fn parse_input(bytes: &[u8]) -> Result<Vec<InputEvent>, FrameError> {
    if bytes.len() > MAX_INPUT_MESSAGE {
        return Err(FrameError::TooLarge(bytes.len()));
    }
    if bytes.is_empty() {
        return Err(FrameError::Malformed("empty input message".into()));
    }
    let mut r = Reader::new(bytes);
    let mut events = Vec::new();
    while !r.done() {
        let event = match r.u8()? {
            TAG_KEY => {
                let down = r.flag()?;
                let scancode = r.u16()?;
                // Extended keys are 0xE0xx; the high byte is otherwise zero and the code non-zero.
                let (high, low) = (scancode >> 8, scancode & 0xff);
                if !(high == 0 || high == 0xE0) || low == 0 {
                    return Err(FrameError::Malformed(format!("scancode {scancode:#06x}")));
                }
                InputEvent::Key { scancode, down }
            }
            TAG_UNICODE => {
                let down = r.flag()?;
                let code = r.u32()?;
                let ch = char::from_u32(code)
                    .filter(|c| !c.is_control())
                    .ok_or_else(|| FrameError::Malformed(format!("character {code:#x}")))?;
                InputEvent::Unicode { ch, down }
            }
            TAG_MOVE => InputEvent::MouseMove {
                x: r.u16()?,
                y: r.u16()?,
            },
            TAG_BUTTON => {
                let down = r.flag()?;
                let button = r.u8()?;
                if button > 4 {
                    return Err(FrameError::Malformed(format!("mouse button {button}")));
                }
                InputEvent::MouseButton {
                    button,
                    down,
                    x: r.u16()?,
                    y: r.u16()?,
                }
            }
            TAG_WHEEL => {
                let vertical = r.flag()?;
                let units = i16::from_be_bytes([r.u8()?, r.u8()?]);
                InputEvent::Wheel { vertical, units }
            }
            TAG_CAD => InputEvent::CtrlAltDel,
            TAG_RELEASE_ALL => InputEvent::ReleaseAll,
            other => return Err(FrameError::Malformed(format!("input tag {other}"))),
        };
        events.push(event);
    }
    Ok(events)
}

/// Encodes input events as [`parse_input`] reads them (the browser's script writes the same bytes).
pub fn encode_input(events: &[InputEvent]) -> Vec<u8> {
    let mut out = Vec::with_capacity(events.len() * 6);
    for event in events {
        match *event {
            InputEvent::Key { scancode, down } => {
                out.extend_from_slice(&[TAG_KEY, u8::from(down)]);
                out.extend_from_slice(&scancode.to_be_bytes());
            }
            InputEvent::Unicode { ch, down } => {
                out.extend_from_slice(&[TAG_UNICODE, u8::from(down)]);
                out.extend_from_slice(&u32::from(ch).to_be_bytes());
            }
            InputEvent::MouseMove { x, y } => {
                out.push(TAG_MOVE);
                out.extend_from_slice(&x.to_be_bytes());
                out.extend_from_slice(&y.to_be_bytes());
            }
            InputEvent::MouseButton { button, down, x, y } => {
                out.extend_from_slice(&[TAG_BUTTON, u8::from(down), button]);
                out.extend_from_slice(&x.to_be_bytes());
                out.extend_from_slice(&y.to_be_bytes());
            }
            InputEvent::Wheel { vertical, units } => {
                out.extend_from_slice(&[TAG_WHEEL, u8::from(vertical)]);
                out.extend_from_slice(&units.to_be_bytes());
            }
            InputEvent::CtrlAltDel => out.push(TAG_CAD),
            InputEvent::ReleaseAll => out.push(TAG_RELEASE_ALL),
        }
    }
    out
}

/// A rectangle of the desktop: `x..x+width`, `y..y+height`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rect {
    /// Left column.
    pub x: u16,
    /// Top row.
    pub y: u16,
    /// Width in pixels (non-zero).
    pub width: u16,
    /// Height in pixels (non-zero).
    pub height: u16,
}

impl Rect {
    fn right(&self) -> u32 {
        u32::from(self.x) + u32::from(self.width)
    }

    fn bottom(&self) -> u32 {
        u32::from(self.y) + u32::from(self.height)
    }

    /// The area in pixels.
    pub fn area(&self) -> u64 {
        u64::from(self.width) * u64::from(self.height)
    }

    /// This rectangle cut to a `width`×`height` desktop; `None` when nothing is left.
    pub fn clipped(&self, width: u16, height: u16) -> Option<Rect> {
        let right = self.right().min(u32::from(width));
        let bottom = self.bottom().min(u32::from(height));
        let w = u16::try_from(right.checked_sub(u32::from(self.x))?).ok()?;
        let h = u16::try_from(bottom.checked_sub(u32::from(self.y))?).ok()?;
        (w > 0 && h > 0).then_some(Rect {
            x: self.x,
            y: self.y,
            width: w,
            height: h,
        })
    }

    /// The smallest rectangle holding both.
    pub fn union(&self, other: &Rect) -> Rect {
        let x = self.x.min(other.x);
        let y = self.y.min(other.y);
        let right = self.right().max(other.right());
        let bottom = self.bottom().max(other.bottom());
        Rect {
            x,
            y,
            width: u16::try_from(right - u32::from(x)).unwrap_or(u16::MAX),
            height: u16::try_from(bottom - u32::from(y)).unwrap_or(u16::MAX),
        }
    }

    /// Whether the two overlap or touch.
    pub fn touches(&self, other: &Rect) -> bool {
        u32::from(self.x) <= other.right()
            && u32::from(other.x) <= self.right()
            && u32::from(self.y) <= other.bottom()
            && u32::from(other.y) <= self.bottom()
    }
}

/// The damaged region between two sends: at most [`MAX_RECTS`] rectangles, merged when they touch, all
/// merged into their bounding box when there would be more. Memory is bounded whatever the target sends.
#[derive(Debug, Clone, Default)]
pub struct Damage {
    rects: Vec<Rect>,
}

impl Damage {
    /// Adds a damaged rectangle (already clipped to the desktop).
    pub fn add(&mut self, rect: Rect) {
        if rect.width == 0 || rect.height == 0 {
            return;
        }
        let mut merged = rect;
        // Merging can make the new rectangle touch others, so repeat until it touches none.
        loop {
            let before = self.rects.len();
            self.rects.retain(|r| {
                if r.touches(&merged) {
                    merged = merged.union(r);
                    false
                } else {
                    true
                }
            });
            if self.rects.len() == before {
                break;
            }
        }
        self.rects.push(merged);
        if self.rects.len() > MAX_RECTS {
            let all = self
                .rects
                .iter()
                .skip(1)
                .fold(self.rects[0], |a, r| a.union(r));
            self.rects.clear();
            self.rects.push(all);
        }
    }

    /// Marks the whole desktop damaged (a resize, a new viewer).
    pub fn add_all(&mut self, width: u16, height: u16) {
        self.rects.clear();
        if width > 0 && height > 0 {
            self.rects.push(Rect {
                x: 0,
                y: 0,
                width,
                height,
            });
        }
    }

    /// Whether nothing is damaged.
    pub fn is_empty(&self) -> bool {
        self.rects.is_empty()
    }

    /// Takes the damaged rectangles, leaving none.
    pub fn take(&mut self) -> Vec<Rect> {
        std::mem::take(&mut self.rects)
    }
}

/// How one rectangle's pixels are carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Encoding {
    /// One color for the whole rectangle: 4 bytes RGBA.
    Solid = 1,
    /// A PNG image of the rectangle (8-bit RGBA).
    Png = 2,
    /// A JPEG image of the rectangle (lossy; only where it measured far smaller than the PNG).
    Jpeg = 3,
}

impl Encoding {
    fn from_u8(value: u8) -> Option<Encoding> {
        match value {
            1 => Some(Encoding::Solid),
            2 => Some(Encoding::Png),
            3 => Some(Encoding::Jpeg),
            _ => None,
        }
    }
}

/// Why pixels could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The pixel buffer does not match the rectangle.
    #[error("{got} bytes of pixels for a {width}x{height} rectangle")]
    Size {
        /// Bytes given.
        got: usize,
        /// Rectangle width.
        width: u16,
        /// Rectangle height.
        height: u16,
    },
    /// The PNG encoder failed.
    #[error("png: {0}")]
    Png(String),
    /// The JPEG encoder failed.
    #[error("jpeg: {0}")]
    Jpeg(String),
}

/// Encodes one rectangle's tightly packed RGBA pixels: [`Encoding::Solid`] when every pixel is the same,
/// else a PNG with fast deflate and the Up filter (see ARCHITECTURE.md for the measurements).
pub fn encode_rect(rect: Rect, rgba: &[u8]) -> Result<(Encoding, Vec<u8>), EncodeError> {
    let expected = usize::from(rect.width) * usize::from(rect.height) * 4;
    if rgba.len() != expected || expected == 0 {
        return Err(EncodeError::Size {
            got: rgba.len(),
            width: rect.width,
            height: rect.height,
        });
    }
    let first = &rgba[..4];
    if rgba.chunks_exact(4).all(|p| p == first) {
        return Ok((Encoding::Solid, first.to_vec()));
    }
    let png = encode_png(rect.width, rect.height, rgba)?;
    // Text and UI compress to well under a byte per pixel as PNG and stay lossless. A rectangle that does
    // not (a photo, a video frame, a gradient) is tried as JPEG, and sent so only when it measures at most
    // a third of the PNG: lossy only where it clearly wins.
    let pixels = usize::from(rect.width) * usize::from(rect.height);
    if pixels >= LOSSY_MIN_PIXELS
        && png.len() > pixels
        && let Ok(jpeg) = encode_jpeg(rect.width, rect.height, rgba)
        && jpeg.len() * 3 <= png.len()
    {
        return Ok((Encoding::Jpeg, jpeg));
    }
    Ok((Encoding::Png, png))
}

/// Smallest rectangle tried as JPEG: below this the PNG is small anyway and JPEG's 8×8 blocks smear edges.
pub const LOSSY_MIN_PIXELS: usize = 64 * 64;
/// JPEG quality for photo-like rectangles.
const JPEG_QUALITY: u8 = 80;

/// Encodes tightly packed RGBA pixels as a baseline JPEG (alpha dropped).
pub fn encode_jpeg(width: u16, height: u16, rgba: &[u8]) -> Result<Vec<u8>, EncodeError> {
    let expected = usize::from(width) * usize::from(height) * 4;
    if rgba.len() != expected || expected == 0 {
        return Err(EncodeError::Size {
            got: rgba.len(),
            width,
            height,
        });
    }
    let mut out = Vec::with_capacity(expected / 16);
    jpeg_encoder::Encoder::new(&mut out, JPEG_QUALITY)
        .encode(rgba, width, height, jpeg_encoder::ColorType::Rgba)
        .map_err(|e| EncodeError::Jpeg(e.to_string()))?;
    Ok(out)
}

/// Encodes tightly packed RGBA pixels as a PNG with fast deflate and the Up filter.
pub fn encode_png(width: u16, height: u16, rgba: &[u8]) -> Result<Vec<u8>, EncodeError> {
    let expected = usize::from(width) * usize::from(height) * 4;
    if rgba.len() != expected || expected == 0 {
        return Err(EncodeError::Size {
            got: rgba.len(),
            width,
            height,
        });
    }
    let mut out = Vec::with_capacity(expected / 8);
    {
        let mut encoder = png::Encoder::new(&mut out, u32::from(width), u32::from(height));
        encoder.set_color(png::ColorType::Rgba);
        encoder.set_depth(png::BitDepth::Eight);
        encoder.set_compression(png::Compression::Fast);
        encoder.set_filter(png::Filter::Up);
        let mut writer = encoder
            .write_header()
            .map_err(|e| EncodeError::Png(e.to_string()))?;
        writer
            .write_image_data(rgba)
            .map_err(|e| EncodeError::Png(e.to_string()))?;
        writer
            .finish()
            .map_err(|e| EncodeError::Png(e.to_string()))?;
    }
    Ok(out)
}

/// Builds one display update message.
#[derive(Debug)]
pub struct UpdateWriter {
    buf: Vec<u8>,
    count: u16,
}

impl UpdateWriter {
    /// Starts an update for a desktop of this size.
    pub fn new(width: u16, height: u16) -> Self {
        let mut buf = Vec::with_capacity(64 * 1024);
        buf.push(1);
        buf.extend_from_slice(&width.to_be_bytes());
        buf.extend_from_slice(&height.to_be_bytes());
        buf.extend_from_slice(&0u16.to_be_bytes());
        UpdateWriter { buf, count: 0 }
    }

    /// Appends an encoded rectangle.
    pub fn push(&mut self, rect: Rect, encoding: Encoding, data: &[u8]) {
        for v in [rect.x, rect.y, rect.width, rect.height] {
            self.buf.extend_from_slice(&v.to_be_bytes());
        }
        self.buf.push(encoding as u8);
        let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
        self.buf.extend_from_slice(&len.to_be_bytes());
        self.buf.extend_from_slice(data);
        self.count = self.count.saturating_add(1);
    }

    /// How many rectangles were pushed.
    pub fn len(&self) -> usize {
        usize::from(self.count)
    }

    /// Whether no rectangle was pushed.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The finished message.
    pub fn finish(mut self) -> Vec<u8> {
        let [a, b] = self.count.to_be_bytes();
        self.buf[5] = a;
        self.buf[6] = b;
        self.buf
    }
}

/// A parsed display update (for tests, the CLI and the fuzzer; the browser has its own reader).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    /// Desktop width.
    pub width: u16,
    /// Desktop height.
    pub height: u16,
    /// The rectangles, in order.
    pub rects: Vec<UpdateRect>,
}

/// One rectangle of an [`Update`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateRect {
    /// Where.
    pub rect: Rect,
    /// How the data is encoded.
    pub encoding: Encoding,
    /// The encoded pixels.
    pub data: Vec<u8>,
}

/// Parses a display update; every rectangle must lie inside the desktop.
pub fn parse_update(bytes: &[u8]) -> Result<Update, FrameError> {
    if bytes.len() > MAX_UPDATE_LEN {
        return Err(FrameError::TooLarge(bytes.len()));
    }
    let mut r = Reader::new(bytes);
    if r.u8()? != 1 {
        return Err(FrameError::Malformed("not a display update".into()));
    }
    let width = r.u16()?;
    let height = r.u16()?;
    let count = usize::from(r.u16()?);
    if count > MAX_RECTS {
        return Err(FrameError::Malformed(format!("{count} rectangles")));
    }
    let mut rects = Vec::with_capacity(count);
    for _ in 0..count {
        let rect = Rect {
            x: r.u16()?,
            y: r.u16()?,
            width: r.u16()?,
            height: r.u16()?,
        };
        if rect.clipped(width, height) != Some(rect) {
            return Err(FrameError::Malformed(format!(
                "rectangle {rect:?} outside {width}x{height}"
            )));
        }
        let encoding = r.u8()?;
        let encoding = Encoding::from_u8(encoding)
            .ok_or_else(|| FrameError::Malformed(format!("encoding {encoding}")))?;
        let len = usize::try_from(r.u32()?).unwrap_or(usize::MAX);
        let data = r.take(len)?.to_vec();
        if encoding == Encoding::Solid && data.len() != 4 {
            return Err(FrameError::Malformed(
                "solid rectangle without 4 bytes".into(),
            ));
        }
        rects.push(UpdateRect {
            rect,
            encoding,
            data,
        });
    }
    if !r.done() {
        return Err(FrameError::Malformed(
            "bytes after the last rectangle".into(),
        ));
    }
    Ok(Update {
        width,
        height,
        rects,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn clipboard_messages_may_be_long_but_other_control_may_not() {
        let text = "ä\n\t".repeat(20_000);
        let json =
            serde_json::to_string(&DesktopControl::Clipboard { text: text.clone() }).unwrap();
        assert!(json.len() > crate::frames::MAX_CONTROL_LEN);
        assert_eq!(
            parse_desktop_text(&json),
            Ok(DesktopMessage::Clipboard(text))
        );
        let too_long = serde_json::to_string(&DesktopControl::Clipboard {
            text: "x".repeat(MAX_CLIPBOARD_BYTES + 1),
        })
        .unwrap();
        assert!(matches!(
            parse_desktop_text(&too_long),
            Err(FrameError::TooLarge(_))
        ));
        let padded_resize = format!(
            r#"{{"type":"resize","width":800,"height":600}}{}"#,
            " ".repeat(crate::frames::MAX_CONTROL_LEN)
        );
        assert!(matches!(
            parse_desktop_text(&padded_resize),
            Err(FrameError::TooLarge(_))
        ));
        assert!(matches!(
            parse_desktop_text(&"x".repeat(MAX_DESKTOP_TEXT + 1)),
            Err(FrameError::TooLarge(_))
        ));
        // The text never reaches a log.
        let debug = format!(
            "{:?}",
            DesktopControl::Clipboard {
                text: "secret".into()
            }
        );
        assert!(!debug.contains("secret"), "{debug}");
    }

    #[test]
    fn clipboard_policy_caps_and_switches_off() {
        assert!(ClipboardPolicy::default().enabled());
        assert!(!ClipboardPolicy::OFF.enabled());
        let big = ClipboardPolicy {
            max_bytes: usize::MAX,
            ..ClipboardPolicy::default()
        };
        assert_eq!(big.cap(), MAX_CLIPBOARD_BYTES);
        assert_eq!(
            DesktopServerControl::Clipboard {
                text: "a\"b".into()
            }
            .to_json(),
            r#"{"type":"clipboard","text":"a\"b"}"#
        );
    }

    fn rect(x: u16, y: u16, width: u16, height: u16) -> Rect {
        Rect {
            x,
            y,
            width,
            height,
        }
    }

    #[test]
    fn connect_parses_clamps_and_redacts() {
        let control = parse_control(
            r#"{"type":"connect","username":"alice","password":"s3cret","width":1281,"height":50}"#,
        )
        .unwrap();
        assert!(!format!("{control:?}").contains("s3cret"));
        let request = connect_request(control).unwrap();
        assert_eq!(
            request.size,
            DesktopSize {
                width: 1280,
                height: MIN_DIMENSION
            }
        );
        assert_eq!(request.credential, Credential::Password("s3cret".into()));
    }

    #[test]
    fn hostile_controls_are_refused() {
        for case in [
            r#"{"type":"connect","username":"","password":"x","width":800,"height":600}"#,
            r#"{"type":"connect","username":"a\u0000","password":"x","width":800,"height":600}"#,
            r#"{"type":"connect","username":"a","password":"","width":800,"height":600}"#,
            r#"{"type":"connect","username":"a","password":"x","width":800,"height":600,"x":1}"#,
            r#"{"type":"resize","width":800,"height":600}"#,
        ] {
            let parsed = parse_control(case).and_then(connect_request);
            assert!(parsed.is_err(), "{case}");
        }
    }

    #[test]
    fn input_round_trips() {
        let events = vec![
            InputEvent::Key {
                scancode: 0xE04B,
                down: true,
            },
            InputEvent::Key {
                scancode: 0x1E,
                down: false,
            },
            InputEvent::Unicode {
                ch: 'é',
                down: true,
            },
            InputEvent::MouseMove { x: 10, y: 65535 },
            InputEvent::MouseButton {
                button: 2,
                down: true,
                x: 1,
                y: 2,
            },
            InputEvent::Wheel {
                vertical: true,
                units: -120,
            },
            InputEvent::CtrlAltDel,
            InputEvent::ReleaseAll,
        ];
        assert_eq!(parse_input(&encode_input(&events)).unwrap(), events);
    }

    #[test]
    fn hostile_input_is_refused() {
        for case in [
            &[][..],
            &[9],
            &[TAG_KEY, 1, 0x12],
            &[TAG_KEY, 2, 0, 0x1e],
            &[TAG_KEY, 1, 0x12, 0x1e],
            &[TAG_KEY, 1, 0, 0],
            &[TAG_UNICODE, 1, 0, 0, 0xd8, 0],
            &[TAG_UNICODE, 1, 0, 0, 0, 7],
            &[TAG_BUTTON, 1, 5, 0, 0, 0, 0],
            &[TAG_MOVE, 0, 0, 0],
        ] {
            assert!(parse_input(case).is_err(), "{case:?}");
        }
        assert_eq!(
            parse_input(&vec![TAG_CAD; MAX_INPUT_MESSAGE + 1]),
            Err(FrameError::TooLarge(MAX_INPUT_MESSAGE + 1))
        );
    }

    /// A photo-like picture: a gradient with grain, which PNG cannot compress much.
    fn photo(width: u16, height: u16) -> Vec<u8> {
        let mut seed = 0x2545_f491_u32;
        let mut out = Vec::new();
        for y in 0..u32::from(height) {
            for x in 0..u32::from(width) {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                let grain = (seed % 24) as u8;
                out.extend([
                    (x % 200) as u8 + grain,
                    (y % 200) as u8 + grain,
                    120 + grain,
                    255,
                ]);
            }
        }
        out
    }

    /// A text-like picture: black glyph strokes on white.
    fn text(width: u16, height: u16) -> Vec<u8> {
        let mut out = Vec::new();
        for y in 0..height {
            for x in 0..width {
                let ink = (y % 16) < 10 && (x % 9 == 2 || (y % 16 == 4 && x % 9 < 6));
                out.extend(if ink {
                    [0, 0, 0, 255]
                } else {
                    [255, 255, 255, 255]
                });
            }
        }
        out
    }

    #[test]
    fn lossy_only_where_it_clearly_wins() {
        let r = rect(0, 0, 256, 128);
        let (encoding, jpeg) = encode_rect(r, &photo(256, 128)).unwrap();
        let png = encode_png(256, 128, &photo(256, 128)).unwrap();
        assert_eq!(
            encoding,
            Encoding::Jpeg,
            "png {} bytes, jpeg {}",
            png.len(),
            jpeg.len()
        );
        assert!(jpeg.len() * 3 <= png.len());
        let (encoding, _) = encode_rect(r, &text(256, 128)).unwrap();
        assert_eq!(encoding, Encoding::Png, "text stays lossless");
        // Small photo-like rectangles stay lossless too.
        let (encoding, _) = encode_rect(rect(0, 0, 32, 32), &photo(32, 32)).unwrap();
        assert_eq!(encoding, Encoding::Png);
        // A JPEG update parses like any other.
        let mut writer = UpdateWriter::new(256, 128);
        writer.push(r, Encoding::Jpeg, &jpeg);
        assert!(parse_update(&writer.finish()).is_ok());
    }

    #[test]
    fn damage_merges_touching_and_stays_bounded() {
        let mut damage = Damage::default();
        damage.add(rect(0, 0, 10, 10));
        damage.add(rect(10, 0, 10, 10));
        damage.add(rect(100, 100, 1, 1));
        damage.add(rect(5, 5, 0, 10));
        let mut rects = damage.take();
        rects.sort_by_key(|r| r.x);
        assert_eq!(rects, vec![rect(0, 0, 20, 10), rect(100, 100, 1, 1)]);
        assert!(damage.is_empty());
        for i in 0..1000u16 {
            damage.add(rect(i * 3 % 4000, i * 7 % 3000, 1, 1));
        }
        let rects = damage.take();
        assert!(rects.len() <= MAX_RECTS, "{}", rects.len());
        assert!(!rects.is_empty());
    }

    #[test]
    fn clipping_keeps_rects_inside() {
        assert_eq!(
            rect(10, 10, 100, 100).clipped(50, 60),
            Some(rect(10, 10, 40, 50))
        );
        assert_eq!(rect(60, 10, 10, 10).clipped(50, 60), None);
        assert_eq!(rect(65535, 65535, 65535, 65535).clipped(100, 100), None);
    }

    #[test]
    fn update_round_trips() {
        let solid = rect(0, 0, 4, 2);
        let pixels = vec![7u8; 4 * 2 * 4];
        let (enc, data) = encode_rect(solid, &pixels).unwrap();
        assert_eq!(
            (enc, data.as_slice()),
            (Encoding::Solid, &[7u8, 7, 7, 7][..])
        );
        let picture = rect(4, 0, 2, 2);
        let pixels: Vec<u8> = (0..16).collect();
        let (enc2, data2) = encode_rect(picture, &pixels).unwrap();
        assert_eq!(enc2, Encoding::Png);
        let mut writer = UpdateWriter::new(8, 2);
        writer.push(solid, enc, &data);
        writer.push(picture, enc2, &data2);
        let update = parse_update(&writer.finish()).unwrap();
        assert_eq!((update.width, update.height), (8, 2));
        assert_eq!(update.rects.len(), 2);
        let decoded = png::Decoder::new(std::io::Cursor::new(&update.rects[1].data))
            .read_info()
            .unwrap();
        assert_eq!(decoded.info().width, 2);
    }

    #[test]
    fn hostile_updates_are_refused() {
        let mut writer = UpdateWriter::new(8, 2);
        writer.push(rect(4, 0, 8, 2), Encoding::Solid, &[0; 4]);
        assert!(parse_update(&writer.finish()).is_err());
        let mut writer = UpdateWriter::new(8, 2);
        writer.push(rect(0, 0, 1, 1), Encoding::Solid, &[0; 3]);
        assert!(parse_update(&writer.finish()).is_err());
        assert!(parse_update(&[1, 0, 8, 0, 2, 0xff, 0xff]).is_err());
        assert!(
            parse_update(&[
                1, 0, 8, 0, 2, 0, 1, 0, 0, 0, 0, 0, 1, 0, 1, 2, 0xff, 0xff, 0xff, 0xff
            ])
            .is_err()
        );
        assert!(encode_rect(rect(0, 0, 2, 2), &[0; 15]).is_err());
    }
}
