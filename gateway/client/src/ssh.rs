//! `sallyport ssh [user@]target`: a terminal session through the gateway, recorded there like a browser
//! session. The local terminal goes into raw mode (so Ctrl-C and the like reach the remote shell, as
//! with ssh), window size changes (SIGWINCH) are sent on, and the remote exit status becomes ours.
//! SIGUSR1 moves the connection to a new local UDP socket, as a change of network would.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use quinn::SendStream;
use sallyport_core::frames::{ClientControl, ServerControl};
use sallyport_core::quic::{Frame, FrameType, Preamble};
use tokio::io::AsyncReadExt;
use tokio::signal::unix::{SignalKind, signal};

use crate::net::Gateway;
use crate::prompt;

/// Options of `sallyport ssh`.
pub struct SshOptions {
    /// `[user@]target`.
    pub destination: String,
    /// Login name on the target (overrides `user@`).
    pub login: Option<String>,
    /// Private key file for the target.
    pub identity: Option<PathBuf>,
}

/// Exit status when the session could not run (as ssh uses).
pub const FAILED: i32 = 255;

/// Puts the terminal into raw mode and restores it when dropped.
struct RawMode(bool);

impl RawMode {
    fn enable() -> RawMode {
        RawMode(std::io::stdin().is_terminal() && crossterm::terminal::enable_raw_mode().is_ok())
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if self.0 {
            let _ = crossterm::terminal::disable_raw_mode();
        }
    }
}

/// The local terminal's size; 80x24 when there is none, or when it reports zero (some pseudo-terminals do, and a
/// target shell given 0x0 prints no prompt).
fn size() -> (u16, u16) {
    let size = std::io::stdout()
        .is_terminal()
        .then(|| crossterm::terminal::size().ok())
        .flatten();
    match size {
        Some((cols, rows)) if cols > 0 && rows > 0 => (cols, rows),
        _ => (80, 24),
    }
}

async fn send_control(send: &mut SendStream, control: &ClientControl) -> Result<()> {
    let json = serde_json::to_vec(control)?;
    send.write_all(&Frame::encode(FrameType::Control, &json))
        .await
        .context("the gateway stopped accepting input")
}

/// Runs the session; returns the exit status to leave with.
pub async fn run(options: SshOptions) -> Result<i32> {
    let (user, target) = match options.destination.rsplit_once('@') {
        Some((user, target)) => (Some(user.to_owned()), target.to_owned()),
        None => (None, options.destination.clone()),
    };
    let username = match options.login.or(user) {
        Some(user) => user,
        None => std::env::var("USER")
            .ok()
            .filter(|u| !u.is_empty())
            .context("no username: use user@target or -l user")?,
    };
    if target.is_empty() {
        bail!("no target: use sallyport ssh [user@]target (sallyport targets lists them)");
    }
    let (password, private_key, passphrase) = match &options.identity {
        Some(path) => {
            let pem = std::fs::read_to_string(path)
                .with_context(|| format!("reading the key {}", path.display()))?;
            let passphrase = if pem.contains("ENCRYPTED") {
                Some(prompt::secret(&format!(
                    "Enter passphrase for key '{}': ",
                    path.display()
                ))?)
            } else {
                None
            };
            (None, Some(pem), passphrase)
        }
        None => (
            Some(prompt::secret(&format!(
                "{username}@{target}'s password: "
            ))?),
            None,
            None,
        ),
    };
    let gateway = Gateway::connect().await?;
    let (mut send, mut reader) = gateway
        .open(&Preamble::Terminal {
            target: target.clone(),
        })
        .await?;
    let (cols, rows) = size();
    let sent = send_control(
        &mut send,
        &ClientControl::Connect {
            username,
            password,
            private_key,
            passphrase,
            cols,
            rows,
        },
    )
    .await;
    // Wait for the gateway's verdict before touching the terminal. The gateway may refuse on the preamble alone and
    // stop reading before the connect request arrives: then its verdict, not the failed write, is what to report.
    reader.wait_connected(&target).await?;
    sent?;
    let status = relay(&gateway, &mut send, &mut reader).await;
    gateway.close().await;
    status
}

async fn relay(
    gateway: &Gateway,
    send: &mut SendStream,
    reader: &mut crate::net::FrameReader,
) -> Result<i32> {
    let raw = RawMode::enable();
    let mut stdin = tokio::io::stdin();
    let mut stdout = std::io::stdout();
    let mut winch = signal(SignalKind::window_change()).context("watching window size")?;
    let mut usr1 = signal(SignalKind::user_defined1()).context("watching SIGUSR1")?;
    let mut input = vec![0u8; 16 * 1024];
    let mut stdin_open = true;
    let mut status = None;
    let mut error = None;
    loop {
        tokio::select! {
            read = stdin.read(&mut input), if stdin_open => match read {
                Ok(0) | Err(_) => stdin_open = false,
                Ok(n) => {
                    let frame = Frame::encode(FrameType::Data, input.get(..n).unwrap_or_default());
                    if send.write_all(&frame).await.is_err() {
                        break;
                    }
                }
            },
            _ = winch.recv() => {
                let (cols, rows) = size();
                if send_control(send, &ClientControl::Resize { cols, rows }).await.is_err() {
                    break;
                }
            }
            _ = usr1.recv() => {
                if let Err(e) = gateway.rebind() {
                    error = Some(format!("{e:#}"));
                }
            }
            frame = reader.next() => match frame {
                Ok(Some(Frame::Data(bytes))) => {
                    if stdout.write_all(&bytes).and_then(|()| stdout.flush()).is_err() {
                        break;
                    }
                }
                Ok(Some(Frame::Control(json))) => match serde_json::from_slice::<ServerControl>(&json) {
                    Ok(ServerControl::Exit { status: code }) => status = Some(code),
                    Ok(ServerControl::Error { message, .. }) => error = Some(message),
                    Ok(ServerControl::Connected { .. }) | Err(_) => {}
                },
                Ok(None) => break,
                Err(e) => {
                    error = Some(format!("{e:#}"));
                    break;
                }
            },
        }
    }
    drop(raw);
    if let Some(message) = error {
        eprintln!("\r\nsallyport: {message}");
        if status.is_none() {
            return Ok(FAILED);
        }
    }
    Ok(status
        .map(|s| i32::try_from(s & 0xff).unwrap_or(FAILED))
        .unwrap_or(0))
}
