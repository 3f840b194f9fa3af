//! `sallyport-bench quic` (run by `cargo xtask bench quic`): the native client's QUIC path against the
//! browser's WebSocket path, through the same gateway to the same real sshd, in one run.
//!
//! - Bulk output: the same PTY command relayed over a QUIC stream and over the TLS WebSocket; the ratio
//!   of median throughputs (QUIC ÷ WebSocket).
//! - CPU per GB relayed: the gateway process's CPU time (user + system, from /proc) over the bulk runs of
//!   each path, per GB of terminal output.
//! - Session set-up: a new QUIC connection (handshake with the client certificate) plus one request,
//!   cold (no TLS session to resume) and resumed (a TLS 1.3 ticket from an earlier connection; the run
//!   counts that the tickets were really used); medians.
//!
//! Every loop is bounded in count and time; traffic goes only to loopback and the namespace this run
//! creates.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::common::cpu_seconds;
use anyhow::{Context, Result, bail};
use rustls::client::{ClientSessionMemoryCache, ClientSessionStore};
use rustls::pki_types::ServerName;
use sallyport_core::quic::{Frame, FrameDecoder, FrameType, Preamble};

use crate::cli::{Cli, quic_client_config, quic_connect_with};
use crate::portal::{ADMIN_PASSWORD, Terminal, login_admin, target_id};
use crate::{
    Gateway, GatewayOptions, Sshd, SshdOptions, TargetNet, ensure_test_user, require_root,
};

const BULK_BYTES: u64 = 64 * 1024 * 1024;
const BULK_RUNS: usize = 5;
const SETUP_RUNS: usize = 30;

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// A TLS session store that counts the TLS 1.3 tickets it hands out (each one a resumption attempt).
#[derive(Debug)]
struct CountingStore {
    inner: ClientSessionMemoryCache,
    taken: AtomicUsize,
}

impl ClientSessionStore for CountingStore {
    fn set_kx_hint(&self, server_name: ServerName<'static>, group: rustls::NamedGroup) {
        self.inner.set_kx_hint(server_name, group)
    }
    fn kx_hint(&self, server_name: &ServerName<'_>) -> Option<rustls::NamedGroup> {
        self.inner.kx_hint(server_name)
    }
    fn set_tls12_session(
        &self,
        server_name: ServerName<'static>,
        value: rustls::client::Tls12ClientSessionValue,
    ) {
        self.inner.set_tls12_session(server_name, value)
    }
    fn tls12_session(
        &self,
        server_name: &ServerName<'_>,
    ) -> Option<rustls::client::Tls12ClientSessionValue> {
        self.inner.tls12_session(server_name)
    }
    fn remove_tls12_session(&self, server_name: &ServerName<'static>) {
        self.inner.remove_tls12_session(server_name)
    }
    fn insert_tls13_ticket(
        &self,
        server_name: ServerName<'static>,
        value: rustls::client::Tls13ClientSessionValue,
    ) {
        self.inner.insert_tls13_ticket(server_name, value)
    }
    fn take_tls13_ticket(
        &self,
        server_name: &ServerName<'static>,
    ) -> Option<rustls::client::Tls13ClientSessionValue> {
        let ticket = self.inner.take_tls13_ticket(server_name);
        if ticket.is_some() {
            self.taken.fetch_add(1, Ordering::Relaxed);
        }
        ticket
    }
}

/// A terminal over a QUIC stream, speaking the frames the CLI speaks.
struct QuicTerminal {
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    decoder: FrameDecoder,
}

impl QuicTerminal {
    async fn open(
        conn: &quinn::Connection,
        username: &str,
        password: &str,
    ) -> Result<QuicTerminal> {
        let (mut send, recv) = conn.open_bi().await?;
        send.write_all(
            &Preamble::Terminal {
                target: "alpha".into(),
            }
            .encode()?,
        )
        .await?;
        let connect = serde_json::json!({"type": "connect", "username": username, "password": password, "cols": 100, "rows": 30});
        send.write_all(&Frame::encode(
            FrameType::Control,
            connect.to_string().as_bytes(),
        ))
        .await?;
        let mut terminal = QuicTerminal {
            send,
            recv,
            decoder: FrameDecoder::new(16 * 1024 * 1024),
        };
        match terminal.next(Duration::from_secs(20)).await? {
            Frame::Control(json) if String::from_utf8_lossy(&json).contains("\"connected\"") => {
                Ok(terminal)
            }
            other => bail!("the QUIC session did not open: {other:?}"),
        }
    }

    async fn next(&mut self, timeout: Duration) -> Result<Frame> {
        let deadline = Instant::now() + timeout;
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            if let Some(frame) = self.decoder.next_frame()? {
                return Ok(frame);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.recv.read(&mut chunk)).await {
                Err(_) => bail!("no frame within {timeout:?}"),
                Ok(Ok(Some(n))) => self.decoder.extend(&chunk[..n]),
                Ok(Ok(None)) => bail!("the QUIC session ended"),
                Ok(Err(error)) => return Err(error.into()),
            }
        }
    }

    async fn type_text(&mut self, text: &str) -> Result<()> {
        self.send
            .write_all(&Frame::encode(FrameType::Data, text.as_bytes()))
            .await?;
        Ok(())
    }

    /// Counts output bytes until `marker` appears.
    async fn read_bulk_until(&mut self, marker: &str, timeout: Duration) -> Result<u64> {
        let deadline = Instant::now() + timeout;
        let mut total = 0u64;
        let mut tail: Vec<u8> = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if let Frame::Data(bytes) = self.next(left).await? {
                total += bytes.len() as u64;
                tail.extend_from_slice(&bytes);
                if tail.windows(marker.len()).any(|w| w == marker.as_bytes()) {
                    return Ok(total);
                }
                let keep = marker.len().min(tail.len());
                tail.drain(..tail.len() - keep);
            }
        }
    }
}

/// One set-up: a new connection and a status request answered.
async fn setup_once(
    endpoint: &quinn::Endpoint,
    config: quinn::ClientConfig,
    addr: SocketAddr,
) -> Result<f64> {
    let started = Instant::now();
    let conn = quic_connect_with(endpoint, config, addr).await?;
    let (mut send, mut recv) = conn.open_bi().await?;
    send.write_all(&Preamble::Status.encode()?).await?;
    send.finish()?;
    let answer = tokio::time::timeout(Duration::from_secs(10), recv.read_to_end(64 * 1024))
        .await
        .context("no status answer")??;
    let took = started.elapsed().as_secs_f64();
    if !String::from_utf8_lossy(&answer).contains("\"username\"") {
        bail!("unexpected status answer");
    }
    conn.close(0u32.into(), b"done");
    Ok(took)
}

/// Runs the benchmark and prints its figures.
pub async fn run() -> Result<()> {
    require_root()?;
    let net = TargetNet::create("bq")?;
    let user = ensure_test_user()?;
    let sshd = Sshd::start(&net, SshdOptions::default())?;
    let mut options = GatewayOptions::for_net(&net);
    options.env.push(("RUST_LOG".into(), "warn".into()));
    let gateway = Gateway::start(options).await?;
    let client = login_admin(&gateway).await?;
    let alpha = target_id(&client, "alpha").await?;
    let cli = Cli::new(&gateway)?;
    tokio::task::block_in_place(|| cli.login(&gateway, "admin", ADMIN_PASSWORD))?;
    let cert = std::fs::read_to_string(cli.config_dir().join("client-cert.pem"))?;
    let key = std::fs::read_to_string(cli.config_dir().join("client-key.pem"))?;
    let addr = SocketAddr::from(([127, 0, 0, 1], gateway.port()));
    let pid = gateway.pid().context("gateway not running")?;
    println!(
        "sallyport-bench quic: gateway {} (pid {pid}), target sshd at {}",
        gateway.url(),
        net.ns_addr()
    );

    // Bulk output and CPU, QUIC and WebSocket alternating.
    let command =
        format!("head -c {BULK_BYTES} /dev/zero | tr '\\0' a; echo; echo bulk-$((1+1))-done");
    let endpoint = quinn::Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    let conn = quic_connect_with(&endpoint, quic_client_config(&cert, &key, None)?, addr).await?;
    let mut quic = QuicTerminal::open(&conn, &user.name, &user.password).await?;
    quic.type_text("stty -echo; PS1='ready> '\r").await?;
    quic.read_bulk_until("ready> ", Duration::from_secs(10))
        .await?;
    let mut ws = Terminal::open(&client, alpha, &user.name, &user.password).await?;
    ws.expect_connected().await?;
    ws.type_text("stty -echo; PS1='ready> '\r").await?;
    ws.read_bulk_until("ready> ", Duration::from_secs(10))
        .await?;
    let (mut quic_rates, mut ws_rates) = (Vec::new(), Vec::new());
    let (mut quic_cpu, mut ws_cpu) = (0.0, 0.0);
    for _ in 0..BULK_RUNS {
        let cpu = cpu_seconds(pid)?;
        let started = Instant::now();
        quic.type_text(&format!("{command}\r")).await?;
        let bytes = quic
            .read_bulk_until("bulk-2-done", Duration::from_secs(120))
            .await?;
        quic_rates.push(bytes as f64 / started.elapsed().as_secs_f64() / 1e6);
        quic_cpu += cpu_seconds(pid)? - cpu;
        if bytes < BULK_BYTES {
            bail!("only {bytes} of {BULK_BYTES} bytes arrived over QUIC");
        }

        let cpu = cpu_seconds(pid)?;
        let started = Instant::now();
        ws.type_text(&format!("{command}\r")).await?;
        let bytes = ws
            .read_bulk_until("bulk-2-done", Duration::from_secs(120))
            .await?;
        ws_rates.push(bytes as f64 / started.elapsed().as_secs_f64() / 1e6);
        ws_cpu += cpu_seconds(pid)? - cpu;
        if bytes < BULK_BYTES {
            bail!("only {bytes} of {BULK_BYTES} bytes arrived over the WebSocket");
        }
    }
    let (quic_mbps, ws_mbps) = (median(&mut quic_rates), median(&mut ws_rates));
    let gb = (BULK_BYTES * BULK_RUNS as u64) as f64 / 1e9;
    println!(
        "bulk output, {} MiB through a PTY, median of {BULK_RUNS}: QUIC {quic_mbps:.1} MB/s, WebSocket {ws_mbps:.1} MB/s; ratio QUIC / WebSocket {:.2}",
        BULK_BYTES >> 20,
        quic_mbps / ws_mbps
    );
    println!(
        "gateway CPU per GB relayed: QUIC {:.2} s, WebSocket {:.2} s; ratio QUIC / WebSocket {:.2}",
        quic_cpu / gb,
        ws_cpu / gb,
        quic_cpu / ws_cpu
    );
    ws.close().await;
    drop(quic);
    conn.close(0u32.into(), b"done");

    // Set-up time, cold and resumed.
    let mut cold = Vec::with_capacity(SETUP_RUNS);
    for _ in 0..SETUP_RUNS {
        let endpoint = quinn::Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        cold.push(setup_once(&endpoint, quic_client_config(&cert, &key, None)?, addr).await? * 1e3);
    }
    let store = Arc::new(CountingStore {
        inner: ClientSessionMemoryCache::new(64),
        taken: AtomicUsize::new(0),
    });
    let resuming = quic_client_config(&cert, &key, Some(store.clone()))?;
    let endpoint = quinn::Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    // The first connection only collects a ticket.
    setup_once(&endpoint, resuming.clone(), addr).await?;
    let mut resumed = Vec::with_capacity(SETUP_RUNS);
    for _ in 0..SETUP_RUNS {
        resumed.push(setup_once(&endpoint, resuming.clone(), addr).await? * 1e3);
    }
    let tickets = store.taken.load(Ordering::Relaxed);
    let (cold_ms, resumed_ms) = (median(&mut cold), median(&mut resumed));
    println!(
        "session set-up (connect + one request), median of {SETUP_RUNS}: cold {cold_ms:.2} ms, resumed {resumed_ms:.2} ms ({tickets} of {SETUP_RUNS} resumed with a TLS 1.3 ticket); ratio resumed / cold {:.2}",
        resumed_ms / cold_ms
    );
    drop(sshd);
    Ok(())
}
