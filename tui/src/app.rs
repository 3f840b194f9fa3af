//! The application state and its update logic, without I/O: input events, ticks and loader answers go in
//! ([`App::update`]), requests for the loader come out, and [`App::draw`] renders the current screen. The event loop
//! in `run.rs` and the snapshot tests drive the same code.

use std::collections::HashMap;
use std::time::Duration;

use ratatui::Frame;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseEvent};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Borders, Clear, Paragraph, Wrap};
use sallyport_recordings::SessionRow;

use crate::list::{Filter, SessionList};
use crate::model::{Integrity, Loaded, Request};
use crate::player::Player;
use crate::results::SearchResults;
use crate::screen_view::clean;

/// An input event for a component.
#[derive(Debug, Clone, Copy)]
pub enum UiEvent {
    /// A key press.
    Key(KeyEvent),
    /// A mouse event.
    Mouse(MouseEvent),
}

/// Everything that reaches the application.
#[derive(Debug)]
pub enum Input {
    /// A key press or mouse event.
    Ui(UiEvent),
    /// Time passed (drives playback and refreshes).
    Tick(Duration),
    /// The loader answered.
    Loaded(Loaded),
}

/// What a component asks the application to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Open a session in the player, optionally with a search's moments.
    Open {
        /// The session.
        id: String,
        /// The search.
        query: Option<String>,
        /// Where the first hit is.
        at_ms: Option<u64>,
    },
    /// Show a session's integrity in detail.
    ShowIntegrity(String),
    /// Export a session.
    Export {
        /// The session.
        id: String,
        /// An evidence file (else asciicast).
        evidence: bool,
    },
    /// Export the desktop keyframe shown at a moment as PNG.
    ExportFrame {
        /// The session.
        id: String,
        /// The keyframe's time.
        at_ms: u64,
    },
    /// Leave the current screen.
    Back,
}

/// What a component did with an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    /// Not for this component.
    Ignored,
    /// Handled.
    Consumed,
    /// Handled, and the application should do this.
    Action(Action),
}

/// A piece of the screen: draws itself and handles the events given to it.
pub trait Component {
    /// Draws into `area`.
    fn draw(&mut self, frame: &mut Frame<'_>, area: Rect, ctx: &Ctx<'_>);
    /// Handles an event.
    fn handle(&mut self, event: &UiEvent, ctx: &Ctx<'_>) -> Handled;
}

/// What components may read of the application's shared state.
pub struct Ctx<'a> {
    /// All sessions, newest first.
    pub sessions: &'a [SessionRow],
    integrity: &'a HashMap<String, Integrity>,
    /// Now, in Unix milliseconds (for live sessions' durations).
    pub now_ms: u64,
}

const PENDING: Integrity = Integrity::Pending;

impl Ctx<'_> {
    /// A session's integrity state.
    pub fn integrity(&self, id: &str) -> &Integrity {
        self.integrity.get(id).unwrap_or(&PENDING)
    }

    /// A session by id.
    pub fn session(&self, id: &str) -> Option<&SessionRow> {
        self.sessions.iter().find(|s| s.id == id)
    }
}

/// Which screen is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    /// The session list.
    List,
    /// Search results.
    Results,
    /// The player.
    Player,
}

/// A one-line text prompt at the bottom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prompt {
    /// Search text.
    Search(String),
    /// Filter text.
    Filter(String),
}

/// How often the session list is refreshed (live sessions grow, new ones appear).
const REFRESH_EVERY: Duration = Duration::from_secs(3);

/// The application.
pub struct App {
    /// The shown screen.
    pub screen: Screen,
    sessions: Vec<SessionRow>,
    integrity: HashMap<String, Integrity>,
    /// Now, in Unix milliseconds.
    pub now_ms: u64,
    list: SessionList,
    results: SearchResults,
    player: Option<Player>,
    /// The screen to return to from the player.
    player_from: Screen,
    prompt: Option<Prompt>,
    /// The session whose integrity detail is shown.
    popup: Option<String>,
    help: bool,
    status: String,
    /// Whether the search index is up to date.
    indexed: bool,
    since_refresh: Duration,
    /// The title line's source (database path or evidence file).
    source_name: String,
    /// Set when the user asked to quit.
    pub quit: bool,
    /// How desktop frames are shown.
    graphics: crate::graphics::Protocol,
}

impl App {
    /// A new application showing the (empty) session list.
    pub fn new(source_name: String, now_ms: u64) -> App {
        App {
            screen: Screen::List,
            sessions: Vec::new(),
            integrity: HashMap::new(),
            now_ms,
            list: SessionList::default(),
            results: SearchResults::default(),
            player: None,
            player_from: Screen::List,
            prompt: None,
            popup: None,
            help: false,
            status: "loading sessions…".into(),
            indexed: false,
            since_refresh: Duration::ZERO,
            source_name,
            quit: false,
            graphics: crate::graphics::Protocol::HalfBlocks,
        }
    }

    fn refresh_list(&mut self) {
        let ctx = Ctx {
            sessions: &self.sessions,
            integrity: &self.integrity,
            now_ms: self.now_ms,
        };
        self.list.refresh(&ctx);
    }

    /// The player, when a session is open.
    pub fn player(&self) -> Option<&Player> {
        self.player.as_ref()
    }

    /// How desktop frames are shown.
    pub fn graphics(&self) -> crate::graphics::Protocol {
        self.graphics
    }

    /// Shows desktop frames with `protocol` (the default is half-blocks).
    pub fn set_graphics(&mut self, protocol: crate::graphics::Protocol) {
        self.graphics = protocol;
    }

    /// The desktop picture to show with the graphics protocol, when the player shows one and nothing covers
    /// it (help, a prompt, a popup).
    pub fn graphic(&self) -> Option<(ratatui::layout::Rect, &crate::desktop::Image, u64)> {
        if self.screen != Screen::Player
            || self.help
            || self.prompt.is_some()
            || self.popup.is_some()
        {
            return None;
        }
        self.player.as_ref()?.graphic()
    }

    /// The status line's text.
    #[cfg(test)]
    pub fn status(&self) -> &str {
        &self.status
    }

    /// How many sessions the list shows.
    #[cfg(any(test, feature = "bench"))]
    pub fn visible_sessions(&self) -> usize {
        self.list.len()
    }

    /// Handles one input; returns what to ask the loader.
    pub fn update(&mut self, input: Input) -> Vec<Request> {
        match input {
            Input::Tick(elapsed) => {
                self.now_ms = self.now_ms.saturating_add(elapsed.as_millis() as u64);
                if let Some(player) = &mut self.player {
                    player.tick(elapsed);
                }
                self.since_refresh += elapsed;
                if self.since_refresh >= REFRESH_EVERY {
                    self.since_refresh = Duration::ZERO;
                    return vec![Request::Refresh];
                }
                Vec::new()
            }
            Input::Loaded(loaded) => {
                self.loaded(loaded);
                Vec::new()
            }
            Input::Ui(event) => self.ui(event),
        }
    }

    fn loaded(&mut self, loaded: Loaded) {
        match loaded {
            Loaded::Sessions(rows) => {
                let first = self.sessions.is_empty();
                self.sessions = rows;
                self.refresh_list();
                if first {
                    self.status = format!("{} sessions; indexing for search…", self.sessions.len());
                }
            }
            Loaded::Integrity(id, integrity) => {
                self.integrity.insert(id, integrity);
            }
            Loaded::Indexed(progress) => {
                if !self.indexed || progress.chunks > 0 {
                    self.status = format!(
                        "{} sessions; search index up to date ({} new chunks)",
                        self.sessions.len(),
                        progress.chunks
                    );
                }
                self.indexed = true;
            }
            Loaded::Results {
                query,
                hits,
                elapsed,
            } => {
                let ctx = Ctx {
                    sessions: &self.sessions,
                    integrity: &self.integrity,
                    now_ms: self.now_ms,
                };
                self.results.set(query, hits, elapsed, &ctx);
                self.screen = Screen::Results;
                self.status = format!("{} sessions match", self.results.len());
            }
            Loaded::Session { id, events, query } => {
                let Some(row) = self.sessions.iter().find(|s| s.id == id).cloned() else {
                    self.status = format!("session {id} is gone");
                    return;
                };
                match events {
                    Ok(events) => {
                        let mut player = Player::new(row, events, query);
                        player.set_graphics(self.graphics);
                        self.status = match player.moments().len() {
                            0 => "space: play/pause, ←/→: seek, ?: help".into(),
                            n => format!("{n} moments; n/N: next/previous"),
                        };
                        self.player = Some(player);
                        self.player_from = self.screen;
                        self.screen = Screen::Player;
                    }
                    Err(e) => {
                        self.status = format!("cannot replay: {}", clean(&e));
                    }
                }
            }
            Loaded::Exported(path) => self.status = format!("wrote {}", path.display()),
            Loaded::Error(e) => self.status = format!("error: {}", clean(&e)),
        }
    }

    fn ui(&mut self, event: UiEvent) -> Vec<Request> {
        if let UiEvent::Key(key) = event {
            if key.kind == KeyEventKind::Release {
                return Vec::new();
            }
            if key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL) {
                self.quit = true;
                return Vec::new();
            }
            if self.help {
                self.help = false;
                return Vec::new();
            }
            if self.popup.is_some() {
                self.popup = None;
                return Vec::new();
            }
            if self.prompt.is_some() {
                return self.prompt_key(key);
            }
        }
        let handled = {
            let ctx = Ctx {
                sessions: &self.sessions,
                integrity: &self.integrity,
                now_ms: self.now_ms,
            };
            match self.screen {
                Screen::List => self.list.handle(&event, &ctx),
                Screen::Results => self.results.handle(&event, &ctx),
                Screen::Player => match &mut self.player {
                    Some(p) => p.handle(&event, &ctx),
                    None => Handled::Ignored,
                },
            }
        };
        match handled {
            Handled::Action(action) => self.act(action),
            Handled::Consumed => Vec::new(),
            Handled::Ignored => self.global(event),
        }
    }

    fn global(&mut self, event: UiEvent) -> Vec<Request> {
        let UiEvent::Key(key) = event else {
            return Vec::new();
        };
        match key.code {
            KeyCode::Char('?') => self.help = true,
            KeyCode::Char('/') => self.prompt = Some(Prompt::Search(String::new())),
            KeyCode::Char('f') => self.prompt = Some(Prompt::Filter(self.list.filter.text.clone())),
            KeyCode::Char('q') => self.quit = true,
            KeyCode::Esc if self.screen == Screen::List && !self.list.filter.text.is_empty() => {
                self.list.filter = Filter::default();
                self.refresh_list();
                self.status = format!("{} sessions", self.sessions.len());
            }
            _ => {}
        }
        Vec::new()
    }

    fn prompt_key(&mut self, key: KeyEvent) -> Vec<Request> {
        let Some(prompt) = &mut self.prompt else {
            return Vec::new();
        };
        let text = match prompt {
            Prompt::Search(t) | Prompt::Filter(t) => t,
        };
        match key.code {
            KeyCode::Char(c) => text.push(c),
            KeyCode::Backspace => {
                text.pop();
            }
            KeyCode::Esc => self.prompt = None,
            KeyCode::Enter => {
                let prompt = self.prompt.take();
                match prompt {
                    Some(Prompt::Search(q)) => {
                        if !sallyport_recordings::searchable(&q) {
                            self.status = "search for words: letters or digits".into();
                            return Vec::new();
                        }
                        self.status = format!("searching for “{}”…", clean(&q));
                        return vec![Request::Search(q)];
                    }
                    Some(Prompt::Filter(f)) => match Filter::parse(&f) {
                        Ok(filter) => {
                            self.list.filter = filter;
                            self.refresh_list();
                            self.screen = Screen::List;
                            self.status = format!("{} sessions pass the filter", self.list.len());
                        }
                        Err(e) => self.status = format!("filter: {e}"),
                    },
                    None => {}
                }
            }
            _ => {}
        }
        Vec::new()
    }

    fn act(&mut self, action: Action) -> Vec<Request> {
        match action {
            Action::Open { id, query, .. } => {
                self.status = "loading the session…".into();
                vec![Request::Open { id, query }]
            }
            Action::ShowIntegrity(id) => {
                self.popup = Some(id);
                Vec::new()
            }
            Action::Export { id, evidence } => {
                self.status = "exporting…".into();
                vec![if evidence {
                    Request::ExportEvidence(id)
                } else {
                    Request::ExportAsciicast(id)
                }]
            }
            Action::ExportFrame { id, at_ms } => {
                self.status = "exporting the frame…".into();
                vec![Request::ExportFrame { id, at_ms }]
            }
            Action::Back => {
                if self.screen == Screen::Player {
                    self.player = None;
                    self.screen = self.player_from;
                } else {
                    self.screen = Screen::List;
                }
                Vec::new()
            }
        }
    }

    /// Draws the whole screen.
    pub fn draw(&mut self, frame: &mut Frame<'_>) {
        let area = frame.area();
        let [title, body, status] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Fill(1),
            Constraint::Length(1),
        ])
        .areas(area);
        let screen_name = match self.screen {
            Screen::List => "sessions",
            Screen::Results => "search",
            Screen::Player => "replay",
        };
        frame.render_widget(
            Paragraph::new(Line::from(vec![
                Span::styled(
                    " sallyport-review ",
                    Style::default().fg(Color::Black).bg(Color::Cyan),
                ),
                Span::raw(format!(" {screen_name} · {}", clean(&self.source_name))),
            ])),
            title,
        );
        let ctx = Ctx {
            sessions: &self.sessions,
            integrity: &self.integrity,
            now_ms: self.now_ms,
        };
        match self.screen {
            Screen::List => self.list.draw(frame, body, &ctx),
            Screen::Results => self.results.draw(frame, body, &ctx),
            Screen::Player => {
                if let Some(p) = &mut self.player {
                    p.draw(frame, body, &ctx);
                }
            }
        }
        let bottom = match &self.prompt {
            Some(Prompt::Search(t)) => Line::from(vec![
                Span::styled(" search: ", Style::default().add_modifier(Modifier::BOLD)),
                Span::raw(format!("{}▏", clean(t))),
            ]),
            Some(Prompt::Filter(t)) => Line::from(vec![
                Span::styled(" filter: ", Style::default().add_modifier(Modifier::BOLD)),
                Span::raw(format!("{}▏", clean(t))),
                Span::styled(
                    "  user: target: proto: from:YYYY-MM-DD to:YYYY-MM-DD",
                    Style::default().fg(Color::DarkGray),
                ),
            ]),
            None => Line::from(vec![
                Span::raw(format!(" {}", clean(&self.status))),
                Span::styled("  ? help", Style::default().fg(Color::DarkGray)),
            ]),
        };
        frame.render_widget(
            Paragraph::new(bottom).style(Style::default().bg(Color::Indexed(236))),
            status,
        );
        if let Some(id) = &self.popup {
            draw_integrity(frame, area, &ctx, id);
        }
        if self.help {
            crate::help::draw(frame, area, self.screen);
        }
    }
}

/// A centered rectangle of at most `width`×`height` inside `area`.
pub fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let width = width.min(area.width);
    let height = height.min(area.height);
    Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    }
}

fn draw_integrity(frame: &mut Frame<'_>, area: Rect, ctx: &Ctx<'_>, id: &str) {
    let integrity = ctx.integrity(id);
    let (title, text, color) = match integrity {
        Integrity::Intact => ("intact", "The hash chain is whole, the seal is valid for the appliance's key, and the ledger's checkpoints cover the session as stored.".to_owned(), Color::Green),
        Integrity::Unsealed => ("unsealed", "The chain is whole so far, but the session has no seal: it is still running, or the gateway stopped before sealing it.".to_owned(), Color::Yellow),
        Integrity::Recovered { detail } => ("recovered", format!("The chain is whole and crash recovery sealed it: {detail}. The ledger's checkpoints vouch for everything before that."), Color::Yellow),
        Integrity::BeforeLedger => ("intact, before the ledger", "The hash chain is whole and the seal is valid, but the session was recorded before the ledger existed: nothing outside the session vouches that it was not cut short.".to_owned(), Color::Green),
        Integrity::Failed { detail, .. } => ("VERIFICATION FAILED", detail.clone(), Color::Red),
        Integrity::NoKey => ("not checked", "No public key: pass --key (the gateway writes recording-signing.pub in its state directory).".to_owned(), Color::Yellow),
        Integrity::Error(e) => ("error", e.clone(), Color::Red),
        Integrity::Pending => ("pending", "Not checked yet.".to_owned(), Color::DarkGray),
    };
    let popup = centered(area, 64, 9);
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(vec![
            Line::from(Span::styled(
                ctx.session(id).map_or_else(
                    || format!("session {}", clean(id)),
                    |s| {
                        format!(
                            "{}@{}, {} UTC",
                            clean(&s.user),
                            clean(&s.target),
                            crate::format::datetime(s.started_at_ms)
                        )
                    },
                ),
                Style::default().fg(Color::DarkGray),
            )),
            Line::raw(""),
            Line::raw(clean(&text)),
        ])
        .wrap(Wrap { trim: true })
        .block(
            Block::default()
                .borders(Borders::ALL)
                .border_type(BorderType::Rounded)
                .border_style(Style::default().fg(color))
                .title(Span::styled(
                    format!(" {title} "),
                    Style::default().fg(color).add_modifier(Modifier::BOLD),
                )),
        ),
        popup,
    );
}
