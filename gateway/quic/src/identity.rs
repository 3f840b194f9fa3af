//! Who is on a connection: the presented certificate (already chained to the user CA and within its
//! validity by rustls) mapped to its user through the state database, at the handshake and again for
//! every stream.

use rustls::pki_types::CertificateDer;
use sallyport_core::errors::ErrorKind;
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

impl Refusal {
    /// The kind of error a refused stream is answered with.
    pub fn error_kind(&self) -> ErrorKind {
        match self {
            Refusal::Internal => ErrorKind::Internal,
            _ => ErrorKind::NotAllowed,
        }
    }
}

/// Maps the peer's certificate chain (end entity first) to its user, or says why not.
pub fn identify(state: &StateDb, chain: &[CertificateDer<'_>]) -> Result<Identity, Refusal> {
    identify_at(state, chain, now_ms())
}

/// [`identify`] at `now_ms` (unix ms).
fn identify_at(
    state: &StateDb,
    chain: &[CertificateDer<'_>],
    now_ms: u64,
) -> Result<Identity, Refusal> {
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
    if now_ms >= record.expires_at_ms {
        return Err(Refusal::Expired);
    }
    Ok(Identity {
        user: user.authenticated(),
        fingerprint,
        expires_at_ms: record.expires_at_ms,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use sallyport_core::policy::Role;
    use sallyport_state::ClientCertRecord;

    use super::*;

    const NOW: u64 = 1_000_000;

    /// A state database with one user and one certificate issued to them, expiring at `expires`.
    fn issued(expires: u64) -> (StateDb, CertificateDer<'static>, i64) {
        let state = StateDb::open_in_memory().unwrap();
        let user = state
            .create_user("alice", "correct horse battery", Role::User, false, 0)
            .unwrap();
        let cert = CertificateDer::from(b"a certificate".to_vec());
        state
            .add_client_cert(&ClientCertRecord {
                fingerprint: Sha256Fingerprint::of(cert.as_ref()).hex(),
                user_id: user.id,
                issued_at_ms: 0,
                expires_at_ms: expires,
                revoked_at_ms: None,
            })
            .unwrap();
        (state, cert, user.id)
    }

    #[test]
    fn a_valid_certificate_names_its_user() {
        let (state, cert, user_id) = issued(NOW + 1);
        let identity = identify_at(&state, &[cert], NOW).unwrap();
        assert_eq!(identity.user.user_id(), user_id);
        assert_eq!(identity.user.username(), "alice");
        assert_eq!(identity.expires_at_ms, NOW + 1);
        assert_eq!(identity.fingerprint.len(), 64);
    }

    #[test]
    fn no_certificate_and_a_foreign_one_are_refused_in_words() {
        let (state, _cert, _) = issued(NOW + 1);
        let none = identify_at(&state, &[], NOW).unwrap_err();
        assert_eq!(none, Refusal::NoCertificate);
        assert_eq!(
            none.to_string(),
            "no client certificate was presented; run `sallyport login`"
        );
        let foreign = CertificateDer::from(b"another gateway's".to_vec());
        let unknown = identify_at(&state, &[foreign], NOW).unwrap_err();
        assert_eq!(unknown, Refusal::Unknown);
        assert_eq!(unknown.error_kind(), ErrorKind::NotAllowed);
    }

    #[test]
    fn an_expired_certificate_is_refused_from_its_expiry_on() {
        let (state, cert, _) = issued(NOW);
        let refusal = identify_at(&state, &[cert], NOW).unwrap_err();
        assert_eq!(refusal, Refusal::Expired);
        assert_eq!(
            refusal.to_string(),
            "this certificate has expired; run `sallyport login`"
        );
    }

    #[test]
    fn a_revoked_certificate_is_refused_and_a_disabled_account_is_said_first() {
        let (state, cert, user_id) = issued(NOW + 1);
        let fingerprint = Sha256Fingerprint::of(cert.as_ref()).hex();
        state.revoke_client_cert(&fingerprint, NOW).unwrap();
        let chain = [cert];
        assert_eq!(
            identify_at(&state, &chain, NOW).unwrap_err(),
            Refusal::Revoked
        );
        state.set_disabled(user_id, true).unwrap();
        let refusal = identify_at(&state, &chain, NOW).unwrap_err();
        assert_eq!(refusal, Refusal::Disabled);
        assert_eq!(refusal.to_string(), "your account is disabled");
    }

    #[test]
    fn only_a_failed_check_is_an_internal_error() {
        assert_eq!(Refusal::Internal.error_kind(), ErrorKind::Internal);
        for refusal in [
            Refusal::NoCertificate,
            Refusal::Unknown,
            Refusal::Revoked,
            Refusal::Expired,
            Refusal::Disabled,
        ] {
            assert_eq!(refusal.error_kind(), ErrorKind::NotAllowed, "{refusal:?}");
        }
    }
}
