//! `sallyport-review --gateway` against the real gateway: an SSH session through the gateway is recorded;
//! an auditor runs the built reviewer in tmux against the gateway's URL, is shown the gateway's certificate
//! fingerprint and pins it, logs in with the portal password, sees the session listed and verified, finds the
//! marker by search and sees it replayed. Then, from scripts: `--verify --gateway` passes with the pinned
//! certificate; `export --gateway` writes the asciicast; a user without the auditor role and a wrong password
//! are refused in words; a different pinned fingerprint is refused before any credential is sent; the mirror
//! holds the gateway's recordings ledger entry for entry and verifies clean as a whole database; a chunk
//! changed on the gateway fails the reviewer's own verification (it does not take the gateway's word), and so
//! does a session deleted on the gateway, which only the ledger still names; and every access is in the
//! gateway's audit log. An auditor with TOTP is asked for the code after the password,
//! and a wrong code is refused.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use sallyport_core::mfa;
use sallyport_e2e::http::normalize_fingerprint;
use sallyport_e2e::portal::{
    Terminal, create_user, first_login, login_admin, sealed_session, target_id,
};
use sallyport_e2e::tmux::{Tmux, review_bin};
use sallyport_e2e::{
    Gateway, GatewayOptions, Sshd, SshdOptions, TargetNet, ensure_test_user, require_root,
};
use sallyport_recordings::Store;

const AUDITOR_PASSWORD: &str = "e2e-auditor-password-1";
const USER_PASSWORD: &str = "e2e-user-password-1";

/// The reviewer run from a script, with its own config and cache directories under `home`.
fn review(home: &Path, args: &[&str], password: Option<&str>) -> Result<Output> {
    let mut command = Command::new(review_bin()?);
    command
        .args(args)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_CACHE_HOME", home.join("cache"))
        .env_remove("SALLYPORT_REVIEW_PASSWORD")
        .stdin(Stdio::null());
    if let Some(password) = password {
        command.env("SALLYPORT_REVIEW_PASSWORD", password);
    }
    Ok(command.output()?)
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Every ledger entry of a recordings database, as stored.
type LedgerRow = (
    i64,
    i64,
    i64,
    Option<String>,
    Option<i64>,
    Option<Vec<u8>>,
    Vec<u8>,
    Vec<u8>,
);

fn ledger_rows(db: &Path) -> Result<Vec<LedgerRow>> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let mut stmt = conn.prepare(
        "SELECT seq, at_ms, kind, session_id, chunk_seq, digest, body, head FROM ledger ORDER BY seq",
    )?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// The mirror the reviewer keeps of the gateway under `cache`.
fn mirror_db(cache: &Path, gateway: &Gateway) -> std::path::PathBuf {
    cache.join(format!(
        "sallyport-review/gateways/127.0.0.1_{}/recordings.db",
        gateway.port()
    ))
}

/// `(kind, actor, session_id, detail)` of every audit event in the gateway's state database.
fn audit_events(gateway: &Gateway) -> Result<Vec<(String, String, String, String)>> {
    let db = rusqlite::Connection::open_with_flags(
        gateway.state_db(),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?;
    let mut stmt = db.prepare(
        "SELECT kind, COALESCE(actor, ''), COALESCE(session_id, ''), COALESCE(detail, '')
         FROM audit_events ORDER BY id",
    )?;
    let events = stmt
        .query_map([], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auditor_reviews_a_gateways_recordings_remotely() -> Result<()> {
    require_root()?;
    let bin = review_bin()?;
    let net = TargetNet::create("revr")?;
    let user = ensure_test_user()?;
    let _sshd = Sshd::start(&net, SshdOptions::default())?;
    let gateway = Gateway::start(GatewayOptions::for_net(&net)).await?;
    let admin = login_admin(&gateway).await?;
    let alpha = target_id(&admin, "alpha").await?;
    let mut terminal = Terminal::open(&admin, alpha, &user.name, &user.password).await?;
    terminal.expect_connected().await?;
    terminal.type_text("echo REMOTE-$((6*7))-MARKER\r").await?;
    ensure!(
        terminal
            .read_until(Duration::from_secs(10), |r| r
                .output
                .contains("REMOTE-42-MARKER"))
            .await?,
        "the marker was not echoed"
    );
    terminal.type_text("exit\r").await?;
    let db = gateway.recordings_db();
    let store = Store::open_read_only(&db)?;
    let session = sealed_session(&store, Duration::from_secs(15), |s| s.target == "alpha").await?;
    drop(store);

    let one_time = create_user(&admin, "audrey", "auditor", "").await?;
    first_login(&gateway, "audrey", &one_time, AUDITOR_PASSWORD).await?;
    let one_time = create_user(&admin, "ursula", "user", "").await?;
    first_login(&gateway, "ursula", &one_time, USER_PASSWORD).await?;

    let home = tempfile::tempdir()?;
    let url = format!("https://127.0.0.1:{}", gateway.port());
    let fingerprint = gateway
        .fingerprint()
        .context("the gateway printed no fingerprint")?;

    // The auditor at a terminal: trust on first use, then the password, then the interface.
    let config = home.path().join("config");
    let cache = home.path().join("cache");
    let command = format!("{} --gateway {url}", bin.display());
    let tmux = Tmux::start_in(
        "sallyport-review-remote",
        Some(home.path()),
        &command,
        &[
            ("XDG_CONFIG_HOME", config.to_str().context("path")?),
            ("XDG_CACHE_HOME", cache.to_str().context("path")?),
        ],
    )?;
    let asked = tmux.wait_for("the fingerprint question", |s| {
        s.contains("Trust this gateway")
    })?;
    let shown = asked
        .lines()
        .map(str::trim)
        .find_map(|l| normalize_fingerprint(l).ok())
        .with_context(|| format!("no fingerprint shown:\n{asked}"))?;
    ensure!(
        shown == normalize_fingerprint(&fingerprint)?,
        "the reviewer shows {shown}, the gateway printed {fingerprint}"
    );
    tmux.type_text("y")?;
    tmux.keys(&["Enter"])?;
    tmux.wait_for("the username question", |s| s.contains("username on"))?;
    tmux.type_text("audrey")?;
    tmux.keys(&["Enter"])?;
    tmux.wait_for("the password question", |s| {
        s.contains("password for audrey")
    })?;
    tmux.type_text(AUDITOR_PASSWORD)?;
    tmux.keys(&["Enter"])?;
    let list = tmux.wait_for("the session listed and verified", |s| {
        s.lines()
            .any(|l| l.contains("alpha") && l.trim_end().ends_with(" ok"))
    })?;
    ensure!(
        list.contains(&format!("{url} (as audrey)")),
        "the title does not name the gateway:\n{list}"
    );
    tmux.wait_for("the index", |s| s.contains("search index up to date"))?;
    tmux.keys(&["/"])?;
    tmux.type_text("REMOTE-42-MARKER")?;
    tmux.keys(&["Enter"])?;
    tmux.wait_for("one search result", |s| {
        s.contains("“REMOTE-42-MARKER”: 1 sessions")
    })?;
    tmux.keys(&["Enter"])?;
    let at_hit = tmux.wait_for("the player at the hit", |s| {
        s.contains("event ") && s.contains("1/1")
    })?;
    ensure!(
        at_hit
            .lines()
            .filter(|l| l.starts_with('│'))
            .any(|l| l.contains("REMOTE-42-MARKER") && !l.contains("echo")),
        "the marker is not on the replayed screen:\n{at_hit}"
    );
    println!("the remote player at the hit:\n{at_hit}");
    tmux.keys(&["q"])?;
    tmux.keys(&["q"])?;
    drop(tmux);
    // An auditor with TOTP: the code is asked after the password; a wrong one is refused in words.
    let one_time = create_user(&admin, "tom", "auditor", "").await?;
    let tom = first_login(&gateway, "tom", &one_time, AUDITOR_PASSWORD).await?;
    let page = tom.get("/account/mfa").await?.text();
    let secret = page
        .split(r#"<code id="totp-secret">"#)
        .nth(1)
        .and_then(|rest| rest.split("</code>").next())
        .and_then(mfa::secret_from_base32)
        .with_context(|| format!("no TOTP secret on the page:\n{page}"))?;
    let enrolled = tom
        .post_form(
            "/account/mfa",
            &[("code", &mfa::code_at(&secret, unix_now()).context("code")?)],
            Some(&tom.origin()),
        )
        .await?;
    ensure!(
        enrolled.status == 200,
        "TOTP enrollment failed: {}",
        enrolled.text()
    );
    for (code, expect) in [
        ("000000".to_owned(), "that code is not valid"),
        // The next step's code: within the allowed drift, and not the one enrollment used.
        (
            mfa::code_at(&secret, unix_now() + mfa::STEP_SECONDS).context("code")?,
            "(as tom)",
        ),
    ] {
        let tmux = Tmux::start_in(
            "sallyport-review-remote-totp",
            Some(home.path()),
            &format!("{} --gateway {url} --user tom; sleep 30", bin.display()),
            &[
                ("XDG_CONFIG_HOME", config.to_str().context("path")?),
                ("XDG_CACHE_HOME", cache.to_str().context("path")?),
            ],
        )?;
        tmux.wait_for("the password question", |s| s.contains("password for tom"))?;
        tmux.type_text(AUDITOR_PASSWORD)?;
        tmux.keys(&["Enter"])?;
        tmux.wait_for("the code question", |s| {
            s.contains("code from your authenticator app")
        })?;
        tmux.type_text(&code)?;
        tmux.keys(&["Enter"])?;
        tmux.wait_for(expect, |s| s.contains(expect))?;
        tmux.keys(&["q"])?;
    }

    let known = std::fs::read_to_string(config.join("sallyport-review/known_gateways"))?;
    ensure!(
        known.contains(&format!("127.0.0.1:{}", gateway.port())),
        "the pin was not kept: {known}"
    );

    // From a script: the pinned certificate, the password from the environment.
    let verify = review(
        home.path(),
        &["--verify", "--gateway", &url, "--user", "audrey"],
        Some(AUDITOR_PASSWORD),
    )?;
    let said = text(&verify);
    println!("--verify --gateway:\n{said}");
    ensure!(
        verify.status.success(),
        "--verify --gateway failed:\n{said}"
    );
    ensure!(
        said.lines()
            .any(|l| l.starts_with(&session.id) && l.ends_with("intact"))
            && said.contains("0 sessions failed, 0 other findings"),
        "--verify --gateway said:\n{said}"
    );
    // The ledger came along: the mirror holds the gateway's entries as stored, and verifies clean as a whole
    // database (every session and chunk in the ledger, every checkpoint signed with the recording key).
    let key = sallyport_e2e::portal::verifying_key(&gateway)?;
    let mirrored = ledger_rows(&mirror_db(&cache, &gateway))?;
    let original = ledger_rows(&db)?;
    ensure!(
        !mirrored.is_empty() && original.starts_with(&mirrored),
        "the mirror's ledger ({} entries) is not the gateway's ({} entries)",
        mirrored.len(),
        original.len()
    );
    let whole = Store::open_read_only(&mirror_db(&cache, &gateway))?.verify_database(&key, &[])?;
    ensure!(
        whole.is_clean() && whole.session_ok(&session.id),
        "the mirror does not verify as a whole: {:#?}",
        whole.ledger.findings
    );
    ensure!(
        matches!(
            whole.ledger.state(&session.id),
            Some(sallyport_recordings::LedgerState::Sealed { .. })
        ),
        "the mirror's ledger does not say the session was sealed: {:?}",
        whole.ledger.state(&session.id)
    );
    let cast = home.path().join("s.cast");
    let export = review(
        home.path(),
        &[
            "export",
            "--session",
            &session.id,
            "--asciicast",
            cast.to_str().context("path")?,
            "--gateway",
            &url,
            "--user",
            "audrey",
        ],
        Some(AUDITOR_PASSWORD),
    )?;
    ensure!(
        export.status.success(),
        "export --gateway failed:\n{}",
        text(&export)
    );
    ensure!(std::fs::read_to_string(&cast)?.contains("REMOTE-42-MARKER"));

    // Refusals, in words.
    let not_auditor = review(
        home.path(),
        &["--verify", "--gateway", &url, "--user", "ursula"],
        Some(USER_PASSWORD),
    )?;
    ensure!(
        !not_auditor.status.success()
            && text(&not_auditor).contains("recordings are for auditors and administrators"),
        "a user without the auditor role was not refused:\n{}",
        text(&not_auditor)
    );
    let wrong = review(
        home.path(),
        &["--verify", "--gateway", &url, "--user", "audrey"],
        Some("not-the-password"),
    )?;
    ensure!(
        !wrong.status.success() && text(&wrong).contains("wrong username or password"),
        "a wrong password was not refused:\n{}",
        text(&wrong)
    );
    let elsewhere = tempfile::tempdir()?;
    let other_pin = "00:".repeat(31) + "00";
    let before = audit_events(&gateway)?.len();
    let mismatch = review(
        elsewhere.path(),
        &[
            "--verify",
            "--gateway",
            &url,
            "--user",
            "audrey",
            "--fingerprint",
            &other_pin,
        ],
        Some(AUDITOR_PASSWORD),
    )?;
    ensure!(
        !mismatch.status.success() && text(&mismatch).contains("not the pinned"),
        "a different certificate was accepted:\n{}",
        text(&mismatch)
    );
    ensure!(
        audit_events(&gateway)?.len() == before,
        "something reached the gateway's login after a certificate mismatch"
    );

    // A chunk changed on the gateway: a fresh mirror holds it, and the reviewer's own check fails.
    sallyport_recordings::danger_flip_chunk_byte(&db, &session.id, 0)?;
    let fresh = tempfile::tempdir()?;
    let tampered = review(
        fresh.path(),
        &[
            "--verify",
            "--gateway",
            &url,
            "--user",
            "audrey",
            "--fingerprint",
            &fingerprint,
        ],
        Some(AUDITOR_PASSWORD),
    )?;
    let said = text(&tampered);
    println!("--verify --gateway after a chunk changed on the gateway:\n{said}");
    ensure!(
        tampered.status.code() == Some(1)
            && said
                .lines()
                .any(|l| l.starts_with(&session.id) && l.contains("FAILED: chunk 0")),
        "a changed chunk was not caught remotely (exit {:?}):\n{said}",
        tampered.status.code()
    );

    // A session deleted on the gateway (its row and chunks; its ledger entries stay): a fresh mirror copies the
    // ledger, and the reviewer's own audit names the session the ledger vouches for and the gateway lacks.
    {
        let conn = rusqlite::Connection::open(&db)?;
        conn.execute("DELETE FROM chunks WHERE session_id = ?1", [&session.id])?;
        conn.execute("DELETE FROM sessions WHERE id = ?1", [&session.id])?;
    }
    let fresh = tempfile::tempdir()?;
    let deleted = review(
        fresh.path(),
        &[
            "--verify",
            "--gateway",
            &url,
            "--user",
            "audrey",
            "--fingerprint",
            &fingerprint,
        ],
        Some(AUDITOR_PASSWORD),
    )?;
    let said = text(&deleted);
    println!("--verify --gateway after a session was deleted on the gateway:\n{said}");
    let copy = Store::open_read_only(&mirror_db(&fresh.path().join("cache"), &gateway))?;
    ensure!(
        copy.sessions()?.is_empty(),
        "the mirror holds a session the gateway no longer has"
    );
    let whole = copy.verify_database(&key, &[])?;
    ensure!(
        whole.ledger.findings.iter().any(|f| {
            f.session.as_deref() == Some(session.id.as_str()) && f.what.contains("deleted")
        }),
        "the mirror's audit does not name the deleted session: {:#?}",
        whole.ledger.findings
    );
    ensure!(
        deleted.status.code() == Some(1)
            && said.lines().any(|l| l.starts_with("FINDING: ")
                && l.contains(&session.id)
                && l.contains("deleted")),
        "a session deleted on the gateway was not caught remotely (exit {:?}):\n{said}",
        deleted.status.code()
    );

    // Every access is audited with the account.
    let events = audit_events(&gateway)?;
    let has = |kind: &str, actor: &str, f: &dyn Fn(&str, &str) -> bool| {
        events
            .iter()
            .any(|(k, a, s, d)| k == kind && a == actor && f(s, d))
    };
    ensure!(
        has("review_login", "audrey", &|_, d| d
            .contains("sallyport-review")),
        "no review_login: {events:?}"
    );
    ensure!(
        has("recordings_listed", "audrey", &|_, _| true),
        "no recordings_listed: {events:?}"
    );
    ensure!(
        has("recording_read", "audrey", &|s, _| s == session.id),
        "no recording_read of the session: {events:?}"
    );
    ensure!(
        has("recordings_ledger_read", "audrey", &|_, d| d
            .starts_with("sallyport-review: ledger entries 0..=")),
        "no recordings_ledger_read: {events:?}"
    );
    ensure!(
        has("review_refused", "ursula", &|_, _| true),
        "no review_refused: {events:?}"
    );
    ensure!(
        has("login_failed", "audrey", &|_, d| d == "sallyport-review"),
        "no login_failed: {events:?}"
    );
    ensure!(
        has("mfa_failed", "tom", &|_, d| d == "sallyport-review")
            && has("review_login", "tom", &|_, d| d
                .contains("second factor: totp")),
        "tom's second factor is not audited: {events:?}"
    );
    ensure!(
        !has("recording_read", "ursula", &|_, _| true),
        "ursula read a recording: {events:?}"
    );
    Ok(())
}
