//! `sallyport-gateway --console`: the appliance's console (tty1 and the serial port) for auditors.
//!
//! The appliance has no shell and no system accounts to log in with. Its consoles run this instead: a login
//! with a portal account (password, then the second factor when the account has one or its role requires
//! one), open to auditors and admins only, which then runs `sallyport-review` on the recordings database
//! beside the gateway's state, read-only. When the reviewer quits, the console asks for a login again.
//! Failures count against one login throttle for the console (back-off, then the per-user lockout, the
//! same rules as the portal's); every attempt, success and refusal is in the audit log.

use std::io::{BufRead, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use sallyport_core::mfa;
use sallyport_core::policy::Role;
use sallyport_core::throttle::{LoginThrottle, ThrottleConfig, Verdict};
use sallyport_state::{AuditEvent, LoginOutcome, StateDb, StateError, UserRecord};

use crate::config::Config;

/// The throttle's "source" for every console attempt: the console is one place, wherever it is.
const CONSOLE_SOURCE: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
/// How long a wrong login waits before the next prompt (on top of the throttle's back-off).
const FAILURE_PAUSE: Duration = Duration::from_secs(2);

/// Runs the console until its terminal goes away.
pub fn run(config: &Config) -> anyhow::Result<()> {
    let state_path = config.state_dir.join("state.db");
    let recordings = config.state_dir.join("recordings.db");
    let terminal = terminal_name();
    ensure_terminal_size();
    let started = Instant::now();
    let mut throttle = LoginThrottle::new(ThrottleConfig::default());
    let stdin = std::io::stdin();
    loop {
        print!(
            "\n{} - Sallyport appliance console\nRecordings review for auditors and admins: log in with your portal account.\n\nlogin: ",
            hostname()
        );
        std::io::stdout().flush()?;
        let mut username = String::new();
        if stdin.lock().read_line(&mut username)? == 0 {
            // End of input (Ctrl-D, or the terminal went away): systemd starts a fresh console.
            return Ok(());
        }
        let username = username.trim().to_owned();
        if username.is_empty() {
            continue;
        }
        let wait = match throttle.check(CONSOLE_SOURCE, &username, started.elapsed()) {
            Verdict::Allow => None,
            Verdict::Wait { retry_after } => Some(retry_after),
            Verdict::UserLocked { until } => Some(until.saturating_sub(started.elapsed())),
        };
        if let Some(wait) = wait {
            println!(
                "Too many failed logins. Try again in {} seconds.",
                wait.as_secs().max(1)
            );
            std::thread::sleep(wait.min(Duration::from_secs(60)));
            continue;
        }
        let password = rpassword::prompt_password("Password: ").unwrap_or_default();
        if !state_path.exists() {
            println!("The gateway has not set up its state yet; try again in a moment.");
            std::thread::sleep(FAILURE_PAUSE);
            continue;
        }
        let state = StateDb::open(&state_path).context("opening the state database")?;
        let audit = |kind: &str, detail: Option<String>| {
            let event = AuditEvent {
                kind: kind.into(),
                actor: Some(username.clone()),
                client_addr: Some(format!("console {terminal}")),
                detail,
                ..AuditEvent::default()
            };
            if let Err(error) = state.audit(unix_ms(), &event) {
                tracing::warn!(%error, kind, "could not write the audit event");
            }
        };
        let user = match state.verify_login(&username, &password) {
            Ok(LoginOutcome::Success(user)) => user,
            Err(StateError::Busy(words)) => {
                println!("{words}");
                std::thread::sleep(FAILURE_PAUSE);
                continue;
            }
            Err(error) => return Err(error.into()),
            Ok(LoginOutcome::Failure) => {
                audit("login_failed", Some("console".into()));
                throttle.record_failure(CONSOLE_SOURCE, &username, started.elapsed());
                println!("Wrong username or password.");
                std::thread::sleep(FAILURE_PAUSE);
                continue;
            }
        };
        match admit(&state, &user) {
            Admission::Refused(reason) => {
                audit("console_refused", Some(reason.to_owned()));
                println!("{reason}");
                std::thread::sleep(FAILURE_PAUSE);
                continue;
            }
            Admission::SecondFactor => {
                let code = rpassword::prompt_password("Authenticator code (or a recovery code): ")
                    .unwrap_or_default();
                match second_factor(&state, &user, &code) {
                    Some("recovery code") => audit("recovery_code_used", Some("console".into())),
                    Some(_) => {}
                    None => {
                        audit("login_failed", Some("console: wrong second factor".into()));
                        throttle.record_failure(CONSOLE_SOURCE, &username, started.elapsed());
                        println!("Wrong code.");
                        std::thread::sleep(FAILURE_PAUSE);
                        continue;
                    }
                }
            }
            Admission::Admitted => {}
        }
        throttle.record_success(CONSOLE_SOURCE, &username, started.elapsed());
        audit("console_login", None);
        let outcome = review(&recordings);
        audit(
            "console_logout",
            outcome.as_ref().err().map(|e| format!("{e:#}")),
        );
        if let Err(error) = outcome {
            println!("The review tool failed: {error:#}");
        }
    }
}

/// Whether a user whose password was right may use the console.
enum Admission {
    Admitted,
    SecondFactor,
    Refused(&'static str),
}

fn admit(state: &StateDb, user: &UserRecord) -> Admission {
    if !matches!(user.role, Role::Admin | Role::Auditor) {
        return Admission::Refused(
            "This console is for auditors and admins; your account cannot review recordings.",
        );
    }
    if user.must_change_password {
        return Admission::Refused(
            "Your password is a one-time password: set your own in the portal first.",
        );
    }
    let enrolled = matches!(state.totp(user.id), Ok(Some(_)));
    let required = state
        .mfa_required_roles()
        .map(|roles| roles.contains(&user.role))
        .unwrap_or(true);
    match (enrolled, required) {
        (true, _) => Admission::SecondFactor,
        (false, true) => Admission::Refused(
            "Your role requires a second factor: enroll an authenticator in the portal first.",
        ),
        (false, false) => Admission::Admitted,
    }
}

/// Checks a TOTP code (with replay protection) or a recovery code; returns which one passed.
fn second_factor(state: &StateDb, user: &UserRecord, code: &str) -> Option<&'static str> {
    let totp = state.totp(user.id).ok()??;
    let now = unix_ms() / 1000;
    match mfa::verify(&totp.secret, code, now, totp.last_step) {
        Some(step) => state
            .accept_totp_step(user.id, step)
            .unwrap_or(false)
            .then_some("totp"),
        None => state
            .use_recovery_code(user.id, &mfa::normalize_recovery_code(code))
            .unwrap_or(false)
            .then_some("recovery code"),
    }
}

/// Runs the reviewer on this terminal and waits for it.
fn review(recordings: &Path) -> anyhow::Result<()> {
    let status = Command::new(reviewer())
        .arg(recordings)
        .status()
        .context("starting sallyport-review")?;
    if !status.success() {
        anyhow::bail!("sallyport-review exited with {status}");
    }
    Ok(())
}

/// `sallyport-review` beside this binary (the appliance installs both in /usr/bin), else from PATH.
fn reviewer() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("sallyport-review")))
        .filter(|path| path.exists())
        .unwrap_or_else(|| PathBuf::from("sallyport-review"))
}

/// The terminal this console runs on, for the audit log.
fn terminal_name() -> String {
    std::fs::read_link("/proc/self/fd/0")
        .map(|path| path.display().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// A serial port reports a size of 0×0, which full-screen programs cannot draw into: assume 80×24 there.
fn ensure_terminal_size() {
    // `output()` would give stty /dev/null as its input; it must see the terminal.
    let size = Command::new("stty")
        .arg("size")
        .stdin(std::process::Stdio::inherit())
        .output();
    if let Ok(output) = size
        && String::from_utf8_lossy(&output.stdout).trim() == "0 0"
    {
        let _ = Command::new("stty")
            .args(["rows", "24", "cols", "80"])
            .status();
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .unwrap_or_else(|_| "sallyport".into())
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn admission(state: &StateDb, name: &str) -> &'static str {
        let user = state.user_by_name(name).unwrap().unwrap();
        match admit(state, &user) {
            Admission::Admitted => "admitted",
            Admission::SecondFactor => "second factor",
            Admission::Refused(_) => "refused",
        }
    }

    #[test]
    fn only_auditors_and_admins_with_their_own_password_and_required_factor_get_in() {
        let state = StateDb::open_in_memory().unwrap();
        state
            .create_user("ada", "pw", Role::Admin, false, 0)
            .unwrap();
        state
            .create_user("aud", "pw", Role::Auditor, false, 0)
            .unwrap();
        state
            .create_user("usr", "pw", Role::User, false, 0)
            .unwrap();
        state
            .create_user("new", "pw", Role::Auditor, true, 0)
            .unwrap();
        state
            .create_user("two", "pw", Role::Auditor, false, 0)
            .unwrap();
        let two = state.user_by_name("two").unwrap().unwrap();
        state
            .enable_totp(two.id, b"0123456789abcdef0123", 1, &[])
            .unwrap();

        assert_eq!(admission(&state, "ada"), "admitted");
        assert_eq!(admission(&state, "aud"), "admitted");
        assert_eq!(admission(&state, "usr"), "refused");
        assert_eq!(admission(&state, "new"), "refused", "a one-time password");
        assert_eq!(admission(&state, "two"), "second factor");

        state.set_mfa_required_roles(&[Role::Auditor]).unwrap();
        assert_eq!(
            admission(&state, "aud"),
            "refused",
            "required but not enrolled"
        );
        assert_eq!(admission(&state, "two"), "second factor");
        assert_eq!(admission(&state, "ada"), "admitted");

        // A code for the enrolled step is refused again (replay), a wrong one always.
        assert_eq!(second_factor(&state, &two, "000000"), None);
    }
}
