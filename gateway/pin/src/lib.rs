//! A TLS server trusted by the SHA-256 fingerprint of its certificate, shown on first use and pinned (as
//! ssh does with host keys), so a self-signed appliance certificate needs no CA. The handshake's signature
//! is still verified with the certificate's key. Shared by every client of the gateway: the `sallyport`
//! CLI, the reviewer's `--gateway` mode and the end-to-end harness.

use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};

/// `AB:CD:...` over the certificate's DER, as the gateway prints it.
pub fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Normalizes a fingerprint someone typed (any case, with or without colons).
pub fn normalize(text: &str) -> Option<String> {
    let hex: String = text.chars().filter(|c| *c != ':').collect();
    let bytes = hex::decode(hex.trim()).ok()?;
    (bytes.len() == 32).then(|| {
        bytes
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":")
    })
}

/// Accepts exactly the pinned certificate, or (with no pin) any certificate, remembering which one
/// so the caller can ask before anything secret is sent.
#[derive(Debug)]
pub struct PinVerifier {
    expected: Option<String>,
    seen: Mutex<Option<String>>,
    provider: Arc<CryptoProvider>,
}

impl PinVerifier {
    /// A verifier for `expected` (`None`: first use).
    pub fn new(expected: Option<String>, provider: Arc<CryptoProvider>) -> Arc<Self> {
        Arc::new(PinVerifier {
            expected,
            seen: Mutex::new(None),
            provider,
        })
    }

    /// The crypto provider the handshake signatures are checked with (for the client configuration).
    pub fn provider(&self) -> &Arc<CryptoProvider> {
        &self.provider
    }

    /// The fingerprint the server presented, once the handshake got that far.
    pub fn seen(&self) -> Option<String> {
        self.seen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let presented = fingerprint(end_entity);
        *self
            .seen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(presented.clone());
        match &self.expected {
            Some(expected) if *expected != presented => Err(rustls::Error::General(format!(
                "certificate pin mismatch: the server presented {presented}, not the pinned {expected}"
            ))),
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_normalize() {
        let fp = fingerprint(b"x");
        assert_eq!(normalize(&fp.to_lowercase()).unwrap(), fp);
        assert_eq!(normalize(&fp.replace(':', "")).unwrap(), fp);
        assert_eq!(normalize("AB:CD"), None);
    }
}
