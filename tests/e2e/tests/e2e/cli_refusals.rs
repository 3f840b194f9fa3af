//! What the QUIC endpoint refuses, each in plain words while the gateway keeps serving: a target
//! outside the user's policy, garbage preambles and frames (the connection survives them), garbage
//! datagrams, a foreign certificate, an expired one (in X.509 and in the gateway's records), a revoked
//! (logged-out) one, and a disabled user, whose live session ends at once.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, PKCS_ED25519,
};
use sallyport_e2e::cli::{Cli, exit_code, quic_connect};
use sallyport_e2e::portal::{add_policy, create_user, first_login, login_admin};
use sallyport_e2e::{
    Gateway, GatewayOptions, Sshd, SshdOptions, TargetNet, ensure_test_user, require_root,
};

/// Sends `bytes` on a new stream, ends it, and returns everything the gateway answered.
async fn exchange(conn: &quinn::Connection, bytes: &[u8]) -> Result<String> {
    let (mut send, mut recv) = conn.open_bi().await?;
    send.write_all(bytes).await?;
    let _ = send.finish();
    let answer = tokio::time::timeout(Duration::from_secs(15), recv.read_to_end(1 << 20))
        .await
        .context("no answer within 15 s")??;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![kind];
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A client certificate for a fresh key from the CA with this key (the gateway's user CA is rebuilt
/// the same way: its name and key are what a chain is checked against).
fn issue(
    ca_key: &KeyPair,
    ca_name: &str,
    not_before: SystemTime,
    not_after: SystemTime,
) -> Result<(String, String)> {
    let mut ca = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, ca_name);
    ca.distinguished_name = name;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let ca = ca.self_signed(ca_key)?;
    let key = KeyPair::generate_for(&PKCS_ED25519)?;
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, "carol");
    params.distinguished_name = name;
    params.is_ca = IsCa::ExplicitNoCa;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.not_before = not_before.into();
    params.not_after = not_after.into();
    let cert = params.signed_by(&key, &ca, ca_key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Whether a connection with this certificate can list targets; the error text when it cannot.
async fn try_targets(addr: std::net::SocketAddr, cert: &str, key: &str) -> Result<String, String> {
    let (_endpoint, conn) = quic_connect(addr, cert, key)
        .await
        .map_err(|e| format!("{e:#}"))?;
    exchange(&conn, b"SP\x01\x02\x00\x00")
        .await
        .map_err(|e| format!("{e:#}"))
}

fn quic_addr(gateway: &Gateway) -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], gateway.port()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quic_endpoint_refuses_clearly_and_keeps_serving() -> Result<()> {
    require_root()?;
    let net = TargetNet::create("clr")?;
    let user = ensure_test_user()?;
    let _sshd = Sshd::start(&net, SshdOptions::default())?;
    let gateway = Gateway::start(GatewayOptions::for_net(&net).target(
        "beta",
        &net.ns_addr().to_string(),
        22,
    ))
    .await?;
    let admin = login_admin(&gateway).await?;
    let once = create_user(&admin, "carol", "user", "").await?;
    first_login(&gateway, "carol", &once, "carol-password-1").await?;
    add_policy(&admin, "carol-alpha", "user:carol", "name:alpha").await?;
    let addr = quic_addr(&gateway);

    let cli = Cli::new(&gateway)?;
    cli.login(&gateway, "carol", "carol-password-1")?;
    let (code, out, _) = cli.run(&["targets"])?;
    assert_eq!(code, 0);
    assert!(
        out.contains("alpha") && !out.contains("beta"),
        "carol sees only alpha:\n{out}"
    );

    // A target outside carol's policy, and one that does not exist: refused before any dial.
    for target in ["beta", "no-such-target"] {
        let mut ssh = cli.spawn(&["ssh", &format!("{}@{target}", user.name)])?;
        ssh.exp_string("password: ")?;
        ssh.send_line(&user.password)?;
        ssh.exp_string("not allowed to connect")?;
        ssh.exp_eof()?;
        assert_eq!(exit_code(ssh.process().wait()?), Some(255), "{target}");
    }

    // Garbage on streams of a valid connection: each stream is refused in words, the connection stays.
    let cert = std::fs::read_to_string(cli.config_dir().join("client-cert.pem"))?;
    let key = std::fs::read_to_string(cli.config_dir().join("client-key.pem"))?;
    let (_endpoint, conn) = quic_connect(addr, &cert, &key).await?;
    let long_name = [b"SP\x01\x01\x01\x00".as_slice(), &[b'a'; 256]].concat();
    let garbage: Vec<(&[u8], &str)> = vec![
        (
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            "does not start with the sallyport preamble",
        ),
        (b"SP\x07\x01\x00\x00", "version 7 is not supported"),
        (b"SP\x01\x63\x00\x00", "unknown stream kind 99"),
        (&long_name, "too long"),
        (b"SP\x01\x01\x00\x02a\x07", "target name is not valid"),
        (b"SP\x01", "ended before its preamble"),
        (&[0u8; 300], "does not start with the sallyport preamble"),
    ];
    for (bytes, expected) in &garbage {
        let answer = exchange(&conn, bytes).await?;
        assert!(
            answer.contains("malformed") && answer.contains(expected),
            "{:?}: {answer}",
            String::from_utf8_lossy(bytes)
        );
    }
    let terminal = b"SP\x01\x01\x00\x05alpha".to_vec();
    let frames: Vec<(Vec<u8>, &str)> = vec![
        (frame(9, b"x"), "unknown frame type 9"),
        (vec![2, 0xff, 0xff, 0xff, 0xff], "larger than allowed"),
        (
            frame(1, b"{\"type\":\"shell\"}"),
            "malformed control message",
        ),
        (frame(2, b"ls\r"), "the first message must be a connect"),
    ];
    for (bytes, expected) in &frames {
        let answer = exchange(&conn, &[terminal.as_slice(), bytes].concat()).await?;
        assert!(answer.contains(expected), "{expected}: {answer}");
    }
    let listed = exchange(&conn, b"SP\x01\x02\x00\x00").await?;
    assert!(
        listed.contains("\"name\":\"alpha\""),
        "the connection did not survive the garbage: {listed}"
    );
    // Garbage datagrams to the port change nothing.
    let socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
    let mut seed = 0x5eed_u64;
    for index in 0..200u32 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let len = 1 + (seed % 1400) as usize;
        let datagram: Vec<u8> = (0..len)
            .map(|i| (seed >> (i % 56)) as u8 ^ index as u8)
            .collect();
        socket.send_to(&datagram, addr)?;
    }
    let (code, out, err) = cli.run(&["targets"])?;
    assert_eq!(code, 0, "{out}{err}");

    // Foreign certificate: another CA with the same name.
    let now = SystemTime::now();
    let foreign_ca = KeyPair::generate_for(&PKCS_ED25519)?;
    let (foreign_cert, foreign_key) = issue(
        &foreign_ca,
        "Sallyport user CA",
        now - Duration::from_secs(60),
        now + Duration::from_secs(3600),
    )?;
    let refused = try_targets(addr, &foreign_cert, &foreign_key).await;
    assert!(
        refused.is_err(),
        "a foreign certificate was accepted: {refused:?}"
    );

    // The gateway's own CA key: an expired certificate is refused in the handshake, while a valid one
    // it never issued is refused by its records (so the CA is right and the expiry is what counts).
    let ca_key = KeyPair::from_pem(&std::fs::read_to_string(
        gateway.state_dir().join("user-ca-key.pem"),
    )?)?;
    let (expired_cert, expired_key) = issue(
        &ca_key,
        "Sallyport user CA",
        now - Duration::from_secs(7200),
        now - Duration::from_secs(3600),
    )?;
    let refused = try_targets(addr, &expired_cert, &expired_key).await;
    assert!(
        refused.is_err(),
        "an expired certificate was accepted: {refused:?}"
    );
    let (unknown_cert, unknown_key) = issue(
        &ca_key,
        "Sallyport user CA",
        now - Duration::from_secs(60),
        now + Duration::from_secs(3600),
    )?;
    match try_targets(addr, &unknown_cert, &unknown_key).await {
        Err(error) => assert!(
            error.contains("not issued by this gateway"),
            "unexpected refusal: {error}"
        ),
        Ok(answer) => bail!("a certificate the gateway never issued was accepted: {answer}"),
    }

    // Expired in the gateway's records (a certificate outliving its recorded lifetime).
    let expiring = Cli::new(&gateway)?;
    expiring.login(&gateway, "carol", "carol-password-1")?;
    let fingerprint = {
        use sha2::Digest;
        let pem = std::fs::read_to_string(expiring.config_dir().join("client-cert.pem"))?;
        let der = rustls::pki_types::pem::PemObject::from_pem_slice(pem.as_bytes())
            .map(|der: rustls::pki_types::CertificateDer<'_>| der.to_vec())?;
        hex::encode(sha2::Sha256::digest(&der))
    };
    let db = rusqlite::Connection::open(gateway.state_db())?;
    db.busy_timeout(Duration::from_secs(5))?;
    let changed = db.execute(
        "UPDATE client_certs SET expires_at_ms = ?1 WHERE fingerprint = ?2",
        rusqlite::params![
            now.duration_since(UNIX_EPOCH)?.as_millis() as i64 - 1000,
            fingerprint
        ],
    )?;
    assert_eq!(changed, 1);
    let (code, out, err) = expiring.run(&["targets"])?;
    assert_ne!(code, 0, "{out}");
    assert!(err.contains("certificate has expired"), "{err}");

    // Revoked: logout revokes the certificate; a copy kept aside is refused.
    let leaving = Cli::new(&gateway)?;
    leaving.login(&gateway, "carol", "carol-password-1")?;
    let kept_cert = std::fs::read_to_string(leaving.config_dir().join("client-cert.pem"))?;
    let kept_key = std::fs::read_to_string(leaving.config_dir().join("client-key.pem"))?;
    let (code, out, err) = leaving.run(&["logout"])?;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("the certificate is revoked"), "{out}");
    assert!(!leaving.config_dir().join("client-key.pem").exists());
    let (code, _, err) = leaving.run(&["targets"])?;
    assert_ne!(code, 0);
    assert!(err.contains("logged out"), "{err}");
    match try_targets(addr, &kept_cert, &kept_key).await {
        Err(error) => assert!(error.contains("revoked"), "unexpected refusal: {error}"),
        Ok(answer) => bail!("a logged-out certificate was accepted: {answer}"),
    }

    // Disabled: carol's live session ends at once and her certificate is refused.
    let mut ssh = cli.spawn(&["ssh", &format!("{}@alpha", user.name)])?;
    ssh.exp_string("password: ")?;
    ssh.send_line(&user.password)?;
    ssh.send_line("echo still-$((1+1))-here")?;
    ssh.exp_string("still-2-here")?;
    let users_page = admin.get("/admin/users").await?.text();
    let carol_id = users_page
        .split(r#"<tr data-user="carol">"#)
        .nth(1)
        .and_then(|row| row.split("/admin/users/").nth(1))
        .and_then(|rest| rest.split('/').next())
        .context("carol is not on the users page")?
        .to_owned();
    let response = admin
        .post_form(
            &format!("/admin/users/{carol_id}/disable"),
            &[],
            Some(&admin.origin()),
        )
        .await?;
    assert_eq!(response.status, 303, "{}", response.text());
    ssh.exp_string("disabled by an administrator")?;
    ssh.exp_eof()?;
    assert_eq!(exit_code(ssh.process().wait()?), Some(255));
    let (code, _, err) = cli.run(&["targets"])?;
    assert_ne!(code, 0);
    assert!(err.contains("your account is disabled"), "{err}");
    Ok(())
}
