//! The terminal and the one event loop: raw mode, alternate screen and mouse capture on the way in, restored on the
//! way out and on panic; input, a tick and the loader's answers go through [`App::update`].

use std::io::{Stdout, Write, stdout};
use std::sync::mpsc::{Receiver, Sender};
use std::time::{Duration, Instant};

use anyhow::Context;
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{self, DisableMouseCapture, EnableMouseCapture, Event};
use ratatui::crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use ratatui::crossterm::{cursor, execute};

use ratatui::layout::Rect;

use crate::app::{App, Input, UiEvent};
use crate::graphics::{self, Protocol};
use crate::model::{Loaded, Request};

/// How often the loop ticks while a session plays (about 30 frames a second), and otherwise.
const TICK_PLAYING: Duration = Duration::from_millis(33);
const TICK_IDLE: Duration = Duration::from_millis(250);

/// Puts the terminal back: main screen, cooked mode, no mouse capture, cursor shown. Safe to call twice.
pub fn restore() {
    let _ = disable_raw_mode();
    let _ = execute!(
        stdout(),
        DisableMouseCapture,
        LeaveAlternateScreen,
        cursor::Show
    );
}

fn setup() -> anyhow::Result<Terminal<CrosstermBackend<Stdout>>> {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore();
        previous(info);
    }));
    enable_raw_mode().context("the terminal refused raw mode (is this a terminal?)")?;
    execute!(stdout(), EnterAlternateScreen, EnableMouseCapture)?;
    Ok(Terminal::new(CrosstermBackend::new(stdout()))?)
}

/// Runs the interface until the user quits.
pub fn run(
    mut app: App,
    requests: &Sender<Request>,
    loaded: &Receiver<Loaded>,
) -> anyhow::Result<()> {
    let mut terminal = setup()?;
    let graphics = app.graphics();
    let result = event_loop(&mut terminal, &mut app, graphics, requests, loaded);
    restore();
    result
}

/// Writes the player's desktop picture with the graphics protocol when it changed since the last draw,
/// removing the previous one first (kitty by deleting it; sixel and iTerm2 pictures are cells, which a full
/// redraw replaces).
fn show_picture(
    terminal: &mut Terminal<CrosstermBackend<Stdout>>,
    app: &mut App,
    graphics: Protocol,
    shown: &mut Option<(Rect, u64)>,
) -> anyhow::Result<()> {
    if graphics == Protocol::HalfBlocks {
        return Ok(());
    }
    let wanted = app.graphic().map(|(area, _, at_ms)| (area, at_ms));
    if wanted == *shown {
        return Ok(());
    }
    if shown.is_some() {
        stdout().write_all(&graphics::clear(graphics))?;
        if graphics != Protocol::Kitty {
            terminal.clear()?;
            terminal.draw(|frame| app.draw(frame))?;
        }
    }
    if let Some((area, image, _)) = app.graphic() {
        // The cell size in pixels, when the terminal tells it; else a common 10×20.
        let cell = match ratatui::crossterm::terminal::window_size() {
            Ok(size) if size.width > 0 && size.height > 0 && size.columns > 0 && size.rows > 0 => {
                (size.width / size.columns, size.height / size.rows)
            }
            _ => (10, 20),
        };
        let bytes = graphics::encode(graphics, image, area, cell)?;
        let mut out = stdout().lock();
        out.write_all(&bytes)?;
        out.flush()?;
    }
    *shown = wanted;
    Ok(())
}

fn event_loop(
    terminal: &mut Terminal<CrosstermBackend<Stdout>>,
    app: &mut App,
    graphics: Protocol,
    requests: &Sender<Request>,
    loaded: &Receiver<Loaded>,
) -> anyhow::Result<()> {
    let mut last = Instant::now();
    // The desktop picture on the screen (graphics protocols): where, and the frame's time.
    let mut shown: Option<(Rect, u64)> = None;
    while !app.quit {
        terminal.draw(|frame| app.draw(frame))?;
        show_picture(terminal, app, graphics, &mut shown)?;
        let playing = app.player().is_some_and(|p| p.playing());
        let mut asks = Vec::new();
        if event::poll(if playing { TICK_PLAYING } else { TICK_IDLE })? {
            let input = match event::read()? {
                Event::Key(key) => Some(UiEvent::Key(key)),
                Event::Mouse(mouse) => Some(UiEvent::Mouse(mouse)),
                _ => None,
            };
            if let Some(input) = input {
                asks.extend(app.update(Input::Ui(input)));
            }
        }
        while let Ok(answer) = loaded.try_recv() {
            asks.extend(app.update(Input::Loaded(answer)));
        }
        let now = Instant::now();
        asks.extend(app.update(Input::Tick(now - last)));
        last = now;
        for ask in asks {
            requests
                .send(ask)
                .map_err(|_| anyhow::anyhow!("the loader stopped"))?;
        }
    }
    Ok(())
}
