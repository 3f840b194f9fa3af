//! Slow and greedy clients against the real gateway: a hundred connections that stall in every phase
//! (silent TCP, a ClientHello cut short or trickled, silence after TLS, headers or a body trickled a
//! byte a second, an idle keep-alive connection) are each cut by the server at its deadline while a
//! normal login succeeds; and the per-source connection cap closes connection N+1 before any TLS work.
//!
//! Every slow connection comes from its own loopback source address (127.0.0.10 and up, a few per
//! address) so the per-source cap does not hide the deadlines; the normal login comes from 127.0.0.1.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use sallyport_e2e::http::{SourceDialer, read_head_and_body};
use sallyport_e2e::portal::login_admin;
use sallyport_e2e::{Gateway, GatewayOptions};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The deadlines the test gateway runs with, in seconds (distinct, so a cut tells which one fired).
const HANDSHAKE_SECS: u64 = 2;
const HEADER_SECS: u64 = 3;
const REQUEST_SECS: u64 = 4;
/// The per-source cap the test gateway runs with.
const PER_SOURCE: usize = 8;
/// How much later than its deadline a connection may be cut on a busy two-core machine.
const LATE: Duration = Duration::from_secs(8);
/// How much earlier than its deadline the client may see the cut (its clock starts a little before
/// the server's).
const EARLY: Duration = Duration::from_millis(500);

/// How a connection ended.
#[derive(Debug)]
struct Cut {
    /// From the start of the stalled phase to the server closing the connection.
    after: Duration,
    /// Everything received during the stalled phase.
    received: Vec<u8>,
}

/// Sends `trickle` one byte every `every` (nothing if empty) and reads, until the server closes the
/// connection (EOF, reset or a failed write); fails if it is still open after `limit`.
async fn until_cut<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    trickle: &[u8],
    every: Duration,
    limit: Duration,
) -> Result<Cut> {
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + limit;
    let mut next_write = tokio::time::Instant::now();
    let mut sent = 0;
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            },
            () = tokio::time::sleep_until(next_write), if sent < trickle.len() => {
                let wrote = stream.write_all(&trickle[sent..=sent]).await;
                if wrote.is_err() || stream.flush().await.is_err() {
                    break;
                }
                sent += 1;
                next_write += every;
            },
            () = tokio::time::sleep_until(deadline) => {
                bail!("still open {limit:?} after the stall began ({sent} bytes trickled)")
            },
        }
    }
    Ok(Cut {
        after: started.elapsed(),
        received,
    })
}

/// The ways a connection stalls, each with the deadline that must cut it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stall {
    /// TCP only, not a byte sent.
    SilentTcp,
    /// The first bytes of a ClientHello, then nothing.
    PartialHello,
    /// A ClientHello, one byte a second.
    TrickledHello,
    /// A finished TLS handshake, then nothing.
    SilentAfterTls,
    /// A request head, one byte a second.
    TrickledHeader,
    /// One whole request and its answer on a keep-alive connection, then nothing.
    IdleKeepAlive,
    /// A login form whose body comes one byte a second.
    TrickledBody,
}

impl Stall {
    fn deadline(self) -> Duration {
        Duration::from_secs(match self {
            Stall::SilentTcp | Stall::PartialHello | Stall::TrickledHello => HANDSHAKE_SECS,
            Stall::SilentAfterTls | Stall::TrickledHeader | Stall::IdleKeepAlive => HEADER_SECS,
            Stall::TrickledBody => REQUEST_SECS,
        })
    }
}

/// Opens one stalled connection from `source`, reports on `ready` once it is stalling, and returns
/// how the server cut it.
async fn stall(
    dialer: SourceDialer,
    source: Ipv4Addr,
    kind: Stall,
    ready: tokio::sync::mpsc::Sender<()>,
) -> Result<Cut> {
    let second = Duration::from_secs(1);
    let limit = kind.deadline() + LATE;
    let host = format!("127.0.0.1:{}", dialer.port());
    match kind {
        Stall::SilentTcp | Stall::PartialHello | Stall::TrickledHello => {
            let mut tcp = dialer.tcp(source).await?;
            let hello = dialer.client_hello()?;
            let trickle = match kind {
                Stall::SilentTcp => Vec::new(),
                Stall::PartialHello => {
                    tcp.write_all(&hello[..10]).await?;
                    Vec::new()
                }
                _ => hello,
            };
            let _ = ready.send(()).await;
            until_cut(&mut tcp, &trickle, second, limit).await
        }
        Stall::SilentAfterTls | Stall::TrickledHeader => {
            let mut tls = dialer.tls(source).await?;
            let trickle = match kind {
                Stall::TrickledHeader => {
                    format!("GET /login HTTP/1.1\r\nHost: {host}\r\nUser-Agent: slow\r\n\r\n")
                        .into_bytes()
                }
                _ => Vec::new(),
            };
            let _ = ready.send(()).await;
            until_cut(&mut tls, &trickle, second, limit).await
        }
        Stall::IdleKeepAlive => {
            let mut tls = dialer.tls(source).await?;
            tls.write_all(format!("GET /login HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
                .await?;
            tls.flush().await?;
            let (head, _) = read_head_and_body(&mut tls).await?;
            if !head.starts_with("HTTP/1.1 200") {
                bail!("GET /login answered {head:?}");
            }
            let _ = ready.send(()).await;
            until_cut(&mut tls, &[], second, limit).await
        }
        Stall::TrickledBody => {
            let mut tls = dialer.tls(source).await?;
            let body = b"username=admin&password=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";
            tls.write_all(
                format!(
                    "POST /login HTTP/1.1\r\nHost: {host}\r\nOrigin: https://{host}\r\n\
                     Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                )
                .as_bytes(),
            )
            .await?;
            tls.flush().await?;
            let _ = ready.send(()).await;
            until_cut(&mut tls, body, second, limit).await
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_connections_are_cut_at_their_deadlines_while_logins_work() -> Result<()> {
    let options = GatewayOptions {
        extra_portal: vec![
            format!("tls_handshake_timeout_secs = {HANDSHAKE_SECS}"),
            format!("header_read_timeout_secs = {HEADER_SECS}"),
            format!("request_timeout_secs = {REQUEST_SECS}"),
            format!("max_connections_per_source = {PER_SOURCE}"),
        ],
        ..GatewayOptions::default()
    };
    let gateway = Gateway::start(options).await?;
    let dialer = SourceDialer::new(&gateway)?;

    // A hundred stalled connections, four per source address.
    let plan = [
        (Stall::SilentTcp, 30),
        (Stall::PartialHello, 15),
        (Stall::TrickledHello, 10),
        (Stall::SilentAfterTls, 15),
        (Stall::TrickledHeader, 15),
        (Stall::IdleKeepAlive, 10),
        (Stall::TrickledBody, 5),
    ];
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(128);
    let mut tasks = Vec::new();
    for (kind, count) in plan {
        for _ in 0..count {
            let source = Ipv4Addr::new(127, 0, 0, 10 + (tasks.len() / 4) as u8);
            let task = tokio::spawn(stall(dialer.clone(), source, kind, ready_tx.clone()));
            tasks.push((kind, source, task));
        }
    }
    drop(ready_tx);
    assert_eq!(tasks.len(), 100);
    // Wait until every connection is stalling (a failed one stops waiting for it).
    let mut stalling = 0;
    while let Ok(Some(())) = tokio::time::timeout(Duration::from_secs(20), ready_rx.recv()).await {
        stalling += 1;
        if stalling == tasks.len() {
            break;
        }
    }
    assert_eq!(stalling, tasks.len(), "not every slow connection got going");

    // Meanwhile, a person logs in and sees the target list.
    let client = login_admin(&gateway)
        .await
        .context("login while slow connections are open")?;
    let page = client.get("/targets").await?;
    assert_eq!(page.status, 200, "{}", page.text());

    for (kind, source, task) in tasks {
        let cut = task
            .await?
            .with_context(|| format!("{kind:?} from {source}"))?;
        let deadline = kind.deadline();
        assert!(
            cut.after + EARLY >= deadline && cut.after <= deadline + LATE,
            "{kind:?} from {source}: cut after {:?}, deadline {deadline:?}",
            cut.after
        );
        let received = String::from_utf8_lossy(&cut.received);
        match kind {
            // Cut during the handshake: the server never answered the partial or trickled hello.
            Stall::SilentTcp | Stall::PartialHello | Stall::TrickledHello => assert!(
                cut.received.is_empty(),
                "{kind:?} from {source}: got {} bytes",
                cut.received.len()
            ),
            // No request was complete, so nothing is answered.
            Stall::SilentAfterTls | Stall::TrickledHeader | Stall::IdleKeepAlive => {
                assert!(
                    received.is_empty(),
                    "{kind:?} from {source}: got {received:?}"
                )
            }
            Stall::TrickledBody => assert!(
                received.starts_with("HTTP/1.1 408"),
                "{kind:?} from {source}: got {received:?}"
            ),
        }
    }
    // The slow connections left no trace in the login bookkeeping: the portal still serves.
    assert_eq!(client.get("/targets").await?.status, 200);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_source_cap_closes_the_next_connection_before_tls() -> Result<()> {
    let options = GatewayOptions {
        extra_portal: vec![
            format!("tls_handshake_timeout_secs = {HANDSHAKE_SECS}"),
            format!("max_connections_per_source = {PER_SOURCE}"),
        ],
        ..GatewayOptions::default()
    };
    let gateway = Gateway::start(options).await?;
    let dialer = SourceDialer::new(&gateway)?;
    let hello = dialer.client_hello()?;
    let greedy = Ipv4Addr::new(127, 0, 0, 200);
    let other = Ipv4Addr::new(127, 0, 0, 201);

    // The cap's worth of connections, silent, each holding a place until the handshake deadline.
    let mut held = Vec::new();
    for _ in 0..PER_SOURCE {
        held.push(dialer.tcp(greedy).await?);
    }
    // Connection N+1 from that source is closed without a byte of TLS, long before any deadline.
    let mut refused = dialer.tcp(greedy).await?;
    let started = Instant::now();
    let _ = refused.write_all(&hello).await;
    let cut = until_cut(
        &mut refused,
        &[],
        Duration::from_secs(1),
        Duration::from_secs(20),
    )
    .await?;
    assert!(
        cut.received.is_empty(),
        "connection {} got {} bytes",
        PER_SOURCE + 1,
        cut.received.len()
    );
    assert!(
        started.elapsed() + EARLY < Duration::from_secs(HANDSHAKE_SECS),
        "connection {} was closed only after {:?}, not at once",
        PER_SOURCE + 1,
        started.elapsed()
    );
    // Another source is served as usual: the same hello is answered.
    let mut served = dialer.tcp(other).await?;
    served.write_all(&hello).await?;
    let mut answer = [0u8; 5];
    tokio::time::timeout(Duration::from_secs(10), served.read_exact(&mut answer))
        .await
        .context("no ServerHello for another source")??;
    assert_eq!(answer[0], 0x16, "a TLS handshake record");

    // When the held connections are cut at the handshake deadline, their places come back.
    for mut tcp in held {
        let cut = until_cut(&mut tcp, &[], Duration::from_secs(1), LATE * 2).await?;
        assert!(cut.received.is_empty());
    }
    let mut tls = dialer.tls(greedy).await?;
    tls.write_all(b"GET /login HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await?;
    tls.flush().await?;
    let (head, body) = read_head_and_body(&mut tls).await?;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(String::from_utf8_lossy(&body).contains("Log in"));
    Ok(())
}
