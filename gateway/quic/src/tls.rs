//! The endpoint's rustls and quinn configuration: TLS 1.3 with ring, the portal's certificate, client
//! certificates required and chained to the user CA, ALPN `sallyport/1`, migration on.

use std::sync::Arc;

use quinn::crypto::rustls::QuicServerConfig;
use quinn::{IdleTimeout, TransportConfig, VarInt};
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use sallyport_core::quic::ALPN;

use crate::QuicConfig;

/// Why the TLS configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// rustls refused a certificate, key or setting.
    #[error("quic tls: {0}")]
    Rustls(#[from] rustls::Error),
    /// The user CA certificate cannot be a trust anchor.
    #[error("quic tls: the user CA certificate is not usable: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// quinn refused the rustls configuration.
    #[error("quic tls: {0}")]
    Quic(String),
    /// A limit out of QUIC's range.
    #[error("quic: idle timeout out of range")]
    Idle,
}

pub(crate) fn server_config(
    cert_chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    user_ca: CertificateDer<'static>,
    config: &QuicConfig,
) -> Result<quinn::ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    roots.add(user_ca)?;
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build()?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(cert_chain, key)?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = QuicServerConfig::try_from(tls).map_err(|e| TlsError::Quic(e.to_string()))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = TransportConfig::default();
    transport
        .max_concurrent_bidi_streams(VarInt::from_u32(config.max_streams_per_connection))
        .max_concurrent_uni_streams(VarInt::from_u32(0))
        .max_idle_timeout(Some(
            IdleTimeout::try_from(config.idle_timeout).map_err(|_| TlsError::Idle)?,
        ));
    server.transport_config(Arc::new(transport));
    // A client whose address changes (a new network, a NAT rebinding) keeps its connection.
    server.migration(true);
    Ok(server)
}
