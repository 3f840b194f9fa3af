//! Desktop (RDP) replay for the reviewer, without any I/O: the recording's keyframes (PNGs of the gateway's
//! framebuffer, taken periodically and at activation) on the session's timeline. The frame shown at a moment is
//! the last keyframe at or before it, so seeking anywhere costs one PNG decode; the server PDUs between two
//! keyframes are stepped over (they are what a full decoder would draw from; until the reviewer has one, the
//! picture moves from keyframe to keyframe).
//!
//! Drawn in the terminal with half-block cells (two pixels per cell, 24-bit colour), which every terminal and
//! the appliance's serial console show. Hostile recordings: PNGs are decoded under a memory limit and frames
//! larger than [`MAX_PIXELS`] are refused, so a forged keyframe cannot allocate gigabytes.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Color;
use ratatui::widgets::Widget;
use sallyport_recordings::{DesktopEvent, Event, TimedEvent};

use crate::replay::Replay;

/// The largest frame decoded: 8192×8192 would be 256 MiB; RDP desktops stay far below this.
pub const MAX_PIXELS: u64 = 4096 * 4096;

/// A decoded frame, 8-bit RGBA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Rows of RGBA pixels.
    pub rgba: Vec<u8>,
}

impl Image {
    fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        let i = ((y * self.width + x) * 4) as usize;
        match self.rgba.get(i..i + 3) {
            Some(&[r, g, b]) => [r, g, b],
            _ => [0, 0, 0],
        }
    }

    /// The mean colour of the pixels in `[x0, x1) × [y0, y1)` (at least one pixel).
    fn mean(&self, x0: u32, x1: u32, y0: u32, y1: u32) -> Color {
        let (x1, y1) = (
            x1.max(x0 + 1).min(self.width),
            y1.max(y0 + 1).min(self.height),
        );
        let mut sum = [0u64; 3];
        let mut n = 0u64;
        // At most 8×8 samples per cell half, so drawing stays cheap on large frames.
        let step_x = ((x1 - x0) / 8).max(1) as usize;
        let step_y = ((y1 - y0) / 8).max(1) as usize;
        for y in (y0..y1).step_by(step_y) {
            for x in (x0..x1).step_by(step_x) {
                let p = self.pixel(x, y);
                for c in 0..3 {
                    sum[c] += u64::from(p[c]);
                }
                n += 1;
            }
        }
        let n = n.max(1);
        Color::Rgb((sum[0] / n) as u8, (sum[1] / n) as u8, (sum[2] / n) as u8)
    }
}

/// Decodes a keyframe's PNG into RGBA, refusing frames over [`MAX_PIXELS`].
pub fn decode_png(png_bytes: &[u8]) -> anyhow::Result<Image> {
    let mut decoder = png::Decoder::new_with_limits(
        std::io::Cursor::new(png_bytes),
        png::Limits {
            bytes: (MAX_PIXELS * 4) as usize,
        },
    );
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info()?;
    let (width, height) = (reader.info().width, reader.info().height);
    if u64::from(width) * u64::from(height) > MAX_PIXELS {
        anyhow::bail!("a {width}×{height} keyframe is larger than the reviewer shows");
    }
    let mut buffer = vec![0; reader.output_buffer_size().unwrap_or(0)];
    let info = reader.next_frame(&mut buffer)?;
    buffer.truncate(info.buffer_size());
    let rgba = match info.color_type {
        png::ColorType::Rgba => buffer,
        png::ColorType::Rgb => buffer
            .chunks_exact(3)
            .flat_map(|p| [p[0], p[1], p[2], 255])
            .collect(),
        png::ColorType::Grayscale => buffer.iter().flat_map(|&v| [v, v, v, 255]).collect(),
        png::ColorType::GrayscaleAlpha => buffer
            .chunks_exact(2)
            .flat_map(|p| [p[0], p[0], p[0], p[1]])
            .collect(),
        png::ColorType::Indexed => anyhow::bail!("an indexed keyframe was not expanded"),
    };
    if rgba.len() as u64 != u64::from(width) * u64::from(height) * 4 {
        anyhow::bail!("the keyframe's pixel data does not match its {width}×{height} size");
    }
    Ok(Image {
        width,
        height,
        rgba,
    })
}

/// A recorded desktop session being replayed.
pub struct DesktopReplay {
    events: Vec<TimedEvent>,
    /// Indices of the keyframe events, in order.
    keyframes: Vec<usize>,
    /// The index of the next event to apply.
    next: usize,
    /// The keyframe shown (its event index) and its decoded image, or why it could not be decoded.
    shown: Option<(usize, Result<Image, String>)>,
    /// The desktop size after the applied events (activation, resize, keyframe).
    size: (u16, u16),
    marker: Option<String>,
}

impl DesktopReplay {
    /// Starts a replay at the session's beginning (a black desktop until the first keyframe).
    pub fn new(events: Vec<TimedEvent>) -> DesktopReplay {
        let keyframes = events
            .iter()
            .enumerate()
            .filter(|(_, e)| matches!(e.event, Event::Desktop(DesktopEvent::Keyframe { .. })))
            .map(|(i, _)| i)
            .collect();
        DesktopReplay {
            events,
            keyframes,
            next: 0,
            shown: None,
            size: (0, 0),
            marker: None,
        }
    }

    /// Whether the events are a desktop recording (they hold desktop events).
    pub fn is_desktop(events: &[TimedEvent]) -> bool {
        events.iter().any(|e| matches!(e.event, Event::Desktop(_)))
    }

    /// The frame shown: the last keyframe applied, decoded; `Err` when it could not be decoded.
    pub fn frame(&self) -> Option<Result<&Image, &str>> {
        self.shown
            .as_ref()
            .map(|(_, image)| image.as_ref().map_err(String::as_str))
    }

    /// The PNG of the keyframe shown and its time, exactly as recorded.
    pub fn frame_png(&self) -> Option<(u64, &[u8])> {
        let (index, _) = self.shown.as_ref()?;
        let event = self.events.get(*index)?;
        match &event.event {
            Event::Desktop(DesktopEvent::Keyframe { png, .. }) => Some((event.at_ms, png)),
            _ => None,
        }
    }

    /// How many keyframes the recording has.
    pub fn keyframe_count(&self) -> usize {
        self.keyframes.len()
    }
}

impl Replay for DesktopReplay {
    fn events(&self) -> &[TimedEvent] {
        &self.events
    }

    fn applied(&self) -> usize {
        self.next
    }

    fn size(&self) -> (u16, u16) {
        self.size
    }

    fn marker(&self) -> Option<&str> {
        self.marker.as_deref()
    }

    fn seek_to_event(&mut self, applied: usize) {
        let applied = applied.min(self.events.len());
        self.next = applied;
        let before = &self.events[..applied];
        // Size and marker: the last that applies. Keyframe: the last before, decoded once per change.
        self.size = before
            .iter()
            .rev()
            .find_map(|e| match &e.event {
                Event::Desktop(
                    DesktopEvent::Activation { width, height, .. }
                    | DesktopEvent::Resize { width, height }
                    | DesktopEvent::Keyframe { width, height, .. },
                ) => Some((*width, *height)),
                _ => None,
            })
            .unwrap_or((0, 0));
        self.marker = before.iter().rev().find_map(|e| match &e.event {
            Event::Marker(text) => Some(text.clone()),
            _ => None,
        });
        let keyframe = self.keyframes[..self.keyframes.partition_point(|&k| k < applied)]
            .last()
            .copied();
        match keyframe {
            None => self.shown = None,
            Some(k) if self.shown.as_ref().is_some_and(|(i, _)| *i == k) => {}
            Some(k) => {
                let image = match &self.events[k].event {
                    Event::Desktop(DesktopEvent::Keyframe { png, .. }) => {
                        decode_png(png).map_err(|e| format!("{e:#}"))
                    }
                    _ => Err("not a keyframe".to_owned()),
                };
                self.shown = Some((k, image));
            }
        }
    }
}

/// Draws a frame scaled to fit the area with half-block cells, keeping its aspect ratio.
pub struct DesktopView<'a> {
    /// The frame.
    pub image: &'a Image,
}

impl Widget for DesktopView<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let image = self.image;
        if area.is_empty() || image.width == 0 || image.height == 0 {
            return;
        }
        // Each cell shows two vertically stacked pixels of the scaled picture.
        let scale = (f64::from(area.width) / f64::from(image.width))
            .min(f64::from(area.height) * 2.0 / f64::from(image.height));
        let cols = ((f64::from(image.width) * scale).round() as u16).clamp(1, area.width);
        let rows = ((f64::from(image.height) * scale / 2.0).round() as u16).clamp(1, area.height);
        let source_x = |c: u32| c * image.width / u32::from(cols);
        let source_y = |r: u32| r * image.height / (u32::from(rows) * 2);
        for row in 0..rows {
            for col in 0..cols {
                let (x0, x1) = (source_x(u32::from(col)), source_x(u32::from(col) + 1));
                let top = image.mean(
                    x0,
                    x1,
                    source_y(u32::from(row) * 2),
                    source_y(u32::from(row) * 2 + 1),
                );
                let bottom = image.mean(
                    x0,
                    x1,
                    source_y(u32::from(row) * 2 + 1),
                    source_y(u32::from(row) * 2 + 2),
                );
                if let Some(cell) = buf.cell_mut((area.x + col, area.y + row)) {
                    cell.set_symbol("▀").set_fg(top).set_bg(bottom);
                }
            }
        }
    }
}
