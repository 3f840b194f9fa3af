//! Tests of the connection settings offered to targets (algorithms, strict key exchange) and of the
//! connection helpers.
#![allow(clippy::unwrap_used, clippy::panic)]
use super::*;

#[test]
fn strict_kex_is_offered() {
    let config = config();
    assert!(
        config
            .preferred
            .kex
            .contains(&russh::kex::EXTENSION_OPENSSH_STRICT_KEX_AS_CLIENT)
    );
}

#[test]
fn weak_algorithms_are_not_offered() {
    let config = config();
    assert!(
        !config
            .preferred
            .key
            .contains(&Algorithm::Rsa { hash: None })
    );
    for kex in config.preferred.kex.iter() {
        let name = kex.as_ref();
        assert!(
            !name.contains("sha1") && !name.ends_with("group1-sha1"),
            "{name}"
        );
    }
    for cipher in config.preferred.cipher.iter() {
        let name = cipher.as_ref();
        assert!(
            !name.contains("cbc") && !name.contains("3des") && name != "none",
            "{name}"
        );
    }
    for mac in config.preferred.mac.iter() {
        let name = mac.as_ref();
        assert!(
            !name.contains("sha1") && !name.contains("md5") && name != "none",
            "{name}"
        );
    }
}

#[test]
fn limits() {
    let config = config();
    assert_eq!(config.inactivity_timeout, None);
    assert_eq!(config.keepalive_interval, Some(KEEPALIVE_INTERVAL));
    assert!(config.channel_buffer_size <= 16);
    assert!(config.window_size <= 256 * 1024);
}

/// A target on loopback that accepts and then says nothing: the deadline names the unfinished stage.
#[tokio::test]
async fn a_silent_target_times_out_in_the_handshake() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        // Hold the connection open, silently, until the client gives up.
        tokio::time::sleep(Duration::from_secs(5)).await;
        drop(socket);
    });
    let started = std::time::Instant::now();
    let error = connect(ConnectRequest {
        addr,
        username: "alice".into(),
        credential: Credential::Password("x".into()),
        pinned_host_key: None,
        term: "xterm-256color".into(),
        cols: 80,
        rows: 24,
        connect_timeout: Duration::from_millis(500),
    })
    .await
    .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(error.kind(), crate::ErrorKind::Timeout);
    assert_eq!(
        error.to_string(),
        "target did not finish the SSH handshake within 0.5 s"
    );
    server.abort();
}

#[test]
fn the_identification_line_sent_is_the_one_hashed() {
    let config = config();
    let SshId::Raw(id) = &config.client_id else {
        panic!("the identification line is sent raw");
    };
    assert_eq!(id.as_ref(), identification::CLIENT_ID_LINE);
}

#[test]
fn request_debug_redacts_the_credential() {
    let request = ConnectRequest {
        addr: SocketAddr::from(([192, 0, 2, 1], 22)),
        username: "alice".into(),
        credential: Credential::Password("hunter2".into()),
        pinned_host_key: None,
        term: "xterm-256color".into(),
        cols: 80,
        rows: 24,
        connect_timeout: Duration::from_secs(10),
    };
    let shown = format!("{request:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("Password(<redacted>)"), "{shown}");
}
