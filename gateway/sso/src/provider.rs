//! One OpenID provider over the network, through the `openidconnect` crate: discovery (cached, fetched
//! again when a token names a key the cached JWKS lacks, so the provider's key rotation needs nothing
//! here), the authorization-code flow with PKCE, `state` and `nonce`, the device flow (RFC 8628), and
//! the re-check of a signed-in account (refresh token, then userinfo).
//!
//! Every ID token is checked by the crate: signature against the provider's JWKS (no `none`, only
//! the algorithms the provider announces), issuer, audience, expiry, nonce; the access-token hash too
//! when the token carries one. Claims come out as one JSON object (the ID token's, then userinfo's
//! on top) for [`crate::mapping`].

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreAuthenticationFlow, CoreClaimName, CoreClaimType,
    CoreClientAuthMethod, CoreErrorResponseType, CoreGenderClaim, CoreGrantType, CoreJsonWebKey,
    CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm, CoreJwsSigningAlgorithm,
    CoreResponseMode, CoreResponseType, CoreRevocableToken, CoreRevocationErrorResponse,
    CoreSubjectIdentifierType, CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AccessToken, AccessTokenHash, AdditionalClaims, AdditionalProviderMetadata, AuthorizationCode,
    ClaimsVerificationError, Client, ClientId, ClientSecret, CsrfToken, DeviceAuthorizationUrl,
    EmptyExtraTokenFields, EndpointMaybeSet, EndpointNotSet, EndpointSet, IdToken, IdTokenFields,
    IssuerUrl, Nonce, NonceVerifier, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier,
    ProviderMetadata, RedirectUrl, RefreshToken, RequestTokenError, Scope,
    SignatureVerificationError, StandardErrorResponse, StandardTokenResponse, SubjectIdentifier,
    TokenResponse as _,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use url::Url;

use crate::config::ProviderConfig;

/// Claims besides the standard ones (groups, and whatever the username claim names), kept as JSON.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct ExtraClaims {
    #[serde(flatten)]
    rest: Map<String, Value>,
}

impl AdditionalClaims for ExtraClaims {}

/// Discovery fields the core metadata type does not have.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ExtraMetadata {
    /// RFC 8628's endpoint, when the provider has the device flow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) device_authorization_endpoint: Option<DeviceAuthorizationUrl>,
    /// RFC 9207: the provider puts `iss` in its authorization responses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    authorization_response_iss_parameter_supported: Option<bool>,
}

impl AdditionalProviderMetadata for ExtraMetadata {}

type Metadata = ProviderMetadata<
    ExtraMetadata,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

type IdTokenWithClaims = IdToken<
    ExtraClaims,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;

type TokenResponse = StandardTokenResponse<
    IdTokenFields<
        ExtraClaims,
        EmptyExtraTokenFields,
        CoreGenderClaim,
        CoreJweContentEncryptionAlgorithm,
        CoreJwsSigningAlgorithm,
    >,
    CoreTokenType,
>;

/// The crate's client as discovery makes it: the authorization endpoint set, token and userinfo
/// endpoints as the provider announced them.
type OidcClient = Client<
    ExtraClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    TokenResponse,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// Discovery is fetched again after this long even without a reason.
const METADATA_MAX_AGE: Duration = Duration::from_secs(3600);
/// A token with an unknown key fetches the JWKS again at most this often (a stream of forged key
/// ids must not become a stream of requests to the provider).
const REFETCH_MIN_INTERVAL: Duration = Duration::from_secs(10);
/// Deadline of each request to the provider.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Why talking to the provider did not sign anyone in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SsoError {
    /// The provider or the token check said no: a bad token, a used code, a disabled account.
    #[error("{0}")]
    Refused(String),
    /// The provider could not be reached or answered nonsense; nothing was decided.
    #[error("{0}")]
    Unreachable(String),
}

/// What a started code-flow login must keep until its callback: single use, secret.
pub struct CodeLogin {
    csrf: CsrfToken,
    nonce: Nonce,
    pkce: PkceCodeVerifier,
    redirect: RedirectUrl,
}

impl CodeLogin {
    /// The `state` value sent to the provider, which the callback must bring back.
    pub fn state(&self) -> &str {
        self.csrf.secret()
    }
}

/// What the provider's tokens let the gateway check again later.
#[derive(Clone)]
pub struct Tokens {
    subject: SubjectIdentifier,
    access: AccessToken,
    access_expires: Option<Instant>,
    refresh: Option<RefreshToken>,
}

impl Tokens {
    /// True when the gateway can still ask the provider about this account: a refresh token, or an
    /// access token that has not expired.
    pub fn can_recheck(&self, now: Instant) -> bool {
        self.refresh.is_some() || self.access_expires.is_none_or(|at| now < at)
    }
}

/// A verified sign-in: the claims, and the tokens for re-checking.
pub struct SignIn {
    /// The ID token's claims with userinfo's on top.
    pub claims: Map<String, Value>,
    /// For [`Provider::recheck`].
    pub tokens: Tokens,
}

struct Discovered {
    metadata: Arc<Metadata>,
    fetched: Instant,
}

/// One configured provider.
pub struct Provider {
    pub(crate) config: ProviderConfig,
    pub(crate) http: reqwest::Client,
    discovered: Mutex<Option<Discovered>>,
}

fn words(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A token-endpoint error as words: the provider's own answer means it refused.
pub(crate) fn token_error<
    RE: std::error::Error + 'static,
    T: openidconnect::ErrorResponse + 'static,
>(
    what: &str,
    error: RequestTokenError<RE, T>,
) -> SsoError {
    match error {
        RequestTokenError::ServerResponse(response) => {
            SsoError::Refused(format!("the identity provider refused {what}: {response}"))
        }
        other => SsoError::Unreachable(format!("{what} failed: {}", words(&other))),
    }
}

fn as_object<T: Serialize>(value: &T) -> Map<String, Value> {
    match serde_json::to_value(value) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    }
}

impl Provider {
    /// A provider from its settings (nothing is fetched yet).
    pub fn new(config: ProviderConfig) -> Result<Provider, String> {
        let mut builder = reqwest::Client::builder()
            // Following redirects would let the provider's answers send the gateway anywhere.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(REQUEST_TIMEOUT);
        if let Some(pem) = &config.extra_roots_pem {
            let certificates =
                reqwest::Certificate::from_pem_bundle(pem).map_err(|e| format!("ca_file: {e}"))?;
            if certificates.is_empty() {
                return Err("ca_file holds no PEM certificate".into());
            }
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let http = builder.build().map_err(|e| format!("HTTPS client: {e}"))?;
        Ok(Provider {
            config,
            http,
            discovered: Mutex::new(None),
        })
    }

    /// The settings.
    pub fn config(&self) -> &ProviderConfig {
        &self.config
    }

    /// The provider's metadata and keys: cached, fetched when older than an hour, or when `refetch`
    /// (a token named an unknown key) and the last fetch is more than a few seconds old.
    pub(crate) async fn metadata(&self, refetch: bool) -> Result<Arc<Metadata>, SsoError> {
        {
            let cached = self
                .discovered
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if let Some(found) = cached.as_ref() {
                let age = found.fetched.elapsed();
                let fresh = if refetch {
                    age < REFETCH_MIN_INTERVAL
                } else {
                    age < METADATA_MAX_AGE
                };
                if fresh {
                    return Ok(found.metadata.clone());
                }
            }
        }
        let issuer = IssuerUrl::new(self.config.issuer.clone())
            .map_err(|e| SsoError::Unreachable(format!("issuer URL: {e}")))?;
        let metadata = Metadata::discover_async(issuer, &self.http)
            .await
            .map_err(|e| {
                SsoError::Unreachable(format!(
                    "the identity provider's discovery failed: {}",
                    words(&e)
                ))
            })?;
        let metadata = Arc::new(metadata);
        *self
            .discovered
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(Discovered {
            metadata: metadata.clone(),
            fetched: Instant::now(),
        });
        Ok(metadata)
    }

    pub(crate) fn client(&self, metadata: &Metadata) -> OidcClient {
        OidcClient::from_provider_metadata(
            metadata.clone(),
            ClientId::new(self.config.client_id.clone()),
            Some(ClientSecret::new(self.config.client_secret.clone())),
        )
    }

    pub(crate) fn scopes(&self) -> impl Iterator<Item = Scope> + '_ {
        self.config
            .scopes
            .iter()
            .filter(|scope| scope.as_str() != "openid")
            .map(|scope| Scope::new(scope.clone()))
    }

    /// Starts a code-flow login: the provider's authorization URL to send the browser to, and what
    /// the callback needs.
    pub async fn begin(&self, redirect_uri: &Url) -> Result<(Url, CodeLogin), SsoError> {
        let metadata = self.metadata(false).await?;
        let redirect = RedirectUrl::from_url(redirect_uri.clone());
        let client = self.client(&metadata).set_redirect_uri(redirect.clone());
        let (challenge, pkce) = PkceCodeChallenge::new_random_sha256();
        let (url, csrf, nonce) = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scopes(self.scopes())
            .set_pkce_challenge(challenge)
            .url();
        Ok((
            url,
            CodeLogin {
                csrf,
                nonce,
                pkce,
                redirect,
            },
        ))
    }

    /// Finishes a code-flow login from its callback's `code` (and `iss`, RFC 9207, when sent): the
    /// code traded with the PKCE verifier, the ID token checked with the login's nonce, userinfo read.
    pub async fn finish(
        &self,
        login: CodeLogin,
        code: &str,
        iss: Option<&str>,
    ) -> Result<SignIn, SsoError> {
        let metadata = self.metadata(false).await?;
        match iss {
            Some(iss) if iss != metadata.issuer().as_str() => {
                return Err(SsoError::Refused(format!(
                    "the sign-in answer came from issuer {iss:?}, not {}",
                    metadata.issuer().as_str()
                )));
            }
            None if metadata
                .additional_metadata()
                .authorization_response_iss_parameter_supported
                == Some(true) =>
            {
                return Err(SsoError::Refused(
                    "the sign-in answer named no issuer, which this provider always does".into(),
                ));
            }
            _ => {}
        }
        let client = self.client(&metadata).set_redirect_uri(login.redirect);
        let response = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| SsoError::Unreachable(format!("the provider has no token endpoint: {e}")))?
            .set_pkce_verifier(login.pkce)
            .request_async(&self.http)
            .await
            .map_err(|e| token_error("the sign-in code", e))?;
        self.signed_in(response, &login.nonce, None).await
    }

    /// Checks the token response's ID token (a key it names that the cached JWKS lacks fetches the
    /// keys again, once) and reads userinfo; `nonce` is the login's, or `None` where the flow has none
    /// (the device flow, a refresh), when the token's subject must be `subject` if given.
    pub(crate) async fn signed_in(
        &self,
        response: TokenResponse,
        nonce: &Nonce,
        expected_subject: Option<&SubjectIdentifier>,
    ) -> Result<SignIn, SsoError> {
        let id_token = response
            .id_token()
            .ok_or_else(|| SsoError::Refused("the identity provider sent no ID token".into()))?;
        let access = response.access_token().clone();
        let mut claims = self.verify(id_token, nonce, &access).await?;
        let subject = SubjectIdentifier::new(
            claims
                .get("sub")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        );
        if let Some(expected) = expected_subject
            && *expected != subject
        {
            return Err(SsoError::Refused(
                "the identity provider's new token names another account".into(),
            ));
        }
        if let Some(userinfo) = self.userinfo(&access, &subject).await? {
            claims.extend(userinfo);
        }
        Ok(SignIn {
            claims,
            tokens: Tokens {
                subject,
                access,
                access_expires: response.expires_in().map(|d| Instant::now() + d),
                refresh: response.refresh_token().cloned(),
            },
        })
    }

    /// Checks an ID token; a key id the cached JWKS lacks fetches the keys again (rate-limited) and
    /// checks once more, which is how the provider's key rotation is followed.
    async fn verify(
        &self,
        id_token: &IdTokenWithClaims,
        nonce: &Nonce,
        access: &AccessToken,
    ) -> Result<Map<String, Value>, SsoError> {
        match self.verify_with(id_token, nonce, access, false).await {
            Err(VerifyError::UnknownKey(_)) => self
                .verify_with(id_token, nonce, access, true)
                .await
                .map_err(VerifyError::into_refusal),
            other => other.map_err(VerifyError::into_refusal),
        }
    }

    async fn verify_with(
        &self,
        id_token: &IdTokenWithClaims,
        nonce: &Nonce,
        access: &AccessToken,
        refetch: bool,
    ) -> Result<Map<String, Value>, VerifyError> {
        let metadata = self.metadata(refetch).await.map_err(VerifyError::Other)?;
        let client = self.client(&metadata);
        let verifier = client.id_token_verifier();
        let claims = id_token
            .claims(&verifier, NonceCheck(nonce))
            .map_err(|e| match e {
                ClaimsVerificationError::SignatureVerification(
                    SignatureVerificationError::NoMatchingKey,
                ) => VerifyError::UnknownKey(words(&e)),
                other => VerifyError::Other(SsoError::Refused(format!(
                    "the ID token was refused: {}",
                    words(&other)
                ))),
            })?;
        if let Some(expected) = claims.access_token_hash() {
            // The hash binds the access token to this ID token (OpenID Connect Core 3.1.3.8).
            let refuse = |why: String| {
                VerifyError::Other(SsoError::Refused(format!(
                    "the ID token's access-token hash could not be checked: {why}"
                )))
            };
            let alg = id_token.signing_alg().map_err(|e| refuse(words(&e)))?;
            let key = id_token
                .signing_key(&verifier)
                .map_err(|e| refuse(words(&e)))?;
            let actual =
                AccessTokenHash::from_token(access, alg, key).map_err(|e| refuse(words(&e)))?;
            if actual != *expected {
                return Err(VerifyError::Other(SsoError::Refused(
                    "the ID token belongs to another access token".into(),
                )));
            }
        }
        Ok(as_object(claims))
    }

    /// Userinfo's claims for the access token, checked to be the same subject; `None` when the
    /// provider has no userinfo endpoint.
    async fn userinfo(
        &self,
        access: &AccessToken,
        subject: &SubjectIdentifier,
    ) -> Result<Option<Map<String, Value>>, SsoError> {
        let metadata = self.metadata(false).await?;
        let client = self.client(&metadata);
        let Ok(request) = client.user_info(access.clone(), Some(subject.clone())) else {
            return Ok(None);
        };
        let claims: openidconnect::UserInfoClaims<ExtraClaims, CoreGenderClaim> = request
            .request_async(&self.http)
            .await
            .map_err(|e| match e {
                openidconnect::UserInfoError::Response(status, _, _)
                    if status.is_client_error() =>
                {
                    SsoError::Refused(format!(
                        "the identity provider no longer vouches for this account (userinfo answered {status})"
                    ))
                }
                openidconnect::UserInfoError::ClaimsVerification(e) => {
                    SsoError::Refused(format!("userinfo was refused: {}", words(&e)))
                }
                other => SsoError::Unreachable(format!("userinfo failed: {}", words(&other))),
            })?;
        Ok(Some(as_object(&claims)))
    }

    /// Asks the provider about a signed-in account again: the refresh token traded for new tokens
    /// (a disabled account's is refused), else the access token while it is valid; then userinfo.
    /// The claims come back for mapping again, with the tokens to keep.
    pub async fn recheck(&self, tokens: &Tokens) -> Result<SignIn, SsoError> {
        if let Some(refresh) = &tokens.refresh {
            let metadata = self.metadata(false).await?;
            let client = self.client(&metadata);
            let response = client
                .exchange_refresh_token(refresh)
                .map_err(|e| {
                    SsoError::Unreachable(format!("the provider has no token endpoint: {e}"))
                })?
                .request_async(&self.http)
                .await
                .map_err(|e| token_error("the refresh token", e))?;
            let access = response.access_token().clone();
            let userinfo = self.userinfo(&access, &tokens.subject).await?;
            let mut claims = Map::new();
            if let Some(id_token) = response.id_token() {
                claims = self
                    .verify(id_token, &Nonce::new(String::new()), &access)
                    .await?;
                if claims.get("sub").and_then(Value::as_str) != Some(tokens.subject.as_str()) {
                    return Err(SsoError::Refused(
                        "the identity provider's new token names another account".into(),
                    ));
                }
            }
            let Some(userinfo) = userinfo else {
                return Err(SsoError::Refused(
                    "the identity provider has no userinfo endpoint to check the account at".into(),
                ));
            };
            claims.extend(userinfo);
            return Ok(SignIn {
                claims,
                tokens: Tokens {
                    subject: tokens.subject.clone(),
                    access,
                    access_expires: response.expires_in().map(|d| Instant::now() + d),
                    refresh: response
                        .refresh_token()
                        .cloned()
                        .or_else(|| tokens.refresh.clone()),
                },
            });
        }
        if !tokens.can_recheck(Instant::now()) {
            return Err(SsoError::Refused(
                "the identity provider's sign-in expired and gave no refresh token; sign in again"
                    .into(),
            ));
        }
        match self.userinfo(&tokens.access, &tokens.subject).await? {
            Some(claims) => Ok(SignIn {
                claims,
                tokens: tokens.clone(),
            }),
            None => Err(SsoError::Refused(
                "the identity provider has no userinfo endpoint to check the account at".into(),
            )),
        }
    }
}

/// An ID token check's failure: a key the JWKS lacks (worth fetching the keys again), or anything else.
enum VerifyError {
    UnknownKey(String),
    Other(SsoError),
}

impl VerifyError {
    fn into_refusal(self) -> SsoError {
        match self {
            VerifyError::UnknownKey(words) => SsoError::Refused(format!(
                "the ID token was refused: it is signed with a key the identity provider does not publish ({words})"
            )),
            VerifyError::Other(error) => error,
        }
    }
}

/// The nonce rule: the login's nonce must be in the token; an empty expected nonce (flows without
/// one) accepts a token without a nonce, or with any.
struct NonceCheck<'a>(&'a Nonce);

impl NonceVerifier for NonceCheck<'_> {
    fn verify(self, nonce: Option<&Nonce>) -> Result<(), String> {
        if self.0.secret().is_empty() {
            return Ok(());
        }
        self.0.verify(nonce)
    }
}
