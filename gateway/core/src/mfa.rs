//! Time-based one-time passwords (RFC 6238, the codes authenticator apps show) and recovery codes.
//!
//! Pure functions: the time and the secret's randomness are parameters. A code is accepted for the
//! current 30-second step and one step either side (clock drift), and each step is accepted once per
//! user: the caller stores the last accepted step and passes it back, so a code seen over a shoulder
//! cannot be replayed.

use totp_rs::{Algorithm, Builder, Secret, Totp};

/// Seconds per code.
pub const STEP_SECONDS: u64 = 30;
/// Bytes of a TOTP secret (160 bits, as RFC 4226 recommends).
pub const SECRET_LEN: usize = 20;

fn totp(secret: &[u8], account: &str) -> Option<Totp> {
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_skew(1)
        .with_step_duration(STEP_SECONDS)
        .with_secret(secret)
        .with_account_name(account)
        .with_issuer(Some("Sallyport"))
        .build()
        .ok()
}

/// The `otpauth://` URL an authenticator app scans (as a QR code) to enroll `account`.
pub fn enrollment_url(secret: &[u8], account: &str) -> Option<String> {
    totp(secret, account).and_then(|t| t.to_url().ok())
}

/// The secret in base32, for typing into an app by hand.
pub fn secret_base32(secret: &[u8]) -> String {
    Secret::from(secret).to_base32()
}

/// Decodes a base32 secret as [`secret_base32`] writes it (and as apps export it).
pub fn secret_from_base32(text: &str) -> Option<Vec<u8>> {
    Secret::try_from_base32(text.trim())
        .ok()
        .map(|secret| secret.as_ref().to_vec())
}

/// The code for the step containing `unix_seconds`.
pub fn code_at(secret: &[u8], unix_seconds: u64) -> Option<String> {
    totp(secret, "code").map(|t| t.generate(unix_seconds).to_string())
}

/// Checks `code` at `unix_seconds`. Returns the accepted step when the code matches a step after
/// `last_used_step` (one step of drift either way), `None` otherwise.
pub fn verify(
    secret: &[u8],
    code: &str,
    unix_seconds: u64,
    last_used_step: Option<u64>,
) -> Option<u64> {
    let code = code.trim();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let totp = totp(secret, "code")?;
    let now_step = unix_seconds / STEP_SECONDS;
    [now_step.saturating_sub(1), now_step, now_step + 1]
        .into_iter()
        .filter(|step| last_used_step.is_none_or(|last| *step > last))
        .find(|step| totp.generate(step * STEP_SECONDS).to_string() == code)
}

/// Turns 10 random bytes into a recovery code such as `k3x9-7mqa-2hpr-d4xz` (base32, grouped).
pub fn recovery_code(random: &[u8; 10]) -> String {
    let encoded = Secret::from(&random[..]).to_base32().to_ascii_lowercase();
    encoded
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join("-")
}

/// Normalizes a typed recovery code for comparison (case, spaces and dashes do not matter).
pub fn normalize_recovery_code(typed: &str) -> String {
    typed
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    const SECRET: &[u8; 20] = b"12345678901234567890";

    #[test]
    fn rfc6238_vectors() {
        // RFC 6238 appendix B, SHA-1, truncated to 6 digits.
        for (time, code) in [
            (59, "287082"),
            (1111111109, "081804"),
            (1234567890, "005924"),
            (2000000000, "279037"),
        ] {
            assert_eq!(code_at(SECRET, time).unwrap(), code, "t={time}");
        }
    }

    #[test]
    fn drift_and_replay() {
        let now = 1_700_000_000;
        let code = code_at(SECRET, now).unwrap();
        let step = verify(SECRET, &code, now, None).unwrap();
        assert_eq!(step, now / STEP_SECONDS);
        assert_eq!(
            verify(SECRET, &code, now, Some(step)),
            None,
            "a code must not be accepted twice"
        );
        let next = code_at(SECRET, now + 30).unwrap();
        assert_eq!(
            verify(SECRET, &next, now, Some(step)),
            Some(step + 1),
            "one step of drift is accepted"
        );
        let far = code_at(SECRET, now + 90).unwrap();
        assert_eq!(verify(SECRET, &far, now, None), None);
        for bad in ["", "12345", "1234567", "abcdef", " 12 345"] {
            assert_eq!(verify(SECRET, bad, now, None), None, "{bad:?}");
        }
    }

    #[test]
    fn enrollment_url_and_recovery_codes() {
        let url = enrollment_url(SECRET, "alice").unwrap();
        assert!(
            url.starts_with("otpauth://totp/Sallyport:alice?secret="),
            "{url}"
        );
        assert_eq!(secret_base32(SECRET), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        assert_eq!(
            secret_from_base32("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ").as_deref(),
            Some(&SECRET[..])
        );
        assert_eq!(secret_from_base32("not base32!"), None);
        let code = recovery_code(&[0xff; 10]);
        assert_eq!(code.len(), 16 + 3);
        assert_eq!(
            normalize_recovery_code(&code.to_uppercase().replace('-', " ")),
            code.replace('-', "")
        );
    }
}
