//! Search results: the sessions whose output or input contains the searched text, newest first, with the time of
//! the first hit and an excerpt; opening one starts the player at the first moment.

use std::time::Duration;

use ratatui::Frame;
use ratatui::crossterm::event::{KeyCode, MouseButton, MouseEventKind};
use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Row, Table, TableState};
use sallyport_recordings::SessionHits;

use crate::app::{Action, Component, Ctx, Handled, UiEvent};
use crate::format;
use crate::screen_view::clean;

/// The search results component.
#[derive(Default)]
pub struct SearchResults {
    /// The searched text.
    pub query: String,
    hits: Vec<SessionHits>,
    elapsed: Duration,
    state: TableState,
    rows_area: Rect,
}

impl SearchResults {
    /// Shows new results, sorted newest session first (sessions unknown to the list last).
    pub fn set(
        &mut self,
        query: String,
        mut hits: Vec<SessionHits>,
        elapsed: Duration,
        ctx: &Ctx<'_>,
    ) {
        let start = |id: &str| ctx.session(id).map_or(0, |s| s.started_at_ms);
        hits.sort_by_key(|h| std::cmp::Reverse(start(&h.session_id)));
        self.query = query;
        self.hits = hits;
        self.elapsed = elapsed;
        self.state.select(Some(0));
    }

    /// How many sessions matched.
    pub fn len(&self) -> usize {
        self.hits.len()
    }

    fn select_by(&mut self, delta: isize) {
        crate::table::select_by(&mut self.state, self.hits.len(), delta);
    }
}

impl Component for SearchResults {
    fn draw(&mut self, frame: &mut Frame<'_>, area: Rect, ctx: &Ctx<'_>) {
        let rows = self.hits.iter().map(|hit| {
            let session = ctx.session(&hit.session_id);
            let start = session.map_or_else(
                || "?".to_owned(),
                |s| format::datetime(s.started_at_ms)[5..16].to_owned(),
            );
            let who = session.map_or_else(
                || hit.session_id.clone(),
                |s| format!("{}@{}", clean(&s.user), clean(&s.target)),
            );
            let mut snippet = vec![Span::styled(
                if hit.input { "⌨ " } else { "  " },
                Style::default().fg(Color::Magenta),
            )];
            for (text, matched) in &hit.snippet {
                let style = if *matched {
                    Style::default().fg(Color::Black).bg(Color::Yellow)
                } else {
                    Style::default()
                };
                snippet.push(Span::styled(clean(text), style));
            }
            Row::new(vec![
                Cell::from(start),
                Cell::from(who),
                Cell::from(format::duration(hit.first_at_ms)),
                Cell::from(hit.rows.to_string()),
                Cell::from(Line::from(snippet)),
            ])
        });
        let title = format!(
            " Search “{}”: {} sessions in {:.1} ms ",
            clean(&self.query),
            self.hits.len(),
            self.elapsed.as_secs_f64() * 1000.0
        );
        let table = Table::new(
            rows,
            [
                Constraint::Length(11),
                Constraint::Length(18),
                Constraint::Length(7),
                Constraint::Length(4),
                Constraint::Fill(1),
            ],
        )
        .header(
            Row::new(["Start", "Session", "At", "Hits", "Excerpt"])
                .style(Style::default().add_modifier(Modifier::BOLD | Modifier::UNDERLINED)),
        )
        .block(Block::default().borders(Borders::TOP).title(Span::styled(
            title,
            Style::default().add_modifier(Modifier::BOLD),
        )))
        .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED))
        .column_spacing(1);
        self.rows_area = Rect {
            y: area.y + 2,
            height: area.height.saturating_sub(2),
            ..area
        };
        frame.render_stateful_widget(table, area, &mut self.state);
        if self.hits.is_empty() {
            let text = Line::from(Span::styled(
                "  No session contains this text.",
                Style::default().fg(Color::DarkGray),
            ));
            let at = Rect {
                y: area.y + 2,
                height: 1,
                ..area
            };
            if area.height > 2 {
                frame.render_widget(text, at);
            }
        }
    }

    fn handle(&mut self, event: &UiEvent, _ctx: &Ctx<'_>) -> Handled {
        match event {
            UiEvent::Key(key) => match key.code {
                KeyCode::Down | KeyCode::Char('j') => self.select_by(1),
                KeyCode::Up | KeyCode::Char('k') => self.select_by(-1),
                KeyCode::PageDown => self.select_by(20),
                KeyCode::PageUp => self.select_by(-20),
                KeyCode::Enter => {
                    let Some(hit) = self.state.selected().and_then(|i| self.hits.get(i)) else {
                        return Handled::Consumed;
                    };
                    return Handled::Action(Action::Open {
                        id: hit.session_id.clone(),
                        query: Some(self.query.clone()),
                        at_ms: Some(hit.first_at_ms),
                    });
                }
                KeyCode::Esc | KeyCode::Char('q') => return Handled::Action(Action::Back),
                _ => return Handled::Ignored,
            },
            UiEvent::Mouse(mouse) => match mouse.kind {
                MouseEventKind::ScrollDown => self.select_by(3),
                MouseEventKind::ScrollUp => self.select_by(-3),
                MouseEventKind::Down(MouseButton::Left) => {
                    let Some(row) = crate::table::row_at(&self.state, self.rows_area, mouse) else {
                        return Handled::Ignored;
                    };
                    if row < self.hits.len() {
                        self.state.select(Some(row));
                    }
                }
                _ => return Handled::Ignored,
            },
        }
        Handled::Consumed
    }
}
