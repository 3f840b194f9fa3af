//! The review TUI against a real recording: an SSH session through the real gateway prints a marker, then the built
//! `sallyport-review` runs in tmux on the gateway's recordings database, searches for the marker, opens the hit,
//! and the replayed screen (tmux capture-pane) shows the marker at that moment and not what came later. Then the
//! recording is tampered with: the list shows it failed, `--verify` exits non-zero naming the chunk; the
//! asciicast export is valid and holds the marker.

use std::process::{Command, Output};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use sallyport_e2e::portal::{Terminal, login_admin, sealed_session, target_id};
use sallyport_e2e::tmux::{Tmux, review_bin};
use sallyport_e2e::{
    Gateway, GatewayOptions, Sshd, SshdOptions, TargetNet, ensure_test_user, require_root,
};
use sallyport_recordings::Store;

fn review(args: &[&str]) -> Result<Output> {
    Ok(Command::new(review_bin()?).args(args).output()?)
}

fn output_text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_session_is_found_replayed_verified_and_exported() -> Result<()> {
    require_root()?;
    let bin = review_bin()?;
    let net = TargetNet::create("review")?;
    let user = ensure_test_user()?;
    let _sshd = Sshd::start(&net, SshdOptions::default())?;
    let gateway = Gateway::start(GatewayOptions::for_net(&net)).await?;
    let client = login_admin(&gateway).await?;
    let alpha = target_id(&client, "alpha").await?;
    let mut terminal = Terminal::open(&client, alpha, &user.name, &user.password).await?;
    terminal.expect_connected().await?;
    // The marker only appears in the output (the typed command says $((6*7))), so the hit is the target's answer.
    terminal.type_text("echo REVIEW-$((6*7))-MARKER\r").await?;
    ensure!(
        terminal
            .read_until(Duration::from_secs(10), |r| r
                .output
                .contains("REVIEW-42-MARKER"))
            .await?,
        "the marker was not echoed"
    );
    // Something that happens later, which the replay must not show yet at the hit. The idle gap also shows
    // that the player's time follows the recording.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    terminal.type_text("echo LATER-$((1+1))-LINE\r").await?;
    ensure!(
        terminal
            .read_until(Duration::from_secs(10), |r| r
                .output
                .contains("LATER-2-LINE"))
            .await?,
        "the later line was not echoed"
    );
    terminal.type_text("exit\r").await?;
    let db = gateway.recordings_db();
    let store = Store::open_read_only(&db)?;
    let session = sealed_session(&store, Duration::from_secs(15), |s| s.target == "alpha").await?;
    drop(store);

    let index_dir = tempfile::tempdir()?;
    let index = index_dir.path().join("review.search");
    let db_arg = db.to_str().context("path")?;
    // The gateway writes recording-signing.pub beside the database; the reviewer finds the key there.
    let command = format!("{} --index {} {db_arg}", bin.display(), index.display());
    let tmux = Tmux::start("sallyport-review-e2e", &command)?;
    tmux.wait_for("the session listed and verified", |s| {
        s.lines()
            .any(|l| l.contains("alpha") && l.trim_end().ends_with(" ok"))
    })?;
    tmux.wait_for("the index", |s| s.contains("search index up to date"))?;
    tmux.keys(&["/"])?;
    tmux.type_text("REVIEW-42-MARKER")?;
    tmux.keys(&["Enter"])?;
    tmux.wait_for("one search result", |s| {
        s.contains("“REVIEW-42-MARKER”: 1 sessions")
    })?;
    tmux.keys(&["Enter"])?;
    let at_hit = tmux.wait_for("the player at the hit", |s| {
        s.contains("event ") && s.contains("1/1")
    })?;
    println!("the player at the hit:\n{at_hit}");
    // The marker is on the replayed screen (inside the frame of the recorded 100×30 terminal), and the later line
    // is not there yet.
    let replayed: Vec<&str> = at_hit.lines().filter(|l| l.starts_with('│')).collect();
    ensure!(
        replayed
            .iter()
            .any(|l| l.contains("REVIEW-42-MARKER") && !l.contains("echo")),
        "the marker is not on the replayed screen:\n{at_hit}"
    );
    ensure!(
        !at_hit.contains("LATER-2-LINE"),
        "the replay shows what came after the hit:\n{at_hit}"
    );
    // At the end, the later line is there.
    tmux.keys(&["End"])?;
    tmux.wait_for("the end of the session", |s| s.contains("LATER-2-LINE"))?;
    tmux.keys(&["q"])?;
    tmux.keys(&["q"])?;
    drop(tmux);

    // Untouched: --verify passes.
    let ok = review(&["--verify", db_arg])?;
    ensure!(
        ok.status.success(),
        "--verify failed on an untouched database:\n{}",
        output_text(&ok)
    );

    // asciicast: valid v2, with the marker in the output events.
    let cast = index_dir.path().join("s.cast");
    let export = review(&[
        "export",
        "--session",
        &session.id,
        "--asciicast",
        cast.to_str().context("path")?,
        db_arg,
    ])?;
    ensure!(
        export.status.success(),
        "export failed:\n{}",
        output_text(&export)
    );
    let text = std::fs::read_to_string(&cast)?;
    let mut lines = text.lines();
    let header: serde_json::Value = serde_json::from_str(lines.next().context("empty cast")?)?;
    ensure!(
        header["version"] == 2 && header["width"] == 100 && header["height"] == 30,
        "header {header}"
    );
    let mut output = String::new();
    for line in lines {
        let event: Vec<serde_json::Value> = serde_json::from_str(line)?;
        ensure!(event.len() == 3 && event[0].is_f64(), "bad event {line}");
        if event[1] == "o" {
            output.push_str(event[2].as_str().context("data")?);
        }
    }
    ensure!(
        output.contains("REVIEW-42-MARKER"),
        "the cast lacks the marker"
    );

    // Tampered: a flipped byte in chunk 0 fails --verify, naming the chunk, and shows as failed in the list.
    sallyport_recordings::danger_flip_chunk_byte(&db, &session.id, 0)?;
    let bad = review(&["--verify", db_arg])?;
    let said = output_text(&bad);
    ensure!(
        bad.status.code() == Some(1),
        "--verify exited {:?}:\n{said}",
        bad.status.code()
    );
    ensure!(
        said.lines()
            .any(|l| l.starts_with(&session.id) && l.contains("FAILED: chunk 0")),
        "--verify does not name the chunk:\n{said}"
    );
    let tmux = Tmux::start("sallyport-review-e2e-2", &command)?;
    tmux.wait_for("the failed session in the list", |s| {
        s.contains("FAILED chunk 0")
    })?;
    tmux.keys(&["q"])?;
    Ok(())
}
