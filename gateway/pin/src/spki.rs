//! Pinning a server's public key, the certificate's SubjectPublicKeyInfo, as the gateway does for RDP
//! targets: they present self-signed certificates that may be re-issued, but their key (like an SSH host
//! key) stays. The fingerprint shown for it is `SHA256:` and the hex digest of the SPKI's DER.

use x509_cert::der::{Decode, Encode};

use crate::fingerprint::Sha256Fingerprint;
use crate::verifier::Pin;

/// A certificate's public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    spki_der: Vec<u8>,
    /// The BIT STRING content of the key (what CredSSP binds to).
    key_bits: Vec<u8>,
}

impl PublicKey {
    /// Reads the key out of a DER certificate.
    pub fn from_certificate(der: &[u8]) -> Result<PublicKey, String> {
        let cert = x509_cert::Certificate::from_der(der).map_err(|e| e.to_string())?;
        let spki = cert.tbs_certificate().subject_public_key_info();
        let spki_der = spki.to_der().map_err(|e| e.to_string())?;
        let key_bits = spki
            .subject_public_key
            .as_bytes()
            .ok_or("the public key is not a whole number of bytes")?
            .to_vec();
        Ok(PublicKey { spki_der, key_bits })
    }

    /// The DER SubjectPublicKeyInfo.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// The key itself (the SPKI's BIT STRING content).
    pub fn key_bits(&self) -> &[u8] {
        &self.key_bits
    }

    /// `SHA256:` and the hex digest of the SPKI.
    pub fn fingerprint(&self) -> String {
        spki_fingerprint(&self.spki_der)
    }
}

/// `SHA256:` and the hex digest of a DER SubjectPublicKeyInfo.
pub fn spki_fingerprint(spki_der: &[u8]) -> String {
    Sha256Fingerprint::of(spki_der).prefixed_hex()
}

/// A pinned SubjectPublicKeyInfo (DER).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpkiPin(pub Vec<u8>);

impl SpkiPin {
    /// The pinned key's fingerprint (see [`PublicKey::fingerprint`]).
    pub fn fingerprint(&self) -> String {
        spki_fingerprint(&self.0)
    }
}

impl Pin for SpkiPin {
    type Presented = PublicKey;

    fn read(certificate: &[u8]) -> Result<PublicKey, String> {
        PublicKey::from_certificate(certificate)
            .map_err(|error| format!("unreadable target certificate: {error}"))
    }

    fn accepts(&self, presented: &PublicKey) -> bool {
        presented.spki_der == self.0
    }

    fn mismatch(&self, presented: &PublicKey) -> String {
        format!(
            "the target's key {} is not the pinned key {}",
            presented.fingerprint(),
            self.fingerprint()
        )
    }
}
