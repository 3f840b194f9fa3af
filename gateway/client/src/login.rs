//! `sallyport login`: pins the gateway's certificate on first use, then signs in one of three ways and
//! stores the client certificate the gateway issues for a fresh Ed25519 key:
//!
//! - the portal password (and the TOTP code when the account has one);
//! - `--browser`, or `--provider NAME` where a browser can be opened: the browser sign-in (RFC 8252,
//!   `sallyport_loopback`), in which the browser signs in at the portal any way its login page offers
//!   (the provider, a passkey, a password and its second factor) and comes back to a loopback port;
//! - `--provider NAME` without a browser (or with `--device`): the device flow (RFC 8628), where the
//!   user confirms a code at the provider's page, in any browser on any machine.
//!
//! Nothing secret is sent before the gateway is trusted.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rcgen::{KeyPair, PKCS_ED25519};
use rustls::pki_types::ServerName;
use sallyport_core::quic::{CliError, CliLoginRequest, CliLoginResponse};
use sallyport_core::sso::{
    BrowserExchangeRequest, DevicePollRequest, DevicePurpose, DeviceStartRequest, DeviceStarted,
};
use sallyport_loopback::LoopbackSignIn;

use crate::{profile, prompt};
use sallyport_tls_pin::{self as pin, PinVerifier};

/// Options of `sallyport login`.
pub struct LoginOptions {
    /// `https://host[:port]`.
    pub gateway: String,
    /// Portal username (asked when absent).
    pub username: Option<String>,
    /// Expected fingerprint, for scripted first use.
    pub fingerprint: Option<String>,
    /// Forget the pinned fingerprint and pin anew.
    pub repin: bool,
    /// Sign in at this identity provider of the gateway instead of a password.
    pub provider: Option<String>,
    /// Sign in in the browser (any of the portal's sign-ins), coming back to a loopback port.
    pub browser: bool,
    /// With a provider: the device flow even where a browser could be opened.
    pub device: bool,
}

/// One HTTPS connection to the portal.
struct Https {
    sender: SendRequest<Full<Bytes>>,
    authority: String,
}

impl Https {
    async fn connect(host: &str, port: u16, verifier: Arc<PinVerifier>) -> Result<Https> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        let tcp = tokio::net::TcpStream::connect((host, port))
            .await
            .with_context(|| format!("cannot reach the gateway at {host}:{port}"))?;
        let name = ServerName::try_from(host.to_owned())
            .with_context(|| format!("{host} is not a valid host name"))?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .with_context(|| format!("the TLS handshake with {host}:{port} failed"))?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .context("the gateway does not speak HTTP/1.1")?;
        tokio::spawn(connection);
        let authority = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        Ok(Https { sender, authority })
    }

    /// POSTs `request` as JSON to `path`; the status and body of the answer.
    async fn post_json(
        &mut self,
        path: &str,
        request: &impl serde::Serialize,
    ) -> Result<(u16, Vec<u8>)> {
        let body = serde_json::to_vec(request)?;
        let request = hyper::Request::post(path)
            .header(hyper::header::HOST, &self.authority)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))?;
        let response = self
            .sender
            .send_request(request)
            .await
            .context("the gateway did not answer")?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .context("the gateway's answer was cut off")?
            .to_bytes();
        Ok((status, body.to_vec()))
    }
}

/// Wall-clock milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// "7 h 59 min" from now until `at_ms`.
pub fn remaining(at_ms: u64) -> String {
    let minutes = at_ms.saturating_sub(now_ms()) / 60_000;
    format!("{} h {} min", minutes / 60, minutes % 60)
}

/// Runs `sallyport login`.
pub async fn run(options: LoginOptions) -> Result<()> {
    let dir = profile::dir()?;
    let (host, port) = profile::parse_gateway(&options.gateway)?;
    let gateway = format!("https://{}", {
        if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        }
    });
    let given = match &options.fingerprint {
        Some(text) => Some(pin::normalize(text).with_context(|| {
            format!("{text} is not a SHA-256 fingerprint (64 hex digits, colons allowed)")
        })?),
        None => None,
    };
    let pinned = match profile::load(&dir)? {
        Some(saved) if saved.gateway == gateway && !options.repin => Some(saved.fingerprint),
        _ => None,
    };
    if let (Some(given), Some(pinned)) = (&given, &pinned)
        && given != pinned
    {
        bail!(
            "the fingerprint you gave differs from the one pinned for {gateway}; use --repin to replace the pin"
        );
    }
    let expected = given.clone().or(pinned.clone());
    eprintln!("Connecting to {gateway} ...");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = PinVerifier::new(expected.clone(), provider.clone());
    let mut https = match Https::connect(&host, port, verifier.clone()).await {
        Ok(https) => https,
        Err(error)
            if pinned.is_some() && verifier.seen().is_some_and(|s| Some(&s) != pinned.as_ref()) =>
        {
            bail!(
                "the gateway's certificate changed: pinned {}, presented {}. This can mean someone is \
                 intercepting the connection. If the gateway's certificate really was replaced, check the \
                 new fingerprint with your administrator and run sallyport login --repin {gateway}\n({error:#})",
                pinned.unwrap_or_default(),
                verifier.seen().unwrap_or_default()
            );
        }
        Err(error) => return Err(error),
    };
    let fingerprint = verifier
        .seen()
        .context("the gateway presented no certificate")?;
    if expected.is_none() {
        eprintln!(
            "The gateway's certificate has the SHA-256 fingerprint\n  {fingerprint}\nCompare it with the \
             fingerprint the gateway printed when it started (or ask your administrator)."
        );
        if !prompt::confirm("Trust this gateway and pin its certificate? [y/N] ")? {
            bail!("the gateway was not trusted; nothing was sent");
        }
    }
    let key = KeyPair::generate_for(&PKCS_ED25519).context("making a key pair")?;
    let browser_first = options.browser || (options.provider.is_some() && !options.device);
    let by_browser = if browser_first {
        let pinned = PinVerifier::new(Some(fingerprint.clone()), provider.clone());
        let again = || Https::connect(&host, port, pinned.clone());
        browser_sign_in(
            &gateway,
            options.provider.as_deref(),
            &key,
            options.browser,
            again,
        )
        .await?
    } else {
        None
    };
    let issued = match (by_browser, &options.provider) {
        (Some(issued), _) => issued,
        (None, Some(provider)) => device_sign_in(&mut https, provider, &key).await?,
        (None, None) => password_login(&mut https, options.username, &key).await?,
    };
    profile::ensure_dir(&dir)?;
    profile::write_private(&profile::key_path(&dir), key.serialize_pem().as_bytes())?;
    profile::write_private(&profile::cert_path(&dir), issued.certificate.as_bytes())?;
    profile::save(
        &dir,
        &profile::Profile {
            gateway: gateway.clone(),
            fingerprint,
            username: Some(issued.username.clone()),
            expires_at_ms: Some(issued.expires_at_ms),
        },
    )?;
    println!(
        "Logged in to {gateway} as {}; the certificate is valid for {}.",
        issued.username,
        remaining(issued.expires_at_ms)
    );
    Ok(())
}

/// The gateway's refusal in its words (or the raw answer when it is not one).
fn refusal(status: u16, body: &[u8]) -> CliError {
    serde_json::from_slice(body).unwrap_or_else(|_| CliError {
        error: "unknown".into(),
        message: format!(
            "the gateway answered {status}: {}",
            String::from_utf8_lossy(body)
        ),
    })
}

/// Signs in in the browser: opens the gateway's `/login/cli` for a loopback port of this program, waits
/// for the browser to come back with the code, and trades it (on a new connection `connect` makes,
/// pinned to the same certificate, since the first one idled out meanwhile) for the certificate.
/// `None` when no browser could be opened and the caller may sign in another way; with `must`, the
/// page is printed to be opened by hand instead.
async fn browser_sign_in<F, C>(
    gateway: &str,
    provider: Option<&str>,
    key: &KeyPair,
    must: bool,
    connect: C,
) -> Result<Option<CliLoginResponse>>
where
    C: FnOnce() -> F,
    F: std::future::Future<Output = Result<Https>>,
{
    let sign_in = LoopbackSignIn::bind().context("listening on a loopback port for the browser")?;
    let base = url::Url::parse(gateway).context("the gateway's address")?;
    let url = sign_in.authorize_url(&base, "cli", provider)?;
    if !sallyport_loopback::offer(&url, must) {
        return Ok(None);
    }
    let callback =
        tokio::task::spawn_blocking(move || sign_in.wait(sallyport_loopback::BROWSER_WAIT))
            .await
            .context("the browser sign-in stopped")??;
    let request = BrowserExchangeRequest {
        code: callback.code,
        verifier: callback.verifier,
        public_key: Some(hex::encode(key.public_key_raw())),
    };
    let mut https = connect().await?;
    let (status, body) = https.post_json("/api/cli/exchange", &request).await?;
    if status != 200 {
        bail!("sign-in refused: {}", refusal(status, &body).message);
    }
    serde_json::from_slice(&body)
        .map(Some)
        .context("the gateway's answer is not understood")
}

/// Signs in at the gateway's identity provider by the device flow: the gateway starts it, the user
/// confirms the code at the provider (any browser, any machine), and the gateway's answer to the
/// polls is the certificate.
async fn device_sign_in(
    https: &mut Https,
    provider: &str,
    key: &KeyPair,
) -> Result<CliLoginResponse> {
    let start = DeviceStartRequest {
        provider: provider.to_owned(),
        purpose: DevicePurpose::Cli,
        public_key: Some(hex::encode(key.public_key_raw())),
    };
    let (status, body) = https.post_json("/api/sso/device", &start).await?;
    if status != 200 {
        bail!("sign-in refused: {}", refusal(status, &body).message);
    }
    let started: DeviceStarted =
        serde_json::from_slice(&body).context("the gateway's answer is not understood")?;
    eprintln!(
        "To sign in with {provider}, open
  {}
and confirm the code  {}",
        started.verification_uri, started.user_code
    );
    if let Some(complete) = &started.verification_uri_complete {
        eprintln!("(or open {complete}, which has the code in it)");
    }
    eprintln!(
        "Waiting for the confirmation (the code is good for {} minutes) ...",
        started.expires_in_secs.div_ceil(60)
    );
    let poll = DevicePollRequest {
        device_id: started.device_id,
    };
    // Each poll waits up to 20 s at the gateway; the code's own lifetime bounds the loop.
    let deadline =
        std::time::Instant::now() + std::time::Duration::from_secs(started.expires_in_secs + 30);
    while std::time::Instant::now() < deadline {
        let (status, body) = https.post_json("/api/sso/device/poll", &poll).await?;
        match status {
            202 => continue,
            200 => {
                return serde_json::from_slice(&body)
                    .context("the gateway's answer is not understood");
            }
            _ => bail!("sign-in refused: {}", refusal(status, &body).message),
        }
    }
    bail!("the code was not confirmed in time; run sallyport login again")
}

/// Logs in with the portal password (and the authenticator code when the account has one).
async fn password_login(
    https: &mut Https,
    username: Option<String>,
    key: &KeyPair,
) -> Result<CliLoginResponse> {
    let username = match username {
        Some(username) => username,
        None => prompt::line("Username: ")?,
    };
    let password = prompt::secret("Password: ")?;
    let mut request = CliLoginRequest {
        username: username.clone(),
        password,
        code: None,
        public_key: hex::encode(key.public_key_raw()),
    };
    let mut attempts = 0;
    loop {
        attempts += 1;
        let (status, body) = https.post_json("/api/cli/login", &request).await?;
        if status == 200 {
            return serde_json::from_slice(&body).context("the gateway's answer is not understood");
        }
        let error = refusal(status, &body);
        if error.error == "code_required" && request.code.is_none() && attempts < 3 {
            request.code = Some(prompt::line("Code from your authenticator app: ")?);
            continue;
        }
        bail!("login refused: {}", error.message);
    }
}
