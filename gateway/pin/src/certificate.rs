//! Pinning the gateway's certificate by its SHA-256 (`AB:CD:…`), as the gateway prints it at start: how the
//! `sallyport` CLI, the reviewer's `--gateway` mode and the end-to-end harness trust a self-signed
//! appliance certificate, shown on first use and pinned as ssh does with host keys.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;

use crate::fingerprint::Sha256Fingerprint;
use crate::verifier::{Pin, Verifier};

/// The pinned certificate's SHA-256, spelled `AB:CD:…` (as [`normalize`] makes it; compared as text, so a
/// pin in any other spelling matches nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateSha256(pub String);

impl Pin for CertificateSha256 {
    /// The presented certificate's fingerprint, `AB:CD:…`.
    type Presented = String;

    fn read(certificate: &[u8]) -> Result<String, String> {
        Ok(fingerprint(certificate))
    }

    fn accepts(&self, presented: &String) -> bool {
        *presented == self.0
    }

    fn mismatch(&self, presented: &String) -> String {
        format!(
            "certificate pin mismatch: the server presented {presented}, not the pinned {}",
            self.0
        )
    }
}

/// The verifier for the gateway's certificate.
pub type PinVerifier = Verifier<CertificateSha256>;

impl Verifier<CertificateSha256> {
    /// A verifier for `expected` (`AB:CD:…`; `None`: first use).
    pub fn new(expected: Option<String>, provider: Arc<CryptoProvider>) -> Arc<Self> {
        Verifier::pinning(expected.map(CertificateSha256), provider)
    }

    /// The fingerprint the server presented, once the handshake got that far.
    pub fn seen(&self) -> Option<String> {
        self.presented()
    }
}

/// `AB:CD:...` over the certificate's DER, as the gateway prints it.
pub fn fingerprint(der: &[u8]) -> String {
    Sha256Fingerprint::of(der).colon_hex()
}

/// Normalizes a fingerprint someone typed (any case, with or without colons) to `AB:CD:...`.
pub fn normalize(text: &str) -> Option<String> {
    Sha256Fingerprint::parse(text).map(|fp| fp.colon_hex())
}
