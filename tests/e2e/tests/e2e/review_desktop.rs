//! The review TUI on a real desktop recording: a desktop session to a real xrdp in a network namespace goes
//! through the real gateway (its WebSocket driven from Rust as the page drives it, keyframes every second),
//! then the built `sallyport-review` runs in tmux on the gateway's recordings database, opens the session,
//! seeks to its middle with the player's `5` key, shows the desktop as half-block cells in the recorded
//! colours with its size and time in the title, and `p` writes that moment as PNG. The PNG's pixels are
//! exactly the frame `sallyport_desktop_replay::DesktopReplay::frame_at` rebuilds for the same moment (through
//! a keyframe), and hold what the target drew (its known background and the xterm); `export --png --at`
//! writes the same picture.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use sallyport_core::display::InputEvent;
use sallyport_desktop_replay::DesktopReplay;
use sallyport_e2e::portal::Desktop;
use sallyport_e2e::portal::{login_admin, sealed_session, target_id};
use sallyport_e2e::rdp::{BACKGROUND, XTERM_AT, Xrdp};
use sallyport_e2e::tmux::{Tmux, review_bin};
use sallyport_e2e::{Gateway, GatewayOptions, TargetNet, require_root};
use sallyport_recordings::Store;

/// A decoded PNG: width, height, RGBA.
fn read_png(path: &Path) -> Result<(u32, u32, Vec<u8>)> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut reader = png::Decoder::new(std::io::BufReader::new(file)).read_info()?;
    let mut buf = vec![0; reader.output_buffer_size().context("png size")?];
    let info = reader.next_frame(&mut buf)?;
    ensure!(
        info.color_type == png::ColorType::Rgba && info.bit_depth == png::BitDepth::Eight,
        "{} is not 8-bit RGBA: {info:?}",
        path.display()
    );
    buf.truncate(info.buffer_size());
    Ok((info.width, info.height, buf))
}

fn pixel(rgba: &[u8], width: u32, x: u32, y: u32) -> [u8; 3] {
    let i = ((y * width + x) * 4) as usize;
    [rgba[i], rgba[i + 1], rgba[i + 2]]
}

/// The PNG the player wrote into `dir` (`SESSION-MSms.png`) and the moment in its name.
fn exported_frame(dir: &Path, session: &str) -> Option<(PathBuf, u64)> {
    std::fs::read_dir(dir).ok()?.find_map(|entry| {
        let path = entry.ok()?.path();
        let name = path.file_name()?.to_str()?.to_owned();
        let ms = name
            .strip_prefix(&format!("{session}-"))?
            .strip_suffix("ms.png")?
            .parse()
            .ok()?;
        Some((path, ms))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_desktop_recording_replays_seeks_to_its_middle_and_exports_the_recorded_frame()
-> Result<()> {
    require_root()?;
    let bin = review_bin()?;
    let net = TargetNet::create("revd")?;
    let xrdp = Xrdp::start(&net)?;
    let gateway = Gateway::start(
        GatewayOptions::default()
            .network("e2e", &net.cidr())
            .rdp_target("desk", &xrdp.addr().to_string(), xrdp.port())
            // Keyframes every second, so that the middle of this short session is reached through one.
            .extra_toml("[recording]")
            .extra_toml("desktop_keyframe_interval_ms = 1000"),
    )
    .await?;
    let client = login_admin(&gateway).await?;
    let desk = target_id(&client, "desk").await?;
    let started = Instant::now();
    let mut desktop = Desktop::open(
        &client,
        desk,
        &xrdp.user().name,
        &xrdp.user().password,
        (1024, 768),
    )
    .await?;
    let (xterm_x, xterm_y) = (XTERM_AT.0 + 30, XTERM_AT.1 + 30);
    desktop
        .read_until(
            Duration::from_secs(60),
            "the background and the xterm",
            |d| {
                d.pixel(900, 700) == Some(BACKGROUND)
                    && d.pixel(xterm_x, xterm_y) == Some([0xff; 3])
            },
        )
        .await
        .with_context(|| format!("{}\n{}", gateway.stderr(), xrdp.log()))?;
    // Stay longer than painting took, typing into the xterm (focus follows the pointer) so the desktop keeps
    // changing: the recording's middle shows the painted desktop, keyframes lie before it, and the end differs
    // from it.
    desktop
        .input(&[InputEvent::MouseMove {
            x: xterm_x,
            y: xterm_y,
        }])
        .await?;
    let painted = started.elapsed();
    let until = Instant::now() + painted.max(Duration::from_secs(6)) + Duration::from_secs(2);
    while Instant::now() < until {
        // `x`, pressed and released.
        desktop
            .input(&[
                InputEvent::Key {
                    scancode: 0x2D,
                    down: true,
                },
                InputEvent::Key {
                    scancode: 0x2D,
                    down: false,
                },
            ])
            .await?;
        desktop.watch_for(Duration::from_millis(300)).await?;
    }
    ensure!(
        desktop.size == (1024, 768),
        "the desktop is {:?}",
        desktop.size
    );
    desktop.close().await;

    let db = gateway.recordings_db();
    let store = Store::open_read_only(&db)?;
    let session = sealed_session(&store, Duration::from_secs(15), |s| s.target == "desk").await?;
    let events = store.events(&session.id)?;
    drop(store);
    let duration = events.last().map_or(0, |e| e.at_ms);
    let middle = duration * 5 / 10;
    let replay = DesktopReplay::new(&events);
    ensure!(
        replay.keyframes().iter().any(|k| *k <= middle),
        "no keyframe before the middle ({middle} ms): {:?}",
        replay.keyframes()
    );

    let dir = tempfile::tempdir()?;
    let db_arg = db.to_str().context("path")?;
    let command = format!(
        "{} --index {} {db_arg}",
        bin.display(),
        dir.path().join("review.search").display()
    );
    let tmux = Tmux::start_in("sallyport-review-desktop", Some(dir.path()), &command, &[])?;
    tmux.wait_for("the session listed and verified", |s| {
        s.lines()
            .any(|l| l.contains("desk") && l.contains("rdp") && l.trim_end().ends_with(" ok"))
    })?;
    tmux.keys(&["Enter"])?;
    // At its start, before the first activation, the player shows an empty desktop.
    tmux.wait_for("the desktop player", |s| s.contains("┌ desktop "))?;
    // `5` seeks to five tenths of the session.
    tmux.keys(&["5"])?;
    let screen = tmux.wait_for("the desktop at the middle", |s| {
        s.contains("desktop 1024×768 at ") && s.contains("▀")
    })?;
    println!("the player at the middle:\n{screen}");
    let styled = tmux.capture_styled()?;
    let red = format!("8;2;{};{};{}m", BACKGROUND[0], BACKGROUND[1], BACKGROUND[2]);
    ensure!(
        styled.contains(&red),
        "the half-block cells do not carry the desktop's background colour ({red}):\n{styled}"
    );
    ensure!(
        styled.contains("8;2;255;255;255m"),
        "the half-block cells do not show the white xterm:\n{styled}"
    );
    tmux.keys(&["p"])?;
    let (png_path, at_ms) = {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(found) = exported_frame(dir.path(), &session.id) {
                break found;
            }
            if Instant::now() > deadline {
                bail!(
                    "the player wrote no PNG into {}; the pane shows:\n{}",
                    dir.path().display(),
                    tmux.capture()?
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    tmux.wait_for("the export reported", |s| s.contains("wrote "))?;
    tmux.keys(&["q"])?;
    tmux.keys(&["q"])?;
    drop(tmux);
    // The frame shown is the one after the last event at or before the middle; a key was typed every
    // 300 ms, so that is close to it.
    ensure!(
        at_ms <= middle && at_ms + 1500 >= middle,
        "the exported moment {at_ms} ms is not the middle {middle} ms of {duration} ms"
    );

    let (width, height, rgba) = read_png(&png_path)?;
    let recorded = replay.frame_at(at_ms)?;
    ensure!(
        recorded.from_keyframe_ms.is_some(),
        "the recorded frame was not reached through a keyframe"
    );
    ensure!(
        (width, height) == (u32::from(recorded.width), u32::from(recorded.height)),
        "the PNG is {width}x{height}, the recorded frame {}x{}",
        recorded.width,
        recorded.height
    );
    let differing = rgba
        .chunks_exact(4)
        .zip(recorded.rgba.chunks_exact(4))
        .filter(|(a, b)| a != b)
        .count();
    ensure!(
        differing == 0 && rgba.len() == recorded.rgba.len(),
        "{differing} pixels of the exported PNG differ from the recorded frame"
    );
    ensure!(
        pixel(&rgba, width, 900, 700) == BACKGROUND,
        "the PNG lacks the target's background: {:?}",
        pixel(&rgba, width, 900, 700)
    );
    ensure!(
        pixel(&rgba, width, u32::from(xterm_x), u32::from(xterm_y)) == [0xff; 3],
        "the PNG lacks the xterm"
    );

    // The middle is not the end: the xterm went on filling with what was typed.
    let last = replay.final_frame()?;
    ensure!(
        last.rgba != recorded.rgba,
        "the frame at the middle is the session's last picture"
    );

    // The command line writes the same picture for the same moment.
    let cli_png = dir.path().join("cli.png");
    let out = Command::new(&bin)
        .args(["export", "--session", &session.id, "--png"])
        .arg(&cli_png)
        .args(["--at", &format!("{:.3}", at_ms as f64 / 1000.0), db_arg])
        .output()?;
    ensure!(
        out.status.success(),
        "export --png failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (cli_width, cli_height, cli_rgba) = read_png(&cli_png)?;
    ensure!(
        (cli_width, cli_height) == (width, height) && cli_rgba == rgba,
        "export --png --at {at_ms} ms differs from the player's PNG"
    );
    println!(
        "desktop recording: {} events over {duration} ms, {} keyframes; middle {middle} ms, frame at {at_ms} ms \
         from the keyframe at {:?} ms after {} PDUs",
        events.len(),
        replay.keyframes().len(),
        recorded.from_keyframe_ms,
        recorded.pdus_decoded
    );
    Ok(())
}
