//! The tests' OpenID provider: panva's `oidc-provider` from npm (`tests/e2e/idp`, installed by
//! `cargo xtask setup`), run by Node on a loopback port over HTTPS with a certificate made here.
//!
//! [`TestIdp::start`] writes the provider's configuration (one client, the gateway, with its callback),
//! the accounts file and the certificate into a temporary directory and waits for the provider to
//! serve its discovery document. Tests rewrite the accounts at any time ([`TestIdp::set_accounts`]:
//! groups changed, an account disabled) and make the token endpoint hand out crafted ID tokens
//! ([`TestIdp::tamper`]). [`TestIdp::gateway_toml`] is the `[[oidc]]` section that trusts it. Drop
//! kills Node by PID.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::common::{free_port, tail, wait_or_kill};

/// Node.js, from PATH (Debian's, or one the machine has elsewhere, as `cargo xtask setup` accepts).
const NODE: &str = "node";
/// The provider's name in the gateway's configuration, on the login button.
pub const IDP_NAME: &str = "TestIdP";
/// The gateway's client id and secret at the provider.
pub const CLIENT_ID: &str = "sallyport-e2e";
const CLIENT_SECRET: &str = "e2e-client-secret-that-is-long-enough-0123456789";

/// One account at the provider.
#[derive(Debug, Clone)]
pub struct IdpAccount {
    /// Its id (the subject) and login name at the provider.
    pub login: &'static str,
    /// Its password at the provider's login page.
    pub password: &'static str,
    /// Its groups there.
    pub groups: Vec<&'static str>,
    /// Disabled accounts cannot sign in, refresh or read userinfo.
    pub disabled: bool,
}

/// A crafted defect of the ID tokens the token endpoint hands out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tamper {
    /// `aud` is another client.
    WrongAudience,
    /// `iss` is another issuer.
    WrongIssuer,
    /// `exp` is ten minutes ago.
    Expired,
    /// `nonce` is not the one the gateway sent.
    WrongNonce,
    /// Signed with another key under the published key id.
    BadSignature,
    /// Signed with a key whose id the provider does not publish.
    UnknownKeyId,
}

impl Tamper {
    fn mode(self) -> &'static str {
        match self {
            Tamper::WrongAudience => "wrong_audience",
            Tamper::WrongIssuer => "wrong_issuer",
            Tamper::Expired => "expired",
            Tamper::WrongNonce => "wrong_nonce",
            Tamper::BadSignature => "bad_signature",
            Tamper::UnknownKeyId => "unknown_kid",
        }
    }
}

/// A running test provider.
#[derive(Debug)]
pub struct TestIdp {
    child: Option<Child>,
    port: u16,
    dir: TempDir,
}

/// `tests/e2e/idp`, where the provider's script and its npm packages are.
fn idp_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("idp")
}

impl TestIdp {
    /// Starts the provider for a gateway whose portal is `gateway_url` (`https://host:port`), with
    /// these accounts; waits at most 20 s for its discovery document.
    pub async fn start(gateway_url: &str, accounts: &[IdpAccount]) -> Result<TestIdp> {
        let script = idp_dir().join("idp.mjs");
        if !idp_dir().join("node_modules/oidc-provider").is_dir() {
            bail!(
                "the test OpenID provider's npm packages are missing in {}: run `cargo xtask setup` (it runs `npm ci` there)",
                idp_dir().display()
            );
        }
        let dir = tempfile::Builder::new()
            .prefix("spe2e-idp-")
            .tempdir()
            .context("idp tempdir")?;
        let port = free_port()?;
        let certified = rcgen::generate_simple_self_signed(vec![
            "127.0.0.1".to_owned(),
            "localhost".to_owned(),
        ])
        .context("idp certificate")?;
        fs::write(dir.path().join("cert.pem"), certified.cert.pem())?;
        fs::write(
            dir.path().join("key.pem"),
            certified.key_pair.serialize_pem(),
        )?;
        fs::write(dir.path().join("secret"), CLIENT_SECRET)?;
        let config = json!({
            "port": port,
            "issuer": format!("https://127.0.0.1:{port}"),
            "cert": dir.path().join("cert.pem"),
            "key": dir.path().join("key.pem"),
            "accounts": dir.path().join("accounts.json"),
            "tamper": dir.path().join("tamper.json"),
            "clients": [{
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "redirect_uris": [format!("{gateway_url}/login/sso/{IDP_NAME}/callback")],
            }],
        });
        fs::write(dir.path().join("config.json"), config.to_string())?;
        let mut idp = TestIdp {
            child: None,
            port,
            dir,
        };
        idp.set_accounts(accounts)?;
        let log = File::create(idp.dir.path().join("idp.log"))?;
        let child = Command::new(NODE)
            .arg(&script)
            .arg(idp.dir.path().join("config.json"))
            .current_dir(idp_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .context("starting node (Node.js) for the test OpenID provider: `cargo xtask setup` installs it")?;
        idp.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !idp.log().contains("listening") {
            if let Some(child) = idp.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!("the test OpenID provider exited ({status}): {}", idp.log());
            }
            if Instant::now() >= deadline {
                bail!(
                    "the test OpenID provider did not listen within 20 s: {}",
                    idp.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(idp)
    }

    /// The issuer URL.
    pub fn issuer(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// The provider's log so far (the tail).
    pub fn log(&self) -> String {
        let text = fs::read_to_string(self.dir.path().join("idp.log")).unwrap_or_default();
        tail(&text, 4000).to_owned()
    }

    /// Replaces the accounts (read by the provider at each request).
    pub fn set_accounts(&self, accounts: &[IdpAccount]) -> Result<()> {
        let map: serde_json::Map<String, Value> = accounts
            .iter()
            .map(|a| {
                (
                    a.login.to_owned(),
                    json!({
                        "password": a.password,
                        "username": a.login,
                        "email": format!("{}@example.org", a.login),
                        "groups": a.groups,
                        "disabled": a.disabled,
                    }),
                )
            })
            .collect();
        let path = self.dir.path().join("accounts.json");
        let partial = self.dir.path().join("accounts.json.new");
        fs::write(&partial, Value::Object(map).to_string())?;
        fs::rename(partial, path)?;
        Ok(())
    }

    /// Makes the token endpoint's ID tokens carry `defect` (until [`TestIdp::tamper_off`]).
    pub fn tamper(&self, defect: Tamper) -> Result<()> {
        fs::write(
            self.dir.path().join("tamper.json"),
            json!({ "mode": defect.mode() }).to_string(),
        )?;
        Ok(())
    }

    /// Genuine ID tokens again.
    pub fn tamper_off(&self) -> Result<()> {
        let path = self.dir.path().join("tamper.json");
        if path.exists() {
            fs::remove_file(path)?;
        }
        Ok(())
    }

    /// The gateway's `[[oidc]]` section for this provider, followed by `rules` (`[[oidc.map]]`
    /// tables), with the re-check every `recheck_secs`.
    pub fn gateway_toml(&self, recheck_secs: u64, rules: &[(&str, &str, &[&str])]) -> String {
        let mut toml = format!(
            "[[oidc]]\nname = \"{IDP_NAME}\"\nissuer = \"{}\"\nclient_id = \"{CLIENT_ID}\"\nclient_secret_file = \"{}\"\nca_file = \"{}\"\nscopes = [\"profile\", \"email\", \"groups\"]\nrecheck_interval_secs = {recheck_secs}\n",
            self.issuer(),
            self.dir.path().join("secret").display(),
            self.dir.path().join("cert.pem").display(),
        );
        for (group, role, groups) in rules {
            let groups: Vec<String> = groups.iter().map(|g| format!("\"{g}\"")).collect();
            toml.push_str(&format!(
                "\n[[oidc.map]]\ngroup = \"{group}\"\nrole = \"{role}\"\ngroups = [{}]\n",
                groups.join(", ")
            ));
        }
        toml
    }
}

impl TestIdp {
    /// Signs `login` in at the provider over HTTPS the way a browser does, from the gateway's
    /// redirect to the provider (`authorize_url`) through the provider's login page (its own
    /// cookies kept in `browser`, a client for the issuer) to its redirect back: returns the path and
    /// query of the gateway's callback (`/login/sso/TestIdP/callback?code=…&state=…&iss=…`).
    pub async fn sign_in_http(
        &self,
        browser: &crate::Client,
        authorize_url: &str,
        login: &str,
        password: &str,
    ) -> Result<String> {
        let issuer = self.issuer();
        let mut path = authorize_url
            .strip_prefix(&issuer)
            .with_context(|| format!("{authorize_url} is not at {issuer}"))?
            .to_owned();
        let mut signed_in = false;
        for _ in 0..12 {
            let response = browser.get(&path).await?;
            if let Some(location) = response.location() {
                if let Some(rest) = location.strip_prefix(&issuer) {
                    path = rest.to_owned();
                    continue;
                }
                if location.starts_with('/') {
                    path = location.to_owned();
                    continue;
                }
                let callback = location
                    .split_once("/login/sso/")
                    .map(|(_, rest)| format!("/login/sso/{rest}"))
                    .with_context(|| format!("the provider sent the browser to {location}"))?;
                return Ok(callback);
            }
            let page = response.text();
            if signed_in || !page.contains(r#"id="idp-login""#) {
                bail!(
                    "the provider answered {} without a redirect: {}",
                    response.status,
                    tail(&page, 2000)
                );
            }
            let action = page
                .split(r#"action=""#)
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .context("no form action on the provider's login page")?
                .to_owned();
            let origin = browser.origin();
            let posted = browser
                .post_form(
                    &action,
                    &[("login", login), ("password", password)],
                    Some(&origin),
                )
                .await?;
            signed_in = true;
            path = match posted.location() {
                Some(location) => location
                    .strip_prefix(&issuer)
                    .unwrap_or(location)
                    .to_owned(),
                None => bail!(
                    "the provider refused the login of {login}: {}",
                    tail(&posted.text(), 2000)
                ),
            };
        }
        bail!("the provider's redirects did not end at the gateway")
    }
}

impl Drop for TestIdp {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = wait_or_kill(&mut child, Duration::from_secs(5));
        }
    }
}

/// Signs `login` in on the provider's own login page, where the browser `driver` is.
pub async fn sign_in_at_provider_page(
    driver: &fantoccini::Client,
    login: &str,
    password: &str,
) -> Result<()> {
    use crate::browser::steps::{click, fill};
    fill(driver, "#idp-login", login).await?;
    fill(driver, "#idp-password", password).await?;
    click(driver, "#idp-submit").await
}
