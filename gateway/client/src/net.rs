//! The QUIC connection to the gateway: the saved client certificate, the pinned gateway certificate,
//! ALPN `sallyport/1`, keep-alives; one stream per request, and gateway refusals in plain words.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use quinn::crypto::rustls::QuicClientConfig;
use quinn::{Connection, ConnectionError, Endpoint, RecvStream, SendStream, TransportConfig};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sallyport_core::frames::ServerControl;
use sallyport_core::quic::{ALPN, CLOSE_DONE, Frame, FrameDecoder, Preamble};

use crate::profile;
use sallyport_tls_pin::PinVerifier;

/// Largest frame accepted from the gateway.
pub const MAX_FRAME: usize = 4 * 1024 * 1024;

/// An open connection to the gateway.
pub struct Gateway {
    /// The endpoint (its socket can be replaced: [`Gateway::rebind`]).
    pub endpoint: Endpoint,
    /// The connection.
    pub conn: Connection,
}

/// Plain words for a connection that ended.
pub fn explain(error: &ConnectionError) -> anyhow::Error {
    match error {
        ConnectionError::ApplicationClosed(close) => {
            let reason = String::from_utf8_lossy(&close.reason);
            anyhow!("the gateway closed the connection: {reason}")
        }
        ConnectionError::ConnectionClosed(close) => {
            let reason = String::from_utf8_lossy(&close.reason);
            anyhow!(
                "the gateway refused this client's certificate ({reason}); it may have expired or \
                 come from another gateway: run sallyport login"
            )
        }
        ConnectionError::TimedOut => anyhow!("the gateway stopped answering (timed out)"),
        ConnectionError::LocallyClosed => anyhow!("the connection was closed"),
        other => anyhow!("the connection to the gateway failed: {other}"),
    }
}

/// Maps a stream error to words, preferring the connection's close reason.
fn stream_error(conn: &Connection, what: &str, error: impl std::fmt::Display) -> anyhow::Error {
    match conn.close_reason() {
        Some(reason) => explain(&reason),
        None => anyhow!("{what}: {error}"),
    }
}

impl Gateway {
    /// Connects with the saved login.
    pub async fn connect() -> Result<Gateway> {
        let dir = profile::dir()?;
        let profile = profile::require(&dir)?;
        let key_path = profile::key_path(&dir);
        if !key_path.exists() {
            bail!(
                "you are logged out; run: sallyport login {}",
                profile.gateway
            );
        }
        if profile
            .expires_at_ms
            .is_some_and(|at| at <= crate::login::now_ms())
        {
            bail!(
                "your login has expired; run: sallyport login {}",
                profile.gateway
            );
        }
        let key = PrivateKeyDer::from_pem_file(&key_path)
            .with_context(|| format!("reading {}", key_path.display()))?;
        let cert_path = profile::cert_path(&dir);
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
            .with_context(|| format!("reading {}", cert_path.display()))?
            .collect::<Result<_, _>>()
            .with_context(|| format!("parsing {}", cert_path.display()))?;
        let (host, port) = profile::parse_gateway(&profile.gateway)?;
        let addr: SocketAddr = tokio::net::lookup_host((host.as_str(), port))
            .await
            .with_context(|| format!("cannot resolve {host}"))?
            .next()
            .with_context(|| format!("{host} has no address"))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = PinVerifier::new(Some(profile.fingerprint.clone()), provider.clone());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_auth_cert(certs, key)
            .context("the saved key and certificate do not fit together; run sallyport login")?;
        tls.alpn_protocols = vec![ALPN.to_vec()];
        let crypto = QuicClientConfig::try_from(tls).map_err(|e| anyhow!("quic tls: {e}"))?;
        let mut config = quinn::ClientConfig::new(Arc::new(crypto));
        let mut transport = TransportConfig::default();
        transport.keep_alive_interval(Some(Duration::from_secs(10)));
        config.transport_config(Arc::new(transport));
        let mut endpoint =
            Endpoint::client(unspecified(addr)).context("cannot open a UDP socket")?;
        endpoint.set_default_client_config(config);
        let conn = endpoint
            .connect(addr, &host)
            .context("cannot start a QUIC connection")?;
        let conn = match tokio::time::timeout(Duration::from_secs(15), conn).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(error)) => return Err(explain(&error)),
            Err(_) => bail!(
                "the gateway at {addr} did not answer over QUIC (UDP port {port}) within 15 s"
            ),
        };
        Ok(Gateway { endpoint, conn })
    }

    /// Moves the connection to a new local UDP socket (as after a change of network); the gateway
    /// follows the new address without the session noticing.
    pub fn rebind(&self) -> Result<SocketAddr> {
        let remote = self.conn.remote_address();
        let socket = std::net::UdpSocket::bind(unspecified(remote))
            .context("cannot open a new UDP socket")?;
        let local = socket.local_addr()?;
        self.endpoint
            .rebind(socket)
            .context("cannot move to the new socket")?;
        Ok(local)
    }

    /// Opens a stream for `preamble`.
    pub async fn open(&self, preamble: &Preamble) -> Result<(SendStream, FrameReader)> {
        let (mut send, recv) = self.conn.open_bi().await.map_err(|e| explain(&e))?;
        send.write_all(&preamble.encode()?)
            .await
            .map_err(|e| stream_error(&self.conn, "cannot send the request", e))?;
        Ok((
            send,
            FrameReader {
                recv,
                decoder: FrameDecoder::new(MAX_FRAME),
                conn: self.conn.clone(),
            },
        ))
    }

    /// A request with one JSON answer (targets, status, logout); a gateway error becomes an error.
    pub async fn request(&self, preamble: &Preamble) -> Result<String> {
        let (mut send, mut reader) = self.open(preamble).await?;
        let _ = send.finish();
        match reader.next().await? {
            Some(Frame::Control(json)) => {
                let text = String::from_utf8(json).context("the gateway's answer is not text")?;
                if let Ok(ServerControl::Error { message, .. }) = serde_json::from_str(&text) {
                    bail!("{message}");
                }
                Ok(text)
            }
            Some(Frame::Data(_)) => bail!("the gateway answered with unexpected data"),
            None => bail!("the gateway ended the request without an answer"),
        }
    }

    /// Closes the connection politely and waits briefly for the gateway to hear it.
    pub async fn close(self) {
        self.conn
            .close(quinn::VarInt::from_u32(CLOSE_DONE), b"done");
        let _ = tokio::time::timeout(Duration::from_secs(1), self.endpoint.wait_idle()).await;
    }
}

fn unspecified(remote: SocketAddr) -> SocketAddr {
    if remote.is_ipv6() {
        SocketAddr::from(([0u16; 8], 0))
    } else {
        SocketAddr::from(([0u8; 4], 0))
    }
}

/// Frames from the gateway.
pub struct FrameReader {
    recv: RecvStream,
    decoder: FrameDecoder,
    conn: Connection,
}

impl FrameReader {
    /// Waits for the gateway's verdict on a session: `connected` (saying so when the target's host key
    /// was pinned just now), or its refusal in words as the error.
    pub async fn wait_connected(&mut self, target: &str) -> Result<()> {
        match self.next().await? {
            Some(Frame::Control(json)) => match serde_json::from_slice::<ServerControl>(&json) {
                Ok(ServerControl::Connected {
                    host_key_fingerprint,
                    host_key_first_seen,
                    ..
                }) => {
                    if host_key_first_seen {
                        eprintln!(
                            "sallyport: {target}'s host key {host_key_fingerprint} was pinned by the gateway on first use"
                        );
                    }
                    Ok(())
                }
                Ok(ServerControl::Error { message, .. }) => bail!("{message}"),
                Ok(ServerControl::Exit { .. }) | Err(_) => {
                    bail!("the gateway sent an unexpected answer")
                }
            },
            Some(Frame::Data(_)) => bail!("the gateway sent data before the session opened"),
            None => bail!("the gateway ended the stream before the session opened"),
        }
    }

    /// The next frame, `None` at the end of the stream. Cancel-safe.
    pub async fn next(&mut self) -> Result<Option<Frame>> {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if let Some(frame) = self
                .decoder
                .next_frame()
                .map_err(|e| anyhow!("the gateway sent a malformed frame: {e}"))?
            {
                return Ok(Some(frame));
            }
            match self.recv.read(&mut chunk).await {
                Ok(Some(n)) => self.decoder.extend(chunk.get(..n).unwrap_or_default()),
                Ok(None) => {
                    if self.decoder.buffered() > 0 {
                        bail!("the gateway's answer was cut off");
                    }
                    return Ok(None);
                }
                Err(error) => return Err(stream_error(&self.conn, "the stream failed", error)),
            }
        }
    }
}
