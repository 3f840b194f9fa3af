//! Hostile targets that need a real key exchange, built on russh's own server and reached over loopback: a target
//! that opens channels towards the gateway, one that never opens its window, one that disconnects in the middle of
//! the session, and one that asks a hundred keyboard-interactive questions at once.
//!
//! The pre-handshake breakages (banners, packet lengths, garbage, KEXINIT bombs, resets) and real OpenSSH floods
//! are in the end-to-end test `tests/e2e/tests/e2e/hostile_targets.rs`; this file covers what a byte-level fake
//! cannot do without session keys, and the identification exchange the gateway does itself: an SSH-1 target
//! refused at its first line, other lines before an SSH-1.99 line accepted, and a target that hangs up at once,
//! right after its line, or with a reset, each told apart in words.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use russh::server::{self, Auth, Msg, Session};
use russh::{Channel, ChannelId, ChannelOpenFailure, Disconnect, MethodKind, MethodSet};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::credential::decode_private_key;
use crate::{ConnectRequest, Credential, ErrorKind, SshError, TerminalEvent, TerminalSession};

const PASSWORD: &str = "hostile-test-password";

/// What the hostile server does once the client asked for a shell.
#[derive(Clone, Copy, Debug)]
enum Mode {
    /// Opens `n` channels of every type towards the client, reports how each open ended, then writes a line.
    OpenChannels(usize),
    /// Advertises a zero window, so the client can never send input; writes a line.
    ZeroWindow,
    /// Writes a line, then sends a disconnect message with a reason.
    DisconnectAfterShell,
    /// Only keyboard-interactive authentication, asking 100 questions at once.
    PromptBomb,
    /// Nothing hostile after the greeting: writes a line.
    Plain,
}

#[derive(Debug)]
enum Report {
    /// How one channel open towards the client ended: `Ok(())` if the client accepted it.
    ChannelOpen(&'static str, Result<(), String>),
    Done,
}

#[derive(Clone)]
struct Hostile {
    mode: Mode,
    reports: mpsc::UnboundedSender<Report>,
}

impl server::Handler for Hostile {
    type Error = russh::Error;

    async fn auth_password(&mut self, _user: &str, password: &str) -> Result<Auth, Self::Error> {
        Ok(if password == PASSWORD {
            Auth::Accept
        } else {
            Auth::reject()
        })
    }

    async fn auth_keyboard_interactive<'a>(
        &'a mut self,
        _user: &str,
        _submethods: &str,
        _response: Option<server::Response<'a>>,
    ) -> Result<Auth, Self::Error> {
        let prompts: Vec<(Cow<'static, str>, bool)> = (0..100)
            .map(|i| (Cow::Owned(format!("question {i}: ")), false))
            .collect();
        Ok(Auth::Partial {
            name: "hostile".into(),
            instructions: "answer everything".into(),
            prompts: prompts.into(),
        })
    }

    async fn channel_open_session(
        &mut self,
        _channel: Channel<Msg>,
        reply: russh::server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        reply.accept().await;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        let handle = session.handle();
        let (mode, reports) = (self.mode, self.reports.clone());
        tokio::spawn(async move {
            match mode {
                Mode::OpenChannels(n) => {
                    for _ in 0..n {
                        let ended = |r: Result<Channel<Msg>, russh::Error>| {
                            r.map(drop).map_err(|e| e.to_string())
                        };
                        let x11 = handle.channel_open_x11("10.0.0.1", 6010).await;
                        let _ = reports.send(Report::ChannelOpen("x11", ended(x11)));
                        let agent = handle.channel_open_agent().await;
                        let _ = reports.send(Report::ChannelOpen("agent", ended(agent)));
                        let forwarded = handle
                            .channel_open_forwarded_tcpip("127.0.0.1", 8080, "10.0.0.1", 40000)
                            .await;
                        let _ = reports.send(Report::ChannelOpen("forwarded", ended(forwarded)));
                        let session = handle.channel_open_session().await;
                        let _ = reports.send(Report::ChannelOpen("session", ended(session)));
                    }
                    let _ = handle.data(channel, &b"still-here\r\n"[..]).await;
                }
                Mode::ZeroWindow | Mode::PromptBomb | Mode::Plain => {
                    let _ = handle.data(channel, &b"still-here\r\n"[..]).await;
                }
                Mode::DisconnectAfterShell => {
                    let _ = handle.data(channel, &b"still-here\r\n"[..]).await;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    let _ = handle
                        .disconnect(
                            Disconnect::ProtocolError,
                            "hostile goodbye\x1b]52;c;AAAA\x07".into(),
                            "en".into(),
                        )
                        .await;
                }
            }
            let _ = reports.send(Report::Done);
        });
        Ok(())
    }
}

/// Starts a hostile server for one connection on 127.0.0.1; returns its address and the report stream.
async fn start(mode: Mode) -> (SocketAddr, mpsc::UnboundedReceiver<Report>) {
    start_greeting(mode, String::new(), None).await
}

/// As [`start`], but the server first writes `before` (lines RFC 4253 allows before the identification line)
/// and identifies itself as `server_id` instead of russh's default.
async fn start_greeting(
    mode: Mode,
    before: String,
    server_id: Option<&'static str>,
) -> (SocketAddr, mpsc::UnboundedReceiver<Report>) {
    let pem = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/test_data/ed25519_plain"
    ))
    .unwrap();
    let key = decode_private_key(&pem, None).unwrap();
    let methods: &[MethodKind] = match mode {
        Mode::PromptBomb => &[MethodKind::KeyboardInteractive],
        _ => &[MethodKind::Password],
    };
    let config = Arc::new(server::Config {
        keys: vec![key],
        methods: MethodSet::from(methods),
        auth_rejection_time: Duration::from_millis(10),
        window_size: match mode {
            Mode::ZeroWindow => 0,
            _ => 2 * 1024 * 1024,
        },
        inactivity_timeout: Some(Duration::from_secs(30)),
        server_id: match server_id {
            Some(id) => russh::SshId::Standard(Cow::Borrowed(id)),
            None => server::Config::default().server_id,
        },
        ..server::Config::default()
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        stream.write_all(before.as_bytes()).await.unwrap();
        let handler = Hostile { mode, reports: tx };
        if let Ok(running) = server::run_stream(config, stream, handler).await {
            let _ = tokio::time::timeout(Duration::from_secs(30), running).await;
        }
    });
    (addr, rx)
}

async fn connect(addr: SocketAddr) -> Result<TerminalSession, SshError> {
    let connected = crate::connect(ConnectRequest {
        addr,
        username: "hostile".into(),
        credential: Credential::Password(PASSWORD.into()),
        pinned_host_key: None,
        term: "xterm-256color".into(),
        cols: 80,
        rows: 24,
        connect_timeout: Duration::from_secs(10),
    })
    .await?;
    Ok(connected.session)
}

/// Reads events until output containing `text` arrives (at most 10 s).
async fn expect_output(session: &mut TerminalSession, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, session.next_event()).await {
            Ok(Some(TerminalEvent::Output(data))) => {
                seen.extend_from_slice(&data);
                if seen.windows(text.len()).any(|w| w == text.as_bytes()) {
                    return;
                }
            }
            other => panic!(
                "waiting for {text:?}: {other:?} after {:?}",
                String::from_utf8_lossy(&seen)
            ),
        }
    }
}

#[tokio::test]
async fn channels_the_target_opens_are_refused_and_the_session_goes_on() {
    let rounds = 50;
    let (addr, mut reports) = start(Mode::OpenChannels(rounds)).await;
    let mut session = connect(addr).await.unwrap();
    expect_output(&mut session, "still-here").await;
    let mut refused = 0;
    loop {
        match tokio::time::timeout(Duration::from_secs(10), reports.recv()).await {
            Ok(Some(Report::ChannelOpen(kind, result))) => {
                let error = result.err().unwrap_or_else(|| {
                    panic!("the gateway accepted a {kind} channel opened by the target")
                });
                let expected = russh::Error::ChannelOpenFailure(
                    ChannelOpenFailure::AdministrativelyProhibited,
                )
                .to_string();
                assert_eq!(error, expected, "{kind}");
                refused += 1;
            }
            Ok(Some(Report::Done)) => break,
            other => panic!("the server stopped reporting: {other:?}"),
        }
    }
    assert_eq!(refused, rounds * 4);
    // The shell still takes input.
    session.write(b"echo\r").await.unwrap();
    assert!(session.failure().is_none());
    session.close().await;
}

#[tokio::test]
async fn a_target_that_never_opens_its_window_fails_the_write_in_bounded_time() {
    let (addr, _reports) = start(Mode::ZeroWindow).await;
    let mut session = connect(addr).await.unwrap();
    expect_output(&mut session, "still-here").await;
    // A window change is a request, not data: it does not need window space.
    session.resize(100, 30).await.unwrap();
    session.set_input_timeout(Duration::from_millis(500));
    let started = Instant::now();
    let error = tokio::time::timeout(Duration::from_secs(10), session.write(b"ls\r"))
        .await
        .expect("the write still waits after 10 s")
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Stalled, "{error}");
    assert_eq!(error.to_string(), "target accepted no input for 0.5 s");
    assert!(started.elapsed() < Duration::from_secs(5));
    session.close().await;
}

#[tokio::test]
async fn a_disconnect_during_the_session_is_kept_as_the_failure() {
    let (addr, _reports) = start(Mode::DisconnectAfterShell).await;
    let mut session = connect(addr).await.unwrap();
    expect_output(&mut session, "still-here").await;
    let mut events = Vec::new();
    while let Ok(Some(event)) =
        tokio::time::timeout(Duration::from_secs(10), session.next_event()).await
    {
        events.push(event);
    }
    assert_eq!(events.last(), Some(&TerminalEvent::Closed), "{events:?}");
    let failure = session.failure().expect("no failure recorded");
    assert_eq!(failure.kind(), ErrorKind::Protocol);
    assert!(failure.to_string().contains("hostile goodbye"), "{failure}");
    session.close().await;
}

#[tokio::test]
async fn a_hundred_keyboard_interactive_questions_are_refused() {
    let (addr, _reports) = start(Mode::PromptBomb).await;
    let error = connect(addr).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Protocol, "{error}");
    assert_eq!(
        error.to_string(),
        "target protocol error: target asked 100 keyboard-interactive questions at once"
    );
}

/// A fake target speaking raw bytes: serves every connection to the returned 127.0.0.1 address with `serve`.
async fn raw_target<F, Fut>(serve: F) -> SocketAddr
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream));
        }
    });
    addr
}

/// Reads what the gateway sends until it hangs up (at most 30 s).
async fn drain(mut stream: TcpStream) {
    let mut buf = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_secs(30), async {
        while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
    })
    .await;
}

/// Closes `stream` with RST: SO_LINGER with a zero timeout, then close.
#[allow(deprecated)] // tokio deprecates set_linger because a non-zero linger blocks on drop; zero does not.
fn reset(stream: TcpStream) {
    stream.set_linger(Some(Duration::ZERO)).unwrap();
    drop(stream);
}

/// Connects and expects an error; returns it and how long it took.
async fn refused(addr: SocketAddr) -> (SshError, Duration) {
    let started = Instant::now();
    match connect(addr).await {
        Ok(_) => panic!("the gateway accepted the target"),
        Err(error) => (error, started.elapsed()),
    }
}

#[tokio::test]
async fn an_ssh_1_target_is_refused_at_its_identification_line() {
    // An SSH-1 server speaks first and then waits for the client's line, for as long as it likes.
    let addr = raw_target(|mut stream| async move {
        stream
            .write_all(b"SSH-1.5-OpenSSH_1.2.3\r\n")
            .await
            .unwrap();
        drain(stream).await;
    })
    .await;
    let (error, took) = refused(addr).await;
    assert_eq!(error.kind(), ErrorKind::Protocol, "{error}");
    assert_eq!(
        error.to_string(),
        "target protocol error: target speaks SSH protocol 1.5, which is insecure and not supported; only \
         SSH 2 is"
    );
    // At the line, not at the connect deadline (10 s here, 20 s in the gateway).
    assert!(took < Duration::from_secs(5), "refused after {took:?}");
}

#[tokio::test]
async fn other_lines_before_an_ssh_1_99_identification_are_accepted() {
    // More lines than russh alone accepts (20) before an identification line of a server that also speaks 2.0.
    let before = (0..30)
        .map(|i| format!("Authorised use only, line {i}\r\n"))
        .collect();
    let (addr, _reports) = start_greeting(Mode::Plain, before, Some("SSH-1.99-Hostile_1.0")).await;
    let mut session = connect(addr).await.unwrap();
    expect_output(&mut session, "still-here").await;
    session.close().await;
}

#[tokio::test]
async fn a_target_that_hangs_up_at_once_is_reported_as_closed_every_time() {
    let addr = raw_target(|stream| async move { drop(stream) }).await;
    for round in 0..20 {
        let (error, _) = refused(addr).await;
        assert_eq!(error.kind(), ErrorKind::Protocol, "round {round}: {error}");
        assert_eq!(
            error.to_string(),
            "target protocol error: target closed the connection before sending its SSH identification line",
            "round {round}"
        );
    }
}

#[tokio::test]
async fn a_target_that_resets_at_once_is_reported_as_reset() {
    let addr = raw_target(|stream| async move { reset(stream) }).await;
    for round in 0..10 {
        let (error, _) = refused(addr).await;
        assert_eq!(error.kind(), ErrorKind::Protocol, "round {round}: {error}");
        assert_eq!(
            error.to_string(),
            "target protocol error: target reset the connection before sending its SSH identification line",
            "round {round}"
        );
    }
}

#[tokio::test]
async fn a_target_that_hangs_up_after_its_identification_line_is_reported_as_closed() {
    // FIN after the line; the socket stays open for reading, so nothing the gateway sends turns it into RST.
    let addr = raw_target(|mut stream| async move {
        stream.write_all(b"SSH-2.0-Hostile_1.0\r\n").await.unwrap();
        stream.shutdown().await.unwrap();
        drain(stream).await;
    })
    .await;
    for round in 0..5 {
        let (error, _) = refused(addr).await;
        assert_eq!(error.kind(), ErrorKind::Protocol, "round {round}: {error}");
        assert_eq!(
            error.to_string(),
            "target protocol error: target closed the connection during the handshake",
            "round {round}"
        );
    }
}

#[tokio::test]
async fn a_target_that_resets_after_its_identification_line_is_reported_as_reset() {
    let addr = raw_target(|mut stream| async move {
        stream.write_all(b"SSH-2.0-Hostile_1.0\r\n").await.unwrap();
        // Wait for the gateway's key exchange to arrive, then reset with it unread.
        let mut first = [0u8; 1];
        let _ = stream.peek(&mut first).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        reset(stream);
    })
    .await;
    for round in 0..5 {
        let (error, _) = refused(addr).await;
        assert_eq!(error.kind(), ErrorKind::Protocol, "round {round}: {error}");
        assert_eq!(
            error.to_string(),
            "target protocol error: target reset the connection during the handshake",
            "round {round}"
        );
    }
}
