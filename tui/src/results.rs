//! Search results: the sessions whose output or input contains the searched text, newest first, with the time of
//! the first hit and an excerpt; opening one starts the player at the first moment.

use std::time::Duration;

use ratatui::Frame;
use ratatui::crossterm::event::KeyCode;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Row};
use sallyport_recordings::SessionHits;

use crate::app::{Action, Component, Ctx, Handled, UiEvent};
use crate::format;
use crate::screen_view::clean;
use crate::table::{Nav, TableView};

/// The search results component.
#[derive(Default)]
pub struct SearchResults {
    /// The searched text.
    pub query: String,
    hits: Vec<SessionHits>,
    elapsed: Duration,
    view: TableView,
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
        self.view.state.select(Some(0));
    }

    /// How many sessions matched.
    pub fn len(&self) -> usize {
        self.hits.len()
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
        let widths = [
            Constraint::Length(11),
            Constraint::Length(18),
            Constraint::Length(7),
            Constraint::Length(4),
            Constraint::Fill(1),
        ];
        let block = Block::default().borders(Borders::TOP).title(Span::styled(
            title,
            Style::default().add_modifier(Modifier::BOLD),
        ));
        self.view.render(
            frame,
            area,
            rows,
            widths,
            Row::new(["Start", "Session", "At", "Hits", "Excerpt"]),
            block,
        );
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
        match self.view.navigate(event, self.hits.len()) {
            Nav::Handled | Nav::Reclicked => return Handled::Consumed,
            Nav::Missed => return Handled::Ignored,
            Nav::Other => {}
        }
        let UiEvent::Key(key) = event else {
            return Handled::Ignored;
        };
        match key.code {
            KeyCode::Enter => {
                let Some(hit) = self.view.state.selected().and_then(|i| self.hits.get(i)) else {
                    return Handled::Consumed;
                };
                Handled::Action(Action::Open {
                    id: hit.session_id.clone(),
                    query: Some(self.query.clone()),
                    at_ms: Some(hit.first_at_ms),
                })
            }
            KeyCode::Esc | KeyCode::Char('q') => Handled::Action(Action::Back),
            _ => Handled::Ignored,
        }
    }
}
