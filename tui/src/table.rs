//! Selection in the UI's tables (session list, search results): moving it by keys or wheel, and finding
//! the row a mouse click lands on.

use ratatui::crossterm::event::MouseEvent;
use ratatui::layout::Rect;
use ratatui::widgets::TableState;

/// Moves the selection of a table of `len` rows by `delta`, staying inside it.
pub fn select_by(state: &mut TableState, len: usize, delta: isize) {
    let last = len.saturating_sub(1);
    let next = state
        .selected()
        .unwrap_or(0)
        .saturating_add_signed(delta)
        .min(last);
    state.select(Some(next));
}

/// The row index under `mouse` in a table drawn in `rows_area` (it may lie past the last row), or `None`
/// when the pointer is outside the rows.
pub fn row_at(state: &TableState, rows_area: Rect, mouse: &MouseEvent) -> Option<usize> {
    if mouse.row < rows_area.y || mouse.row >= rows_area.y + rows_area.height {
        return None;
    }
    Some(state.offset() + usize::from(mouse.row - rows_area.y))
}
