//! The gateway's user CA: issues the short-lived client certificates the `sallyport` CLI presents on
//! QUIC, each bound to one user's Ed25519 key.
//!
//! The CA's key is Ed25519 and kept by the daemon (0600 in the state directory). Its certificate is
//! rebuilt from the key and fixed parameters at every start; Ed25519 signatures are deterministic, so
//! the rebuilt certificate is byte for byte the same and needs no X.509 parser to reload.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, PKCS_ED25519, PublicKeyData, SerialNumber, SignatureAlgorithm,
};
use rustls::pki_types::CertificateDer;
use sallyport_tls_pin::Sha256Fingerprint;

/// Why the CA could not be made or could not issue.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// rcgen refused the key or the parameters.
    #[error("certificate authority: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// The key is not Ed25519.
    #[error("the user CA key must be Ed25519")]
    NotEd25519,
    /// No randomness for a serial number.
    #[error("no randomness available: {0}")]
    Random(String),
    /// A time outside what certificates can say.
    #[error("the clock is outside the range certificates can express")]
    Time,
}

/// A certificate issued to a user.
#[derive(Debug, Clone)]
pub struct IssuedCert {
    /// PEM, for the client to store.
    pub pem: String,
    /// SHA-256 of the DER, lowercase hex: how the gateway recognises it.
    pub fingerprint: String,
    /// Not valid after this (unix ms).
    pub expires_at_ms: u64,
}

/// The user certificate authority.
pub struct UserCa {
    key: KeyPair,
    cert: rcgen::Certificate,
}

impl std::fmt::Debug for UserCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserCa").finish_non_exhaustive()
    }
}

/// A raw Ed25519 public key, as the CLI sends it.
struct Ed25519Public([u8; 32]);

impl PublicKeyData for Ed25519Public {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }

    fn algorithm(&self) -> &SignatureAlgorithm {
        &PKCS_ED25519
    }
}

fn unix_time(seconds: i64) -> Result<time::OffsetDateTime, CaError> {
    time::OffsetDateTime::from_unix_timestamp(seconds).map_err(|_| CaError::Time)
}

/// SHA-256 of a certificate's DER, lowercase hex: how the state database keys client certificates (the
/// QUIC endpoint looks them up by the same spelling).
pub fn cert_fingerprint(der: &[u8]) -> String {
    Sha256Fingerprint::of(der).hex()
}

impl UserCa {
    /// A new CA with a fresh key; the PKCS#8 PEM of the key is returned for the caller to keep.
    pub fn generate() -> Result<(UserCa, String), CaError> {
        let key = KeyPair::generate_for(&PKCS_ED25519)?;
        let pem = key.serialize_pem();
        Ok((Self::from_key(key)?, pem))
    }

    /// The CA for a stored key (PKCS#8 PEM).
    pub fn from_key_pem(pem: &str) -> Result<UserCa, CaError> {
        Self::from_key(KeyPair::from_pem(pem)?)
    }

    fn from_key(key: KeyPair) -> Result<UserCa, CaError> {
        if !key.is_compatible(&PKCS_ED25519) {
            return Err(CaError::NotEd25519);
        }
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, "Sallyport user CA");
        params.distinguished_name = name;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.serial_number = Some(SerialNumber::from(1u64));
        // Fixed dates: the same key always gives the same certificate.
        params.not_before = unix_time(1_704_067_200)?; // 2024-01-01
        params.not_after = unix_time(4_102_444_800)?; // 2100-01-01
        let cert = params.self_signed(&key)?;
        Ok(UserCa { key, cert })
    }

    /// The CA certificate (the trust anchor of the QUIC endpoint's client verifier).
    pub fn cert_der(&self) -> CertificateDer<'static> {
        self.cert.der().clone()
    }

    /// Issues a client certificate for `username` and the raw Ed25519 `public_key`, valid from a few
    /// minutes before `now` (clock skew) for `lifetime`.
    pub fn issue(
        &self,
        username: &str,
        public_key: [u8; 32],
        now: SystemTime,
        lifetime: Duration,
    ) -> Result<IssuedCert, CaError> {
        let now_secs = now
            .duration_since(UNIX_EPOCH)
            .map_err(|_| CaError::Time)?
            .as_secs();
        let now_secs = i64::try_from(now_secs).map_err(|_| CaError::Time)?;
        let lifetime_secs = i64::try_from(lifetime.as_secs()).map_err(|_| CaError::Time)?;
        let expires = now_secs.checked_add(lifetime_secs).ok_or(CaError::Time)?;
        let mut serial = [0u8; 16];
        getrandom::fill(&mut serial).map_err(|e| CaError::Random(e.to_string()))?;
        // A positive serial number: the first bit clear.
        serial[0] &= 0x7f;
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, username);
        params.distinguished_name = name;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        params.not_before = unix_time(now_secs - 300)?;
        params.not_after = unix_time(expires)?;
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&Ed25519Public(public_key), &self.cert, &self.key)?;
        Ok(IssuedCert {
            pem: cert.pem(),
            fingerprint: cert_fingerprint(cert.der()),
            expires_at_ms: u64::try_from(expires).map_err(|_| CaError::Time)? * 1000,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_ca_reloads_identically_and_issues_for_the_given_key() {
        let (ca, pem) = UserCa::generate().unwrap();
        let again = UserCa::from_key_pem(&pem).unwrap();
        assert_eq!(ca.cert_der(), again.cert_der());
        let client = KeyPair::generate_for(&PKCS_ED25519).unwrap();
        let raw: [u8; 32] = client.public_key_raw().try_into().unwrap();
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let issued = ca
            .issue("alice", raw, now, Duration::from_secs(8 * 3600))
            .unwrap();
        assert_eq!(issued.expires_at_ms, (1_800_000_000 + 8 * 3600) * 1000);
        assert!(issued.pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert_eq!(issued.fingerprint.len(), 64);
        let ecdsa = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        assert!(matches!(
            UserCa::from_key_pem(&ecdsa.serialize_pem()),
            Err(CaError::NotEd25519)
        ));
    }
}
