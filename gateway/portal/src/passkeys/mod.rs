//! Passkeys (WebAuthn, by `webauthn-rs`): registration on the security page, sign-in without a
//! password for local accounts, and the second factor after a password or an identity provider.
//!
//! The relying party is the portal's `public_url`: its host is the RP ID every passkey is bound to and
//! its origin the only one accepted, so passkeys are off without it (and for an IP address, which
//! WebAuthn does not allow). The library checks the challenge, origin, RP ID hash, user verification,
//! signature and signature counter; a counter that does not grow marks a cloned authenticator and is
//! refused. Ceremonies in progress are kept here, bounded and short-lived, as the library's state: a
//! challenge is used once, by the browser it was given to.

pub mod account;
pub mod sign_in;

use std::time::Duration;

use sallyport_state::PasskeyRecord;
use tracing::warn;
use webauthn_rs::prelude::{Passkey, Webauthn, WebauthnBuilder};

use crate::ceremonies::Ceremonies;

/// How long a ceremony may take (the browser's own prompt times out sooner).
const CEREMONY_TTL: Duration = Duration::from_secs(300);
/// Longest passkey name.
const MAX_NAME_CHARS: usize = 64;

/// The relying party and the ceremonies in progress.
pub struct Passkeys {
    /// The relying party, or why passkeys are off.
    relying_party: Result<Webauthn, String>,
    /// Registrations by user id: the name the user gave, and the library's state.
    registrations: Ceremonies<i64, (String, webauthn_rs::prelude::PasskeyRegistration)>,
    /// Password-less sign-ins by the hash of their cookie.
    sign_ins: Ceremonies<[u8; 32], webauthn_rs::prelude::DiscoverableAuthentication>,
}

impl Passkeys {
    /// Passkeys bound to `public_url`'s host, or off (with the reason) when there is none.
    pub fn new(public_url: Option<&url::Url>) -> Passkeys {
        let relying_party = match public_url {
            None => Err(
                "passkeys need the portal's public_url (its DNS name) in the configuration".into(),
            ),
            Some(url) => match url.domain() {
                None => Err(format!(
                    "passkeys need a DNS name in the portal's public_url, not an address ({url})"
                )),
                Some(host) => WebauthnBuilder::new(host, url)
                    .and_then(|builder| builder.rp_name("Sallyport").build())
                    .map_err(|error| format!("passkeys are off: {error}")),
            },
        };
        if let (Err(reason), Some(_)) = (&relying_party, public_url) {
            warn!(%reason, "passkeys are off");
        }
        Passkeys {
            relying_party,
            registrations: Ceremonies::new(CEREMONY_TTL),
            sign_ins: Ceremonies::new(CEREMONY_TTL),
        }
    }

    /// The relying party, or why passkeys are off.
    fn relying_party(&self) -> Result<&Webauthn, &str> {
        self.relying_party.as_ref().map_err(String::as_str)
    }

    /// Whether passkeys can be used at all.
    pub fn available(&self) -> bool {
        self.relying_party.is_ok()
    }
}

/// The library's credential of a stored passkey; a stored value it cannot read counts as no passkey.
fn credential(record: &PasskeyRecord) -> Option<Passkey> {
    match serde_json::from_str(&record.credential) {
        Ok(passkey) => Some(passkey),
        Err(error) => {
            warn!(%error, passkey = record.id, "a stored passkey cannot be read");
            None
        }
    }
}

/// A passkey name as the user typed it, trimmed, or why it cannot be one.
fn valid_name(name: &str) -> Result<&str, &'static str> {
    let name = name.trim();
    if name.is_empty() {
        return Err("give the passkey a name, so you can tell your passkeys apart");
    }
    if name.chars().count() > MAX_NAME_CHARS || name.chars().any(char::is_control) {
        return Err("a passkey name is at most 64 characters, without control characters");
    }
    Ok(name)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn passkeys_need_a_dns_name() {
        assert!(!Passkeys::new(None).available());
        let address = url::Url::parse("https://127.0.0.1:8443/").unwrap();
        assert!(!Passkeys::new(Some(&address)).available());
        let name = url::Url::parse("https://bastion.example:8443/").unwrap();
        assert!(Passkeys::new(Some(&name)).available());
    }

    #[test]
    fn names_are_trimmed_bounded_and_printable() {
        assert_eq!(valid_name("  laptop "), Ok("laptop"));
        assert!(valid_name("   ").is_err());
        assert!(valid_name(&"x".repeat(65)).is_err());
        assert!(valid_name("a\u{7}b").is_err());
    }
}
