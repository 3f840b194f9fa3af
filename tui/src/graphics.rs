//! Desktop frames as real pictures in terminals that can show them: the kitty graphics protocol, sixel, or
//! iTerm2's inline images, chosen from the environment (`--graphics` overrides); everything else, tmux, and
//! the appliance's consoles get half-block cells (`desktop.rs`), which work everywhere.
//!
//! Only pixels decoded by the replay reach these escape sequences, as base64 (kitty, iTerm2) or sixel data
//! characters (`?`–`~`): nothing from a recording is written to the terminal as bytes. The picture is scaled
//! here to the cells it covers, so the terminal never receives more than the area's pixels.
//!
//! The interface leaves the picture's cells blank; the event loop writes the escape sequence after each draw
//! in which the picture or its place changed (see `run.rs`), and removes the old one first.

use std::io::Write;

use base64::Engine;
use ratatui::layout::Rect;

use crate::desktop::Image;

/// How desktop frames are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Two pixels per cell in 24-bit colour (every terminal).
    HalfBlocks,
    /// The kitty graphics protocol (kitty, WezTerm, Ghostty, Konsole).
    Kitty,
    /// DEC sixel (foot, mlterm, xterm -ti vt340, WezTerm, Windows Terminal).
    Sixel,
    /// iTerm2's inline images (iTerm2, WezTerm).
    Iterm2,
}

impl Protocol {
    /// Parses `--graphics` (`auto` is `None`).
    pub fn parse(text: &str) -> Result<Option<Protocol>, String> {
        match text {
            "auto" => Ok(None),
            "halfblocks" | "half-blocks" => Ok(Some(Protocol::HalfBlocks)),
            "kitty" => Ok(Some(Protocol::Kitty)),
            "sixel" => Ok(Some(Protocol::Sixel)),
            "iterm2" => Ok(Some(Protocol::Iterm2)),
            other => Err(format!(
                "{other:?} is not one of auto, kitty, sixel, iterm2, halfblocks"
            )),
        }
    }

    /// The best protocol the terminal described by the environment supports. Terminal multiplexers (tmux,
    /// screen) get half-blocks: they do not pass these pictures through unless configured to.
    pub fn detect(env: impl Fn(&str) -> Option<String>) -> Protocol {
        let term = env("TERM").unwrap_or_default();
        let program = env("TERM_PROGRAM").unwrap_or_default();
        if env("TMUX").is_some() || term.starts_with("tmux") || term.starts_with("screen") {
            return Protocol::HalfBlocks;
        }
        if env("KITTY_WINDOW_ID").is_some()
            || term == "xterm-kitty"
            || term == "xterm-ghostty"
            || program == "ghostty"
            || env("KONSOLE_VERSION").is_some()
        {
            return Protocol::Kitty;
        }
        if program == "iTerm.app"
            || program == "WezTerm"
            || env("LC_TERMINAL").as_deref() == Some("iTerm2")
        {
            return Protocol::Iterm2;
        }
        if term.starts_with("foot")
            || term.starts_with("mlterm")
            || term.contains("sixel")
            || env("WT_SESSION").is_some()
        {
            return Protocol::Sixel;
        }
        Protocol::HalfBlocks
    }
}

/// The largest rectangle of `area` that shows a `width`×`height` picture undistorted, with cells twice as
/// high as wide, at its top left.
pub fn fit(area: Rect, width: u32, height: u32) -> Rect {
    if area.is_empty() || width == 0 || height == 0 {
        return Rect::default();
    }
    let scale = (f64::from(area.width) / f64::from(width))
        .min(f64::from(area.height) * 2.0 / f64::from(height));
    let cols = ((f64::from(width) * scale).round() as u16).clamp(1, area.width);
    let rows = ((f64::from(height) * scale / 2.0).round() as u16).clamp(1, area.height);
    Rect {
        width: cols,
        height: rows,
        ..area
    }
}

/// The picture scaled (nearest pixel) to `width`×`height`.
pub fn scale(image: &Image, width: u32, height: u32) -> Image {
    let (width, height) = (width.max(1), height.max(1));
    let mut rgba = Vec::with_capacity((width * height * 4) as usize);
    for y in 0..height {
        let sy = (u64::from(y) * u64::from(image.height) / u64::from(height)) as u32;
        for x in 0..width {
            let sx = (u64::from(x) * u64::from(image.width) / u64::from(width)) as u32;
            let i = ((sy * image.width + sx) * 4) as usize;
            rgba.extend_from_slice(image.rgba.get(i..i + 4).unwrap_or(&[0, 0, 0, 255]));
        }
    }
    Image {
        width,
        height,
        rgba,
    }
}

/// What removes the pictures this program showed, before a new one or when leaving the player (kitty keeps
/// pictures apart from the text; the others are cells, which a redraw replaces).
pub fn clear(protocol: Protocol) -> Vec<u8> {
    match protocol {
        Protocol::Kitty => b"\x1b_Ga=d,d=A,q=2\x1b\\".to_vec(),
        _ => Vec::new(),
    }
}

/// The escape sequences that show `image` in `area` (cursor moved there first, and back is not needed: the
/// interface positions the cursor itself). `cell` is a cell's size in pixels.
pub fn encode(
    protocol: Protocol,
    image: &Image,
    area: Rect,
    cell: (u16, u16),
) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    if area.is_empty() || protocol == Protocol::HalfBlocks {
        return Ok(out);
    }
    let px = (
        u32::from(area.width) * u32::from(cell.0.max(1)),
        u32::from(area.height) * u32::from(cell.1.max(1)),
    );
    let scaled = scale(image, px.0, px.1);
    // CUP is 1-based.
    write!(out, "\x1b[{};{}H", area.y + 1, area.x + 1)?;
    let base64 = base64::engine::general_purpose::STANDARD;
    match protocol {
        Protocol::HalfBlocks => {}
        Protocol::Kitty => {
            let data = base64.encode(crate::desktop::encode_png(&scaled)?);
            let chunks: Vec<&[u8]> = data.as_bytes().chunks(4096).collect();
            for (i, chunk) in chunks.iter().enumerate() {
                let more = u8::from(i + 1 < chunks.len());
                if i == 0 {
                    write!(
                        out,
                        "\x1b_Gf=100,a=T,t=d,q=2,C=1,c={},r={},m={more};",
                        area.width, area.height
                    )?;
                } else {
                    write!(out, "\x1b_Gm={more};")?;
                }
                out.extend_from_slice(chunk);
                out.extend_from_slice(b"\x1b\\");
            }
        }
        Protocol::Iterm2 => {
            let png = crate::desktop::encode_png(&scaled)?;
            write!(
                out,
                "\x1b]1337;File=inline=1;size={};width={};height={};preserveAspectRatio=0:{}\x07",
                png.len(),
                area.width,
                area.height,
                base64.encode(&png)
            )?;
        }
        Protocol::Sixel => sixel(&scaled, &mut out)?,
    }
    Ok(out)
}

/// The 6×6×6 colour cube's index of a pixel.
fn cube(p: &[u8]) -> usize {
    let level = |v: u8| (usize::from(v) * 5 + 127) / 255;
    level(p[0]) * 36 + level(p[1]) * 6 + level(p[2])
}

/// DEC sixel with the 216 colours of a 6×6×6 cube, run-length encoded, in bands of six rows.
fn sixel(image: &Image, out: &mut Vec<u8>) -> anyhow::Result<()> {
    let (w, h) = (image.width as usize, image.height as usize);
    let indices: Vec<usize> = image.rgba.chunks_exact(4).map(cube).collect();
    // DCS with 1:1 pixel aspect; raster attributes give the size.
    write!(out, "\x1bP0;1;0q\"1;1;{w};{h}")?;
    let mut used = [false; 216];
    for &i in &indices {
        used[i] = true;
    }
    for (i, _) in used.iter().enumerate().filter(|(_, u)| **u) {
        let percent = |level: usize| level * 100 / 5;
        write!(
            out,
            "#{i};2;{};{};{}",
            percent(i / 36),
            percent(i / 6 % 6),
            percent(i % 6)
        )?;
    }
    for band in (0..h).step_by(6) {
        let rows = (h - band).min(6);
        let mut colours: Vec<usize> = (0..rows)
            .flat_map(|r| indices[(band + r) * w..(band + r + 1) * w].iter().copied())
            .collect();
        colours.sort_unstable();
        colours.dedup();
        for (n, colour) in colours.iter().enumerate() {
            if n > 0 {
                out.push(b'$');
            }
            write!(out, "#{colour}")?;
            let mut run: Option<(u8, usize)> = None;
            for x in 0..w {
                let mut bits = 0u8;
                for r in 0..rows {
                    if indices[(band + r) * w + x] == *colour {
                        bits |= 1 << r;
                    }
                }
                let c = 63 + bits;
                run = match run {
                    Some((prev, count)) if prev == c => Some((prev, count + 1)),
                    Some((prev, count)) => {
                        put_run(out, prev, count)?;
                        Some((c, 1))
                    }
                    None => Some((c, 1)),
                };
            }
            if let Some((prev, count)) = run {
                put_run(out, prev, count)?;
            }
        }
        out.push(b'-');
    }
    out.extend_from_slice(b"\x1b\\");
    Ok(())
}

fn put_run(out: &mut Vec<u8>, c: u8, count: usize) -> std::io::Result<()> {
    if count > 3 {
        write!(out, "!{count}")?;
        out.push(c);
    } else {
        out.extend(std::iter::repeat_n(c, count));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use insta::assert_snapshot;

    /// A 4×4 picture: red on the left, blue on the right.
    fn picture() -> Image {
        let mut rgba = Vec::new();
        for _ in 0..4 {
            for x in 0..4 {
                rgba.extend(if x < 2 {
                    [255, 0, 0, 255]
                } else {
                    [0, 0, 255, 255]
                });
            }
        }
        Image {
            width: 4,
            height: 4,
            rgba,
        }
    }

    /// Escape sequences made readable: ESC as `␛`, BEL as `␇`.
    fn readable(bytes: &[u8]) -> String {
        String::from_utf8_lossy(bytes)
            .replace('\x1b', "␛")
            .replace('\x07', "␇")
    }

    /// Replaces each base64 PNG in `text` by `<PNG WxH>` after checking it decodes to `expected`'s pixels,
    /// and iTerm2's `size=N` by `size=<len>`: the compressed bytes depend on which deflate backend the
    /// build's features picked, the picture does not.
    fn redact_pngs(text: &str, expected: &Image) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(at) = rest.find("iVBORw0KGgo") {
            out.push_str(&rest[..at]);
            let len = rest[at..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || "+/=".contains(c)))
                .unwrap_or(rest.len() - at);
            let png = base64::engine::general_purpose::STANDARD
                .decode(&rest[at..at + len])
                .unwrap();
            let mut reader = png::Decoder::new(std::io::Cursor::new(png))
                .read_info()
                .unwrap();
            let mut rgba = vec![0; reader.output_buffer_size().unwrap()];
            let info = reader.next_frame(&mut rgba).unwrap();
            assert_eq!((info.width, info.height), (expected.width, expected.height));
            assert_eq!(rgba, expected.rgba, "the PNG holds the picture");
            out.push_str(&format!("<PNG {}x{}>", info.width, info.height));
            rest = &rest[at + len..];
        }
        out.push_str(rest);
        match (out.find(";size="), out.find(";width=")) {
            (Some(a), Some(b)) if a < b => format!("{};size=<len>{}", &out[..a], &out[b..]),
            _ => out,
        }
    }

    #[test]
    fn the_escape_sequences_of_each_protocol() {
        let area = Rect::new(3, 2, 2, 1);
        let out = |p| {
            redact_pngs(
                &readable(&encode(p, &picture(), area, (2, 4)).unwrap()),
                &picture(),
            )
        };
        assert_eq!(out(Protocol::HalfBlocks), "");
        assert_snapshot!("kitty", out(Protocol::Kitty));
        assert_snapshot!("iterm2", out(Protocol::Iterm2));
        assert_snapshot!("sixel", out(Protocol::Sixel));
        assert_eq!(readable(&clear(Protocol::Kitty)), "␛_Ga=d,d=A,q=2␛\\");
        assert!(clear(Protocol::Sixel).is_empty());
    }

    #[test]
    fn sixel_runs_and_bands() {
        // 10 pixels of one colour in 7 rows: one run per band, two bands.
        let image = Image {
            width: 10,
            height: 7,
            rgba: [0, 255, 0, 255].repeat(70),
        };
        let mut out = Vec::new();
        sixel(&image, &mut out).unwrap();
        assert_eq!(
            readable(&out),
            "␛P0;1;0q\"1;1;10;7#30;2;0;100;0#30!10~-#30!10@-␛\\"
        );
    }

    #[test]
    fn detection_from_the_environment() {
        let detect = |vars: &[(&str, &str)]| {
            Protocol::detect(|k| {
                vars.iter()
                    .find(|(name, _)| *name == k)
                    .map(|(_, v)| (*v).to_owned())
            })
        };
        assert_eq!(detect(&[("TERM", "xterm-256color")]), Protocol::HalfBlocks);
        assert_eq!(detect(&[]), Protocol::HalfBlocks);
        assert_eq!(detect(&[("TERM", "xterm-kitty")]), Protocol::Kitty);
        assert_eq!(
            detect(&[("TERM", "xterm-256color"), ("KITTY_WINDOW_ID", "1")]),
            Protocol::Kitty
        );
        assert_eq!(detect(&[("TERM_PROGRAM", "iTerm.app")]), Protocol::Iterm2);
        assert_eq!(detect(&[("TERM_PROGRAM", "WezTerm")]), Protocol::Iterm2);
        assert_eq!(detect(&[("TERM", "foot")]), Protocol::Sixel);
        assert_eq!(detect(&[("TERM", "mlterm")]), Protocol::Sixel);
        // Inside tmux, even in kitty: half-blocks.
        assert_eq!(
            detect(&[("TERM", "tmux-256color"), ("KITTY_WINDOW_ID", "1")]),
            Protocol::HalfBlocks
        );
        assert_eq!(
            detect(&[("TMUX", "/tmp/tmux-0/default,1,0"), ("TERM", "xterm-kitty")]),
            Protocol::HalfBlocks
        );
        assert_eq!(Protocol::parse("auto"), Ok(None));
        assert_eq!(Protocol::parse("sixel"), Ok(Some(Protocol::Sixel)));
        assert!(Protocol::parse("vt52").is_err());
    }

    #[test]
    fn fitting_keeps_the_proportions() {
        let area = Rect::new(1, 3, 78, 18);
        assert_eq!(fit(area, 64, 40), Rect::new(1, 3, 58, 18));
        assert_eq!(fit(area, 1024, 100), Rect::new(1, 3, 78, 4));
        assert_eq!(fit(Rect::default(), 64, 40), Rect::default());
        let scaled = scale(&picture(), 2, 1);
        assert_eq!(scaled.rgba, [255, 0, 0, 255, 0, 0, 255, 255]);
    }
}
