//! The UI's tables (session list, search results): one look (bold underlined header, reversed selection),
//! the selection moved by keys or wheel, and the row a mouse click lands on.

use ratatui::Frame;
use ratatui::crossterm::event::{KeyCode, MouseButton, MouseEvent, MouseEventKind};
use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::widgets::{Block, Row, Table, TableState};

use crate::app::UiEvent;

/// Moves the selection of a table of `len` rows by `delta`, staying inside it.
fn select_by(state: &mut TableState, len: usize, delta: isize) {
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
fn row_at(state: &TableState, rows_area: Rect, mouse: &MouseEvent) -> Option<usize> {
    if mouse.row < rows_area.y || mouse.row >= rows_area.y + rows_area.height {
        return None;
    }
    Some(state.offset() + usize::from(mouse.row - rows_area.y))
}

/// A drawn table's selection and where its rows were drawn (below the block's top border and the header).
#[derive(Debug, Default)]
pub struct TableView {
    /// The selection and scroll offset.
    pub state: TableState,
    rows_area: Rect,
}

/// What [`TableView::navigate`] made of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    /// A key or the wheel moved the selection, or a click selected a row (or landed past the last one).
    Handled,
    /// A left click on the row that was already selected (the list opens it).
    Reclicked,
    /// A left click outside the rows.
    Missed,
    /// Not a table movement: the component's own keys.
    Other,
}

impl TableView {
    /// A view with its first row selected.
    pub fn first_selected() -> TableView {
        TableView {
            state: TableState::default().with_selected(Some(0)),
            rows_area: Rect::default(),
        }
    }

    /// Moves the selection by `delta` within `len` rows.
    pub fn select_by(&mut self, len: usize, delta: isize) {
        select_by(&mut self.state, len, delta);
    }

    /// Draws `rows` under `header` in `block`, in the tables' one look, and remembers where the rows are.
    pub fn render<'a>(
        &mut self,
        frame: &mut Frame<'_>,
        area: Rect,
        rows: impl IntoIterator<Item = Row<'a>>,
        widths: impl IntoIterator<Item = Constraint>,
        header: Row<'a>,
        block: Block<'a>,
    ) {
        let table = Table::new(rows, widths)
            .header(
                header.style(Style::default().add_modifier(Modifier::BOLD | Modifier::UNDERLINED)),
            )
            .block(block)
            .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED))
            .column_spacing(1);
        self.rows_area = Rect {
            y: area.y + 2,
            height: area.height.saturating_sub(2),
            ..area
        };
        frame.render_stateful_widget(table, area, &mut self.state);
    }

    /// The movement keys (down/`j`, up/`k`, page down, page up) and the wheel move the selection within
    /// `len` rows; a left click selects the row it lands on.
    pub fn navigate(&mut self, event: &UiEvent, len: usize) -> Nav {
        let delta = match event {
            UiEvent::Key(key) => match key.code {
                KeyCode::Down | KeyCode::Char('j') => 1,
                KeyCode::Up | KeyCode::Char('k') => -1,
                KeyCode::PageDown => 20,
                KeyCode::PageUp => -20,
                _ => return Nav::Other,
            },
            UiEvent::Mouse(mouse) => match mouse.kind {
                MouseEventKind::ScrollDown => 3,
                MouseEventKind::ScrollUp => -3,
                MouseEventKind::Down(MouseButton::Left) => {
                    let Some(row) = row_at(&self.state, self.rows_area, mouse) else {
                        return Nav::Missed;
                    };
                    if row < len {
                        if self.state.selected() == Some(row) {
                            return Nav::Reclicked;
                        }
                        self.state.select(Some(row));
                    }
                    return Nav::Handled;
                }
                _ => return Nav::Other,
            },
        };
        self.select_by(len, delta);
        Nav::Handled
    }
}

#[cfg(test)]
mod tests {
    use ratatui::crossterm::event::{KeyModifiers, MouseEvent};

    use super::*;

    #[test]
    fn keys_and_wheel_move_the_selection_inside_the_rows() {
        let mut view = TableView::first_selected();
        let key = |code: KeyCode| UiEvent::Key(code.into());
        assert_eq!(view.navigate(&key(KeyCode::Char('j')), 5), Nav::Handled);
        assert_eq!(view.state.selected(), Some(1));
        assert_eq!(view.navigate(&key(KeyCode::PageDown), 5), Nav::Handled);
        assert_eq!(view.state.selected(), Some(4));
        let wheel_up = UiEvent::Mouse(MouseEvent {
            kind: MouseEventKind::ScrollUp,
            column: 0,
            row: 0,
            modifiers: KeyModifiers::NONE,
        });
        assert_eq!(view.navigate(&wheel_up, 5), Nav::Handled);
        assert_eq!(view.state.selected(), Some(1));
        assert_eq!(view.navigate(&key(KeyCode::Enter), 5), Nav::Other);
        // Nothing drawn yet: a click lands outside the rows.
        let click = UiEvent::Mouse(MouseEvent {
            kind: MouseEventKind::Down(MouseButton::Left),
            column: 3,
            row: 4,
            modifiers: KeyModifiers::NONE,
        });
        assert_eq!(view.navigate(&click, 5), Nav::Missed);
    }
}
