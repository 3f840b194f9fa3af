//! Sallyport's QUIC endpoint for the `sallyport` CLI, on the portal's port over UDP.
//!
//! quinn with rustls (ring), TLS 1.3 only, ALPN `sallyport/1`. Every client presents a certificate
//! issued by the gateway's user CA (`POST /api/cli/login` on the portal); rustls checks the chain and
//! the validity period during the handshake, then [`identity`] maps the certificate's SHA-256 to its
//! user in the state database and refuses revoked certificates (CLI logout, or any revocation of the
//! user: browser logout, password change, disable, delete) and disabled users. That check runs again
//! for every stream, so a revocation applies to the next stream at once; live sessions of a revoked
//! user are ended through the relay's `LiveSessions` as the browser's are.
//!
//! Each bidirectional stream is one request ([`sallyport_core::quic::Preamble`]): a terminal session,
//! the target list, status or logout. Terminal sessions get the same policy decision
//! ([`sallyport_relay::access::decide`]) and run through the same [`Broker::run`] as the
//! browser's WebSocket, so they are egress-vetted and recorded identically. Connection migration is on:
//! a client whose address changes keeps its connection, and the change is audited.
//!
//! This crate never depends on the portal or on SSH; the daemon wires it.

mod identity;
mod preamble;
mod stream;
mod target;
mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use quinn::{Endpoint, VarInt};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sallyport_relay::Broker;
use tracing::{debug, info, warn};

pub use identity::{Identity, Refusal, identify};
pub use tls::TlsError;

/// Limits and deadlines of the QUIC endpoint.
#[derive(Debug, Clone)]
pub struct QuicConfig {
    /// Deadline for the QUIC and TLS handshake.
    pub handshake_timeout: Duration,
    /// Deadline for a stream's preamble.
    pub preamble_timeout: Duration,
    /// A connection with no packets for this long is closed (the CLI sends keep-alives).
    pub idle_timeout: Duration,
    /// Most connections at once.
    pub max_connections: usize,
    /// Most streams open at once on one connection.
    pub max_streams_per_connection: u32,
}

impl Default for QuicConfig {
    fn default() -> Self {
        QuicConfig {
            handshake_timeout: Duration::from_secs(10),
            preamble_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 4096,
            max_streams_per_connection: 16,
        }
    }
}

/// Everything the connection and stream tasks share.
pub(crate) struct Shared {
    pub(crate) broker: Arc<Broker>,
    pub(crate) config: QuicConfig,
    connections: AtomicUsize,
}

/// The bound QUIC endpoint.
pub struct QuicServer {
    endpoint: Endpoint,
    shared: Arc<Shared>,
}

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The TLS configuration was refused.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The UDP socket could not be bound.
    #[error("binding UDP {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

impl QuicServer {
    /// Binds UDP `addr` with the portal's certificate chain and key, trusting client certificates
    /// issued by `user_ca`.
    pub fn bind(
        addr: SocketAddr,
        cert_chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        user_ca: CertificateDer<'static>,
        broker: Arc<Broker>,
        config: QuicConfig,
    ) -> Result<QuicServer, StartError> {
        let server_config = tls::server_config(cert_chain, key, user_ca, &config)?;
        let endpoint = Endpoint::server(server_config, addr)
            .map_err(|source| StartError::Bind { addr, source })?;
        Ok(QuicServer {
            endpoint,
            shared: Arc::new(Shared {
                broker,
                config,
                connections: AtomicUsize::new(0),
            }),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// Accepts connections until `shutdown` completes, then closes them all.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let incoming = tokio::select! {
                () = &mut shutdown => break,
                incoming = self.endpoint.accept() => incoming,
            };
            let Some(incoming) = incoming else { break };
            let shared = self.shared.clone();
            let open = shared.connections.fetch_add(1, Ordering::AcqRel);
            if open >= shared.config.max_connections {
                shared.connections.fetch_sub(1, Ordering::AcqRel);
                debug!(client_addr = %incoming.remote_address(), "quic connection refused: too many connections");
                incoming.refuse();
                continue;
            }
            tokio::spawn(async move {
                stream::connection(&shared, incoming).await;
                shared.connections.fetch_sub(1, Ordering::AcqRel);
            });
        }
        info!("quic endpoint stopping");
        self.endpoint
            .close(VarInt::from_u32(0), b"the gateway is stopping");
        if tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle())
            .await
            .is_err()
        {
            warn!("quic connections did not close within 2 s");
        }
    }
}
