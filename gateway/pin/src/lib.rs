//! Trusting a TLS server by what was pinned on first use instead of a CA: one verifier ([`Verifier`], inside
//! the handshake, so nothing secret is sent to the wrong peer) generic over what it pins ([`Pin`]): the
//! certificate's SHA-256 ([`CertificateSha256`], the gateway's certificate as its clients trust it) or its
//! public key ([`SpkiPin`], an RDP target's key as the gateway trusts it). And the one fingerprint
//! formatter ([`Sha256Fingerprint`]) every printed or stored fingerprint is spelled with.
//!
//! Used by the `sallyport` CLI, the reviewer's `--gateway` mode, the gateway (its printed fingerprint, the
//! RDP dialer) and the end-to-end harness.

mod certificate;
mod fingerprint;
mod spki;
mod verifier;

pub use certificate::{CertificateSha256, PinVerifier, fingerprint, normalize};
pub use fingerprint::Sha256Fingerprint;
pub use spki::{PublicKey, SpkiPin, spki_fingerprint};
pub use verifier::{Pin, Verifier};

#[cfg(test)]
mod tests;
