//! Self-tests of the e2e harness that need no gateway: namespaces, a real sshd reached with the
//! OpenSSH client, headless Chromium, and the HTTPS/WebSocket client against a tiny local
//! HTTPS server (which also shows that Chromium keeps `__Host-` cookies over a self-signed origin).

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use fantoccini::Locator;
use futures_util::{SinkExt, StreamExt};
use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sallyport_e2e::common::{require_tool, run_ok, run_with_timeout};
use sallyport_e2e::http::der_fingerprint;
use sallyport_e2e::netns::LoopbackNs;
use sallyport_e2e::tunnel::{NsSockets, spawn_connect_proxy};
use sallyport_e2e::{
    Browser, Client, Gateway, GatewayOptions, HandshakeError, KeyPair, Sshd, SshdOptions,
    TargetNet, ensure_test_user, require_root,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

fn ssh(net: &TargetNet, key: &KeyPair, command: &str) -> Result<std::process::Output> {
    run_with_timeout(
        Command::new("ssh")
            .arg("-i")
            .arg(key.private_key_path())
            .args([
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "ConnectTimeout=10",
                "-o",
                "LogLevel=ERROR",
            ])
            .arg(format!("sp-e2e@{}", net.ns_addr()))
            .arg(command),
        Duration::from_secs(30),
    )
}

#[test]
fn ssh_key_login_to_sshd_in_namespace() -> Result<()> {
    require_root()?;
    let user = ensure_test_user()?;
    assert_eq!(user.name, "sp-e2e");
    assert!(user.home.is_dir());
    let net = TargetNet::create("harness-ssh")?;
    let sshd = Sshd::start(&net, SshdOptions::default())?;
    let key = KeyPair::generate_ed25519()?;
    sshd.authorize_key(key.public_line())?;

    let out = ssh(&net, &key, "echo marker-123")?;
    assert!(
        out.status.success(),
        "ssh failed: {}\n--- sshd log ---\n{}",
        String::from_utf8_lossy(&out.stderr),
        sshd.log()
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "marker-123");
    assert!(
        sshd.log().contains("Accepted publickey for sp-e2e"),
        "sshd log: {}",
        sshd.log()
    );

    // A key that was never authorized is refused.
    let stranger = KeyPair::generate_ed25519()?;
    let out = ssh(&net, &stranger, "echo should-not-run")?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Permission denied"));
    Ok(())
}

#[test]
fn sshd_host_key_can_be_replaced() -> Result<()> {
    require_root()?;
    ensure_test_user()?;
    let net = TargetNet::create("harness-hk")?;
    let mut sshd = Sshd::start(&net, SshdOptions::default())?;
    let scan = |sshd: &Sshd| -> Result<String> {
        let out = run_ok(Command::new("ssh-keyscan").args([
            "-T",
            "5",
            "-t",
            "ed25519",
            &sshd.addr().to_string(),
        ]))?;
        // "<host> ssh-ed25519 AAAA..." -> "ssh-ed25519 AAAA..."
        let line = out
            .lines()
            .find(|l| !l.starts_with('#'))
            .context("no key")?;
        Ok(line
            .split_whitespace()
            .skip(1)
            .take(2)
            .collect::<Vec<_>>()
            .join(" "))
    };
    let pub_line = |sshd: &Sshd| -> Result<String> {
        Ok(sshd
            .host_key_pub()?
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" "))
    };
    let before = scan(&sshd)?;
    assert_eq!(before, pub_line(&sshd)?);
    let fp_before = sshd.host_key_fingerprint()?;
    assert!(fp_before.starts_with("SHA256:"));

    sshd.regenerate_host_key_and_restart()?;
    let after = scan(&sshd)?;
    assert_ne!(before, after, "the served host key did not change");
    assert_eq!(after, pub_line(&sshd)?);
    assert_ne!(fp_before, sshd.host_key_fingerprint()?);
    Ok(())
}

#[test]
fn target_nets_are_distinct_and_removed_on_drop() -> Result<()> {
    require_root()?;
    let a = TargetNet::create("harness-a")?;
    let b = TargetNet::create("harness-b")?;
    assert_ne!(a.cidr(), b.cidr());
    assert!(a.name().starts_with("spe2e-harness-a-"));
    assert!(a.host_if().len() <= 15 && a.ns_if().len() <= 15);

    // Inside: lo is up and the namespace end has .2; an extra address can be added.
    let [o1, o2, o3, _] = a.ns_addr().octets();
    let extra = std::net::Ipv4Addr::new(o1, o2, o3, 9);
    a.add_addr(extra.into())?;
    // An address outside the /24 is routed to the namespace from the root side.
    let outside = std::net::Ipv4Addr::new(10, 232, o3, 7);
    a.add_addr(outside.into())?;
    let inside = run_ok(a.exec("ip").args(["-o", "addr"]))?;
    assert!(
        inside.contains(&format!("inet {}/24", a.ns_addr())),
        "{inside}"
    );
    assert!(inside.contains(&format!("inet {extra}/24")), "{inside}");
    assert!(inside.contains(&format!("inet {outside}/32")), "{inside}");
    assert!(inside.contains("inet 127.0.0.1/8"), "{inside}");
    let route = run_ok(Command::new("ip").args(["route", "get", &outside.to_string()]))?;
    assert!(route.contains(a.host_if()), "{route}");
    // The root side has .1 on its veth end.
    let root = run_ok(Command::new("ip").args(["-o", "addr", "show", "dev", a.host_if()]))?;
    assert!(
        root.contains(&format!("inet {}/24", a.host_addr())),
        "{root}"
    );

    let (name, host_if) = (a.name().to_owned(), a.host_if().to_owned());
    drop(a);
    let list = run_ok(Command::new("ip").args(["netns", "list"]))?;
    assert!(!list.contains(&name), "namespace {name} still exists");
    let link = run_with_timeout(
        Command::new("ip").args(["link", "show", &host_if]),
        Duration::from_secs(10),
    )?;
    assert!(!link.status.success(), "veth {host_if} still exists");
    drop(b);
    Ok(())
}

#[tokio::test]
async fn browser_reads_a_data_url() -> Result<()> {
    let browser = Browser::start().await?;
    let c = browser.client();
    c.goto("data:text/html,<p id=x>hello</p>").await?;
    let text = text_of(c, "x").await?;
    assert_eq!(text, "hello");

    let shot = tempfile::NamedTempFile::new()?;
    browser.screenshot(shot.path()).await?;
    let png = std::fs::read(shot.path())?;
    assert!(png.starts_with(b"\x89PNG"), "screenshot is not a PNG");

    let pids = browser.browser_pids();
    assert!(!pids.is_empty(), "chromedriver has no browser children");
    drop(browser);
    let gone = sallyport_e2e::wait_until(Duration::from_secs(5), || {
        pids.iter()
            .all(|p| !sallyport_e2e::common::pid_alive(*p) || is_zombie(*p))
    });
    assert!(gone, "browser processes survived the drop: {pids:?}");
    Ok(())
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rfind(')')
                .map(|i| s[i + 1..].trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

/// A tiny HTTPS server on 127.0.0.1 with a self-signed certificate. Routes:
/// `/set` sets a `__Host-` cookie, `/check` echoes the Cookie header (chunked), `POST /form`
/// echoes the Origin header and the body, `/ws` is a WebSocket echo that checks Origin.
struct TinyServer {
    port: u16,
    fingerprint: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TinyServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn tiny_server() -> Result<TinyServer> {
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()])?;
    let der: CertificateDer<'static> = cert.cert.der().clone();
    let fingerprint = der_fingerprint(&der);
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key_pair.serialize_der()));
    let config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![der], key)?;
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let serve = async {
                    let tls = acceptor.accept(tcp).await?;
                    serve_one(tls, port).await
                };
                let _ = tokio::time::timeout(Duration::from_secs(20), serve).await;
            });
        }
    });
    Ok(TinyServer {
        port,
        fingerprint,
        task,
    })
}

async fn serve_one(
    mut tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    port: u16,
) -> Result<()> {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let mut chunk = [0u8; 4096];
        let n = tls.read(&mut chunk).await?;
        if n == 0 {
            bail!("eof in request head");
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let mut body = buf[head_end + 4..].to_vec();
    let len: usize = header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while body.len() < len {
        let mut chunk = [0u8; 4096];
        let n = tls.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("/");
    let own_origin = format!("https://127.0.0.1:{port}");
    let response = match path {
        "/set" => "HTTP/1.1 200 OK\r\nSet-Cookie: __Host-sp=abc123; Path=/; Secure; HttpOnly; SameSite=Strict\r\nContent-Type: text/html\r\nContent-Length: 15\r\nConnection: close\r\n\r\n<p id=x>set</p>".to_owned(),
        "/check" => {
            let cookie = header("cookie").unwrap_or_else(|| "none".to_owned());
            let html = format!("<p id=cookie>{cookie}</p>");
            let (a, b) = html.split_at(html.len() / 2);
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
                a.len(),
                b.len()
            )
        }
        "/form" => {
            let text = format!(
                "origin={}\nbody={}",
                header("origin").unwrap_or_default(),
                String::from_utf8_lossy(&body)
            );
            format!(
                "HTTP/1.1 303 See Other\r\nLocation: /done\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            )
        }
        "/ws" => {
            if header("origin").as_deref() != Some(own_origin.as_str()) {
                "HTTP/1.1 403 Forbidden\r\nContent-Length: 14\r\nConnection: close\r\n\r\norigin refused".to_owned()
            } else {
                let key = header("sec-websocket-key").context("no websocket key")?;
                let accept = derive_accept_key(key.as_bytes());
                tls.write_all(
                    format!(
                        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
                    )
                    .as_bytes(),
                )
                .await?;
                let mut ws =
                    tokio_tungstenite::WebSocketStream::from_raw_socket(tls, Role::Server, None)
                        .await;
                while let Some(msg) = ws.next().await {
                    match msg? {
                        Message::Text(t) => ws.send(Message::text(format!("echo:{t}"))).await?,
                        Message::Close(_) => break,
                        _ => {}
                    }
                }
                return Ok(());
            }
        }
        _ => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_owned(),
    };
    tls.write_all(response.as_bytes()).await?;
    tls.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn http_client_pins_keeps_cookies_and_speaks_websocket() -> Result<()> {
    let server = tiny_server().await?;
    let base = format!("https://127.0.0.1:{}/", server.port);

    // A wrong pin fails the handshake; the right one (with colons, upper case) works.
    let wrong = Client::new(&base, Some(&"00".repeat(32)))?;
    let err = wrong
        .get("/set")
        .await
        .err()
        .context("wrong pin accepted")?;
    assert!(format!("{err:#}").contains("pin mismatch"), "{err:#}");
    let colon_pin = server
        .fingerprint
        .to_ascii_uppercase()
        .as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(":");
    let client = Client::new(&base, Some(&colon_pin))?;
    assert_eq!(client.server_fingerprint().await?, server.fingerprint);

    let resp = client.get("/set").await?;
    assert_eq!(resp.status, 200);
    assert_eq!(client.cookie("__Host-sp").as_deref(), Some("abc123"));
    let resp = client.get("/check").await?;
    assert_eq!(resp.text(), "<p id=cookie>__Host-sp=abc123</p>");

    let origin = client.origin();
    let resp = client
        .post_form("/form", &[("user", "a b"), ("pw", "x&y")], Some(&origin))
        .await?;
    assert_eq!(resp.status, 303);
    assert_eq!(resp.location(), Some("/done"));
    assert_eq!(
        resp.text(),
        format!("origin={origin}\nbody=user=a+b&pw=x%26y")
    );

    // WebSocket: a foreign Origin is refused with its HTTP status; the own origin is echoed.
    let refused = client
        .ws_connect("/ws", None, Some("https://evil.example"))
        .await;
    match refused {
        Err(HandshakeError::Refused { status, body }) => {
            assert_eq!(status, 403);
            assert_eq!(body, "origin refused");
        }
        Err(e) => bail!("unexpected handshake error: {e}"),
        Ok(_) => bail!("a foreign origin was accepted"),
    }
    let mut ws = client.ws_connect_same_origin("/ws").await?;
    ws.send(Message::text("ping-1")).await?;
    let reply = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await?
        .context("websocket closed")??;
    assert_eq!(reply, Message::text("echo:ping-1"));
    ws.close(None).await?;
    Ok(())
}

#[tokio::test]
async fn browser_keeps_host_cookie_over_self_signed_https() -> Result<()> {
    let server = tiny_server().await?;
    let browser = Browser::start().await?;
    let c = browser.client();
    let base = format!("https://127.0.0.1:{}", server.port);

    // Veths come and go in the root namespace meanwhile, as they do when tests run in
    // parallel; the browser's own namespace must keep it from seeing ERR_NETWORK_CHANGED.
    let churn = std::thread::spawn(|| -> Result<()> {
        for _ in 0..6 {
            let net = TargetNet::create("churn")?;
            std::thread::sleep(Duration::from_millis(100));
            drop(net);
        }
        Ok(())
    });
    for _ in 0..4 {
        c.goto(&format!("{base}/set")).await?;
        assert_eq!(text_of(c, "x").await?, "set");
        c.goto(&format!("{base}/check")).await?;
        assert_eq!(text_of(c, "cookie").await?, "__Host-sp=abc123");
    }
    churn
        .join()
        .map_err(|_| anyhow::anyhow!("churn thread panicked"))??;
    browser.close().await?;
    Ok(())
}

#[test]
fn browser_proxy_tunnels_only_to_loopback() -> Result<()> {
    use std::io::{Read, Write};
    let ns = LoopbackNs::create("harness-proxy")?;
    let sockets = NsSockets::enter(ns.name())?;
    let _proxy = spawn_connect_proxy(&sockets, 3128)?;
    let proxy_addr = std::net::SocketAddr::from(([127, 0, 0, 1], 3128));
    let ask = |request: &str| -> Result<(String, std::net::TcpStream)> {
        let mut s = sockets.connect(proxy_addr)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.write_all(request.as_bytes())?;
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if s.read(&mut byte)? == 0 {
                break;
            }
            head.push(byte[0]);
        }
        Ok((String::from_utf8_lossy(&head).into_owned(), s))
    };
    // Not loopback, or not a proxy request: refused without dialling anything.
    let (head, _) = ask("CONNECT 192.0.2.1:443 HTTP/1.1\r\nHost: 192.0.2.1:443\r\n\r\n")?;
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    let (head, _) = ask("GET http://192.0.2.1:80/ HTTP/1.1\r\nHost: 192.0.2.1\r\n\r\n")?;
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    let (head, _) = ask("GET /callback HTTP/1.1\r\nHost: 127.0.0.1:1\r\n\r\n")?;
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    // Plain HTTP to a loopback port (a program's callback): passed on in origin form, or 502 when
    // nothing listens there.
    let (head, _) = ask("GET http://127.0.0.1:1/ HTTP/1.1\r\nHost: 127.0.0.1:1\r\n\r\n")?;
    assert!(head.starts_with("HTTP/1.1 502"), "{head}");
    let callback = std::net::TcpListener::bind("127.0.0.1:0")?;
    let callback_port = callback.local_addr()?.port();
    let program = std::thread::spawn(move || -> Result<String> {
        let (mut conn, _) = callback.accept()?;
        conn.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(conn.try_clone()?), &mut line)?;
        conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
        Ok(line)
    });
    let (head, _) = ask(&format!(
        "GET http://127.0.0.1:{callback_port}/callback?code=c HTTP/1.1\r\nHost: 127.0.0.1:{callback_port}\r\n\r\n"
    ))?;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let line = program
        .join()
        .map_err(|_| anyhow::anyhow!("the program thread panicked"))??;
    assert_eq!(line, "GET /callback?code=c HTTP/1.1\r\n");

    // A loopback port of the root namespace: the tunnel carries bytes both ways.
    let target = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = target.local_addr()?.port();
    let echo = std::thread::spawn(move || -> Result<()> {
        let (mut conn, _) = target.accept()?;
        conn.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut buf = [0u8; 5];
        conn.read_exact(&mut buf)?;
        conn.write_all(&buf.map(|b| b.to_ascii_uppercase()))?;
        Ok(())
    });
    let (head, mut tunnel) = ask(&format!(
        "CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n"
    ))?;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    tunnel.write_all(b"hello")?;
    let mut reply = [0u8; 5];
    tunnel.read_exact(&mut reply)?;
    assert_eq!(&reply, b"HELLO");
    echo.join()
        .map_err(|_| anyhow::anyhow!("echo thread panicked"))??;
    Ok(())
}

/// The text of the element with `id`, waiting up to 20 s; the error shows the page it was on.
async fn text_of(c: &fantoccini::Client, id: &str) -> Result<String> {
    let found = c
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Id(id))
        .await;
    match found {
        Ok(element) => Ok(element.text().await?),
        Err(e) => {
            let url = c.current_url().await.map(|u| u.to_string());
            let source = c.source().await.unwrap_or_default();
            bail!(
                "no #{id} ({e}) on {url:?}: {}",
                sallyport_e2e::common::tail(&source, 2000)
            )
        }
    }
}

/// Stands in for the gateway binary: reads the port and state_dir from the config it is given,
/// makes a certificate on first start (printing the password line only then), prints the
/// fingerprint and URL lines and serves HTTPS with `openssl s_server -www`.
const STAND_IN_GATEWAY: &str = r#"#!/bin/sh
set -e
[ "$1" = "--config" ] || { echo "usage: $0 --config FILE" >&2; exit 2; }
cfg="$2"
port=$(sed -n 's/^listen = "127.0.0.1:\([0-9]*\)"$/\1/p' "$cfg")
state=$(sed -n 's/^state_dir = "\(.*\)"$/\1/p' "$cfg")
if [ ! -f "$state/cert.pem" ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=stand-in \
    -days 1 -keyout "$state/key.pem" -out "$state/cert.pem" 2>/dev/null
  echo "password: stand-in-pass-1"
fi
fp=$(openssl x509 -in "$state/cert.pem" -noout -fingerprint -sha256 | cut -d= -f2)
echo "fingerprint: $fp"
echo "url: https://127.0.0.1:$port/"
echo "stand-in gateway starting" >&2
exec openssl s_server -quiet -accept "127.0.0.1:$port" -cert "$state/cert.pem" -key "$state/key.pem" -www
"#;

#[tokio::test]
async fn gateway_harness_drives_a_stand_in_binary() -> Result<()> {
    require_tool("/usr/bin/openssl")?;
    let dir = tempfile::tempdir()?;
    let script = dir.path().join("stand-in-gateway");
    std::fs::write(&script, STAND_IN_GATEWAY)?;
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let opts = GatewayOptions {
        bin: Some(script),
        ..GatewayOptions::default()
            .network("e2e", "10.231.250.0/24")
            .target("alpha", "10.231.250.2", 22)
    };
    let mut gw = Gateway::start(opts).await?;
    assert_eq!(gw.password(), "stand-in-pass-1");
    assert_eq!(gw.url(), format!("https://127.0.0.1:{}/", gw.port()));
    assert!(gw.stderr().contains("stand-in gateway starting"));
    let config = std::fs::read_to_string(gw.config_path())?;
    assert!(config.contains("cidr = \"10.231.250.0/24\""), "{config}");
    assert_eq!(gw.recordings_db(), gw.state_dir().join("recordings.db"));
    assert!(gw.state_dir().join("cert.pem").is_file());

    // The printed fingerprint (colon form) is the served certificate's, and pins the client.
    let fp = gw.fingerprint().context("no fingerprint line")?;
    let client = gw.client()?;
    assert_eq!(client.server_fingerprint().await?, fp);
    let resp = client.get("/").await?;
    assert_eq!(resp.status, 200);
    let pinned_wrong = Client::new(&gw.url(), Some(&"11".repeat(32)))?;
    assert!(pinned_wrong.get("/").await.is_err());

    // A crash, then a restart on the same state: no second password line, same certificate.
    let first_pid = gw.pid().context("no pid")?;
    gw.kill_9()?;
    assert!(!gw.is_running());
    assert!(
        client.get("/").await.is_err(),
        "still answering after kill -9"
    );
    gw.restart().await?;
    assert_ne!(gw.pid(), Some(first_pid));
    assert_eq!(gw.stdout().matches("password:").count(), 1);
    assert_eq!(gw.fingerprint().as_deref(), Some(fp.as_str()));
    assert_eq!(client.get("/").await?.status, 200);

    // SIGTERM stops it; a restart after a clean stop works as well.
    gw.stop()?;
    assert!(!gw.is_running());
    gw.restart().await?;
    assert!(gw.is_running());
    Ok(())
}

/// The private PostgreSQL server (fleet mode's peer) starts as its own cluster, answers SQL over
/// loopback, keeps what it is given, and is gone (process and directory) when dropped.
#[test]
fn a_private_postgresql_cluster_answers_and_is_removed() -> Result<()> {
    let postgres = sallyport_e2e::postgres::Postgres::start()?;
    assert_eq!(postgres.psql("postgres", "SELECT 6 * 7")?.trim(), "42");
    postgres.psql("postgres", "CREATE DATABASE sallyport")?;
    postgres.psql(
        "sallyport",
        "CREATE TABLE t (v text); INSERT INTO t VALUES ('kept')",
    )?;
    assert_eq!(
        postgres.psql("sallyport", "SELECT v FROM t")?.trim(),
        "kept"
    );
    assert!(
        postgres
            .socket_dir()
            .join(format!(".s.PGSQL.{}", postgres.port()))
            .exists(),
        "no Unix socket of its own"
    );
    let pid = postgres.pid().context("no postmaster PID")?;
    let data = postgres.socket_dir().with_file_name("data");
    drop(postgres);
    assert!(
        !sallyport_e2e::common::is_running(pid),
        "the postmaster {pid} outlived the harness"
    );
    assert!(!data.exists(), "the cluster's directory was left behind");
    Ok(())
}
