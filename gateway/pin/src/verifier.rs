//! The one pinning verifier: a rustls [`ServerCertVerifier`] that reduces the presented end-entity
//! certificate to what a [`Pin`] compares (its SHA-256, its public key), accepts it when it matches the pin
//! or when there is no pin yet (first use), and remembers what was presented so the caller can show it,
//! store it, or say what changed. The handshake's signature is still verified with the certificate's key,
//! so a peer must hold the private key of the certificate it shows.

use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// What is pinned: how a presented certificate is read, and whether it is the pinned one.
pub trait Pin: Debug + Send + Sync + 'static {
    /// What a presented certificate is reduced to (and what the caller gets back).
    type Presented: Clone + Debug + Send + Sync + 'static;

    /// Reads a presented end-entity certificate (DER); the error is said to the peer's user.
    fn read(certificate: &[u8]) -> Result<Self::Presented, String>;

    /// True when `presented` is what this pin holds.
    fn accepts(&self, presented: &Self::Presented) -> bool;

    /// Why `presented` is refused, in words naming both.
    fn mismatch(&self, presented: &Self::Presented) -> String;
}

/// Accepts exactly the pinned certificate, or (with no pin) any readable certificate, remembering which one
/// so the caller can ask before anything secret is sent.
#[derive(Debug)]
pub struct Verifier<P: Pin> {
    pinned: Option<P>,
    presented: Mutex<Option<P::Presented>>,
    provider: Arc<CryptoProvider>,
}

impl<P: Pin> Verifier<P> {
    /// A verifier for `pinned` (`None`: first use).
    pub fn pinning(pinned: Option<P>, provider: Arc<CryptoProvider>) -> Arc<Self> {
        Arc::new(Verifier {
            pinned,
            presented: Mutex::new(None),
            provider,
        })
    }

    /// The pin, if there was one.
    pub fn pinned(&self) -> Option<&P> {
        self.pinned.as_ref()
    }

    /// The crypto provider the handshake signatures are checked with (for the client configuration).
    pub fn provider(&self) -> &Arc<CryptoProvider> {
        &self.provider
    }

    /// What the server presented, once the handshake got that far (also when it was refused).
    pub fn presented(&self) -> Option<P::Presented> {
        self.presented
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The pure decision of [`ServerCertVerifier::verify_server_cert`]: what was presented (if readable)
    /// and whether it is accepted.
    pub fn judge(&self, certificate: &[u8]) -> (Option<P::Presented>, Result<(), String>) {
        match P::read(certificate) {
            Err(error) => (None, Err(error)),
            Ok(presented) => {
                let verdict = match &self.pinned {
                    Some(pin) if !pin.accepts(&presented) => Err(pin.mismatch(&presented)),
                    _ => Ok(()),
                };
                (Some(presented), verdict)
            }
        }
    }
}

impl<P: Pin> ServerCertVerifier for Verifier<P> {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let (presented, verdict) = self.judge(end_entity.as_ref());
        *self
            .presented
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = presented;
        verdict
            .map(|()| ServerCertVerified::assertion())
            .map_err(rustls::Error::General)
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
