//! Pixel encoders for the desktop stream: one damaged rectangle of the framebuffer as a solid colour, a
//! PNG or (photo-like rectangles only) a JPEG, and the whole framebuffer as a PNG keyframe for the
//! recording. The framing around them is sallyport-core's `display::framing`.

use sallyport_core::display::{Encoding, Rect};

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

/// Smallest rectangle tried as JPEG: below this the PNG is small anyway and JPEG's 8×8 blocks smear edges.
pub const LOSSY_MIN_PIXELS: usize = 64 * 64;
/// JPEG quality for photo-like rectangles.
const JPEG_QUALITY: u8 = 80;

/// The byte length of tightly packed RGBA pixels for `width`×`height`, or why `rgba` is not that.
fn checked_len(width: u16, height: u16, rgba: &[u8]) -> Result<usize, EncodeError> {
    let expected = usize::from(width) * usize::from(height) * 4;
    if rgba.len() != expected || expected == 0 {
        return Err(EncodeError::Size {
            got: rgba.len(),
            width,
            height,
        });
    }
    Ok(expected)
}

/// Encodes one rectangle's tightly packed RGBA pixels: [`Encoding::Solid`] when every pixel is the same,
/// else a PNG with fast deflate and the Up filter (see ARCHITECTURE.md for the measurements).
pub fn encode_rect(rect: Rect, rgba: &[u8]) -> Result<(Encoding, Vec<u8>), EncodeError> {
    checked_len(rect.width, rect.height, rgba)?;
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

/// Encodes tightly packed RGBA pixels as a baseline JPEG (alpha dropped).
pub fn encode_jpeg(width: u16, height: u16, rgba: &[u8]) -> Result<Vec<u8>, EncodeError> {
    let expected = checked_len(width, height, rgba)?;
    let mut out = Vec::with_capacity(expected / 16);
    jpeg_encoder::Encoder::new(&mut out, JPEG_QUALITY)
        .encode(rgba, width, height, jpeg_encoder::ColorType::Rgba)
        .map_err(|e| EncodeError::Jpeg(e.to_string()))?;
    Ok(out)
}

/// Encodes tightly packed RGBA pixels as a PNG with fast deflate and the Up filter.
pub fn encode_png(width: u16, height: u16, rgba: &[u8]) -> Result<Vec<u8>, EncodeError> {
    let expected = checked_len(width, height, rgba)?;
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use sallyport_core::display::{Encoding, Rect, UpdateWriter, parse_update};

    use super::*;

    fn rect(x: u16, y: u16, width: u16, height: u16) -> Rect {
        Rect {
            x,
            y,
            width,
            height,
        }
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
    fn a_wrong_pixel_count_is_refused() {
        assert!(encode_rect(rect(0, 0, 2, 2), &[0; 15]).is_err());
        assert!(encode_png(0, 2, &[]).is_err());
        assert!(encode_jpeg(2, 2, &[0; 17]).is_err());
    }
}
