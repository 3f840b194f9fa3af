//! The SSH proxy behind `sallyport proxy TARGET` (OpenSSH's `ProxyCommand`): the gateway is the SSH server
//! of the user's ssh, scp or sftp (russh server, the gateway's own stable host key) and the SSH client of
//! the target (the same dialling, host key pinning and deadlines as terminal sessions).
//!
//! Authentication is relayed, not duplicated: the user is already known by their QUIC client certificate,
//! so the gateway's server asks nothing of its own. Each attempt of the user's ssh is passed to the target
//! as it comes (`none`, then `password` or `keyboard-interactive` with the target's prompts shown to the
//! user), and the target's answer, with its list of methods, goes back. Public keys cannot be relayed (the
//! signature covers the session with the gateway, not the target's), so `publickey` is refused; a target
//! that accepts only keys is reported in the recording.
//!
//! After authentication, each session channel the user opens becomes one target channel. Requests before
//! the command (PTY, environment, agent, X11) are passed on one by one, each waiting for the target's
//! answer, so the user's ssh gets exactly the replies it asked for; the command request (shell, exec,
//! subsystem) hands both channels to [`bridge`], which records what passes. Port forwarding, agent and
//! X11 forwarding are refused and audited unless policy allows them ([`forward`]).
//!
//! Map of the module, by concern: [`server`] (the host key and russh settings, the `ProxyConnector`),
//! [`session`] (one connection's loop: login deadline, stop, outcome), [`handler`] (russh's callbacks, each
//! handed to its concern), [`auth`] (the authentication relay), [`channels`] (session channels and their
//! requests up to the command), [`bridge`] (a channel after its command) and [`forward`] (forwarding).

mod auth;
mod bridge;
mod channels;
mod forward;
mod handler;
#[cfg(test)]
mod memory_tests;
mod server;
mod session;
#[cfg(test)]
mod tests;

use std::time::Duration;

pub(crate) use forward::Reverse;
pub use server::SshProxy;

/// Most session channels one connection may have open (OpenSSH's `MaxSessions` default).
const MAX_SESSIONS: usize = 10;
/// Most environment variables passed on per channel (OpenSSH clients send a dozen at most).
const MAX_ENV: usize = 64;
/// How long the target may take to answer a channel request before the user's ssh is told no.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Most keyboard-interactive prompts passed on at once (PAM asks one or two).
const MAX_PROMPTS: usize = 16;
/// Most bytes of one keyboard-interactive prompt, name or instruction shown to the user.
const MAX_PROMPT_CHARS: usize = 512;

/// Text from the target shown to the user: bounded, no control characters (no escape sequences).
fn shown(text: &str) -> String {
    text.chars()
        .take(MAX_PROMPT_CHARS)
        .map(|c| {
            if c.is_control() && c != '\n' {
                '\u{fffd}'
            } else {
                c
            }
        })
        .collect()
}
