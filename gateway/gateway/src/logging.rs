//! Logging: tracing to stderr, and to journald when it is reachable (on the appliance).

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::LogSection;

/// Installs the global subscriber.
pub fn init(section: &LogSection) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&section.level));
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(true);
    let journald = if section.journald {
        tracing_journald::layer().ok()
    } else {
        None
    };
    let has_journald = journald.is_some();
    tracing_subscriber::registry()
        .with(filter)
        .with(stderr)
        .with(journald.map(|layer| layer.boxed()))
        .init();
    if section.journald && !has_journald {
        tracing::info!("journald is not reachable; logging to stderr only");
    }
}
