//! The limits every relay loop applies the same way: the idle timeout (reset by the user's input), the
//! maximum session duration and a terminate from the live registry (an admin, a revocation).

use std::pin::Pin;
use std::time::Duration;

use sallyport_recordings::{Event, SessionRecorder};
use tokio::sync::watch;
use tokio::time::{Instant, Sleep, sleep};

use crate::broker::{BrokerConfig, record};

/// Deadlines that are off sleep "forever" (a year) and are never polled.
const FAR: Duration = Duration::from_secs(365 * 24 * 3600);

/// One session's deadlines.
pub(crate) struct Deadlines {
    idle_timeout: Option<Duration>,
    max_duration: Option<Duration>,
    idle: Pin<Box<Sleep>>,
    max: Pin<Box<Sleep>>,
}

impl Deadlines {
    /// Deadlines from now, as configured.
    pub(crate) fn start(config: &BrokerConfig) -> Deadlines {
        Deadlines {
            idle_timeout: config.idle_timeout,
            max_duration: config.max_duration,
            idle: Box::pin(sleep(config.idle_timeout.unwrap_or(FAR))),
            max: Box::pin(sleep(config.max_duration.unwrap_or(FAR))),
        }
    }

    /// The user typed (or moved the mouse): the idle timeout starts again.
    pub(crate) fn input(&mut self) {
        let idle_after = self.idle_timeout.unwrap_or(FAR);
        self.idle.as_mut().reset(Instant::now() + idle_after);
    }

    /// Resolves with the reason the session must end (idle, maximum duration, terminated), after
    /// recording it. Cancel-safe: the sleeps live in `self` and a watch's `changed` is cancel-safe.
    pub(crate) async fn reached(
        &mut self,
        terminated: &mut watch::Receiver<Option<String>>,
        recording: &SessionRecorder,
    ) -> String {
        let reason = loop {
            tokio::select! {
                () = &mut self.idle, if self.idle_timeout.is_some() => {
                    let idle_after = self.idle_timeout.unwrap_or(FAR);
                    break format!("no input for {} s (idle timeout)", idle_after.as_secs());
                }
                () = &mut self.max, if self.max_duration.is_some() => {
                    let max = self.max_duration.unwrap_or(FAR);
                    break format!("the maximum session duration of {} s was reached", max.as_secs());
                }
                changed = terminated.changed() => {
                    let reason = terminated.borrow().clone();
                    // The sender lives in the registry entry the session's handle removes, so
                    // `changed` fails only if the registry itself is gone; end the session rather
                    // than spin.
                    match (changed, reason) {
                        (Ok(()), None) => continue,
                        (Ok(()), Some(reason)) => break reason,
                        (Err(_), _) => break "the gateway is shutting down".to_owned(),
                    }
                }
            }
        };
        let _ = record(recording, Event::Marker(format!("terminated: {reason}"))).await;
        reason
    }
}
