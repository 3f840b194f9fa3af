//! `sallyport login`: pins the gateway's certificate on first use, asks for the portal credentials (and
//! the TOTP code when the account has one), and stores the client certificate the gateway issues for a
//! fresh Ed25519 key. Nothing secret is sent before the gateway is trusted.

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

    async fn login(&mut self, request: &CliLoginRequest) -> Result<(u16, Vec<u8>)> {
        let body = serde_json::to_vec(request)?;
        let request = hyper::Request::post("/api/cli/login")
            .header(hyper::header::HOST, &self.authority)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))?;
        let response = self
            .sender
            .send_request(request)
            .await
            .context("the gateway did not answer the login")?;
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
    let verifier = PinVerifier::new(expected.clone(), provider);
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
    let username = match options.username {
        Some(username) => username,
        None => prompt::line("Username: ")?,
    };
    let password = prompt::secret("Password: ")?;
    let key = KeyPair::generate_for(&PKCS_ED25519).context("making a key pair")?;
    let mut request = CliLoginRequest {
        username: username.clone(),
        password,
        code: None,
        public_key: hex::encode(key.public_key_raw()),
    };
    let mut attempts = 0;
    let issued: CliLoginResponse = loop {
        attempts += 1;
        let (status, body) = https.login(&request).await?;
        if status == 200 {
            break serde_json::from_slice(&body)
                .context("the gateway's answer is not understood")?;
        }
        let error: CliError = serde_json::from_slice(&body).unwrap_or_else(|_| CliError {
            error: "unknown".into(),
            message: format!(
                "the gateway answered {status}: {}",
                String::from_utf8_lossy(&body)
            ),
        });
        if error.error == "code_required" && request.code.is_none() && attempts < 3 {
            request.code = Some(prompt::line("Code from your authenticator app: ")?);
            continue;
        }
        bail!("login refused: {}", error.message);
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
