//! Hostile targets that need a real key exchange, built on russh's own server and reached over loopback: a target
//! that opens channels towards the gateway, one that never opens its window, one that disconnects in the middle of
//! the session, and one that asks a hundred keyboard-interactive questions at once.
//!
//! The pre-handshake breakages (banners, packet lengths, garbage, KEXINIT bombs, resets) and real OpenSSH floods
//! are in the end-to-end test `tests/e2e/tests/hostile_targets.rs`; this file covers what a byte-level fake
//! cannot do without session keys.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use russh::server::{self, Auth, Msg, Session};
use russh::{Channel, ChannelId, ChannelOpenFailure, Disconnect, MethodKind, MethodSet};
use tokio::net::TcpListener;
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
                Mode::ZeroWindow | Mode::PromptBomb => {
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
        ..server::Config::default()
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
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
