//! `--gateway https://host[:port]`: recordings read from a running gateway over HTTPS, through its read-only
//! review API (`/api/review/…`, see `sallyport_recordings::remote`), with the auditor's portal account.
//!
//! The gateway is trusted by the SHA-256 fingerprint of its TLS certificate, pinned on first use (after the
//! reviewer said yes to it) or given with `--fingerprint`, and kept in `known_gateways` in the reviewer's
//! config directory; the handshake happens before any credential is sent, and a different certificate is
//! refused. The login is the browser's: password, then the TOTP or a recovery code when the account has
//! one; or a sign-in in the browser itself, or at an identity provider (`remote::sign_in`). What the gateway sends is copied into a local mirror (a recordings database in the reviewer's cache
//! directory, chunks and ledger entries as stored) which everything else reads as a local file: chain, seal
//! and ledger are verified here, against the recording key fetched over the pinned connection (or `--key`),
//! never taken on the gateway's word.
//!
//! This module does blocking I/O (ureq, rustls with ring); it runs before the interface starts and on the
//! loader's thread, never on the draw path.

use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use sallyport_recordings::remote::{
    LedgerPart, Mirror, ReviewError, ReviewKey, ReviewSessions, SessionPart,
};
use sallyport_tls_pin::{PinVerifier, normalize};

mod sign_in;

/// Largest answer read from the gateway (a chunk part is at most 8 MiB of chunks, twice that in hex).
const MAX_ANSWER: u64 = 64 * 1024 * 1024;
/// How many times one synchronisation fetches the sessions the new ledger entries name, and the ledger after
/// them, while sessions keep recording (each round usually brings the two together at once).
const LEDGER_ROUNDS: usize = 8;
/// The environment variable a script may hold the password in (otherwise it is asked on the terminal).
pub const PASSWORD_ENV: &str = "SALLYPORT_REVIEW_PASSWORD";

/// A gateway's address from `https://host[:port][/]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayAddr {
    /// Host name or address (IPv6 in brackets).
    pub host: String,
    /// Port (443 by default).
    pub port: u16,
}

impl GatewayAddr {
    /// Parses the `--gateway` value: HTTPS only, no path, no credentials in it.
    pub fn parse(url: &str) -> anyhow::Result<GatewayAddr> {
        let rest = url
            .strip_prefix("https://")
            .context("the gateway's address must start with https://")?;
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.is_empty() || authority.contains(['/', '@', '?', '#', ' ']) {
            bail!("the gateway's address must be https://host[:port]");
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) if !port.contains(']') => (
                host,
                port.parse::<u16>()
                    .with_context(|| format!("{port:?} is not a port"))?,
            ),
            _ => (authority, 443),
        };
        if host.is_empty() {
            bail!("the gateway's address has no host");
        }
        Ok(GatewayAddr {
            host: host.to_owned(),
            port,
        })
    }

    /// `https://host:port`.
    pub fn base(&self) -> String {
        format!("https://{}:{}", self.host, self.port)
    }

    /// `host:port`, as `known_gateways` names it.
    pub fn name(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// A file-system-safe name for the mirror's directory.
    fn dir_name(&self) -> String {
        self.name()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    }
}

fn home_dir(var: &str, fallback: &str) -> PathBuf {
    std::env::var_os(var)
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(fallback)))
        .unwrap_or_else(std::env::temp_dir)
        .join("sallyport-review")
}

/// `known_gateways` in the reviewer's config directory: `host:port FINGERPRINT` lines.
pub fn known_gateways_path() -> PathBuf {
    home_dir("XDG_CONFIG_HOME", ".config").join("known_gateways")
}

/// Where a gateway's recordings are mirrored (the directory also holds its key and search index).
pub fn mirror_dir(addr: &GatewayAddr) -> PathBuf {
    home_dir("XDG_CACHE_HOME", ".cache")
        .join("gateways")
        .join(addr.dir_name())
}

fn known_pin(addr: &GatewayAddr) -> anyhow::Result<Option<String>> {
    let path = known_gateways_path();
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let name = addr.name();
    Ok(text.lines().find_map(|line| {
        let (host, fp) = line.trim().split_once(' ')?;
        (host == name).then(|| normalize(fp)).flatten()
    }))
}

fn remember_pin(addr: &GatewayAddr, pin: &str) -> anyhow::Result<()> {
    let path = known_gateways_path();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("writing {}", path.display()))?;
    writeln!(file, "{} {pin}", addr.name())?;
    Ok(())
}

fn ask_line(prompt: &str) -> anyhow::Result<String> {
    eprint!("{prompt}");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the answer")?;
    Ok(line.trim().to_owned())
}

/// How to reach and log in to a gateway.
#[derive(Debug, Clone)]
pub struct Options {
    /// The `--gateway` value.
    pub url: String,
    /// `--fingerprint`, when given.
    pub fingerprint: Option<String>,
    /// `--user`, when given.
    pub user: Option<String>,
    /// `--provider`: sign in at the gateway's identity provider (in the browser when one can be
    /// opened here, else by the device flow).
    pub provider: Option<String>,
    /// `--browser`: sign in in the browser, any way the portal's login page offers.
    pub browser: bool,
    /// `--device`: with a provider, the device flow even where a browser could be opened.
    pub device: bool,
}

/// A logged-in connection to a gateway's review API.
pub struct Remote {
    agent: ureq::Agent,
    addr: GatewayAddr,
    token: String,
    /// The account logged in as, and its role.
    pub who: (String, String),
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("addr", &self.addr)
            .field("who", &self.who)
            .finish_non_exhaustive()
    }
}

/// What one synchronisation brought.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Synced {
    /// Sessions the gateway lists.
    pub sessions: usize,
    /// Sessions whose row or chunks changed in the mirror.
    pub updated: usize,
    /// Chunks added to the mirror.
    pub chunks: u64,
    /// Ledger entries added to the mirror.
    pub entries: u64,
}

/// Reads a JSON answer, bounded; a refusal becomes an error in the gateway's words.
fn answer<T: serde::de::DeserializeOwned>(
    result: Result<ureq::Response, ureq::Error>,
    what: &str,
) -> anyhow::Result<T> {
    match result {
        Ok(response) => {
            let mut body = Vec::new();
            response
                .into_reader()
                .take(MAX_ANSWER)
                .read_to_end(&mut body)
                .with_context(|| format!("reading the gateway's answer to {what}"))?;
            serde_json::from_slice(&body)
                .with_context(|| format!("the gateway's answer to {what} is not what was expected"))
        }
        Err(ureq::Error::Status(status, response)) => {
            let text = response.into_string().unwrap_or_default();
            match serde_json::from_str::<ReviewError>(&text) {
                Ok(refusal) => Err(Refused {
                    kind: refusal.error,
                    message: refusal.message,
                }
                .into()),
                Err(_) => bail!("the gateway answered {what} with HTTP {status}"),
            }
        }
        Err(ureq::Error::Transport(e)) => {
            Err(anyhow::Error::new(e).context(format!("reaching the gateway for {what}")))
        }
    }
}

/// The gateway refused a request; `kind` is its stable name (`bad_credentials`, `not_reviewer`, …).
#[derive(Debug)]
pub struct Refused {
    /// The refusal's kind.
    pub kind: String,
    /// The gateway's words.
    pub message: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the gateway refused: {}", self.message)
    }
}

impl std::error::Error for Refused {}

fn agent(verifier: Arc<PinVerifier>) -> anyhow::Result<ureq::Agent> {
    let config = rustls::ClientConfig::builder_with_provider(verifier.provider().clone())
        .with_safe_default_protocol_versions()
        .context("TLS configuration")?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(ureq::AgentBuilder::new()
        .tls_config(Arc::new(config))
        .timeout_connect(Duration::from_secs(10))
        .timeout(Duration::from_secs(120))
        .redirects(0)
        .build())
}

impl Remote {
    /// Reaches the gateway, checks (or pins, after asking) its certificate, and logs in: with the portal
    /// password, in the browser, or at the gateway's identity provider ([`sign_in::sign_in`]).
    pub fn connect(options: &Options) -> anyhow::Result<Remote> {
        let addr = GatewayAddr::parse(&options.url)?;
        let given = options
            .fingerprint
            .as_deref()
            .map(|f| normalize(f).context("--fingerprint must be 32 bytes of SHA-256 in hex"))
            .transpose()?;
        let known = known_pin(&addr)?;
        if let (Some(given), Some(known)) = (&given, &known)
            && given != known
        {
            bail!(
                "--fingerprint {given} differs from the one pinned for {} ({known}) in {}",
                addr.name(),
                known_gateways_path().display()
            );
        }
        let expected = given.clone().or(known.clone());
        let verifier = PinVerifier::new(
            expected.clone(),
            Arc::new(rustls::crypto::ring::default_provider()),
        );
        let agent = agent(verifier.clone())?;
        // A first request without credentials: only the handshake matters (the answer is a refusal).
        let probe = agent.get(&format!("{}/api/review/key", addr.base())).call();
        if let Err(ureq::Error::Transport(e)) = &probe {
            return match (verifier.seen(), &expected) {
                (Some(seen), Some(pinned)) if seen != *pinned => bail!(
                    "the gateway at {} presented certificate {seen}, not the pinned {pinned}: refusing to send                      credentials (if its certificate was replaced on purpose, remove its line from {})",
                    addr.name(),
                    known_gateways_path().display()
                ),
                _ => Err(anyhow::anyhow!("{e}").context(format!("reaching {}", addr.base()))),
            };
        }
        let seen = verifier
            .seen()
            .context("the gateway presented no certificate")?;
        if known.is_none() {
            if given.is_none() {
                eprintln!(
                    "The gateway at {} presents a certificate with the SHA-256 fingerprint
  {seen}
                     Compare it with the one the appliance shows on its console.",
                    addr.name()
                );
                let yes = ask_line("Trust this gateway and remember it? [y/N] ")?;
                if !matches!(yes.as_str(), "y" | "Y" | "yes") {
                    bail!("the gateway was not trusted; nothing was sent");
                }
            }
            remember_pin(&addr, &seen)?;
        }
        let response = sign_in::sign_in(&agent, &addr, options)?;
        Ok(Remote {
            agent,
            addr,
            token: response.token,
            who: (response.username, response.role),
        })
    }

    fn get<T: serde::de::DeserializeOwned>(&self, path: &str, what: &str) -> anyhow::Result<T> {
        answer(
            self.agent
                .get(&format!("{}{path}", self.addr.base()))
                .set("Authorization", &format!("Bearer {}", self.token))
                .call(),
            what,
        )
    }

    /// The gateway's address.
    pub fn addr(&self) -> &GatewayAddr {
        &self.addr
    }

    /// The recording public key, in hex.
    pub fn key_hex(&self) -> anyhow::Result<String> {
        let key: ReviewKey = self.get("/api/review/key", "the key request")?;
        Ok(key.public_key)
    }

    /// Brings the mirror at `db` up to date: every session the gateway lists, with the chunks the mirror
    /// does not hold yet, then the ledger's new entries, then every session those entries name beyond what the
    /// mirror holds (a session started or grown since the list) and the ledger again, until they agree: the
    /// mirror then shows the gateway at one moment, and its ledger audit finds only what is wrong there.
    pub fn sync(&self, db: &Path) -> anyhow::Result<Synced> {
        let list: ReviewSessions = self.get("/api/review/sessions", "the session list")?;
        let mut mirror =
            Mirror::open(db).with_context(|| format!("opening the mirror {}", db.display()))?;
        let mut synced = Synced {
            sessions: list.sessions.len(),
            ..Synced::default()
        };
        for row in &list.sessions {
            if mirror.is_current(row)? {
                continue;
            }
            if self.fetch_session(&mut mirror, &row.id, &mut synced)? {
                synced.updated += 1;
            }
        }
        // The ledger is always fetched last, so it covers every row and chunk the mirror holds.
        for round in 1..=LEDGER_ROUNDS {
            let start = mirror.ledger_next()?;
            self.fetch_ledger(&mut mirror, &mut synced)?;
            if round == LEDGER_ROUNDS {
                break;
            }
            let mut moved = false;
            for id in mirror.sessions_behind_ledger(start)? {
                // The gateway cannot send what it no longer holds (a session deleted or cut behind its
                // back): the ledger audit of the mirror names it.
                moved |= self.fetch_session(&mut mirror, &id, &mut synced)?;
            }
            if !moved {
                break;
            }
        }
        Ok(synced)
    }

    /// Fetches a session's row and the chunks the mirror lacks; whether the mirror changed. A session the
    /// gateway does not have is left as the mirror holds it (or without it).
    fn fetch_session(
        &self,
        mirror: &mut Mirror,
        id: &str,
        synced: &mut Synced,
    ) -> anyhow::Result<bool> {
        // Ids name a path segment: the gateway makes them hex; anything else is not asked for.
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(false);
        }
        let before = mirror.session(id)?;
        let mut from = mirror.held(id)?;
        loop {
            let part: SessionPart = match self.get(
                &format!("/api/review/sessions/{id}/chunks?from={from}"),
                "a session's chunks",
            ) {
                Ok(part) => part,
                Err(e)
                    if e.downcast_ref::<Refused>()
                        .is_some_and(|r| r.kind == "no_such_session") =>
                {
                    break;
                }
                Err(e) => return Err(e),
            };
            if part.session.id != id {
                bail!("the gateway answered with another session than {id}");
            }
            synced.chunks += mirror.apply(&part)?;
            match part.chunks.last() {
                Some(last) if part.more => from = last.seq + 1,
                _ => break,
            }
        }
        Ok(mirror.session(id)? != before)
    }

    /// Appends the ledger's entries the mirror does not hold yet.
    fn fetch_ledger(&self, mirror: &mut Mirror, synced: &mut Synced) -> anyhow::Result<()> {
        loop {
            let from = mirror.ledger_next()?;
            let part: LedgerPart = self.get(
                &format!("/api/review/ledger?from={from}"),
                "the recordings ledger",
            )?;
            let added = mirror
                .apply_ledger(&part)
                .context("copying the gateway's recordings ledger")?;
            synced.entries += added;
            if !part.more || added == 0 {
                return Ok(());
            }
        }
    }

    /// Ends the login on the gateway (best effort).
    pub fn logout(&self) {
        let _ = self
            .agent
            .post(&format!("{}/api/review/logout", self.addr.base()))
            .set("Authorization", &format!("Bearer {}", self.token))
            .call();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn gateway_addresses() {
        let a = GatewayAddr::parse("https://gw.example:8443/").unwrap();
        assert_eq!((a.host.as_str(), a.port), ("gw.example", 8443));
        assert_eq!(a.base(), "https://gw.example:8443");
        assert_eq!(GatewayAddr::parse("https://10.0.0.1").unwrap().port, 443);
        let v6 = GatewayAddr::parse("https://[::1]:9443").unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("[::1]", 9443));
        assert_eq!(GatewayAddr::parse("https://[::1]").unwrap().port, 443);
        assert_eq!(v6.dir_name(), "___1__9443");
        for bad in [
            "http://gw",
            "gw:443",
            "https://",
            "https://u@gw",
            "https://gw/path",
            "https://gw:x",
        ] {
            assert!(GatewayAddr::parse(bad).is_err(), "{bad}");
        }
    }
}
