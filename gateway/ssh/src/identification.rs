//! The SSH identification exchange with a target (RFC 4253 section 4.2), done by the gateway before russh takes
//! the stream, since russh has no hook for it: a target speaking another protocol version (SSH 1) is refused at its
//! first line, and an early end is worded by what happened. `scan_greeting` is the sans-io judge of what the target
//! sent; `Greeted` hands russh the stream with the target's line replayed.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use crate::error::SshError;

/// The gateway's SSH identification line (RFC 4253 section 4.2), line end included.
pub(crate) const CLIENT_ID_LINE: &str =
    concat!("SSH-2.0-Sallyport_", env!("CARGO_PKG_VERSION"), "\r\n");
/// Most bytes the target may send up to the end of its identification line. RFC 4253 section 4.2 lets a
/// server send other lines before it, without a limit; 8 KiB holds any real pre-banner text and bounds what a
/// target makes the gateway read and keep before the key exchange.
const MAX_GREETING: usize = 8 * 1024;
/// Longest identification line, its line end included (RFC 4253 section 4.2; russh checks the same).
const MAX_IDENTIFICATION_LINE: usize = 255;
/// How long the gateway waits for the target to speak before sending its own identification line anyway. A
/// server sends its line as soon as the connection is made (RFC 4253 section 4.2; SSH 1 clients even waited
/// for it before sending theirs), so this costs a real target nothing. Not writing into silence means that a
/// target that hangs up at once never holds unread bytes of ours, so its kernel ends the connection with FIN,
/// not RST, and the error says "closed" every time rather than "reset" by chance.
const IDENTIFICATION_GRACE: Duration = Duration::from_millis(500);

/// Exchanges identification lines on a fresh connection and returns the stream for russh.
pub(crate) async fn greet(mut stream: TcpStream) -> Result<Greeted, SshError> {
    let replay = exchange(&mut stream).await?;
    Ok(Greeted {
        stream,
        replay,
        replayed: 0,
        sent_id: CLIENT_ID_LINE.as_bytes(),
    })
}

/// The identification exchange (RFC 4253 section 4.2), done here rather than in russh so that a target that
/// speaks another protocol version is refused at its first line, and an early end is worded by what happened.
///
/// Reads what the target sends up to the end of its identification line (at most [`MAX_GREETING`] bytes) and
/// sends the gateway's line as soon as the target has sent anything, or after [`IDENTIFICATION_GRACE`] of
/// silence. Returns the bytes from the target's identification line on, for russh to read again. Runs under
/// the caller's handshake deadline.
async fn exchange(stream: &mut TcpStream) -> Result<Vec<u8>, SshError> {
    let lost = |error: io::Error| {
        SshError::connection_ended(&error, "before sending its SSH identification line")
    };
    let mut received = vec![0; MAX_GREETING];
    let mut filled = 0;
    let mut sent = false;
    loop {
        match scan_greeting(&received[..filled]) {
            Greeting::Identified(start) => {
                received.truncate(filled);
                received.drain(..start);
                return Ok(received);
            }
            Greeting::Refused(error) => return Err(error),
            // Never with all of MAX_GREETING filled, so there is room to read into.
            Greeting::Incomplete => {}
        }
        let read = stream.read(&mut received[filled..]);
        let read = if sent {
            Some(read.await)
        } else {
            // `None`: the target stayed silent for the grace period.
            tokio::time::timeout(IDENTIFICATION_GRACE, read).await.ok()
        };
        if let Some(read) = read {
            match read.map_err(lost)? {
                0 => return Err(lost(io::ErrorKind::UnexpectedEof.into())),
                n => filled += n,
            }
        }
        if !sent {
            // Sent before what the target sent is judged, so that even a target refused at once has seen the
            // gateway identify itself. A failed write is not reported here: the next read says how the
            // connection ended, after the bytes that arrived before are judged.
            let _ = stream.write_all(CLIENT_ID_LINE.as_bytes()).await;
            sent = true;
        }
    }
}

/// What the bytes a target sent so far say about its identification line.
#[derive(Debug)]
enum Greeting {
    /// No identification line yet: read more. Only while fewer than [`MAX_GREETING`] bytes are in.
    Incomplete,
    /// An acceptable identification line starts at this offset; what came before it were other lines.
    Identified(usize),
    /// The target cannot be spoken to.
    Refused(SshError),
}

/// Judges the start of what a target sent (RFC 4253 section 4.2): other lines, then the identification line
/// `SSH-protoversion-softwareversion [comments]`. Lines end with LF, a CR before it is dropped (CR LF is the
/// RFC's line end; a bare LF is accepted, as OpenSSH and russh do). The first line starting with `SSH-` is the
/// identification line (other lines must not start so); it must be at most [`MAX_IDENTIFICATION_LINE`] bytes
/// and end within the first [`MAX_GREETING`] bytes.
fn scan_greeting(received: &[u8]) -> Greeting {
    let window = &received[..received.len().min(MAX_GREETING)];
    let mut start = 0;
    while let Some(rest) = window.get(start..).filter(|rest| !rest.is_empty()) {
        let identification = rest.starts_with(b"SSH-");
        match rest.iter().position(|b| *b == b'\n') {
            Some(end) if identification => {
                if end + 1 > MAX_IDENTIFICATION_LINE {
                    return Greeting::Refused(SshError::no_identification());
                }
                let line = &rest[..end];
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                return match judge_identification(line) {
                    Ok(()) => Greeting::Identified(start),
                    Err(error) => Greeting::Refused(error),
                };
            }
            Some(end) => start += end + 1,
            None if identification && rest.len() >= MAX_IDENTIFICATION_LINE => {
                return Greeting::Refused(SshError::no_identification());
            }
            None => break,
        }
    }
    if received.len() >= MAX_GREETING {
        Greeting::Refused(SshError::no_identification())
    } else {
        Greeting::Incomplete
    }
}

/// Judges an identification line (without its line end): protocol 2.0, or 1.99 (a server that speaks 2.0 as
/// well as 1), is accepted; SSH 1 and anything else is refused in words.
fn judge_identification(line: &[u8]) -> Result<(), SshError> {
    let (version, _software) = std::str::from_utf8(line)
        .ok()
        .and_then(|line| line.strip_prefix("SSH-"))
        .and_then(|rest| rest.split_once('-'))
        .filter(|(version, _)| !version.is_empty())
        .ok_or_else(SshError::no_identification)?;
    match version {
        "2.0" | "1.99" => Ok(()),
        other => Err(SshError::unsupported_protocol(other)),
    }
}

/// The target's stream as russh gets it after [`exchange_identification`]: reads first replay the bytes read
/// from the target's identification line on (russh parses that line again, as it always does), and the
/// identification line russh writes first is dropped, because it went out already.
pub(crate) struct Greeted {
    stream: TcpStream,
    /// The bytes from the target's identification line on, and how many of them russh has read.
    replay: Vec<u8>,
    replayed: usize,
    /// What russh's first writes must be (our identification line), not yet seen.
    sent_id: &'static [u8],
}

impl AsyncRead for Greeted {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(rest) = this.replay.get(this.replayed..).filter(|r| !r.is_empty()) {
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.replayed += n;
            if this.replayed == this.replay.len() {
                this.replay = Vec::new();
                this.replayed = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Greeted {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if !this.sent_id.is_empty() {
            let n = buf.len().min(this.sent_id.len());
            if buf[..n] != this.sent_id[..n] {
                return Poll::Ready(Err(io::Error::other(
                    "russh did not begin with the gateway's identification line",
                )));
            }
            this.sent_id = &this.sent_id[n..];
            return Poll::Ready(Ok(n));
        }
        Pin::new(&mut this.stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    /// [`scan_greeting`] as a value: `Ok(None)` to read more, `Ok(Some(offset))` of the identification line, or
    /// the refusal in words.
    fn greeting(bytes: &[u8]) -> Result<Option<usize>, String> {
        match scan_greeting(bytes) {
            Greeting::Incomplete => Ok(None),
            Greeting::Identified(start) => Ok(Some(start)),
            Greeting::Refused(error) => Err(error.to_string()),
        }
    }

    #[test]
    fn identification_lines_of_ssh_2_are_found_after_other_lines() {
        let cases: &[(&[u8], Option<usize>)] = &[
            (b"SSH-2.0-OpenSSH_9.6\r\n", Some(0)),
            (b"SSH-2.0-OpenSSH_7.4\n", Some(0)),
            (b"SSH-2.0-OpenSSH_9.6 Debian-3\r\n\x00\x00\x01\x14", Some(0)),
            (b"SSH-1.99-Cisco-1.25\r\n", Some(0)),
            (b"Welcome\r\nauthorised use only\nSSH-2.0-x\r\n", Some(29)),
            (b"SSH-2.0-OpenSSH", None),
            (b"Welcome\r\nSS", None),
            (b"", None),
        ];
        for (bytes, expected) in cases {
            assert_eq!(
                greeting(bytes),
                Ok(*expected),
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
        // The longest line RFC 4253 allows, line end included.
        let longest = format!("SSH-2.0-{}\r\n", "A".repeat(245));
        assert_eq!(longest.len(), MAX_IDENTIFICATION_LINE);
        assert_eq!(greeting(longest.as_bytes()), Ok(Some(0)));
        // Other lines up to the bound, then the identification line ending exactly at it.
        let mut most = "x\n".repeat((MAX_GREETING - 10) / 2).into_bytes();
        most.extend_from_slice(b"SSH-2.0-x\n");
        assert_eq!(most.len(), MAX_GREETING);
        assert_eq!(greeting(&most), Ok(Some(MAX_GREETING - 10)));
    }

    #[test]
    fn other_protocols_and_endless_greetings_are_refused_in_words() {
        let insecure = |v: &str| {
            format!(
                "target protocol error: target speaks SSH protocol {v}, which is insecure and not \
                 supported; only SSH 2 is"
            )
        };
        let none = "target protocol error: target sent no valid SSH identification line (at most 8 KiB of \
                    other lines may come first, and the line itself is at most 255 bytes)";
        let cases: &[(&[u8], &str)] = &[
            (b"SSH-1.5-OpenSSH_1.2.3\r\n", &insecure("1.5")),
            (b"SSH-1.3-x\n", &insecure("1.3")),
            (b"Welcome\r\nSSH-1.5-x\r\nSSH-2.0-y\r\n", &insecure("1.5")),
            (
                b"SSH-3.0-x\r\n",
                "target protocol error: target speaks SSH protocol 3.0, which is not supported; only SSH \
                 2.0 is",
            ),
            (
                b"SSH-\x1b[31m-x\r\n",
                "target protocol error: target speaks SSH protocol \u{fffd}[31m, which is not supported; \
                 only SSH 2.0 is",
            ),
            (b"SSH-2.0\r\n", none),
            (b"SSH--x\r\n", none),
            (b"SSH-2.0-\xff\r\n", none),
        ];
        for (bytes, expected) in cases {
            assert_eq!(
                greeting(bytes),
                Err((*expected).to_owned()),
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
        // One byte too long, with or without its line end yet.
        let too_long = format!("SSH-2.0-{}\r\n", "A".repeat(246));
        assert_eq!(greeting(too_long.as_bytes()), Err(none.to_owned()));
        let unended = format!("SSH-2.0-{}", "A".repeat(300));
        assert_eq!(greeting(unended.as_bytes()), Err(none.to_owned()));
        // 8 KiB of other lines; one byte less still waits for more.
        let lines = "pre-banner line\r\n"
            .repeat(MAX_GREETING / 17 + 1)
            .into_bytes();
        assert_eq!(greeting(&lines[..MAX_GREETING - 1]), Ok(None));
        assert_eq!(greeting(&lines[..MAX_GREETING]), Err(none.to_owned()));
        assert_eq!(greeting(&lines), Err(none.to_owned()));
        // An identification line that would end past the bound.
        let mut late = "x\n".repeat((MAX_GREETING - 8) / 2).into_bytes();
        late.extend_from_slice(b"SSH-2.0-x\n");
        assert_eq!(greeting(&late), Err(none.to_owned()));
    }

    #[test]
    fn the_gateways_line_is_an_ssh_2_line_within_the_limit() {
        assert!(CLIENT_ID_LINE.starts_with("SSH-2.0-Sallyport_"));
        assert!(CLIENT_ID_LINE.ends_with("\r\n"));
        assert!(CLIENT_ID_LINE.len() <= MAX_IDENTIFICATION_LINE);
    }
}
