//! Chromium's virtual authenticator, through chromedriver's WebAuthn extension commands (W3C WebAuthn,
//! "WebDriver Extensions"): a CTAP2 authenticator with resident keys and user verification that answers
//! the page's `navigator.credentials` calls by itself, and whose credentials (private key and signature
//! counter included) the test can read and plant, which is how a cloned authenticator is made; and
//! [`craft_assertion`], an answer signed here with such a credential's key, for what no browser sends
//! (another RP ID from the right origin, a replay).

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use fantoccini::Client;
use fantoccini::wd::WebDriverCompatibleCommand;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// One WebDriver extension command, on a path under the session.
#[derive(Debug)]
struct Command {
    method: http::Method,
    path: String,
    body: Option<Value>,
}

impl WebDriverCompatibleCommand for Command {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/{}",
            session_id.unwrap_or_default(),
            self.path
        ))
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (http::Method, Option<String>) {
        (
            self.method.clone(),
            self.body.as_ref().map(Value::to_string),
        )
    }
}

async fn send(
    driver: &Client,
    method: http::Method,
    path: String,
    body: Option<Value>,
) -> Result<Value> {
    let what = format!("{method} {path}");
    driver
        .issue_cmd(Command { method, path, body })
        .await
        .with_context(|| format!("WebDriver {what}"))
}

/// A virtual authenticator attached to the browser session.
#[derive(Debug, Clone)]
pub struct VirtualAuthenticator {
    id: String,
}

impl VirtualAuthenticator {
    /// Adds a platform-like authenticator (CTAP2, internal transport, resident keys, user verification
    /// that always succeeds, presence always given).
    pub async fn add(driver: &Client) -> Result<VirtualAuthenticator> {
        let answer = send(
            driver,
            http::Method::POST,
            "webauthn/authenticator".into(),
            Some(json!({
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": true,
                "hasUserVerification": true,
                "isUserConsenting": true,
                "isUserVerified": true,
            })),
        )
        .await?;
        let Some(id) = answer.as_str() else {
            bail!("chromedriver gave no authenticator id: {answer}");
        };
        Ok(VirtualAuthenticator { id: id.to_owned() })
    }

    /// The credentials it holds, as WebDriver describes them (`credentialId`, `rpId`, `privateKey`,
    /// `userHandle`, `signCount`, `isResidentCredential`).
    pub async fn credentials(&self, driver: &Client) -> Result<Vec<Value>> {
        let answer = send(
            driver,
            http::Method::GET,
            format!("webauthn/authenticator/{}/credentials", self.id),
            None,
        )
        .await?;
        answer
            .as_array()
            .cloned()
            .with_context(|| format!("not a list of credentials: {answer}"))
    }

    /// Plants `credential` (in the shape [`VirtualAuthenticator::credentials`] gives).
    pub async fn add_credential(&self, driver: &Client, credential: &Value) -> Result<()> {
        send(
            driver,
            http::Method::POST,
            format!("webauthn/authenticator/{}/credential", self.id),
            Some(credential.clone()),
        )
        .await
        .map(drop)
    }

    /// Deletes the credential `id` (base64url, as [`VirtualAuthenticator::credentials`] gives it).
    pub async fn remove_credential(&self, driver: &Client, id: &str) -> Result<()> {
        send(
            driver,
            http::Method::DELETE,
            format!("webauthn/authenticator/{}/credentials/{id}", self.id),
            None,
        )
        .await
        .map(drop)
    }

    /// Detaches it from the browser (its credentials go with it).
    pub async fn remove(self, driver: &Client) -> Result<()> {
        send(
            driver,
            http::Method::DELETE,
            format!("webauthn/authenticator/{}", self.id),
            None,
        )
        .await
        .map(drop)
    }
}

/// What a crafted assertion claims.
#[derive(Debug, Clone)]
pub struct Claims<'a> {
    /// The challenge (base64url) the portal gave.
    pub challenge: &'a str,
    /// The origin in the client data.
    pub origin: &'a str,
    /// The RP ID whose hash starts the authenticator data.
    pub rp_id: &'a str,
    /// The signature counter.
    pub counter: u32,
}

/// An assertion (`PublicKeyCredential.toJSON()`'s shape) for the virtual authenticator's `credential`,
/// signed with its private key over exactly what `claims` says, as an authenticator would: the
/// authenticator data (RP ID hash, user present and verified, the counter) and the client data's hash.
pub fn craft_assertion(credential: &Value, claims: &Claims<'_>) -> Result<Value> {
    let field = |name: &str| {
        credential[name]
            .as_str()
            .with_context(|| format!("the credential has no {name}: {credential}"))
    };
    let pkcs8 = B64.decode(field("privateKey")?)?;
    let key = ring::signature::EcdsaKeyPair::from_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        &pkcs8,
        &ring::rand::SystemRandom::new(),
    )
    .map_err(|error| anyhow!("the credential's key is not a P-256 PKCS#8 key: {error}"))?;
    let client_data = json!({
        "type": "webauthn.get",
        "challenge": claims.challenge,
        "origin": claims.origin,
        "crossOrigin": false,
    })
    .to_string();
    let mut authenticator_data = Sha256::digest(claims.rp_id.as_bytes()).to_vec();
    authenticator_data.push(0x05); // user present, user verified
    authenticator_data.extend_from_slice(&claims.counter.to_be_bytes());
    let mut signed = authenticator_data.clone();
    signed.extend_from_slice(&Sha256::digest(client_data.as_bytes()));
    let signature = key
        .sign(&ring::rand::SystemRandom::new(), &signed)
        .map_err(|error| anyhow!("signing: {error}"))?;
    let id = field("credentialId")?;
    Ok(json!({
        "id": id,
        "rawId": id,
        "type": "public-key",
        "response": {
            "authenticatorData": B64.encode(&authenticator_data),
            "clientDataJSON": B64.encode(client_data.as_bytes()),
            "signature": B64.encode(signature.as_ref()),
            "userHandle": field("userHandle")?,
        },
        "clientExtensionResults": {},
    }))
}
