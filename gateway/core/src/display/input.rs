//! The browser's input events (keys, characters, pointer, wheel, Ctrl+Alt+Del, release all) and their
//! binary encoding: each event a `u8` tag then fixed big-endian fields, several to a message.

use super::MAX_INPUT_MESSAGE;
use super::reader::Reader;
use crate::frames::FrameError;

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

pub(super) const TAG_KEY: u8 = 1;
pub(super) const TAG_UNICODE: u8 = 2;
pub(super) const TAG_MOVE: u8 = 3;
pub(super) const TAG_BUTTON: u8 = 4;
pub(super) const TAG_WHEEL: u8 = 5;
pub(super) const TAG_CAD: u8 = 6;
pub(super) const TAG_RELEASE_ALL: u8 = 7;

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
