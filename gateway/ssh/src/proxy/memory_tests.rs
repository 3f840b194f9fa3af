//! The SSH proxy driven end to end in memory, without sockets: a russh client as the user's ssh on one
//! `tokio::io::duplex`, the proxy's session on the other, and a russh server as the target behind a second
//! duplex. Covers pipelined requests answered in order, and a target that never answers a request while
//! the session is stopped, and the cap on session channels.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use russh::server::{self, Auth, Msg, Session};
use russh::{Channel, ChannelId, ChannelMsg, MethodKind, MethodSet};
use sallyport_recordings::{Limits, Recorder, SessionMeta, SessionRecorder};
use sallyport_relay::{ProxyConnect, ProxySession, ProxySink};
use tokio::sync::watch;

use super::Reverse;
use super::session::Proxied;
use crate::connect::handshake_in_memory;
use crate::credential::decode_private_key;

const PASSWORD: &str = "memory-test-password";

/// The target: accepts the password, answers PTY requests unless `silent`, refuses environment
/// variables, and greets on a shell.
#[derive(Clone)]
struct Target {
    silent: bool,
}

impl server::Handler for Target {
    type Error = russh::Error;

    async fn auth_password(&mut self, _user: &str, password: &str) -> Result<Auth, Self::Error> {
        Ok(if password == PASSWORD {
            Auth::Accept
        } else {
            Auth::reject()
        })
    }

    async fn channel_open_session(
        &mut self,
        _channel: Channel<Msg>,
        reply: server::ChannelOpenHandle,
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
        if self.silent {
            return Ok(());
        }
        session.channel_success(channel)
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        _variable_name: &str,
        _variable_value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        // As OpenSSH without `AcceptEnv`: refused, and answered since the proxy asks for a reply.
        session.channel_failure(channel)
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        session.data(channel, &b"hello from the target\r\n"[..])?;
        Ok(())
    }
}

/// The user's ssh: trusts the gateway's key (this test is not about it).
struct User;

impl russh::client::Handler for User {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        _key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

fn host_key() -> russh::keys::PrivateKey {
    let pem = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/test_data/ed25519_plain"
    ))
    .unwrap();
    decode_private_key(&pem, None).unwrap()
}

/// A running proxied session: the user's authenticated russh handle, the session's outcome, its stop.
struct Running {
    user: russh::client::Handle<User>,
    served: tokio::task::JoinHandle<Result<(), sallyport_relay::TargetError>>,
    stop: watch::Sender<Option<String>>,
    /// Kept for the session's life: the recording must stay open (the proxy fails closed without it).
    _recording: (SessionRecorder, Recorder, tempfile::TempDir),
}

async fn run(target: Target) -> Running {
    let (to_target, target_end) = tokio::io::duplex(1 << 16);
    let target_config = Arc::new(server::Config {
        keys: vec![host_key()],
        methods: MethodSet::from(&[MethodKind::Password][..]),
        auth_rejection_time: Duration::from_millis(10),
        ..server::Config::default()
    });
    tokio::spawn(async move {
        if let Ok(running) = server::run_stream(target_config, target_end, target).await {
            let _ = running.await;
        }
    });
    let reverse = Arc::new(Reverse::new(false));
    let handshaken = handshake_in_memory(to_target, reverse.clone())
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let recorder = Recorder::start(&dir.path().join("r.db"), key, Limits::default()).unwrap();
    let recording = recorder
        .open_session(SessionMeta {
            user: "alice".into(),
            target: "memory".into(),
            target_addr: "192.0.2.1:22".into(),
            protocol: "ssh".into(),
            client_addr: "192.0.2.2:50000".into(),
        })
        .unwrap();
    let sink = ProxySink::recording_only(recording.sink());
    let proxy =
        super::SshProxy::from_openssh(&super::SshProxy::generate_host_key([9; 32]).unwrap())
            .unwrap();
    let session = Box::new(Proxied {
        config: Arc::new(proxy.config()),
        target: handshaken,
        reverse,
        request: ProxyConnect {
            addr: "192.0.2.1:22".parse().unwrap(),
            pinned_host_key: None,
            timeout: Duration::from_secs(10),
            login_timeout: Duration::from_secs(60),
            forwarding: false,
        },
    });
    let (user_end, gateway_end) = tokio::io::duplex(1 << 16);
    let (stop, stopped) = watch::channel(None);
    let served = tokio::spawn(session.serve(Box::new(gateway_end), sink, stopped));
    let config = Arc::new(russh::client::Config::default());
    let mut user = russh::client::connect_stream(config, user_end, User)
        .await
        .unwrap();
    let auth = user.authenticate_password("alice", PASSWORD).await.unwrap();
    assert!(auth.success());
    Running {
        user,
        served,
        stop,
        _recording: (recording, recorder, dir),
    }
}

/// The next reply or data on the user's channel, within 10 s.
async fn next(channel: &mut Channel<russh::client::Msg>) -> ChannelMsg {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), channel.wait())
            .await
            .expect("the proxy answered")
            .expect("the channel stayed open");
        if !matches!(message, ChannelMsg::WindowAdjusted { .. }) {
            return message;
        }
    }
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_and_the_shell_runs() {
    let running = run(Target { silent: false }).await;
    let mut channel = running.user.channel_open_session().await.unwrap();
    // As OpenSSH does: the PTY, an environment variable without a reply, and the shell, without waiting.
    channel
        .request_pty(true, "xterm", 80, 24, 0, 0, &[])
        .await
        .unwrap();
    channel.set_env(false, "LANG", "C").await.unwrap();
    channel.request_shell(true).await.unwrap();
    assert!(matches!(next(&mut channel).await, ChannelMsg::Success));
    assert!(matches!(next(&mut channel).await, ChannelMsg::Success));
    match next(&mut channel).await {
        ChannelMsg::Data { data } => {
            assert_eq!(&data[..], b"hello from the target\r\n");
        }
        other => panic!("expected the target's greeting, got {other:?}"),
    }
    running.stop.send_replace(Some("test over".into()));
    let outcome = tokio::time::timeout(Duration::from_secs(10), running.served)
        .await
        .unwrap()
        .unwrap();
    assert!(outcome.is_ok(), "{outcome:?}");
}

#[tokio::test]
async fn a_stop_is_not_held_up_by_a_target_that_never_answers() {
    let running = run(Target { silent: true }).await;
    let mut channel = running.user.channel_open_session().await.unwrap();
    channel
        .request_pty(true, "xterm", 80, 24, 0, 0, &[])
        .await
        .unwrap();
    // The proxy is now waiting for the target's answer inside russh's callback.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stopped_at = Instant::now();
    running
        .stop
        .send_replace(Some("terminated by an administrator".into()));
    let outcome = tokio::time::timeout(Duration::from_secs(10), running.served)
        .await
        .expect("the session ended well before the request timeout")
        .unwrap();
    assert!(outcome.is_ok(), "{outcome:?}");
    assert!(stopped_at.elapsed() < Duration::from_secs(5));
    // The user's ssh was told no, then disconnected.
    let mut replies = Vec::new();
    while let Ok(Some(message)) = tokio::time::timeout(Duration::from_secs(5), channel.wait()).await
    {
        replies.push(message);
    }
    assert!(
        replies.iter().any(|m| matches!(m, ChannelMsg::Failure)),
        "{replies:?}"
    );
}

#[tokio::test]
async fn session_channels_beyond_the_cap_are_refused() {
    let running = run(Target { silent: false }).await;
    let mut open = Vec::new();
    for _ in 0..super::MAX_SESSIONS {
        open.push(running.user.channel_open_session().await.unwrap());
    }
    assert!(running.user.channel_open_session().await.is_err());
    // Closing one makes room again (once the proxy has seen the close).
    open.pop().unwrap().close().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while running.user.channel_open_session().await.is_err() {
        assert!(Instant::now() < deadline, "no room after a channel closed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
