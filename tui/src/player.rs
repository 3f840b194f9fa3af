//! The player: replays a recorded session with play, pause, speed 0.5×–16×, step by event, seek by time on a
//! timeline (keys or mouse), jumps between search hits, and skipping of idle gaps.
//!
//! The playback clock only moves on [`tick`](Player::tick), which the event loop calls with the time that passed,
//! so the player is deterministic in tests. What is replayed is a [`Media`]: a terminal session through the VT
//! emulator, or a desktop (RDP) session through the desktop replay (`desktop.rs`), behind the same controls.

use std::time::Duration;

use ratatui::Frame;
use ratatui::crossterm::event::{KeyCode, KeyModifiers, MouseButton, MouseEventKind};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};
use sallyport_recordings::{Moment, SessionRow, TimedEvent, find_moments};

use crate::app::{Action, Component, Ctx, Handled, UiEvent};
use crate::desktop::{DesktopReplay, DesktopView, Image};
use crate::format;
use crate::graphics::Protocol;
use crate::list::{integrity_style, outcome_label};
use crate::replay::{Replay, TerminalReplay};
use crate::screen_view::{ScreenView, clean};

/// The playback speeds.
pub const SPEEDS: [f64; 6] = [0.5, 1.0, 2.0, 4.0, 8.0, 16.0];
/// Gaps longer than this are skipped while idle skipping is on.
const IDLE_GAP_MS: u64 = 2000;
/// What a small seek moves.
const SEEK_SMALL_MS: u64 = 5_000;
/// What a large seek moves.
const SEEK_LARGE_MS: u64 = 60_000;

/// What is being replayed.
pub enum Media {
    /// A terminal session, through the VT emulator (boxed: the emulator is large).
    Terminal(Box<TerminalReplay>),
    /// A desktop (RDP) session, rebuilt from its keyframes and PDUs.
    Desktop(DesktopReplay),
}

/// The player component.
pub struct Player {
    /// The session.
    pub session: SessionRow,
    media: Media,
    playing: bool,
    speed: usize,
    /// The playback position in milliseconds since the session started.
    clock_ms: f64,
    skip_idle: bool,
    query: Option<String>,
    moments: Vec<Moment>,
    /// The moment last jumped to.
    moment: Option<usize>,
    timeline: Rect,
    /// How desktop frames are shown.
    graphics: Protocol,
    /// Where the last draw left room for a desktop picture (graphics protocols only).
    placement: Option<Rect>,
}

impl Player {
    /// A player at the start of `events`, paused; with a search, its moments are found and the first one shown.
    pub fn new(session: SessionRow, events: Vec<TimedEvent>, query: Option<String>) -> Player {
        let moments = query
            .as_deref()
            .map(|q| find_moments(&events, q))
            .unwrap_or_default();
        let mut player = Player {
            session,
            media: if DesktopReplay::is_desktop(&events) {
                Media::Desktop(DesktopReplay::new(events))
            } else {
                Media::Terminal(Box::new(TerminalReplay::new(events)))
            },
            playing: false,
            speed: 1,
            clock_ms: 0.0,
            skip_idle: true,
            query,
            moments,
            moment: None,
            timeline: Rect::default(),
            graphics: Protocol::HalfBlocks,
            placement: None,
        };
        if !player.moments.is_empty() {
            player.jump_to_moment(0);
        }
        player
    }

    fn replay(&mut self) -> &mut dyn Replay {
        match &mut self.media {
            Media::Terminal(r) => r.as_mut(),
            Media::Desktop(r) => r,
        }
    }

    fn replay_ref(&self) -> &dyn Replay {
        match &self.media {
            Media::Terminal(r) => r.as_ref(),
            Media::Desktop(r) => r,
        }
    }

    /// The desktop replay, when this is a desktop session.
    pub fn desktop(&self) -> Option<&DesktopReplay> {
        match &self.media {
            Media::Desktop(r) => Some(r),
            Media::Terminal(_) => None,
        }
    }

    /// Shows desktop frames with `protocol` instead of half-blocks.
    pub fn set_graphics(&mut self, protocol: Protocol) {
        self.graphics = protocol;
    }

    /// The desktop picture the event loop should show with a graphics protocol: where, what, and the time
    /// of the frame (which with the place identifies it). `None` with half-blocks.
    pub fn graphic(&self) -> Option<(Rect, &Image, u64)> {
        let area = self.placement?;
        let replay = self.desktop()?;
        let image = replay.frame()?.ok()?;
        Some((area, image, replay.frame_at_ms()?))
    }

    /// The search moments found in this session.
    pub fn moments(&self) -> &[Moment] {
        &self.moments
    }

    /// The position, in milliseconds since the session started.
    pub fn position_ms(&self) -> u64 {
        self.clock_ms as u64
    }

    /// Whether the player is playing.
    pub fn playing(&self) -> bool {
        self.playing
    }

    /// The emulated screen's text, row by row (for tests).
    #[cfg(test)]
    pub fn screen_text(&self) -> String {
        match &self.media {
            Media::Terminal(r) => r.screen().contents(),
            Media::Desktop(_) => String::new(),
        }
    }

    /// Seeks to a time.
    pub fn seek_ms(&mut self, ms: u64) {
        let ms = ms.min(self.replay_ref().duration_ms());
        self.clock_ms = ms as f64;
        self.replay().seek_ms(ms);
    }

    /// Shows the state right after the event that completes moment `i`.
    pub fn jump_to_moment(&mut self, i: usize) {
        let Some(m) = self.moments.get(i).copied() else {
            return;
        };
        self.moment = Some(i);
        self.playing = false;
        // Typed text shows on the screen when the target echoes it: include the next output within a second.
        let mut applied = m.event + 1;
        if m.input {
            let events = self.replay_ref().events();
            if let Some(echo) = events[applied.min(events.len())..]
                .iter()
                .take_while(|e| e.at_ms <= m.at_ms.saturating_add(1000))
                .position(|e| matches!(e.event, sallyport_recordings::Event::Output(_)))
            {
                applied += echo + 1;
            }
        }
        self.replay().seek_to_event(applied);
        let at = self
            .replay_ref()
            .events()
            .get(applied.saturating_sub(1))
            .map_or(m.at_ms, |e| e.at_ms);
        self.clock_ms = at as f64;
    }

    fn step_event(&mut self, forward: bool) {
        self.playing = false;
        let applied = self.replay_ref().applied();
        let target = if forward {
            applied + 1
        } else {
            applied.saturating_sub(1)
        };
        self.replay().seek_to_event(target);
        let at = match target.checked_sub(1) {
            Some(i) => self.replay_ref().events().get(i).map_or(0, |e| e.at_ms),
            None => 0,
        };
        self.clock_ms = at as f64;
    }

    /// Advances the playback clock by `elapsed` (scaled by the speed), skipping idle gaps.
    pub fn tick(&mut self, elapsed: Duration) {
        if !self.playing {
            return;
        }
        let speed = SPEEDS.get(self.speed).copied().unwrap_or(1.0);
        self.clock_ms += elapsed.as_secs_f64() * 1000.0 * speed;
        if self.skip_idle
            && let Some(next) = self.replay_ref().next_at_ms()
            && next as f64 - self.clock_ms > IDLE_GAP_MS as f64
        {
            // Jump to shortly before the next event, so that it still plays in time.
            self.clock_ms = next.saturating_sub(IDLE_GAP_MS / 4) as f64;
        }
        let duration = self.replay_ref().duration_ms();
        if self.clock_ms >= duration as f64 {
            self.clock_ms = duration as f64;
            self.playing = false;
        }
        let ms = self.clock_ms as u64;
        self.replay().seek_ms(ms);
    }

    fn draw_timeline(&self, width: u16) -> Line<'static> {
        let duration = self.replay_ref().duration_ms().max(1);
        let width = usize::from(width);
        let position = ((self.clock_ms / duration as f64) * width as f64) as usize;
        let mut marks = vec![false; width];
        for m in &self.moments {
            let x = (m.at_ms as f64 / duration as f64 * width as f64) as usize;
            if let Some(slot) = marks.get_mut(x.min(width.saturating_sub(1))) {
                *slot = true;
            }
        }
        let spans: Vec<Span<'static>> = (0..width)
            .map(|x| {
                if marks[x] {
                    Span::styled(
                        "┃",
                        Style::default()
                            .fg(Color::Yellow)
                            .add_modifier(Modifier::BOLD),
                    )
                } else if x == position.min(width.saturating_sub(1)) {
                    Span::styled("●", Style::default().fg(Color::Cyan))
                } else if x < position {
                    Span::styled("━", Style::default().fg(Color::Cyan))
                } else {
                    Span::styled("─", Style::default().fg(Color::DarkGray))
                }
            })
            .collect();
        Line::from(spans)
    }
}

/// The recorded terminal, framed when there is room so its edges are visible.
fn draw_terminal(frame: &mut Frame<'_>, body: Rect, replay: &TerminalReplay) {
    let (cols, rows) = replay.size();
    // A frame around the recorded screen when there is room, so its edges are visible.
    let screen_area = if body.width > cols + 1 && body.height > rows + 1 {
        let outer = Rect {
            width: cols + 2,
            height: rows + 2,
            ..body
        };
        frame.render_widget(
            Block::default()
                .borders(Borders::ALL)
                .border_style(Style::default().fg(Color::DarkGray))
                .title(format!(" {cols}×{rows} ")),
            outer,
        );
        outer.inner(ratatui::layout::Margin::new(1, 1))
    } else {
        body
    };
    frame.render_widget(
        ScreenView {
            screen: replay.screen(),
            cursor: true,
        },
        screen_area,
    );
}

/// The desktop frame shown, scaled into the body, with its size and time in a frame around it. With a
/// graphics protocol the picture's cells are left blank and their place returned, for the event loop.
fn draw_desktop(
    frame: &mut Frame<'_>,
    body: Rect,
    replay: &DesktopReplay,
    graphics: Protocol,
) -> Option<Rect> {
    let (width, height) = replay.size();
    let title = match replay.frame_at_ms() {
        Some(at_ms) => format!(
            " desktop {width}×{height} at {} · p exports the frame as PNG ",
            format::position(at_ms)
        ),
        None => format!(" desktop {width}×{height} "),
    };
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(Style::default().fg(Color::DarkGray))
        .title(title);
    let inner = block.inner(body);
    frame.render_widget(block, body);
    match replay.frame() {
        Some(Ok(image)) if graphics != Protocol::HalfBlocks => {
            return Some(crate::graphics::fit(inner, image.width, image.height));
        }
        Some(Ok(image)) => frame.render_widget(DesktopView { image }, inner),
        Some(Err(error)) => frame.render_widget(
            Paragraph::new(format!("this moment does not replay: {}", clean(error)))
                .style(Style::default().fg(Color::Red)),
            inner,
        ),
        None => frame.render_widget(
            Paragraph::new(if replay.keyframe_count() == 0 {
                "the desktop has not started yet (this recording has no keyframes)"
            } else {
                "the desktop has not started yet"
            })
            .style(Style::default().fg(Color::DarkGray)),
            inner,
        ),
    }
    None
}

impl Component for Player {
    fn draw(&mut self, frame: &mut Frame<'_>, area: Rect, ctx: &Ctx<'_>) {
        let [header, body, timeline, status] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Fill(1),
            Constraint::Length(1),
            Constraint::Length(1),
        ])
        .areas(area);
        let s = &self.session;
        let integrity = ctx.integrity(&s.id);
        frame.render_widget(
            Paragraph::new(Line::from(vec![
                Span::styled(
                    format!(" {}@{} ", clean(&s.user), clean(&s.target)),
                    Style::default().add_modifier(Modifier::BOLD),
                ),
                Span::raw(format!(
                    "{} · {} UTC · from {} · {} · ",
                    clean(&s.protocol),
                    format::datetime(s.started_at_ms),
                    clean(&s.client_addr),
                    outcome_label(s)
                )),
                Span::styled(integrity.label(), integrity_style(integrity)),
            ]))
            .style(Style::default().bg(Color::Indexed(236))),
            header,
        );
        match &self.media {
            Media::Terminal(replay) => {
                draw_terminal(frame, body, replay.as_ref());
                self.placement = None;
            }
            Media::Desktop(replay) => {
                self.placement = draw_desktop(frame, body, replay, self.graphics);
            }
        }
        self.timeline = timeline;
        frame.render_widget(Paragraph::new(self.draw_timeline(timeline.width)), timeline);
        let r = self.replay_ref();
        let mut parts = vec![
            Span::styled(
                if self.playing { " ▶ " } else { " ⏸ " },
                Style::default().add_modifier(Modifier::BOLD),
            ),
            Span::raw(format!(
                "{}× {} / {}  event {}/{}",
                SPEEDS.get(self.speed).copied().unwrap_or(1.0),
                format::position(self.position_ms()),
                format::duration(r.duration_ms()),
                r.applied(),
                r.events().len()
            )),
        ];
        if let Some(q) = &self.query {
            let at = self.moment.map_or(0, |m| m + 1);
            parts.push(Span::styled(
                format!("  “{}” {at}/{}", clean(q), self.moments.len()),
                Style::default().fg(Color::Yellow),
            ));
        }
        if self.skip_idle {
            parts.push(Span::raw("  skip idle"));
        }
        if let Some(marker) = r.marker() {
            parts.push(Span::styled(
                format!("  [{}]", clean(marker)),
                Style::default().fg(Color::DarkGray),
            ));
        }
        frame.render_widget(Paragraph::new(Line::from(parts)), status);
    }

    fn handle(&mut self, event: &UiEvent, _ctx: &Ctx<'_>) -> Handled {
        match event {
            UiEvent::Key(key) => {
                let shift = key.modifiers.contains(KeyModifiers::SHIFT);
                let position = self.position_ms();
                match key.code {
                    KeyCode::Char(' ') => {
                        if !self.playing && self.position_ms() >= self.replay_ref().duration_ms() {
                            self.seek_ms(0);
                        }
                        self.playing = !self.playing;
                    }
                    KeyCode::Char('+' | ']') => self.speed = (self.speed + 1).min(SPEEDS.len() - 1),
                    KeyCode::Char('-' | '[') => self.speed = self.speed.saturating_sub(1),
                    KeyCode::Right => {
                        self.seek_ms(position + if shift { SEEK_LARGE_MS } else { SEEK_SMALL_MS })
                    }
                    KeyCode::Left => self.seek_ms(position.saturating_sub(if shift {
                        SEEK_LARGE_MS
                    } else {
                        SEEK_SMALL_MS
                    })),
                    KeyCode::PageDown => self.seek_ms(position + SEEK_LARGE_MS),
                    KeyCode::PageUp => self.seek_ms(position.saturating_sub(SEEK_LARGE_MS)),
                    KeyCode::Home => self.seek_ms(0),
                    KeyCode::End => self.seek_ms(u64::MAX),
                    KeyCode::Char('.') => self.step_event(true),
                    KeyCode::Char(',') => self.step_event(false),
                    KeyCode::Char(c @ '0'..='9') => {
                        let tenth = u64::from(c as u8 - b'0');
                        self.seek_ms(self.replay_ref().duration_ms() * tenth / 10);
                    }
                    KeyCode::Char('n') => {
                        let next = self
                            .moment
                            .map_or(0, |m| (m + 1) % self.moments.len().max(1));
                        self.jump_to_moment(next);
                    }
                    KeyCode::Char('N') => {
                        let count = self.moments.len().max(1);
                        let prev = self.moment.map_or(0, |m| (m + count - 1) % count);
                        self.jump_to_moment(prev);
                    }
                    KeyCode::Char('i') => self.skip_idle = !self.skip_idle,
                    KeyCode::Char('e') | KeyCode::Char('E') => {
                        return Handled::Action(Action::Export {
                            id: self.session.id.clone(),
                            evidence: key.code == KeyCode::Char('E'),
                        });
                    }
                    KeyCode::Char('p') => {
                        let Some(at_ms) = self.desktop().and_then(DesktopReplay::frame_at_ms)
                        else {
                            return Handled::Ignored;
                        };
                        return Handled::Action(Action::ExportFrame {
                            id: self.session.id.clone(),
                            at_ms,
                        });
                    }
                    KeyCode::Char('v') => {
                        return Handled::Action(Action::ShowIntegrity(self.session.id.clone()));
                    }
                    KeyCode::Esc | KeyCode::Char('q') | KeyCode::Backspace => {
                        return Handled::Action(Action::Back);
                    }
                    _ => return Handled::Ignored,
                }
                Handled::Consumed
            }
            UiEvent::Mouse(mouse) => {
                let t = self.timeline;
                let on_timeline =
                    mouse.row == t.y && mouse.column >= t.x && mouse.column < t.x + t.width;
                match mouse.kind {
                    MouseEventKind::Down(MouseButton::Left)
                    | MouseEventKind::Drag(MouseButton::Left)
                        if on_timeline =>
                    {
                        let fraction = f64::from(mouse.column - t.x) / f64::from(t.width.max(1));
                        let ms = (self.replay_ref().duration_ms() as f64 * fraction) as u64;
                        self.seek_ms(ms);
                        Handled::Consumed
                    }
                    MouseEventKind::ScrollDown => {
                        self.seek_ms(self.position_ms() + SEEK_SMALL_MS);
                        Handled::Consumed
                    }
                    MouseEventKind::ScrollUp => {
                        self.seek_ms(self.position_ms().saturating_sub(SEEK_SMALL_MS));
                        Handled::Consumed
                    }
                    _ => Handled::Ignored,
                }
            }
        }
    }
}
