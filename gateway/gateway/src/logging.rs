//! Logging: tracing to journald when it is reachable (on the appliance), else to stderr. Not both: under
//! systemd stderr is the journal (and, on the appliance, the console the auditors use), so a second copy would
//! only duplicate every line and scroll over the console's review tool.

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::LogSection;

/// Installs the global subscriber.
pub fn init(section: &LogSection) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&section.level));
    let journald = if section.journald {
        tracing_journald::layer().ok()
    } else {
        None
    };
    let has_journald = journald.is_some();
    let stderr = (!has_journald).then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_target(true)
    });
    tracing_subscriber::registry()
        .with(filter)
        .with(stderr)
        .with(journald.map(|layer| layer.boxed()))
        .init();
    if section.journald && !has_journald {
        tracing::info!("journald is not reachable; logging to stderr only");
    }
}
