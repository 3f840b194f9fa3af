//! The gateway's own checks of every fast-path frame a target sends, before ironrdp decodes it.
//!
//! ironrdp is lenient on purpose: a malformed bitmap, a truncated update or an unsupported command is
//! logged and skipped, and the session goes on. The gateway faces untrusted servers and records what it
//! decodes, so it is strict instead: a frame that does not decode, a rectangle outside the desktop, a codec
//! or bulk compression that was never negotiated, drawing orders (not negotiated either), an oversized
//! pointer, a palette of more than 256 colors, or a fragment chain longer than [`MAX_FRAGMENTED`] ends the
//! session with an error that says which.

use ironrdp_core::{ReadCursor, decode_cursor};
use ironrdp_pdu::fast_path::{
    EncryptionFlags, FastPathHeader, FastPathUpdate, FastPathUpdatePdu, Fragmentation, UpdateCode,
};
use ironrdp_pdu::pointer::PointerUpdateData;
use ironrdp_pdu::surface_commands::SurfaceCommand;

/// The most bytes one fragmented update may add up to.
pub const MAX_FRAGMENTED: usize = 8 * 1024 * 1024;
/// The largest pointer a target may send (MS-RDPBCGR allows 384×384 large pointers).
const MAX_POINTER: u16 = 384;

/// Checks fast-path frames against the negotiated session.
#[derive(Debug, Default)]
pub(crate) struct Strict {
    fragmented: usize,
}

impl Strict {
    /// Checks one fast-path frame for a `width`×`height` desktop.
    pub(crate) fn check_fast_path(
        &mut self,
        frame: &[u8],
        width: u16,
        height: u16,
    ) -> Result<(), String> {
        let mut cursor = ReadCursor::new(frame);
        let header = decode_cursor::<FastPathHeader>(&mut cursor)
            .map_err(|e| format!("malformed fast-path header: {e}"))?;
        if header.flags.contains(EncryptionFlags::ENCRYPTED) {
            return Err("an encrypted fast-path frame inside TLS (standard security)".into());
        }
        while !cursor.is_empty() {
            let pdu = decode_cursor::<FastPathUpdatePdu<'_>>(&mut cursor)
                .map_err(|e| format!("malformed fast-path update: {e}"))?;
            if pdu.compression_flags.is_some_and(|flags| !flags.is_empty()) {
                return Err(
                    "a bulk-compressed update, but the gateway negotiated no compression".into(),
                );
            }
            match pdu.fragmentation {
                Fragmentation::Single => {
                    self.fragmented = 0;
                    check_update(pdu.update_code, pdu.data, width, height)?;
                }
                Fragmentation::First | Fragmentation::Next | Fragmentation::Last => {
                    if pdu.fragmentation == Fragmentation::First {
                        self.fragmented = 0;
                    }
                    self.fragmented = self.fragmented.saturating_add(pdu.data.len());
                    if self.fragmented > MAX_FRAGMENTED {
                        return Err(format!(
                            "a fragmented update longer than {MAX_FRAGMENTED} bytes"
                        ));
                    }
                    if pdu.fragmentation == Fragmentation::Last {
                        self.fragmented = 0;
                    }
                }
            }
        }
        Ok(())
    }
}

fn check_update(code: UpdateCode, data: &[u8], width: u16, height: u16) -> Result<(), String> {
    let decodable = matches!(
        code,
        UpdateCode::Orders
            | UpdateCode::Bitmap
            | UpdateCode::Palette
            | UpdateCode::SurfaceCommands
            | UpdateCode::ColorPointer
            | UpdateCode::NewPointer
            | UpdateCode::LargePointer
    );
    if !decodable {
        return Ok(());
    }
    let update = FastPathUpdate::decode_with_code(data, code)
        .map_err(|e| format!("malformed {code:?} update: {e}"))?;
    let inside = |left: u16, top: u16, right: u16, bottom: u16| {
        left <= right && top <= bottom && right < width && bottom < height
    };
    match update {
        FastPathUpdate::Orders(_) => {
            Err("drawing orders, which the gateway did not negotiate".into())
        }
        FastPathUpdate::Bitmap(bitmap) => {
            for r in &bitmap.rectangles {
                let d = &r.rectangle;
                if !inside(d.left, d.top, d.right, d.bottom) {
                    return Err(format!(
                        "a bitmap at {},{}-{},{} outside the {width}x{height} desktop",
                        d.left, d.top, d.right, d.bottom
                    ));
                }
                if r.width == 0
                    || r.height == 0
                    || r.width > width.saturating_add(64)
                    || r.height > height.saturating_add(64)
                    || u32::from(d.right - d.left) >= u32::from(r.width)
                    || u32::from(d.bottom - d.top) >= u32::from(r.height)
                {
                    return Err(format!(
                        "a bitmap of {}x{} pixels for a {}x{} rectangle",
                        r.width,
                        r.height,
                        d.right - d.left + 1,
                        d.bottom - d.top + 1
                    ));
                }
            }
            Ok(())
        }
        FastPathUpdate::SurfaceCommands(commands) => {
            for command in &commands {
                if let SurfaceCommand::SetSurfaceBits(bits)
                | SurfaceCommand::StreamSurfaceBits(bits) = command
                {
                    let d = &bits.destination;
                    if d.right == 0
                        || d.bottom == 0
                        || !inside(d.left, d.top, d.right - 1, d.bottom - 1)
                    {
                        return Err(format!(
                            "a surface command at {},{}-{},{} outside the {width}x{height} desktop",
                            d.left, d.top, d.right, d.bottom
                        ));
                    }
                    if bits.extended_bitmap_data.codec_id != 0 {
                        return Err(format!(
                            "a surface command with codec {}, which the gateway did not negotiate",
                            bits.extended_bitmap_data.codec_id
                        ));
                    }
                }
            }
            Ok(())
        }
        FastPathUpdate::Pointer(pointer) => {
            let size = match &pointer {
                PointerUpdateData::Color(c) => Some((c.width, c.height)),
                PointerUpdateData::New(p) => Some((p.color_pointer.width, p.color_pointer.height)),
                PointerUpdateData::Large(p) => Some((p.width, p.height)),
                _ => None,
            };
            match size {
                Some((w, h)) if w > MAX_POINTER || h > MAX_POINTER => {
                    Err(format!("a pointer of {w}x{h} pixels"))
                }
                _ => Ok(()),
            }
        }
        FastPathUpdate::Palette(palette) => {
            let colors = palette
                .get(2..6)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .unwrap_or(u32::MAX);
            if colors > 256 {
                return Err(format!("a palette of {colors} colors"));
            }
            Ok(())
        }
    }
}
