//! Who is on a connection: the presented certificate (already chained to the user CA and within its
//! validity by rustls) mapped to its user through the state database, at the handshake and again for
//! every stream.

use rustls::pki_types::CertificateDer;
use sallyport_core::policy::Authenticated;
use sallyport_relay::now_ms;
use sallyport_state::StateDb;
use sallyport_tls_pin::Sha256Fingerprint;

/// A user proved by a client certificate.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The user.
    pub user: Authenticated,
    /// SHA-256 of the certificate's DER, lowercase hex.
    pub fingerprint: String,
    /// When the certificate expires (unix ms).
    pub expires_at_ms: u64,
}

/// Why a certificate is not (or no longer) accepted, in words the user sees.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No certificate came with the connection.
    #[error("no client certificate was presented; run `sallyport login`")]
    NoCertificate,
    /// The certificate was not issued by this gateway (or its record is gone).
    #[error("this certificate was not issued by this gateway; run `sallyport login`")]
    Unknown,
    /// Logged out, or the user's access was revoked.
    #[error("this certificate was revoked (logged out or access changed); run `sallyport login`")]
    Revoked,
    /// Past its lifetime.
    #[error("this certificate has expired; run `sallyport login`")]
    Expired,
    /// The account is disabled or deleted.
    #[error("your account is disabled")]
    Disabled,
    /// The state database failed.
    #[error("the gateway could not check the certificate; try again")]
    Internal,
}

/// Maps the peer's certificate chain (end entity first) to its user, or says why not.
pub fn identify(state: &StateDb, chain: &[CertificateDer<'_>]) -> Result<Identity, Refusal> {
    let cert = chain.first().ok_or(Refusal::NoCertificate)?;
    // Spelled as the portal recorded it when it issued the certificate (lowercase hex).
    let fingerprint = Sha256Fingerprint::of(cert.as_ref()).hex();
    let record = state
        .client_cert(&fingerprint)
        .map_err(|_| Refusal::Internal)?
        .ok_or(Refusal::Unknown)?;
    // A disabled account is said first: disabling also revokes its certificates.
    let user = match state.user(record.user_id) {
        Ok(Some(user)) if !user.disabled => user,
        Ok(_) => return Err(Refusal::Disabled),
        Err(_) => return Err(Refusal::Internal),
    };
    if record.revoked_at_ms.is_some() {
        return Err(Refusal::Revoked);
    }
    if now_ms() >= record.expires_at_ms {
        return Err(Refusal::Expired);
    }
    Ok(Identity {
        user: Authenticated {
            user_id: user.id,
            username: user.username,
            role: user.role,
        },
        fingerprint,
        expires_at_ms: record.expires_at_ms,
    })
}
