//! TLS to an RDP target with its certificate's public key pinned on first use.
//!
//! RDP servers present self-signed certificates, so there is no chain to check. The gateway pins the
//! certificate's SubjectPublicKeyInfo (like an SSH host key): a verifier inside the TLS handshake compares
//! the presented key with the pin and aborts on a mismatch, before CredSSP or the client info PDU carries
//! any credential. The handshake signature is still checked against the presented key, so a peer must hold
//! the private key of the certificate it shows.

use std::sync::Arc;

use rustls::pki_types::ServerName;
use sallyport_tls_pin::{Pin, PublicKey, SpkiPin, Verifier};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::error::RdpError;

/// A target's public key as pinned: the certificate's SubjectPublicKeyInfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetKey(PublicKey);

impl TargetKey {
    /// Reads the key out of a DER certificate.
    pub fn from_certificate(der: &[u8]) -> Result<TargetKey, String> {
        PublicKey::from_certificate(der).map(TargetKey)
    }

    /// The stored form: `rdp-spki <hex of the DER SubjectPublicKeyInfo>`.
    pub fn to_pin(&self) -> String {
        format!("rdp-spki {}", hex::encode(self.0.spki_der()))
    }

    /// The SPKI of a stored pin (see [`to_pin`](Self::to_pin)); `None` for anything else (an SSH key line).
    pub fn spki_of_pin(pin: &str) -> Option<Vec<u8>> {
        hex::decode(pin.strip_prefix("rdp-spki ")?.trim()).ok()
    }

    /// `SHA256:` and the hex digest of the SPKI, as shown to users and admins.
    pub fn fingerprint(&self) -> String {
        self.0.fingerprint()
    }

    /// The key bytes CredSSP needs.
    pub fn public_key(&self) -> &[u8] {
        self.0.key_bits()
    }
}

/// Runs the TLS handshake over `stream`, pinning or checking the target's key. Returns the TLS stream and
/// the key the target proved.
pub async fn upgrade<S>(
    stream: S,
    pinned: Option<&str>,
) -> Result<(tokio_rustls::client::TlsStream<S>, TargetKey), RdpError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let pinned = match pinned {
        Some(pin) => Some(TargetKey::spki_of_pin(pin).map(SpkiPin).ok_or_else(|| {
            RdpError::KeyChanged(
                "the pinned key for this target is not an RDP key (forget it to pin again)".into(),
            )
        })?),
        None => None,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Verifier::pinning(pinned, provider.clone());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| RdpError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    // CredSSP binds to the TLS channel of this handshake; some servers fail on resumed sessions.
    config.resumption = rustls::client::Resumption::disabled();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    // RDP servers ignore the name; an IP address literal avoids sending a made-up SNI.
    let name = ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
    let result = connector.connect(name, stream).await;
    match (result, verifier.presented()) {
        (Ok(tls), Some(key)) => Ok((tls, TargetKey(key))),
        (Ok(_), None) => Err(RdpError::Tls("the target presented no certificate".into())),
        (Err(error), Some(key)) => match verifier.pinned() {
            Some(pin) if !pin.accepts(&key) => Err(RdpError::KeyChanged(format!(
                "the target presented {} but {} is pinned",
                key.fingerprint(),
                pin.fingerprint()
            ))),
            _ => Err(RdpError::Tls(error.to_string())),
        },
        (Err(error), _) => Err(RdpError::Tls(error.to_string())),
    }
}
