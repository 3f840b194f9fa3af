//! A connected PTY shell on the target: output events in, keystrokes and resizes out, with bounded memory.
//!
//! # How russh buffers, and what that means here
//!
//! Read from the russh 0.65 source (`client/encrypted.rs`, `session.rs`, `channels/mod.rs`):
//!
//! - Incoming `CHANNEL_DATA` is answered with a `WINDOW_ADJUST` as soon as russh's session task has *parsed* the
//!   packet (`adjust_window_size` refills the window once it drops below half of `Config::window_size`), before
//!   the consumer has read anything. So the SSH window does not slow the target down for a slow consumer.
//! - The data is then handed to the channel's `tokio::sync::mpsc` channel of `Config::channel_buffer_size`
//!   messages with `send(..).await`. When that is full, russh's whole session task waits there: it stops
//!   reading the socket, TCP flow control stalls the target, and memory stays bounded at about
//!   `channel_buffer_size` packets (each at most our `maximum_packet_size` from an honest server; russh refuses
//!   packets over 256 KiB from any server) plus the kernel's socket buffers.
//! - The flip side: while that task waits, it also stops sending our keystrokes and window changes (the handle's
//!   queue holds only 10 messages) and stops processing the target's `WINDOW_ADJUST`s. A caller that awaits
//!   [`TerminalSession::write`] without reading events could deadlock against a target that echoes a large
//!   paste. So `write` and `resize` keep draining incoming messages into a small queue of their own while they
//!   wait; if that queue passes [`MAX_QUEUED_OUTPUT`] plus twice the size of the write (the target floods
//!   output and will not read input) the write fails with [`SshError::Stalled`] instead of growing memory
//!   without bound or hanging. Writes up to the target's window (2 MiB for OpenSSH) finish as soon as russh
//!   has sent them, so in practice only huge pastes into a target that stopped reading can hit this.
//! - A target that stops opening its window and sends nothing (its program never reads input, or it stopped
//!   reading the connection) would make a write wait forever, and with it the caller's whole session task (the
//!   relay stops reading the user's side while a write is pending, so even the user's close went unnoticed;
//!   the hostile-target end-to-end test found this). So `write` sends in pieces of at most [`INPUT_CHUNK`]
//!   bytes and fails with [`SshError::InputStalled`] when one piece makes no progress for [`INPUT_STALL_TIMEOUT`].
//!   `resize` has the same deadline.
//!
//! The configuration in `connect` therefore uses a small `channel_buffer_size` (bounded memory), a modest
//! `window_size` (less data in flight after the user presses Ctrl-C) and 32 KiB packets.
//!
//! # What a target can and cannot make the gateway hold
//!
//! Checked against hostile targets (`tests/e2e/tests/hostile_targets.rs`, and the russh-server tests in this
//! crate): before the shell is open, everything runs under the connect deadline, and russh bounds what it
//! reads (an identification line of 255 bytes after at most 20 other lines, packets of 256 KiB, name-lists of
//! 16 KiB). Afterwards, output is bounded as above, window overruns change nothing (russh forwards the extra data
//! into the same bounded queue), channels the target opens towards the gateway are refused, and a connection
//! that fails keeps its reason for [`TerminalSession::failure`].

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::net::Shutdown;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use russh::client::{Handle, Msg};
use russh::{ChannelMsg, ChannelReadHalf, ChannelWriteHalf, Disconnect, Sig};

use crate::connect::Client;
use crate::error::SshError;

/// Most output bytes queued by [`TerminalSession::resize`] while it waits for the target, and by
/// [`TerminalSession::write`] in addition to twice the size of the data being written; past this the call fails
/// with [`SshError::Stalled`].
pub const MAX_QUEUED_OUTPUT: usize = 1024 * 1024;

/// Largest piece of input handed to russh at once; each piece must make progress within
/// [`INPUT_STALL_TIMEOUT`]. One maximum-size SSH data packet.
pub const INPUT_CHUNK: usize = 32 * 1024;

/// How long a piece of input may wait for the target's SSH window before the write fails with
/// [`SshError::InputStalled`]. OpenSSH's 2 MiB window absorbs keystrokes typed into a busy program, so honest
/// targets only make a write wait when megabytes of input are outstanding; 30 s without taking a single
/// 32 KiB piece means the target no longer reads.
pub const INPUT_STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// How long [`TerminalSession::close`] waits for the target to acknowledge the disconnect.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Something the target's shell did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TerminalEvent {
    /// Bytes the target wrote to the terminal (stdout and stderr; with a PTY they are one stream anyway).
    Output(Vec<u8>),
    /// The shell exited with this status; usually followed by [`TerminalEvent::Closed`].
    ExitStatus(u32),
    /// The shell was killed by this signal (e.g. `"TERM"`, `"KILL"`); usually followed by `Closed`.
    ExitSignal(String),
    /// The target closed the channel or the connection ended; no more events follow.
    Closed,
}

/// An interactive PTY shell on a target, owned by one session task.
///
/// Dropping it ends the SSH connection (the socket is shut down); [`TerminalSession::close`] says goodbye first.
pub struct TerminalSession {
    handle: Handle<Client>,
    writer: ChannelWriteHalf<Msg>,
    inbox: Inbox,
    /// Set by russh's session task when the connection ends with an error or a disconnect from the target.
    failure: Arc<OnceLock<SshError>>,
    input_timeout: Duration,
    // Declared last so that it is dropped last: shutting the socket down ends russh's session task even when the
    // target stalls, so no task or socket outlives this value.
    _socket: SocketGuard,
}

impl fmt::Debug for TerminalSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TerminalSession")
            .field("channel", &self.writer.id())
            .field("queued_events", &self.inbox.queued.len())
            .field("ended", &self.inbox.ended)
            .finish_non_exhaustive()
    }
}

impl TerminalSession {
    pub(crate) fn new(
        handle: Handle<Client>,
        reader: ChannelReadHalf,
        writer: ChannelWriteHalf<Msg>,
        socket: SocketGuard,
        failure: Arc<OnceLock<SshError>>,
    ) -> TerminalSession {
        TerminalSession {
            handle,
            writer,
            inbox: Inbox::new(reader),
            failure,
            input_timeout: INPUT_STALL_TIMEOUT,
            _socket: socket,
        }
    }

    /// Shortens [`INPUT_STALL_TIMEOUT`] for tests.
    #[cfg(test)]
    pub(crate) fn set_input_timeout(&mut self, timeout: Duration) {
        self.input_timeout = timeout;
    }

    /// Why the connection ended, once [`TerminalEvent::Closed`] came without the target closing the channel
    /// first: a protocol violation, a lost connection, unanswered keepalives, or a disconnect message from the
    /// target. `None` while the connection is up and after an orderly channel close.
    pub fn failure(&self) -> Option<&SshError> {
        // After an orderly channel close the connection may still fail while it winds down; that is no failure
        // of the session.
        if self.inbox.lost {
            self.failure.get()
        } else {
            None
        }
    }

    /// The next event from the target, or `None` once [`TerminalEvent::Closed`] has been returned.
    ///
    /// Cancel-safe: it can be used as a branch of `tokio::select!` without losing events.
    pub async fn next_event(&mut self) -> Option<TerminalEvent> {
        if let Some(event) = self.inbox.pop() {
            return Some(event);
        }
        while !self.inbox.ended {
            // The only await point: `recv` on an mpsc receiver is cancel-safe, and a message is consumed only
            // when it is mapped and returned (or ignored) in the same poll.
            let msg = self.inbox.reader.wait().await;
            if let Some(event) = self.inbox.map(msg) {
                return Some(event);
            }
        }
        None
    }

    /// Sends keystrokes or pasted text to the shell.
    ///
    /// Waits while the target's SSH window is full (backpressure). Not cancel-safe: if the future is dropped, a
    /// prefix of `data` may have been sent. Fails with [`SshError::Stalled`] if the target floods output while
    /// not reading input, with [`SshError::InputStalled`] if a piece of [`INPUT_CHUNK`] bytes waits longer than
    /// [`INPUT_STALL_TIMEOUT`] for the target's window, and with [`SshError::Closed`] once the session has ended.
    pub async fn write(&mut self, data: &[u8]) -> Result<(), SshError> {
        // A large paste into an echoing PTY legitimately produces about as much output as it sends (CRLF and
        // ECHOCTL double some bytes), so the queue may grow with the size of this write.
        let limit = MAX_QUEUED_OUTPUT.saturating_add(data.len().saturating_mul(2));
        for piece in data.chunks(INPUT_CHUNK) {
            drive(
                self.writer.data_bytes(piece.to_vec()),
                &mut self.inbox,
                limit,
                self.input_timeout,
            )
            .await?;
        }
        Ok(())
    }

    /// Tells the target the terminal's new size in character cells.
    pub async fn resize(&mut self, cols: u16, rows: u16) -> Result<(), SshError> {
        drive(
            self.writer.window_change(cols.into(), rows.into(), 0, 0),
            &mut self.inbox,
            MAX_QUEUED_OUTPUT,
            self.input_timeout,
        )
        .await
    }

    /// Closes the connection politely: a disconnect message, a short wait for the target, then the socket closes.
    pub async fn close(self) {
        let TerminalSession {
            handle,
            writer,
            inbox,
            _socket,
            ..
        } = self;
        // Dropping the reader first unblocks russh's session task if it is waiting for us to read output.
        drop(inbox);
        drop(writer);
        let goodbye = async {
            if handle
                .disconnect(Disconnect::ByApplication, "", "en")
                .await
                .is_ok()
            {
                // The handle resolves when russh's session task has ended.
                let _ = handle.await;
            }
        };
        if tokio::time::timeout(CLOSE_GRACE, goodbye).await.is_err() {
            tracing::debug!("target did not finish the disconnect in time");
        }
    }
}

/// Runs a send on the channel while draining incoming messages, so that russh's session task never waits for us
/// while we wait for it (see the module documentation).
/// `limit` is the most output bytes queued before giving up with [`SshError::Stalled`]; `deadline` is how long
/// the send may wait before giving up with [`SshError::InputStalled`].
async fn drive(
    send: impl Future<Output = Result<(), russh::Error>>,
    inbox: &mut Inbox,
    limit: usize,
    deadline: Duration,
) -> Result<(), SshError> {
    if inbox.ended {
        return Err(SshError::Closed);
    }
    tokio::pin!(send);
    let expired = tokio::time::sleep(deadline);
    tokio::pin!(expired);
    loop {
        tokio::select! {
            biased;
            result = &mut send => {
                return result.map_err(|e| match e {
                    russh::Error::SendError | russh::Error::Disconnect => SshError::Closed,
                    other => SshError::from_russh(&other, "sending to the target"),
                });
            }
            () = &mut expired => return Err(SshError::InputStalled(deadline)),
            msg = inbox.reader.wait() => {
                if let Some(event) = inbox.map(msg) {
                    inbox.push(event);
                }
                if inbox.ended {
                    // A send waiting for window space would wait forever on a closed channel.
                    return Err(SshError::Closed);
                }
                if inbox.queued_bytes > limit {
                    return Err(SshError::Stalled);
                }
            }
        }
    }
}

/// The reading side of the channel plus the events drained while a write waited.
struct Inbox {
    reader: ChannelReadHalf,
    queued: VecDeque<TerminalEvent>,
    queued_bytes: usize,
    /// Set once `Closed` has been produced (queued or returned); nothing is read after it.
    ended: bool,
    /// Set when the connection ended without the target closing the channel first.
    lost: bool,
}

impl Inbox {
    fn new(reader: ChannelReadHalf) -> Inbox {
        Inbox {
            reader,
            queued: VecDeque::new(),
            queued_bytes: 0,
            ended: false,
            lost: false,
        }
    }

    fn push(&mut self, event: TerminalEvent) {
        if let TerminalEvent::Output(data) = &event {
            self.queued_bytes += data.len();
        }
        self.queued.push_back(event);
    }

    fn pop(&mut self) -> Option<TerminalEvent> {
        let event = self.queued.pop_front()?;
        if let TerminalEvent::Output(data) = &event {
            self.queued_bytes -= data.len();
        }
        Some(event)
    }

    /// Maps a channel message to an event; `None` for messages that are not events. `msg == None` means russh
    /// dropped the channel (the connection ended).
    fn map(&mut self, msg: Option<ChannelMsg>) -> Option<TerminalEvent> {
        match msg {
            Some(ChannelMsg::Data { data }) | Some(ChannelMsg::ExtendedData { data, .. }) => {
                Some(TerminalEvent::Output(data.to_vec()))
            }
            Some(ChannelMsg::ExitStatus { exit_status }) => {
                Some(TerminalEvent::ExitStatus(exit_status))
            }
            Some(ChannelMsg::ExitSignal { signal_name, .. }) => {
                Some(TerminalEvent::ExitSignal(signal_text(signal_name)))
            }
            // OpenSSH sends EOF before exit-status and close, so EOF is not the end of events.
            Some(ChannelMsg::Eof) => None,
            Some(ChannelMsg::Close) => {
                self.ended = true;
                Some(TerminalEvent::Closed)
            }
            None => {
                self.ended = true;
                self.lost = true;
                Some(TerminalEvent::Closed)
            }
            Some(_) => None,
        }
    }
}

fn signal_text(signal: Sig) -> String {
    let name = match signal {
        Sig::ABRT => "ABRT",
        Sig::ALRM => "ALRM",
        Sig::FPE => "FPE",
        Sig::HUP => "HUP",
        Sig::ILL => "ILL",
        Sig::INT => "INT",
        Sig::KILL => "KILL",
        Sig::PIPE => "PIPE",
        Sig::QUIT => "QUIT",
        Sig::SEGV => "SEGV",
        Sig::TERM => "TERM",
        Sig::USR1 => "USR1",
        Sig::Custom(name) => return name,
    };
    name.to_owned()
}

/// A second handle on the TCP socket given to russh; shuts it down when dropped so that russh's session task
/// ends even if the target never answers again.
pub(crate) struct SocketGuard(Option<std::net::TcpStream>);

impl SocketGuard {
    /// Shuts `socket` (a clone of the connection's) down when dropped.
    pub(crate) fn new(socket: std::net::TcpStream) -> SocketGuard {
        SocketGuard(Some(socket))
    }

    /// For an in-memory transport, which closes when its halves are dropped.
    #[cfg(test)]
    pub(crate) fn in_memory() -> SocketGuard {
        SocketGuard(None)
    }
}

impl Drop for SocketGuard {
    fn drop(&mut self) {
        // NotConnected is expected when the peer already closed; there is nothing else to do about errors here.
        if let Some(socket) = &self.0 {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_names() {
        assert_eq!(signal_text(Sig::TERM), "TERM");
        assert_eq!(signal_text(Sig::Custom("WINCH".into())), "WINCH");
    }
}
