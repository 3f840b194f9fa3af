//! Brute-force defence at the real gateway's login, over HTTPS: five wrong passwords from one source
//! and the sixth attempt is refused with 429 and `Retry-After` even with the right password; the wait
//! doubles on the next failure and lapses on time; other sources are unaffected; a username attacked
//! from many sources is locked, and a locked unknown username is answered exactly like a locked real
//! one; the audit log has every `login_failed` and each `lockout`, and nothing for refused attempts.
//!
//! Attempts come from chosen loopback source addresses (127.0.0.11 and up), so one test plays several
//! clients.

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use sallyport_e2e::http::{SourceDialer, form_encode, read_head_and_body};
use sallyport_e2e::portal::{ADMIN_PASSWORD, login_admin};
use sallyport_e2e::{Gateway, GatewayOptions};
use tokio::io::AsyncWriteExt;

/// The test gateway's limits: the default five failures per source and 1 s first wait, a username
/// locked after eight failures for a short while.
const USER_MAX_FAILURES: usize = 8;
const USER_LOCK_SECS: u64 = 4;

/// A login answer.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn retry_after(&self) -> Result<u64> {
        self.header("retry-after")
            .with_context(|| format!("no Retry-After on {self:?}"))?
            .parse()
            .context("Retry-After is not whole seconds")
    }
}

/// Posts the login form from `source`, as the login page would.
async fn login(
    dialer: &SourceDialer,
    source: Ipv4Addr,
    username: &str,
    password: &str,
) -> Result<Answer> {
    let host = format!("127.0.0.1:{}", dialer.port());
    let body = form_encode(&[("username", username), ("password", password)]);
    let mut tls = dialer.tls(source).await?;
    tls.write_all(
        format!(
            "POST /login HTTP/1.1\r\nHost: {host}\r\nOrigin: https://{host}\r\nConnection: close\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .await?;
    tls.flush().await?;
    let (head, body) = tokio::time::timeout(Duration::from_secs(30), read_head_and_body(&mut tls))
        .await
        .context("login answer timed out")??;
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("bad status line in {head:?}"))?;
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok(Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// Counts the answers by kind, to hold against the audit log.
#[derive(Debug, Default)]
struct Tally {
    failed: usize,
}

impl Tally {
    /// A wrong password, expected to be refused with 401 (not 429).
    async fn wrong(
        &mut self,
        dialer: &SourceDialer,
        source: Ipv4Addr,
        username: &str,
    ) -> Result<()> {
        let answer = login(dialer, source, username, "not-the-password").await?;
        if answer.status != 401 || !answer.body.contains("Wrong username or password") {
            bail!("wrong password for {username} from {source}: expected 401, got {answer:?}");
        }
        self.failed += 1;
        Ok(())
    }
}

/// The answer must be the throttle's refusal: 429, `Retry-After`, plain words, no cookie.
fn assert_refused(answer: &Answer, what: &str) -> Result<u64> {
    assert_eq!(answer.status, 429, "{what}: {answer:?}");
    assert!(
        answer.body.contains("Too many failed logins"),
        "{what}: {}",
        answer.body
    );
    assert!(answer.header("set-cookie").is_none(), "{what}: {answer:?}");
    answer.retry_after()
}

/// A body with its numbers masked, so two refusals that differ only in the seconds left compare equal.
fn masked(body: &str) -> String {
    body.chars()
        .map(|c| if c.is_ascii_digit() { '#' } else { c })
        .collect()
}

/// `(kind, actor, detail)` of every audit event in the gateway's state database.
fn audit_events(gateway: &Gateway) -> Result<Vec<(String, String, String)>> {
    let db = rusqlite::Connection::open_with_flags(
        gateway.state_db(),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?;
    let mut stmt = db.prepare(
        "SELECT kind, COALESCE(actor, ''), COALESCE(detail, '') FROM audit_events ORDER BY id",
    )?;
    let events = stmt
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failures_are_throttled_per_source_and_per_user() -> Result<()> {
    let options = GatewayOptions {
        extra_portal: vec![
            "login_source_max_failures = 5".to_owned(),
            "login_backoff_initial_secs = 1".to_owned(),
            format!("login_user_max_failures = {USER_MAX_FAILURES}"),
            format!("login_user_lock_secs = {USER_LOCK_SECS}"),
        ],
        ..GatewayOptions::default()
    };
    let gateway = Gateway::start(options).await?;
    // Replaces the one-time password, so "admin" has ADMIN_PASSWORD from here on.
    login_admin(&gateway).await?;
    let dialer = SourceDialer::new(&gateway)?;
    let mut tally = Tally::default();
    let source = |last: u8| Ipv4Addr::new(127, 0, 0, last);
    let guesser = source(11);

    // Five wrong passwords from one source; the sixth attempt is refused even with the right one.
    for _ in 0..5 {
        tally.wrong(&dialer, guesser, "admin").await?;
    }
    let answer = login(&dialer, guesser, "admin", ADMIN_PASSWORD).await?;
    assert_eq!(assert_refused(&answer, "sixth attempt")?, 1);
    let source_refusal = answer.body.clone();
    // Another source logs in as admin at once: the wait is the source's, and admin is not locked.
    let answer = login(&dialer, source(12), "admin", ADMIN_PASSWORD).await?;
    assert_eq!(answer.status, 303, "{answer:?}");

    // After the wait, one more failure earns a wait twice as long.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    tally.wrong(&dialer, guesser, "admin").await?;
    let answer = login(&dialer, guesser, "admin", ADMIN_PASSWORD).await?;
    assert_eq!(assert_refused(&answer, "after the second wait began")?, 2);
    // When it lapses the right password works, and the success clears that source's slate: the next
    // typo is a plain 401 and the right password right after it works.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let answer = login(&dialer, guesser, "admin", ADMIN_PASSWORD).await?;
    assert_eq!(answer.status, 303, "after the wait: {answer:?}");
    assert_eq!(answer.header("location"), Some("/targets"));
    tally.wrong(&dialer, guesser, "admin").await?;
    let answer = login(&dialer, guesser, "admin", ADMIN_PASSWORD).await?;
    assert_eq!(answer.status, 303, "after a typo: {answer:?}");

    // A real username and an unknown one, each attacked from four sources with two guesses apiece
    // (below any source's limit): both end up locked.
    let sources: Vec<Ipv4Addr> = (20..24).map(source).collect();
    for &from in &sources {
        for _ in 0..USER_MAX_FAILURES / sources.len() {
            tally.wrong(&dialer, from, "admin").await?;
            tally.wrong(&dialer, from, "nobody-here").await?;
        }
    }
    let bystander = source(30);
    let real = login(&dialer, bystander, "admin", ADMIN_PASSWORD).await?;
    let unknown = login(&dialer, bystander, "nobody-here", "anything").await?;
    let real_wait = assert_refused(&real, "locked real user")?;
    let unknown_wait = assert_refused(&unknown, "locked unknown user")?;
    // Identical answers: same status, same headers, same words (only the seconds left may differ by
    // the moment between the two locks), and no username in them.
    let names = |answer: &Answer| -> Vec<String> {
        let mut names: Vec<String> = answer
            .headers
            .iter()
            .map(|(n, _)| n.clone())
            .filter(|n| n != "date")
            .collect();
        names.sort();
        names
    };
    assert_eq!(names(&real), names(&unknown));
    assert_eq!(masked(&real.body), masked(&unknown.body));
    assert_eq!(masked(&real.body), masked(&source_refusal));
    assert!(!real.body.contains("admin") && !unknown.body.contains("nobody-here"));
    assert!((1..=USER_LOCK_SECS).contains(&real_wait), "{real_wait}");
    assert!(
        real_wait.abs_diff(unknown_wait) <= 1,
        "{real_wait} vs {unknown_wait}"
    );
    // The lock holds from any source, and lapses on time.
    let answer = login(&dialer, source(31), "admin", ADMIN_PASSWORD).await?;
    assert_refused(&answer, "locked user from another source")?;
    tokio::time::sleep(Duration::from_secs(real_wait) + Duration::from_millis(500)).await;
    let answer = login(&dialer, bystander, "admin", ADMIN_PASSWORD).await?;
    assert_eq!(answer.status, 303, "after the lock: {answer:?}");

    // The audit log: one login_failed per 401 (refused attempts never reached the password check),
    // and a lockout for each wait and lock that began.
    let events = audit_events(&gateway)?;
    let failed = events
        .iter()
        .filter(|(k, _, _)| k == "login_failed")
        .count();
    assert_eq!(failed, tally.failed, "login_failed events: {events:?}");
    let lockouts: Vec<(&str, &str)> = events
        .iter()
        .filter(|(k, _, _)| k == "lockout")
        .map(|(_, actor, detail)| (actor.as_str(), detail.as_str()))
        .collect();
    assert_eq!(lockouts.len(), 4, "{lockouts:?}");
    let source_waits: Vec<&str> = lockouts
        .iter()
        .filter(|(_, d)| d.starts_with("source 127.0.0.11/32 must wait"))
        .map(|(_, d)| *d)
        .collect();
    assert_eq!(source_waits.len(), 2, "{lockouts:?}");
    assert!(source_waits[0].contains("wait 1 s") && source_waits[1].contains("wait 2 s"));
    for user in ["admin", "nobody-here"] {
        assert!(
            lockouts
                .iter()
                .any(|(a, d)| *a == user && d.starts_with("username locked for 4 s")),
            "no lock of {user}: {lockouts:?}"
        );
    }
    Ok(())
}
