//! The edge's drops over the last hour, sans-io: the daemon hands [`DropHistory::sample`] the counters
//! once a minute with the current minute (unix seconds / 60), and the history keeps the difference
//! per drop reason in a ring of [`HISTORY_MINUTES`] slots, so memory is fixed whatever the traffic and
//! however long the gateway runs.
//!
//! The kernel's counters only grow while the programs stay loaded; a sample smaller than the one
//! before means they were loaded anew (a restart of the edge), and counts from zero again.

use sallyport_edge_common::{REASON_COUNT, Reason};

use crate::Counters;

/// How many minutes the history covers.
pub const HISTORY_MINUTES: usize = 60;

const REASONS: usize = REASON_COUNT as usize;

/// One minute's drops.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Slot {
    /// The minute the slot holds (unix seconds / 60); `None` until first written.
    minute: Option<u64>,
    /// Packets dropped in that minute, by reason index (pass reasons stay zero).
    drops: [u64; REASONS],
}

/// Per-minute drop counts of the last hour (see the module's documentation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DropHistory {
    /// The counters of the previous sample, by reason index.
    last: Option<[u64; REASONS]>,
    ring: [Slot; HISTORY_MINUTES],
}

impl Default for DropHistory {
    fn default() -> Self {
        DropHistory {
            last: None,
            ring: [Slot::default(); HISTORY_MINUTES],
        }
    }
}

/// Packets dropped in one minute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MinuteDrops {
    /// The minute (unix seconds / 60).
    pub minute: u64,
    /// Packets dropped in it, all reasons together.
    pub dropped: u64,
}

impl DropHistory {
    /// An empty history.
    pub fn new() -> DropHistory {
        DropHistory::default()
    }

    /// Adds what was dropped since the previous sample to `minute`. The first sample only sets the
    /// starting point (what the kernel counted before is not attributed to any minute). Samples of an
    /// older minute than one already held are ignored (a clock stepped back).
    pub fn sample(&mut self, minute: u64, counters: &Counters) {
        let mut now = [0u64; REASONS];
        for (reason, packets) in &counters.by_reason {
            if let Some(count) = now.get_mut(*reason as usize) {
                *count = *packets;
            }
        }
        let newest = self.ring.iter().filter_map(|s| s.minute).max();
        if newest.is_some_and(|newest| minute < newest) {
            return;
        }
        let Some(last) = self.last.replace(now) else {
            return;
        };
        let slot = &mut self.ring[(minute % HISTORY_MINUTES as u64) as usize];
        if slot.minute != Some(minute) {
            *slot = Slot {
                minute: Some(minute),
                drops: [0; REASONS],
            };
        }
        for reason in Reason::ALL.iter().filter(|r| !r.passes()) {
            let index = *reason as usize;
            // Smaller than before: the programs were loaded anew and count from zero.
            let delta = now[index].checked_sub(last[index]).unwrap_or(now[index]);
            slot.drops[index] = slot.drops[index].saturating_add(delta);
        }
    }

    /// The slots of the hour ending at `minute` (inclusive).
    fn within_hour(&self, minute: u64) -> impl Iterator<Item = &Slot> {
        let oldest = minute.saturating_sub(HISTORY_MINUTES as u64 - 1);
        self.ring
            .iter()
            .filter(move |s| s.minute.is_some_and(|m| m >= oldest && m <= minute))
    }

    /// Packets dropped per drop reason in the hour ending at `minute`, in counter order (every drop
    /// reason listed, zeros included).
    pub fn last_hour(&self, minute: u64) -> Vec<(Reason, u64)> {
        Reason::ALL
            .iter()
            .filter(|r| !r.passes())
            .map(|reason| {
                let sum = self
                    .within_hour(minute)
                    .map(|s| s.drops[*reason as usize])
                    .fold(0u64, u64::saturating_add);
                (*reason, sum)
            })
            .collect()
    }

    /// All drops of each sampled minute in the hour ending at `minute`, oldest first (for a small
    /// chart); minutes without a sample are absent.
    pub fn minutes(&self, minute: u64) -> Vec<MinuteDrops> {
        let mut out: Vec<MinuteDrops> = self
            .within_hour(minute)
            .filter_map(|s| {
                Some(MinuteDrops {
                    minute: s.minute?,
                    dropped: s.drops.iter().fold(0u64, |a, b| a.saturating_add(*b)),
                })
            })
            .collect();
        out.sort_by_key(|m| m.minute);
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    fn counters(closed_port: u64, icmp: u64, portal: u64) -> Counters {
        Counters {
            by_reason: Reason::ALL
                .iter()
                .map(|r| {
                    let n = match r {
                        Reason::ClosedPort => closed_port,
                        Reason::Icmp => icmp,
                        Reason::PortalTcp => portal,
                        _ => 0,
                    };
                    (*r, n)
                })
                .collect(),
        }
    }

    fn drops(history: &DropHistory, minute: u64, reason: Reason) -> u64 {
        history
            .last_hour(minute)
            .into_iter()
            .find(|(r, _)| *r == reason)
            .map(|(_, n)| n)
            .unwrap()
    }

    #[test]
    fn deltas_per_minute_and_reason_passes_not_counted() {
        let mut history = DropHistory::new();
        history.sample(100, &counters(1000, 50, 9999));
        assert_eq!(
            drops(&history, 100, Reason::ClosedPort),
            0,
            "the start is no drop"
        );
        history.sample(101, &counters(1010, 52, 10_500));
        history.sample(102, &counters(1030, 52, 11_000));
        assert_eq!(drops(&history, 102, Reason::ClosedPort), 30);
        assert_eq!(drops(&history, 102, Reason::Icmp), 2);
        assert!(history.last_hour(102).iter().all(|(r, _)| !r.passes()));
        assert_eq!(
            history.minutes(102),
            [
                MinuteDrops {
                    minute: 101,
                    dropped: 12
                },
                MinuteDrops {
                    minute: 102,
                    dropped: 20
                },
            ]
        );
    }

    #[test]
    fn only_the_last_hour_counts_and_memory_stays_fixed() {
        let mut history = DropHistory::new();
        let mut total = 0;
        history.sample(0, &counters(0, 0, 0));
        for minute in 1..=200u64 {
            total += minute;
            history.sample(minute, &counters(total, 0, 0));
        }
        // Minutes 141..=200 hold 141 + ... + 200.
        let expected: u64 = (141..=200).sum();
        assert_eq!(drops(&history, 200, Reason::ClosedPort), expected);
        assert_eq!(history.minutes(200).len(), HISTORY_MINUTES);
        // Two hours later with no sample: nothing is that recent.
        assert_eq!(drops(&history, 320, Reason::ClosedPort), 0);
    }

    #[test]
    fn a_reload_counts_from_zero_and_a_clock_stepped_back_is_ignored() {
        let mut history = DropHistory::new();
        history.sample(10, &counters(500, 0, 0));
        history.sample(11, &counters(7, 0, 0));
        assert_eq!(drops(&history, 11, Reason::ClosedPort), 7);
        history.sample(5, &counters(100, 0, 0));
        assert_eq!(drops(&history, 11, Reason::ClosedPort), 7);
        // Two samples in one minute add up in that minute.
        history.sample(12, &counters(10, 0, 0));
        history.sample(12, &counters(15, 0, 0));
        assert_eq!(history.minutes(12).last().unwrap().dropped, 8);
    }
}
