//! The verifier's decisions for both pins, over certificates made here, and a whole handshake in memory.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use rcgen::{CertificateParams, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};

use super::*;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A self-signed certificate for `key` (a fresh serial each time, so two of one key differ).
fn certificate(key: &KeyPair) -> Vec<u8> {
    CertificateParams::new(vec!["localhost".into()])
        .unwrap()
        .self_signed(key)
        .unwrap()
        .der()
        .to_vec()
}

#[test]
fn fingerprints_normalize() {
    let fp = fingerprint(b"x");
    assert_eq!(normalize(&fp.to_lowercase()).unwrap(), fp);
    assert_eq!(normalize(&fp.replace(':', "")).unwrap(), fp);
    assert_eq!(normalize("AB:CD"), None);
}

#[test]
fn the_certificate_pin_takes_exactly_its_certificate_and_first_use_any() {
    let key = KeyPair::generate().unwrap();
    let (one, two) = (certificate(&key), certificate(&key));
    let first_use = PinVerifier::new(None, provider());
    assert_eq!(first_use.judge(&one), (Some(fingerprint(&one)), Ok(())));

    let pinned = PinVerifier::new(Some(fingerprint(&one)), provider());
    assert_eq!(pinned.judge(&one), (Some(fingerprint(&one)), Ok(())));
    // The same key in another certificate is another certificate.
    assert_eq!(
        pinned.judge(&two),
        (
            Some(fingerprint(&two)),
            Err(format!(
                "certificate pin mismatch: the server presented {}, not the pinned {}",
                fingerprint(&two),
                fingerprint(&one)
            ))
        )
    );
}

#[test]
fn the_key_pin_takes_a_reissued_certificate_of_its_key_only() {
    let key = KeyPair::generate().unwrap();
    let other = KeyPair::generate().unwrap();
    let (one, reissued, foreign) = (certificate(&key), certificate(&key), certificate(&other));
    let presented = PublicKey::from_certificate(&one).unwrap();
    assert_eq!(presented.spki_der(), key.public_key_der());
    assert_eq!(presented.key_bits(), key.public_key_raw());
    assert_eq!(
        presented.fingerprint(),
        Sha256Fingerprint::of(&key.public_key_der()).prefixed_hex()
    );

    let pinned = Verifier::pinning(Some(SpkiPin(key.public_key_der())), provider());
    assert_eq!(pinned.judge(&reissued), (Some(presented.clone()), Ok(())));
    let (seen, verdict) = pinned.judge(&foreign);
    let foreign_key = PublicKey::from_certificate(&foreign).unwrap();
    assert_eq!(seen.as_ref(), Some(&foreign_key));
    assert_eq!(
        verdict,
        Err(format!(
            "the target's key {} is not the pinned key {}",
            foreign_key.fingerprint(),
            presented.fingerprint()
        ))
    );
    let (seen, verdict) = Verifier::<SpkiPin>::pinning(None, provider()).judge(b"not DER");
    assert_eq!(seen, None);
    assert!(
        verdict
            .as_ref()
            .is_err_and(|e| e.starts_with("unreadable target certificate: ")),
        "{verdict:?}"
    );
}

/// Runs a TLS handshake between a client with `verifier` and a server with `cert`, in memory; returns the
/// client's error, if any.
fn handshake<P: Pin>(verifier: Arc<Verifier<P>>, cert: Vec<u8>, key: &KeyPair) -> Option<String> {
    let server_config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(cert)],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    let client_config = rustls::ClientConfig::builder_with_provider(verifier.provider().clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    let mut client = rustls::ClientConnection::new(
        Arc::new(client_config),
        ServerName::try_from("localhost").unwrap(),
    )
    .unwrap();
    let mut server = rustls::ServerConnection::new(Arc::new(server_config)).unwrap();
    for _ in 0..10 {
        let mut wire = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut wire).unwrap();
        }
        server.read_tls(&mut wire.as_slice()).unwrap();
        server.process_new_packets().unwrap();
        let mut wire = Vec::new();
        while server.wants_write() {
            server.write_tls(&mut wire).unwrap();
        }
        client.read_tls(&mut wire.as_slice()).unwrap();
        if let Err(error) = client.process_new_packets() {
            return Some(error.to_string());
        }
        if !client.is_handshaking() {
            return None;
        }
    }
    Some("the handshake did not finish".into())
}

#[test]
fn inside_a_handshake_the_pin_decides_and_what_was_presented_is_kept() {
    let key = KeyPair::generate().unwrap();
    let cert = certificate(&key);
    let first_use = PinVerifier::new(None, provider());
    assert_eq!(handshake(first_use.clone(), cert.clone(), &key), None);
    assert_eq!(first_use.seen(), Some(fingerprint(&cert)));

    let wrong = PinVerifier::new(Some(fingerprint(b"another")), provider());
    let error = handshake(wrong.clone(), cert.clone(), &key).unwrap();
    assert!(error.contains("certificate pin mismatch"), "{error}");
    assert_eq!(wrong.seen(), Some(fingerprint(&cert)));

    let by_key = Verifier::pinning(Some(SpkiPin(key.public_key_der())), provider());
    assert_eq!(handshake(by_key.clone(), cert, &key), None);
    assert_eq!(
        by_key.presented().map(|k| k.spki_der().to_vec()),
        Some(key.public_key_der())
    );
}
