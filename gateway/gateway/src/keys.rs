//! The appliance's recording signing key (Ed25519).

use std::path::Path;

use anyhow::{Context, bail};
use ed25519_dalek::SigningKey;

/// Loads the signing key from the state directory, creating it on first start. Its public half is
/// written beside it (`recording-signing.pub`, hex) for verifiers.
pub fn load_or_create_signing_key(state_dir: &Path) -> anyhow::Result<SigningKey> {
    let path = state_dir.join("recording-signing.key");
    let key = if path.exists() {
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let Ok(seed) = <[u8; 32]>::try_from(bytes.as_slice()) else {
            bail!("{} is not a 32-byte Ed25519 seed", path.display());
        };
        SigningKey::from_bytes(&seed)
    } else {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        crate::tls::write_private(&path, &seed)?;
        SigningKey::from_bytes(&seed)
    };
    let public = hex::encode(key.verifying_key().to_bytes());
    std::fs::write(
        state_dir.join("recording-signing.pub"),
        format!("{public}\n"),
    )
    .context("writing the public signing key")?;
    Ok(key)
}
