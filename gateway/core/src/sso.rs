//! The programs' sign-in messages, shared by the portal, the `sallyport` CLI and `sallyport-review`:
//! the device sign-in (RFC 8628 through the gateway: the program asks the gateway to start a sign-in at
//! a provider, shows the user where to confirm it, and polls the gateway until the gateway's own check
//! of the provider's tokens let the account in, or said why not), and the browser sign-in's exchange
//! (RFC 8252: the one-time code the browser brought back to the program's loopback port, traded with
//! its verifier).

use serde::{Deserialize, Serialize};

/// What a program's sign-in (device or browser) is for: the CLI's client certificate, or the reviewer's
/// token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DevicePurpose {
    /// A client certificate for the key in [`DeviceStartRequest::public_key`].
    Cli,
    /// A review API token (auditors and admins).
    Review,
}

/// `POST /api/sso/device`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceStartRequest {
    /// The provider's configured name.
    pub provider: String,
    /// What the sign-in ends in.
    pub purpose: DevicePurpose,
    /// For [`DevicePurpose::Cli`]: the Ed25519 public key (32 bytes, hex) to certify.
    #[serde(default)]
    pub public_key: Option<String>,
}

/// The answer to [`DeviceStartRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceStarted {
    /// The gateway's handle of this sign-in (secret: it is what polls).
    pub device_id: String,
    /// The code the user confirms at the provider.
    pub user_code: String,
    /// Where.
    pub verification_uri: String,
    /// The same with the code in it, when the provider offers one.
    pub verification_uri_complete: Option<String>,
    /// Seconds the code is good for.
    pub expires_in_secs: u64,
}

/// `POST /api/sso/device/poll`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevicePollRequest {
    /// From [`DeviceStarted::device_id`].
    pub device_id: String,
}

/// The answer to a poll that has no result yet (`202 Accepted`); a finished sign-in answers with the
/// purpose's own login response (`CliLoginResponse`, or the reviewer's), a refusal with `CliError`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DevicePending {
    /// Always `pending`.
    pub status: String,
}

/// `POST /api/cli/exchange`: the browser sign-in's one-time code (from the loopback callback) traded
/// for what the sign-in was for. The answer is the purpose's login response, or a `CliError`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrowserExchangeRequest {
    /// The code the gateway sent the browser back with.
    pub code: String,
    /// The verifier whose SHA-256 (hex) the sign-in started with.
    pub verifier: String,
    /// For a CLI sign-in: the Ed25519 public key (32 bytes, hex) to certify.
    #[serde(default)]
    pub public_key: Option<String>,
}

impl std::fmt::Debug for BrowserExchangeRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrowserExchangeRequest")
            .field("public_key", &self.public_key)
            .finish_non_exhaustive()
    }
}
