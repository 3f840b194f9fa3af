//! Draws an emulated terminal screen into ratatui cells, and cleans any text that came from a recording.
//!
//! This is the only way recorded bytes reach the reviewer's terminal: as characters of cells, with colors and
//! attributes mapped to ratatui styles. Anything that is a control character (C0, DEL, C1) is replaced before it
//! reaches a cell, so no recorded escape sequence can change the reviewer's title, clipboard or modes.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::widgets::Widget;

/// Replaces control characters (which a cell or a line must never carry to the terminal) with `�`.
pub fn clean(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect()
}

fn color(c: vt100::Color) -> Color {
    match c {
        vt100::Color::Default => Color::Reset,
        vt100::Color::Idx(i) => Color::Indexed(i),
        vt100::Color::Rgb(r, g, b) => Color::Rgb(r, g, b),
    }
}

/// An emulated screen as a widget. Rows above `top` are not shown (the view follows the cursor when the recorded
/// screen is taller than the area).
pub struct ScreenView<'a> {
    /// The screen.
    pub screen: &'a vt100::Screen,
    /// Whether to show the recorded cursor (as a reversed cell).
    pub cursor: bool,
}

impl ScreenView<'_> {
    /// The first recorded row shown in an area `height` rows high: 0, unless the cursor would be below the area.
    pub fn top(&self, height: u16) -> u16 {
        let (row, _) = self.screen.cursor_position();
        (row + 1).saturating_sub(height)
    }
}

impl Widget for ScreenView<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let (rows, cols) = self.screen.size();
        let top = self.top(area.height);
        let (cursor_row, cursor_col) = self.screen.cursor_position();
        let show_cursor = self.cursor && !self.screen.hide_cursor();
        for y in 0..area.height.min(rows.get().saturating_sub(top)) {
            let row = top + y;
            let width = area.width.min(cols.get());
            for x in 0..width {
                let Some(cell) = self.screen.cell(row, x) else {
                    break;
                };
                let mut modifier = Modifier::empty();
                for (on, m) in [
                    (cell.bold(), Modifier::BOLD),
                    (cell.dim(), Modifier::DIM),
                    (cell.italic(), Modifier::ITALIC),
                    (cell.underline(), Modifier::UNDERLINED),
                    (cell.inverse(), Modifier::REVERSED),
                ] {
                    if on {
                        modifier |= m;
                    }
                }
                if show_cursor && row == cursor_row && x == cursor_col {
                    modifier ^= Modifier::REVERSED;
                }
                let style = Style::default()
                    .fg(color(cell.fgcolor()))
                    .bg(color(cell.bgcolor()))
                    .add_modifier(modifier);
                // A wide character takes this cell and the next (which vt100 marks as its continuation, drawn as a
                // blank that ratatui skips); one cut by the edge of the area is left out.
                let text = if cell.is_wide_continuation()
                    || !cell.has_contents()
                    || (cell.is_wide() && x + 1 >= width)
                {
                    " ".to_owned()
                } else {
                    clean(cell.contents())
                };
                buf[(area.x + x, area.y + y)]
                    .set_symbol(&text)
                    .set_style(style);
            }
        }
    }
}
