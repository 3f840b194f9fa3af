//! The credential a user typed for one connect, with redacted `Debug`, and the checked decoding of private keys.
//!
//! Private keys come from the user, so decoding them is treated as hostile input: an encrypted key names its own
//! key-derivation cost (bcrypt rounds, Argon2 memory, scrypt N), and a crafted one could burn CPU for minutes or
//! ask for gigabytes. Those costs are checked before anything is derived.

use std::fmt;

use russh::keys::PrivateKey;
use russh::keys::ssh_key::Kdf;

use crate::error::SshError;

/// A credential for the target, typed by the user at connect time. It is consumed by one connect and never
/// stored or logged; `Debug` shows only which kind it is.
#[derive(Clone)]
pub enum Credential {
    /// Password authentication (or keyboard-interactive answered with this password).
    Password(String),
    /// Public key authentication with a private key in OpenSSH, PEM (PKCS#1, PKCS#8) or PuTTY format.
    PrivateKey {
        /// The private key file's text.
        pem: String,
        /// The passphrase if the key is encrypted.
        passphrase: Option<String>,
    },
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Password(_) => f.write_str("Password(<redacted>)"),
            Credential::PrivateKey { passphrase, .. } => f
                .debug_struct("PrivateKey")
                .field("pem", &format_args!("<redacted>"))
                .field(
                    "passphrase",
                    &format_args!(
                        "{}",
                        if passphrase.is_some() {
                            "<redacted>"
                        } else {
                            "None"
                        }
                    ),
                )
                .finish(),
        }
    }
}

/// Longest private key text accepted; an RSA-16384 key in OpenSSH format is about 13 KiB.
const MAX_KEY_TEXT: usize = 64 * 1024;
/// Most bcrypt-pbkdf rounds accepted for an encrypted OpenSSH key. ssh-keygen uses 16 by default; each round
/// costs about 7 ms of one core (measured with ssh-keygen), so this caps the work at a few seconds.
const MAX_BCRYPT_ROUNDS: u32 = 500;
/// Most Argon2 memory (KiB) accepted for an encrypted PuTTY key; PuTTYgen's default is 8192.
const MAX_ARGON2_MEMORY_KIB: u64 = 64 * 1024;
/// Most Argon2 passes accepted for an encrypted PuTTY key; PuTTYgen picks them for about 100 ms.
const MAX_ARGON2_PASSES: u64 = 64;
/// Most Argon2 lanes accepted for an encrypted PuTTY key; PuTTYgen's default is 1.
const MAX_ARGON2_PARALLELISM: u64 = 4;

/// Decodes a user-supplied private key, refusing key-derivation parameters that would cost too much.
///
/// This is CPU work (key derivation) and should run on a blocking thread.
pub(crate) fn decode_private_key(
    pem: &str,
    passphrase: Option<&str>,
) -> Result<PrivateKey, SshError> {
    if pem.len() > MAX_KEY_TEXT {
        return Err(bad("the key text is too long"));
    }
    // An empty passphrase field means "none given", so that an encrypted key gets the clearer message.
    let passphrase = passphrase.filter(|p| !p.is_empty());
    let trimmed = pem.trim_start();
    if trimmed.starts_with("PuTTY-User-Key-File-") {
        check_putty_kdf(trimmed)?;
    } else if pem
        .lines()
        .any(|l| l.trim_end() == "-----BEGIN ENCRYPTED PRIVATE KEY-----")
    {
        // Encrypted PKCS#8 names its own KDF (PBKDF2 up to 10^8 iterations, scrypt with any N); rather than
        // parse the ASN.1 here, ask for a re-encoding (`ssh-keygen -p` writes the OpenSSH format).
        return Err(bad(
            "encrypted PKCS#8 keys are not supported; convert the key with ssh-keygen -p",
        ));
    } else if pem
        .lines()
        .any(|l| l.trim_end() == "-----BEGIN OPENSSH PRIVATE KEY-----")
    {
        return decode_openssh(pem, passphrase);
    }
    russh::keys::decode_secret_key(pem, passphrase).map_err(|e| key_error(&e, passphrase.is_some()))
}

/// Decodes the OpenSSH format with ssh-key directly, so that the bcrypt rounds are checked before decrypting.
fn decode_openssh(pem: &str, passphrase: Option<&str>) -> Result<PrivateKey, SshError> {
    let key = PrivateKey::from_openssh(pem).map_err(|_| bad("not a valid OpenSSH private key"))?;
    if !key.is_encrypted() {
        return Ok(key);
    }
    if let Kdf::Bcrypt { rounds, .. } = key.kdf()
        && *rounds > MAX_BCRYPT_ROUNDS
    {
        return Err(bad(&format!(
            "the key asks for {rounds} key-derivation rounds, more than the {MAX_BCRYPT_ROUNDS} accepted"
        )));
    }
    let Some(passphrase) = passphrase else {
        return Err(bad("the key is encrypted and no passphrase was given"));
    };
    key.decrypt(passphrase)
        .map_err(|_| bad("wrong passphrase or damaged key"))
}

/// Checks the Argon2 parameters in a PuTTY key's header lines (PPK version 3).
fn check_putty_kdf(text: &str) -> Result<(), SshError> {
    for line in text.lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let limit = match name.trim() {
            "Argon2-Memory" => MAX_ARGON2_MEMORY_KIB,
            "Argon2-Passes" => MAX_ARGON2_PASSES,
            "Argon2-Parallelism" => MAX_ARGON2_PARALLELISM,
            _ => continue,
        };
        match value.trim().parse::<u64>() {
            Ok(v) if v <= limit => {}
            _ => {
                return Err(bad(&format!(
                    "the key's {} is outside the accepted range",
                    name.trim()
                )));
            }
        }
    }
    Ok(())
}

fn key_error(error: &russh::keys::Error, had_passphrase: bool) -> SshError {
    match error {
        russh::keys::Error::KeyIsEncrypted => {
            bad("the key is encrypted and no passphrase was given")
        }
        russh::keys::Error::UnsupportedKeyType {
            key_type_string, ..
        } => bad(&format!("unsupported key type {key_type_string}")),
        _ if had_passphrase => bad("wrong passphrase or damaged key"),
        _ => bad("not a private key in a supported format"),
    }
}

fn bad(message: &str) -> SshError {
    SshError::BadPrivateKey(message.to_owned())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    // Made with `ssh-keygen -t ed25519 -N '' -C ''`, and with `-N secret` for the encrypted one; test keys only.
    const ED25519_PLAIN: &str = include_str!("../test_data/ed25519_plain");
    const ED25519_ENCRYPTED: &str = include_str!("../test_data/ed25519_secret");
    const ED25519_MANY_ROUNDS: &str = include_str!("../test_data/ed25519_secret_1000_rounds");
    const RSA_PKCS1: &str = include_str!("../test_data/rsa_pkcs1");

    fn check_bad(pem: &str, passphrase: Option<&str>, message: &str) {
        let error = decode_private_key(pem, passphrase).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::BadPrivateKey);
        assert_eq!(
            error.to_string(),
            format!("private key unusable: {message}")
        );
    }

    #[test]
    fn debug_is_redacted() {
        let password = Credential::Password("hunter2".into());
        assert_eq!(format!("{password:?}"), "Password(<redacted>)");
        let key = Credential::PrivateKey {
            pem: ED25519_PLAIN.into(),
            passphrase: Some("hunter2".into()),
        };
        let shown = format!("{key:?} {key:#?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("OPENSSH"), "{shown}");
        assert_eq!(
            format!("{key:?}"),
            "PrivateKey { pem: <redacted>, passphrase: <redacted> }"
        );
        let key = Credential::PrivateKey {
            pem: ED25519_PLAIN.into(),
            passphrase: None,
        };
        assert_eq!(
            format!("{key:?}"),
            "PrivateKey { pem: <redacted>, passphrase: None }"
        );
    }

    #[test]
    fn plain_and_encrypted_keys_decode() {
        let expected =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBtivZyVoIyupD14ARSvW6hS3py84+Q6R/YpHmSg7+yU";
        for (pem, passphrase) in [
            (ED25519_PLAIN, None),
            (ED25519_PLAIN, Some("")),
            (ED25519_ENCRYPTED, Some("secret")),
        ] {
            let key = decode_private_key(pem, passphrase).unwrap();
            assert_eq!(key.public_key().to_openssh().unwrap().trim(), expected);
        }
        let rsa = decode_private_key(RSA_PKCS1, None).unwrap();
        assert!(rsa.algorithm().is_rsa());
    }

    #[test]
    fn bad_keys_are_refused_with_a_reason() {
        check_bad(
            ED25519_ENCRYPTED,
            None,
            "the key is encrypted and no passphrase was given",
        );
        check_bad(
            ED25519_ENCRYPTED,
            Some(""),
            "the key is encrypted and no passphrase was given",
        );
        check_bad(
            ED25519_ENCRYPTED,
            Some("wrong"),
            "wrong passphrase or damaged key",
        );
        check_bad(
            ED25519_MANY_ROUNDS,
            Some("secret"),
            "the key asks for 1000 key-derivation rounds, more than the 500 accepted",
        );
        check_bad("", None, "not a private key in a supported format");
        check_bad("hello", Some("x"), "wrong passphrase or damaged key");
        check_bad(
            "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
            None,
            "not a valid OpenSSH private key",
        );
        check_bad(
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
            Some("x"),
            "encrypted PKCS#8 keys are not supported; convert the key with ssh-keygen -p",
        );
        check_bad(
            &"A".repeat(MAX_KEY_TEXT + 1),
            None,
            "the key text is too long",
        );
    }

    #[test]
    fn putty_argon2_costs_are_capped() {
        let header = |memory: &str| {
            format!(
                "PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: aes256-cbc\nComment: x\nPublic-Lines: 0\n\
                 Key-Derivation: Argon2id\nArgon2-Memory: {memory}\nArgon2-Passes: 8\nArgon2-Parallelism: 1\n"
            )
        };
        check_bad(
            &header("4194304"),
            Some("x"),
            "the key's Argon2-Memory is outside the accepted range",
        );
        check_bad(
            &header("lots"),
            Some("x"),
            "the key's Argon2-Memory is outside the accepted range",
        );
        assert!(check_putty_kdf(&header("8192")).is_ok());
    }
}
