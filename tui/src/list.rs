//! The session list: newest first, filtered (user, target, protocol, dates, free text), sorted by any column, live
//! sessions marked, each with its integrity state.

use ratatui::Frame;
use ratatui::crossterm::event::KeyCode;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Row};
use sallyport_recordings::{Outcome, SessionRow};

use crate::app::{Action, Component, Ctx, Handled, UiEvent};
use crate::format;
use crate::model::Integrity;
use crate::screen_view::clean;
use crate::table::{Nav, TableView};

/// A parsed filter: every given condition must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// The text it was parsed from.
    pub text: String,
    user: Option<String>,
    target: Option<String>,
    protocol: Option<String>,
    from_ms: Option<u64>,
    to_ms: Option<u64>,
    words: Vec<String>,
}

impl Filter {
    /// Parses `user:NAME target:NAME proto:NAME from:YYYY-MM-DD to:YYYY-MM-DD WORDS...`; `to` includes its day.
    pub fn parse(text: &str) -> Result<Filter, String> {
        let mut f = Filter {
            text: text.trim().to_owned(),
            ..Filter::default()
        };
        for term in text.split_whitespace() {
            let lower = term.to_lowercase();
            match lower.split_once(':') {
                Some(("user", v)) => f.user = Some(v.to_owned()),
                Some(("target", v)) => f.target = Some(v.to_owned()),
                Some(("proto" | "protocol", v)) => f.protocol = Some(v.to_owned()),
                Some(("from", v)) => {
                    f.from_ms = Some(format::parse_date(v).ok_or(format!("not a date: {v}"))?)
                }
                Some(("to", v)) => {
                    let day = format::parse_date(v).ok_or(format!("not a date: {v}"))?;
                    f.to_ms = Some(day + 86_400_000);
                }
                _ => f.words.push(lower),
            }
        }
        Ok(f)
    }

    /// Whether a session passes.
    pub fn matches(&self, s: &SessionRow) -> bool {
        let has = |field: &str, want: &Option<String>| {
            want.as_ref()
                .is_none_or(|w| field.to_lowercase().contains(w.as_str()))
        };
        has(&s.user, &self.user)
            && has(&s.target, &self.target)
            && has(&s.protocol, &self.protocol)
            && self.from_ms.is_none_or(|t| s.started_at_ms >= t)
            && self.to_ms.is_none_or(|t| s.started_at_ms < t)
            && self.words.iter().all(|w| {
                [&s.user, &s.target, &s.target_addr, &s.client_addr, &s.id]
                    .iter()
                    .any(|field| field.to_lowercase().contains(w.as_str()))
            })
    }
}

/// The column the list is sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    /// Start time.
    Start,
    /// Duration.
    Duration,
    /// User.
    User,
    /// Target.
    Target,
    /// Recorded size.
    Size,
}

impl SortKey {
    fn next(self) -> SortKey {
        match self {
            SortKey::Start => SortKey::Duration,
            SortKey::Duration => SortKey::User,
            SortKey::User => SortKey::Target,
            SortKey::Target => SortKey::Size,
            SortKey::Size => SortKey::Start,
        }
    }

    fn name(self) -> &'static str {
        match self {
            SortKey::Start => "start",
            SortKey::Duration => "duration",
            SortKey::User => "user",
            SortKey::Target => "target",
            SortKey::Size => "size",
        }
    }
}

/// How long a session lasted (or has lasted, while live).
pub fn duration_ms(s: &SessionRow, now_ms: u64) -> u64 {
    s.ended_at_ms
        .unwrap_or(now_ms)
        .saturating_sub(s.started_at_ms)
}

/// The outcome as shown.
pub fn outcome_label(s: &SessionRow) -> &'static str {
    match s.outcome {
        None => "● live",
        Some(Outcome::Ended) => "ended",
        Some(Outcome::Terminated) => "terminated",
        Some(Outcome::Incomplete) => "incomplete",
        Some(Outcome::Failed) => "failed",
    }
}

/// The style of an integrity state.
pub fn integrity_style(i: &Integrity) -> Style {
    match i {
        Integrity::Intact | Integrity::BeforeLedger => Style::default().fg(Color::Green),
        Integrity::Recovered { .. } => Style::default().fg(Color::Yellow),
        Integrity::Failed { .. } | Integrity::Error(_) => {
            Style::default().fg(Color::Red).add_modifier(Modifier::BOLD)
        }
        Integrity::Unsealed | Integrity::NoKey => Style::default().fg(Color::Yellow),
        Integrity::Pending => Style::default().fg(Color::DarkGray),
    }
}

/// The session list component.
pub struct SessionList {
    /// The active filter.
    pub filter: Filter,
    sort: SortKey,
    descending: bool,
    /// Indices into the context's sessions, in display order.
    visible: Vec<usize>,
    view: TableView,
}

impl Default for SessionList {
    fn default() -> Self {
        SessionList {
            filter: Filter::default(),
            sort: SortKey::Start,
            descending: true,
            visible: Vec::new(),
            view: TableView::first_selected(),
        }
    }
}

impl SessionList {
    /// Recomputes the visible rows after the sessions, filter or sort changed, keeping the selected session.
    pub fn refresh(&mut self, ctx: &Ctx<'_>) {
        let selected = self.selected(ctx).map(|s| s.id.clone());
        let mut visible: Vec<usize> = (0..ctx.sessions.len())
            .filter(|&i| self.filter.matches(&ctx.sessions[i]))
            .collect();
        let key = |i: &usize| &ctx.sessions[*i];
        match self.sort {
            SortKey::Start => visible.sort_by_key(|i| key(i).started_at_ms),
            SortKey::Duration => visible.sort_by_key(|i| duration_ms(key(i), ctx.now_ms)),
            SortKey::User => visible.sort_by(|a, b| key(a).user.cmp(&key(b).user)),
            SortKey::Target => visible.sort_by(|a, b| key(a).target.cmp(&key(b).target)),
            SortKey::Size => visible.sort_by_key(|i| key(i).bytes_raw),
        }
        if self.descending {
            visible.reverse();
        }
        self.visible = visible;
        let position = selected
            .and_then(|id| self.visible.iter().position(|&i| ctx.sessions[i].id == id))
            .unwrap_or(0);
        self.view.state.select(Some(position));
    }

    /// The selected session.
    pub fn selected<'a>(&self, ctx: &Ctx<'a>) -> Option<&'a SessionRow> {
        let i = *self.visible.get(self.view.state.selected()?)?;
        ctx.sessions.get(i)
    }

    /// How many sessions pass the filter.
    pub fn len(&self) -> usize {
        self.visible.len()
    }

    fn select_by(&mut self, delta: isize) {
        self.view.select_by(self.visible.len(), delta);
    }
}

impl Component for SessionList {
    fn draw(&mut self, frame: &mut Frame<'_>, area: Rect, ctx: &Ctx<'_>) {
        let wide = area.width >= 120;
        let medium = area.width >= 100;
        let mut header = vec!["Start", "Dur", "User", "Target"];
        let mut widths = vec![
            Constraint::Length(if medium { 19 } else { 11 }),
            Constraint::Length(7),
            Constraint::Fill(1),
            Constraint::Fill(1),
        ];
        if medium {
            header.push("Proto");
            widths.push(Constraint::Length(5));
        }
        if wide {
            header.push("Client");
            widths.push(Constraint::Length(21));
        }
        header.extend(["Size", "Outcome", "Integrity"]);
        widths.extend([
            Constraint::Length(6),
            Constraint::Length(10),
            Constraint::Length(14),
        ]);
        let rows = self
            .visible
            .iter()
            .filter_map(|&i| ctx.sessions.get(i))
            .map(|s| {
                let start = format::datetime(s.started_at_ms);
                let start = if medium {
                    start
                } else {
                    start[5..16].to_owned()
                };
                let integrity = ctx.integrity(&s.id);
                let mut cells = vec![
                    Cell::from(start),
                    Cell::from(format::duration(duration_ms(s, ctx.now_ms))),
                    Cell::from(clean(&s.user)),
                    Cell::from(clean(&s.target)),
                ];
                if medium {
                    cells.push(Cell::from(clean(&s.protocol)));
                }
                if wide {
                    cells.push(Cell::from(clean(&s.client_addr)));
                }
                let outcome_style = match s.outcome {
                    None => Style::default()
                        .fg(Color::Cyan)
                        .add_modifier(Modifier::BOLD),
                    Some(Outcome::Failed | Outcome::Incomplete) => {
                        Style::default().fg(Color::Yellow)
                    }
                    _ => Style::default(),
                };
                cells.extend([
                    Cell::from(format::size(s.bytes_raw)),
                    Cell::from(outcome_label(s)).style(outcome_style),
                    Cell::from(integrity.label()).style(integrity_style(integrity)),
                ]);
                Row::new(cells)
            });
        let sort = format!(
            " sort: {} {} ",
            self.sort.name(),
            if self.descending { "↓" } else { "↑" }
        );
        let mut title = vec![Span::styled(
            format!(" Sessions {}/{} ", self.visible.len(), ctx.sessions.len()),
            Style::default().add_modifier(Modifier::BOLD),
        )];
        if !self.filter.text.is_empty() {
            title.push(Span::styled(
                format!(" filter: {} ", clean(&self.filter.text)),
                Style::default().fg(Color::Yellow),
            ));
        }
        let block = Block::default()
            .borders(Borders::TOP)
            .title(Line::from(title))
            .title(Line::from(sort).right_aligned());
        self.view
            .render(frame, area, rows, widths, Row::new(header), block);
    }

    fn handle(&mut self, event: &UiEvent, ctx: &Ctx<'_>) -> Handled {
        match self.view.navigate(event, self.visible.len()) {
            Nav::Handled => return Handled::Consumed,
            // A second click on the selected row opens it.
            Nav::Reclicked => return self.handle(&UiEvent::Key(KeyCode::Enter.into()), ctx),
            Nav::Missed => return Handled::Ignored,
            Nav::Other => {}
        }
        let UiEvent::Key(key) = event else {
            return Handled::Ignored;
        };
        match key.code {
            KeyCode::Home | KeyCode::Char('g') => self.view.state.select(Some(0)),
            KeyCode::End | KeyCode::Char('G') => self.select_by(isize::MAX),
            KeyCode::Char('s') => {
                self.sort = self.sort.next();
                self.refresh(ctx);
            }
            KeyCode::Char('r') => {
                self.descending = !self.descending;
                self.refresh(ctx);
            }
            KeyCode::Enter => {
                return match self.selected(ctx) {
                    Some(s) => Handled::Action(Action::Open {
                        id: s.id.clone(),
                        query: None,
                        at_ms: None,
                    }),
                    None => Handled::Consumed,
                };
            }
            KeyCode::Char('v') => {
                return match self.selected(ctx) {
                    Some(s) => Handled::Action(Action::ShowIntegrity(s.id.clone())),
                    None => Handled::Consumed,
                };
            }
            KeyCode::Char('e') | KeyCode::Char('E') => {
                return match self.selected(ctx) {
                    Some(s) => Handled::Action(Action::Export {
                        id: s.id.clone(),
                        evidence: key.code == KeyCode::Char('E'),
                    }),
                    None => Handled::Consumed,
                };
            }
            _ => return Handled::Ignored,
        }
        Handled::Consumed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(user: &str, target: &str, start: u64) -> SessionRow {
        SessionRow {
            id: format!("{user}{start}"),
            user: user.into(),
            target: target.into(),
            target_addr: "10.0.0.1:22".into(),
            protocol: "ssh".into(),
            client_addr: "192.0.2.1:5000".into(),
            started_at_ms: start,
            ended_at_ms: Some(start + 1000),
            outcome: Some(Outcome::Ended),
            chunk_count: 1,
            bytes_raw: 10,
            bytes_stored: 5,
            sealed: true,
        }
    }

    #[test]
    fn filters_combine() {
        let day = 86_400_000;
        let a = row("alice", "db1", 20_000 * day);
        let b = row("bob", "web", 20_001 * day + 5);
        let check = |text: &str, expect: [bool; 2]| {
            let f = Filter::parse(text).unwrap_or_default();
            assert_eq!([f.matches(&a), f.matches(&b)], expect, "{text}");
        };
        check("", [true, true]);
        check("user:ali", [true, false]);
        check("target:WEB", [false, true]);
        check("proto:ssh user:bob", [false, true]);
        check("from:2024-10-05", [false, true]);
        check("to:2024-10-04", [true, false]);
        check("bob", [false, true]);
        check("10.0.0.1", [true, true]);
        assert!(Filter::parse("from:soon").is_err());
    }
}
