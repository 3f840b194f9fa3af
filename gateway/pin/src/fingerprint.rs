//! The one SHA-256 fingerprint, in the three spellings people and stores use: `AB:CD:…` (the gateway's TLS
//! certificate, as the gateway prints it and the CLI and reviewer pin it), `abcd…` (client certificates in
//! the state database) and `SHA256:abcd…` (an RDP target's public key, as shown to users and admins).

use sha2::{Digest, Sha256};

/// The SHA-256 of some DER (a certificate, a SubjectPublicKeyInfo).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Sha256Fingerprint([u8; 32]);

impl Sha256Fingerprint {
    /// The fingerprint of `bytes`.
    pub fn of(bytes: &[u8]) -> Sha256Fingerprint {
        Sha256Fingerprint(Sha256::digest(bytes).into())
    }

    /// A fingerprint someone typed or a store kept: 64 hex digits in any case, colons anywhere, blanks
    /// around; `None` for anything else.
    pub fn parse(text: &str) -> Option<Sha256Fingerprint> {
        let hex: String = text.chars().filter(|c| *c != ':').collect();
        let bytes = hex::decode(hex.trim()).ok()?;
        bytes.try_into().ok().map(Sha256Fingerprint)
    }

    /// `AB:CD:…`: upper-case hex, bytes separated by colons.
    pub fn colon_hex(&self) -> String {
        self.0
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":")
    }

    /// `abcd…`: 64 lower-case hex digits.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// `SHA256:abcd…`: the lower-case hex after `SHA256:`.
    pub fn prefixed_hex(&self) -> String {
        format!("SHA256:{}", self.hex())
    }

    /// The digest.
    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// SHA-256 of `abc` (FIPS 180-2's example).
    const ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    #[test]
    fn the_three_spellings_of_one_digest() {
        let fp = Sha256Fingerprint::of(b"abc");
        assert_eq!(fp.hex(), ABC);
        assert_eq!(fp.prefixed_hex(), format!("SHA256:{ABC}"));
        let colons = fp.colon_hex();
        assert_eq!(colons.len(), 32 * 3 - 1);
        assert!(colons.starts_with("BA:78:16:BF:"), "{colons}");
        assert!(colons.ends_with(":00:15:AD"), "{colons}");
        assert_eq!(colons.replace(':', "").to_lowercase(), ABC);
    }

    #[test]
    fn every_spelling_parses_back() {
        let fp = Sha256Fingerprint::of(b"abc");
        for text in [
            fp.colon_hex(),
            fp.colon_hex().to_lowercase(),
            fp.hex(),
            fp.hex().to_uppercase(),
            format!("  {}\n", fp.colon_hex()),
        ] {
            assert_eq!(Sha256Fingerprint::parse(&text), Some(fp), "{text:?}");
        }
        for wrong in [
            "AB:CD",
            "",
            &fp.hex()[2..],
            &format!("{}00", fp.hex()),
            "zz",
        ] {
            assert_eq!(Sha256Fingerprint::parse(wrong), None, "{wrong:?}");
        }
    }
}
