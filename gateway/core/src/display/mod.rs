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
//!   [`Encoding::Jpeg`] (photo-like rectangles only; the RDP crate's encoder decides).
//!
//! [`Damage`] accumulates the damaged rectangles between two sends with bounded memory: a slow browser
//! gets fewer, fresher frames instead of a queue. Everything from the browser is untrusted; every parser
//! here bounds sizes and never panics.
//!
//! By concern: [`control`] (JSON control, clipboard policy, the connect request), [`input`] (the input
//! event codec), [`geometry`] (rectangles and damage) and [`framing`] (display update messages). The
//! golden vectors in `gateway/core/tests/golden/desktop.json` pin the binary encodings for this crate and
//! for the browser's `desktop-protocol.js` alike.

pub mod control;
pub mod framing;
pub mod geometry;
pub mod input;
mod reader;

pub use control::{
    ClipboardPolicy, DesktopConnectRequest, DesktopControl, DesktopMessage, DesktopServerControl,
    DesktopSize, connect_request, parse_control, parse_desktop_binary, parse_desktop_text,
};
pub use framing::{Encoding, Update, UpdateRect, UpdateWriter, parse_update};
pub use geometry::{Damage, Rect};
pub use input::{InputEvent, encode_input, parse_input};

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

#[cfg(test)]
mod tests;
