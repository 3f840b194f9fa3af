//! Desktop (RDP) replay for the reviewer, without any I/O. The frame at a moment comes from
//! `sallyport-desktop-replay`: the last keyframe (a PNG of the gateway's framebuffer) at or before it, then the
//! recorded server PDUs after it decoded by ironrdp, so the picture is the one the user saw, and seeking costs
//! at most one keyframe interval of RDP traffic.
//!
//! Drawn in the terminal with half-block cells (two pixels per cell, 24-bit colour), which every terminal and
//! the appliance's serial console show (terminals with a graphics protocol get the picture itself, `graphics.rs`); exported as PNG. Recordings are untrusted: sizes are bounded by the
//! replay crate, and a frame that does not decode is shown as an error, never a crash.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Color;
use ratatui::widgets::Widget;
use sallyport_recordings::{DesktopEvent, Event, TimedEvent};

use crate::replay::Replay;

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

/// A recorded desktop session being replayed.
pub struct DesktopReplay {
    events: Vec<TimedEvent>,
    frames: sallyport_desktop_replay::DesktopReplay,
    /// The index of the next event to apply.
    next: usize,
    /// The frame after the applied events (by the time of the last one), or why it could not be made.
    shown: Option<Result<Image, String>>,
    /// The time of the frame shown.
    shown_at_ms: u64,
    /// The desktop size after the applied events (activation, resize, keyframe).
    size: (u16, u16),
    marker: Option<String>,
}

impl DesktopReplay {
    /// Starts a replay at the session's beginning (nothing shown until the first activation).
    pub fn new(events: Vec<TimedEvent>) -> DesktopReplay {
        DesktopReplay {
            frames: sallyport_desktop_replay::DesktopReplay::new(&events),
            events,
            next: 0,
            shown: None,
            shown_at_ms: 0,
            size: (0, 0),
            marker: None,
        }
    }

    /// Whether the events are a desktop recording (they hold desktop events).
    pub fn is_desktop(events: &[TimedEvent]) -> bool {
        events.iter().any(|e| matches!(e.event, Event::Desktop(_)))
    }

    /// The frame shown; `Err` when the recording does not replay to it.
    pub fn frame(&self) -> Option<Result<&Image, &str>> {
        self.shown
            .as_ref()
            .map(|image| image.as_ref().map_err(String::as_str))
    }

    /// The time of the frame shown, when there is one.
    pub fn frame_at_ms(&self) -> Option<u64> {
        matches!(self.shown, Some(Ok(_))).then_some(self.shown_at_ms)
    }

    /// How many keyframes the recording has.
    pub fn keyframe_count(&self) -> usize {
        self.frames.keyframes().len()
    }
}

/// The desktop at `at_ms` as the replay crate rebuilds it.
pub fn frame_at(
    frames: &sallyport_desktop_replay::DesktopReplay,
    at_ms: u64,
) -> Result<Image, String> {
    let frame = frames.frame_at(at_ms).map_err(|e| e.to_string())?;
    Ok(Image {
        width: u32::from(frame.width),
        height: u32::from(frame.height),
        rgba: frame.rgba,
    })
}

/// Encodes a frame as an RGBA PNG.
pub fn encode_png(image: &Image) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, image.width, image.height);
    encoder.set_color(png::ColorType::Rgba);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.write_header()?.write_image_data(&image.rgba)?;
    Ok(out)
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
        if applied == self.next && (applied == 0 || self.shown.is_some()) {
            return;
        }
        self.next = applied;
        let before = &self.events[..applied];
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
        let started = before
            .iter()
            .any(|e| matches!(e.event, Event::Desktop(DesktopEvent::Activation { .. })));
        match before.last() {
            Some(last) if started => {
                self.shown_at_ms = last.at_ms;
                self.shown = Some(frame_at(&self.frames, last.at_ms));
            }
            _ => self.shown = None,
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
