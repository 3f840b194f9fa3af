//! `cargo xtask demo --appliance`: not yet.

use std::path::Path;
use std::sync::atomic::AtomicBool;

/// Boots the appliance with the demo targets behind it.
pub fn run(_demo_dir: &Path, _stop: &AtomicBool) -> anyhow::Result<()> {
    anyhow::bail!("--appliance is not built yet")
}
