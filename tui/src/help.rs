//! The keyboard help, shown over any screen on `?`; any key closes it.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Borders, Clear, Paragraph};

use crate::app::{Screen, centered};

const GLOBAL: &[(&str, &str)] = &[
    ("/", "search output and input of all sessions"),
    ("f", "filter: user: target: proto: from: to: words"),
    ("?", "this help"),
    ("q, ctrl-c", "quit (q in the player goes back)"),
];

const LIST: &[(&str, &str)] = &[
    ("↑ ↓ PgUp PgDn", "select (mouse: click, wheel)"),
    ("enter", "replay the session (or click it twice)"),
    ("s, r", "sort by the next column, reverse"),
    ("v", "integrity: where the chain or seal breaks"),
    ("e, E", "export asciicast, evidence file"),
    ("esc", "clear the filter"),
];

const RESULTS: &[(&str, &str)] = &[
    ("↑ ↓", "select a session"),
    ("enter", "replay it at its first hit"),
    ("esc", "back to the list"),
];

const PLAYER: &[(&str, &str)] = &[
    ("space", "play, pause"),
    ("+ -", "speed 0.5× to 16×"),
    ("← →", "seek 5 s (shift: 60 s); click the timeline"),
    ("0-9, home, end", "jump to 0%–90%, start, end"),
    (". ,", "step one event forward, back"),
    ("n N", "next, previous search hit"),
    ("i", "skip idle gaps on/off"),
    ("v, e, E", "integrity, export asciicast, evidence"),
    ("p", "desktop: export the keyframe shown as PNG"),
    ("esc", "back"),
];

/// Draws the help over `area`, with the keys of `screen` first.
pub fn draw(frame: &mut Frame<'_>, area: Rect, screen: Screen) {
    let (name, keys) = match screen {
        Screen::List => ("Session list", LIST),
        Screen::Results => ("Search results", RESULTS),
        Screen::Player => ("Player", PLAYER),
    };
    let key_style = Style::default()
        .fg(Color::Cyan)
        .add_modifier(Modifier::BOLD);
    let heading = Style::default().add_modifier(Modifier::BOLD | Modifier::UNDERLINED);
    let mut lines = vec![Line::from(Span::styled(name, heading))];
    let row = |&(k, what): &(&str, &'static str)| {
        Line::from(vec![
            Span::styled(format!("{k:>15}  "), key_style),
            Span::raw(what),
        ])
    };
    lines.extend(keys.iter().map(row));
    lines.push(Line::raw(""));
    lines.push(Line::from(Span::styled("Everywhere", heading)));
    lines.extend(GLOBAL.iter().map(row));
    let height = lines.len() as u16 + 2;
    let popup = centered(area, 70, height);
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .border_type(BorderType::Rounded)
                .title(" keys — any key closes "),
        ),
        popup,
    );
}
