//! The device flow (RFC 8628) of a [`Provider`], for programs that cannot take a browser redirect: the
//! gateway starts it with its own client, tells the program the code and where to confirm it, and
//! polls the provider until the user did, checking the ID token like the code flow's.

use std::time::Duration;

use openidconnect::Nonce;

use crate::provider::{Provider, SignIn, SsoError, token_error};

/// A started device-flow login: what the user is told, and what the gateway polls with.
pub struct DeviceLogin {
    details: openidconnect::core::CoreDeviceAuthorizationResponse,
}

impl DeviceLogin {
    /// The code the user types at the provider.
    pub fn user_code(&self) -> &str {
        self.details.user_code().secret()
    }

    /// Where the user types it.
    pub fn verification_uri(&self) -> &str {
        self.details.verification_uri().as_str()
    }

    /// The same with the code filled in, when the provider offers it.
    pub fn verification_uri_complete(&self) -> Option<&str> {
        self.details
            .verification_uri_complete()
            .map(|uri| uri.secret().as_str())
    }

    /// How long the code is valid.
    pub fn expires_in(&self) -> Duration {
        self.details.expires_in()
    }
}

impl Provider {
    /// Starts a device-flow login (RFC 8628) for a program without a browser.
    pub async fn start_device(&self) -> Result<DeviceLogin, SsoError> {
        let metadata = self.metadata(false).await?;
        let Some(endpoint) = metadata
            .additional_metadata()
            .device_authorization_endpoint
            .clone()
        else {
            return Err(SsoError::Refused(format!(
                "{} offers no device sign-in; use the browser sign-in",
                self.config.name
            )));
        };
        let client = self
            .client(&metadata)
            .set_device_authorization_url(endpoint);
        let details = client
            .exchange_device_code()
            .add_scopes(self.scopes())
            .request_async(&self.http)
            .await
            .map_err(|e| token_error("the device sign-in", e))?;
        Ok(DeviceLogin { details })
    }

    /// Polls the provider (at its interval, until the code expires) until the user finished the
    /// device login there, then checks the ID token like the code flow's.
    pub async fn finish_device(&self, device: &DeviceLogin) -> Result<SignIn, SsoError> {
        let metadata = self.metadata(false).await?;
        let client = self.client(&metadata);
        let response = client
            .exchange_device_access_token(&device.details)
            .map_err(|e| SsoError::Unreachable(format!("the provider has no token endpoint: {e}")))?
            .request_async(&self.http, tokio::time::sleep, None)
            .await
            .map_err(|e| token_error("the device sign-in", e))?;
        self.signed_in(response, &Nonce::new(String::new()), None)
            .await
    }
}
