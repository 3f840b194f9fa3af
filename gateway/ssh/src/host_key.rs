//! A target's SSH host key as an OpenSSH public key line, with its `SHA256:` fingerprint.

use std::fmt;
use std::sync::Arc;

use russh::keys::{HashAlg, PublicKey};

use crate::error::SshError;

/// A target's host key, normalized to the OpenSSH public key line `"<algorithm> <base64>"` (no comment).
///
/// Two keys are equal when their algorithm and key data are equal; comments are dropped on parsing. Cloning is
/// cheap (the key is shared), which also keeps [`SshError`] small.
#[derive(Clone, PartialEq, Eq)]
pub struct HostKey(Arc<Parts>);

#[derive(PartialEq, Eq)]
struct Parts {
    algorithm: String,
    line: String,
    fingerprint: String,
}

impl HostKey {
    /// Parses an OpenSSH public key line such as `"ssh-ed25519 AAAA... comment"`; the comment is dropped.
    pub fn from_openssh(s: &str) -> Result<HostKey, SshError> {
        let key = PublicKey::from_openssh(s.trim())
            .map_err(|e| SshError::BadHostKey(format!("not an openssh public key line: {e}")))?;
        HostKey::from_public_key(&key)
    }

    /// Builds a host key from a key russh decoded (e.g. the one the target presented).
    pub(crate) fn from_public_key(key: &PublicKey) -> Result<HostKey, SshError> {
        let mut key = key.clone();
        key.set_comment("");
        let line = key
            .to_openssh()
            .map_err(|e| SshError::BadHostKey(format!("cannot encode key: {e}")))?
            .trim_end()
            .to_owned();
        Ok(HostKey(Arc::new(Parts {
            algorithm: key.algorithm().as_str().to_owned(),
            line,
            fingerprint: key.fingerprint(HashAlg::Sha256).to_string(),
        })))
    }

    /// The OpenSSH public key line, `"ssh-ed25519 AAAA..."`, without comment.
    pub fn openssh(&self) -> String {
        self.0.line.clone()
    }

    /// The SHA-256 fingerprint as `ssh-keygen -l` prints it: `"SHA256:"` and unpadded base64.
    pub fn fingerprint(&self) -> String {
        self.0.fingerprint.clone()
    }

    /// The key algorithm name, e.g. `"ssh-ed25519"`, `"ecdsa-sha2-nistp256"`, `"ssh-rsa"`.
    pub fn algorithm(&self) -> &str {
        &self.0.algorithm
    }
}

impl fmt::Debug for HostKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostKey")
            .field("line", &self.0.line)
            .field("fingerprint", &self.0.fingerprint)
            .finish()
    }
}

impl fmt::Display for HostKey {
    /// Writes the OpenSSH public key line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.line)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    /// Checks that `input` parses to `line` with the fingerprint `ssh-keygen -lf` printed for it.
    fn check(input: &str, algorithm: &str, line: &str, fingerprint: &str) {
        let key = HostKey::from_openssh(input).unwrap();
        assert_eq!(key.algorithm(), algorithm);
        assert_eq!(key.openssh(), line);
        assert_eq!(key.to_string(), line);
        assert_eq!(key.fingerprint(), fingerprint);
        // The normalized line parses back to the same key.
        assert_eq!(HostKey::from_openssh(&key.openssh()).unwrap(), key);
    }

    // Keys made with ssh-keygen; fingerprints from `ssh-keygen -lf`.
    const ED25519: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILOnvmRkj+jZDCBLLMe22CMHsG7DnUUvX2juF3yyyOrb";
    const ED25519_FP: &str = "SHA256:6aAkwYDbvD1g2yVehJ1ROfW9y2Scmb6EcHQPwv+YVMc";
    const ECDSA: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBGn/H3T5X0QHYRbnKG4vF+h9tnDcqEMDe2sqZgv3YgxT9/bjiz6320X4UjOUQllBKvtViMPruptvKrfdj/NtZsk=";
    const ECDSA_FP: &str = "SHA256:wS2BEADZo9iafXiOJhegaybTISrhTaONjnWGA7E8ThE";
    const RSA: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQCeEKq0orhJOp0uaZLP9/IUuH2soR/or2Vx424Q7gkvIIexItsB+KnCo/Y5g4cBLeZhDGI4rKeZugp9XpwvutCMPZq9deNhOaiZxvmyuYdClBp38om5FYPrBP0GYKXZP0c3Yb2QOn+sws+QKm+FJk5Gx4DiX4Pw4V/TN36RbozjPg9tLASSDObQAY0g81YCd1COwl0xYZqtMZ9Pv8HW8hPm0M+/UnIS00wFlMT3zBQTVZOaQ01yaIahvkE4FpdoUU5wkn3ejzaG5f7vyUQaQlcxYL3pGe3vFsSjNo11LvJ6x8n0RGP8c40okZ5wCTQURT2KrToiqVdwhG/m8sSi9nmT";
    const RSA_FP: &str = "SHA256:v9F1r///wbne2RJWbUWQVrslvxUQ0AUqSbWnAeSVrLM";

    #[test]
    fn parse_format_fingerprint() {
        check(ED25519, "ssh-ed25519", ED25519, ED25519_FP);
        check(ECDSA, "ecdsa-sha2-nistp256", ECDSA, ECDSA_FP);
        check(RSA, "ssh-rsa", RSA, RSA_FP);
    }

    #[test]
    fn comment_and_whitespace_are_dropped() {
        check(
            &format!("  {ED25519} a@x\n"),
            "ssh-ed25519",
            ED25519,
            ED25519_FP,
        );
        assert_eq!(
            HostKey::from_openssh(&format!("{ED25519} some comment")).unwrap(),
            HostKey::from_openssh(ED25519).unwrap()
        );
    }

    #[test]
    fn different_keys_differ() {
        let other =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK99cM15Tk+kWET5X/iyMAHixVJ2+/kjqUMabpP/5kWt";
        let a = HostKey::from_openssh(ED25519).unwrap();
        let b = HostKey::from_openssh(other).unwrap();
        assert_ne!(a, b);
        assert_eq!(
            b.fingerprint(),
            "SHA256:WghRwEacmDWYhCLVPpV1CHUf/HZ6YcjLe+lkuJ3daik"
        );
    }

    #[test]
    fn garbage_is_rejected() {
        for input in [
            "",
            "ssh-ed25519",
            "ssh-ed25519 !!!!",
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILOnvmRkj",
            "SHA256:6aAkwYDbvD1g2yVehJ1ROfW9y2Scmb6EcHQPwv+YVMc",
            // Algorithm name that does not match the encoded key.
            "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAILOnvmRkj+jZDCBLLMe22CMHsG7DnUUvX2juF3yyyOrb",
        ] {
            let error = HostKey::from_openssh(input).unwrap_err();
            assert_eq!(error.kind(), crate::ErrorKind::BadHostKey, "{input:?}");
        }
    }
}
