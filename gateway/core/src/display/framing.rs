//! Display update framing, gateway to browser: `u8 1 | u16 width | u16 height | u16 count`, then per
//! rectangle `u16 x | u16 y | u16 w | u16 h | u8 encoding | u32 len | len bytes`. The pixels inside are
//! encoded elsewhere (the RDP crate); this module only frames and checks them.

use super::reader::Reader;
use super::{MAX_RECTS, MAX_UPDATE_LEN, Rect};
use crate::frames::FrameError;

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
