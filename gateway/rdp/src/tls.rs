//! TLS to an RDP target with its certificate's public key pinned on first use.
//!
//! RDP servers present self-signed certificates, so there is no chain to check. The gateway pins the
//! certificate's SubjectPublicKeyInfo (like an SSH host key): a verifier inside the TLS handshake compares
//! the presented key with the pin and aborts on a mismatch, before CredSSP or the client info PDU carries
//! any credential. The handshake signature is still checked against the presented key, so a peer must hold
//! the private key of the certificate it shows.

use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite};
use x509_cert::der::{Decode, Encode};

use crate::error::RdpError;

/// A target's public key as pinned: the certificate's SubjectPublicKeyInfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetKey {
    spki_der: Vec<u8>,
    /// The BIT STRING content of the key, which CredSSP binds to.
    public_key: Vec<u8>,
}

impl TargetKey {
    /// Reads the key out of a DER certificate.
    pub fn from_certificate(der: &[u8]) -> Result<TargetKey, String> {
        let cert = x509_cert::Certificate::from_der(der).map_err(|e| e.to_string())?;
        let spki = cert.tbs_certificate().subject_public_key_info();
        let spki_der = spki.to_der().map_err(|e| e.to_string())?;
        let public_key = spki
            .subject_public_key
            .as_bytes()
            .ok_or("the public key is not a whole number of bytes")?
            .to_vec();
        Ok(TargetKey {
            spki_der,
            public_key,
        })
    }

    /// The stored form: `rdp-spki <hex of the DER SubjectPublicKeyInfo>`.
    pub fn to_pin(&self) -> String {
        format!("rdp-spki {}", hex::encode(&self.spki_der))
    }

    /// The SPKI of a stored pin (see [`to_pin`](Self::to_pin)); `None` for anything else (an SSH key line).
    pub fn spki_of_pin(pin: &str) -> Option<Vec<u8>> {
        hex::decode(pin.strip_prefix("rdp-spki ")?.trim()).ok()
    }

    /// `SHA256:` and the hex digest of the SPKI, as shown to users and admins.
    pub fn fingerprint(&self) -> String {
        fingerprint_of(&self.spki_der)
    }

    /// The key bytes CredSSP needs.
    pub fn public_key(&self) -> &[u8] {
        &self.public_key
    }
}

fn fingerprint_of(spki_der: &[u8]) -> String {
    format!("SHA256:{}", hex::encode(Sha256::digest(spki_der)))
}

/// Checks the presented key against the pin and remembers what was presented.
#[derive(Debug)]
struct PinningVerifier {
    pinned_spki: Option<Vec<u8>>,
    presented: Mutex<Option<Result<TargetKey, String>>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinningVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let key = TargetKey::from_certificate(end_entity.as_ref());
        let verdict = match (&key, &self.pinned_spki) {
            (Err(error), _) => Err(rustls::Error::General(format!(
                "unreadable target certificate: {error}"
            ))),
            (Ok(key), Some(pinned)) if *pinned != key.spki_der => {
                Err(rustls::Error::General(format!(
                    "the target's key {} is not the pinned key {}",
                    key.fingerprint(),
                    fingerprint_of(pinned)
                )))
            }
            (Ok(_), _) => Ok(ServerCertVerified::assertion()),
        };
        if let Ok(mut presented) = self.presented.lock() {
            *presented = Some(key);
        }
        verdict
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
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
        verify_tls13_signature(
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

/// Runs the TLS handshake over `stream`, pinning or checking the target's key. Returns the TLS stream and
/// the key the target proved.
pub async fn upgrade<S>(
    stream: S,
    pinned: Option<&str>,
) -> Result<(tokio_rustls::client::TlsStream<S>, TargetKey), RdpError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let pinned_spki = match pinned {
        Some(pin) => Some(TargetKey::spki_of_pin(pin).ok_or_else(|| {
            RdpError::KeyChanged(
                "the pinned key for this target is not an RDP key (forget it to pin again)".into(),
            )
        })?),
        None => None,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(PinningVerifier {
        pinned_spki: pinned_spki.clone(),
        presented: Mutex::new(None),
        provider: provider.clone(),
    });
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
    let presented = verifier.presented.lock().ok().and_then(|mut p| p.take());
    match (result, presented) {
        (Ok(tls), Some(Ok(key))) => Ok((tls, key)),
        (Ok(_), _) => Err(RdpError::Tls("the target presented no certificate".into())),
        (Err(_), Some(Ok(key))) if pinned_spki.as_ref().is_some_and(|p| *p != key.spki_der) => {
            Err(RdpError::KeyChanged(format!(
                "the target presented {} but {} is pinned",
                key.fingerprint(),
                pinned_spki
                    .as_deref()
                    .map(fingerprint_of)
                    .unwrap_or_default()
            )))
        }
        (Err(error), _) => Err(RdpError::Tls(error.to_string())),
    }
}
