//! Damage geometry: desktop rectangles (clipping, union, touching) and the bounded damaged region
//! accumulated between two display updates.

use super::MAX_RECTS;

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
