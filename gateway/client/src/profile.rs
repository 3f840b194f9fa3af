//! What `sallyport login` keeps: the gateway, its pinned certificate fingerprint, the user's key and
//! certificate, under the user's config directory (`$SALLYPORT_CONFIG_DIR`, else
//! `$XDG_CONFIG_HOME/sallyport`, else `~/.config/sallyport`). The directory is 0700 and every file 0600.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// The saved login.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Profile {
    /// `https://host:port` as given to `sallyport login`.
    pub gateway: String,
    /// The gateway certificate's SHA-256, `AB:CD:...`.
    pub fingerprint: String,
    /// Who logged in.
    #[serde(default)]
    pub username: Option<String>,
    /// When the client certificate expires (unix ms).
    #[serde(default)]
    pub expires_at_ms: Option<u64>,
}

/// The configuration directory.
pub fn dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("SALLYPORT_CONFIG_DIR") {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("sallyport"));
    }
    match std::env::var_os("HOME") {
        Some(home) => Ok(PathBuf::from(home).join(".config").join("sallyport")),
        None => bail!("cannot find your config directory: set HOME or SALLYPORT_CONFIG_DIR"),
    }
}

fn profile_path(dir: &Path) -> PathBuf {
    dir.join("profile.json")
}

/// The client's private key (PKCS#8 PEM).
pub fn key_path(dir: &Path) -> PathBuf {
    dir.join("client-key.pem")
}

/// The client certificate (PEM).
pub fn cert_path(dir: &Path) -> PathBuf {
    dir.join("client-cert.pem")
}

/// Creates the directory (0700) if needed.
pub fn ensure_dir(dir: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

/// Writes a file readable only by its owner, replacing it atomically.
pub fn write_private(path: &Path, contents: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// The saved profile, if there is one.
pub fn load(dir: &Path) -> Result<Option<Profile>> {
    let path = profile_path(dir);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(serde_json::from_str(&text).with_context(|| {
            format!("{} is damaged; run sallyport login", path.display())
        })?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// The saved profile, or a plain-words error saying to log in.
pub fn require(dir: &Path) -> Result<Profile> {
    load(dir)?.context("you are not logged in; run: sallyport login https://GATEWAY")
}

/// Saves the profile (0600).
pub fn save(dir: &Path, profile: &Profile) -> Result<()> {
    ensure_dir(dir)?;
    write_private(
        &profile_path(dir),
        serde_json::to_string_pretty(profile)?.as_bytes(),
    )
}

/// Removes the key and certificate (logout); the pinned gateway stays.
pub fn forget_credentials(dir: &Path) -> Result<()> {
    for path in [key_path(dir), cert_path(dir)] {
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
        }
    }
    Ok(())
}

/// The gateway's host and port from `https://host[:port][/]`.
pub fn parse_gateway(url: &str) -> Result<(String, u16)> {
    let rest = url
        .strip_prefix("https://")
        .with_context(|| format!("{url} is not an https:// address of a gateway"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .with_context(|| format!("{url}: unclosed [ in the address"))?;
        let port = match after.strip_prefix(':') {
            Some(port) => Some(port),
            None if after.is_empty() => None,
            None => bail!("{url}: unexpected text after the address"),
        };
        (host.to_owned(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host.to_owned(), Some(port)),
            None => (authority.to_owned(), None),
        }
    };
    if host.is_empty() {
        bail!("{url} names no host");
    }
    let port = match port {
        Some(port) => port
            .parse()
            .ok()
            .filter(|p| *p != 0)
            .with_context(|| format!("{url}: {port} is not a port"))?,
        None => 443,
    };
    Ok((host, port))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn gateway_addresses_parse() {
        assert_eq!(
            parse_gateway("https://gw.example").unwrap(),
            ("gw.example".into(), 443)
        );
        assert_eq!(
            parse_gateway("https://127.0.0.1:8443/").unwrap(),
            ("127.0.0.1".into(), 8443)
        );
        assert_eq!(
            parse_gateway("https://[::1]:9443").unwrap(),
            ("::1".into(), 9443)
        );
        for bad in [
            "http://gw",
            "https://",
            "https://gw:0",
            "https://gw:x",
            "https://[::1",
        ] {
            assert!(parse_gateway(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn files_are_private() {
        let dir = std::env::temp_dir().join(format!("sallyport-profile-{}", std::process::id()));
        ensure_dir(&dir).unwrap();
        write_private(&key_path(&dir), b"secret").unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(key_path(&dir))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        forget_credentials(&dir).unwrap();
        assert!(!key_path(&dir).exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
