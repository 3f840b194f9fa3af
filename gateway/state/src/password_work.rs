//! The one bound on argon2id work: at most a few password hashes or verifications run at once in
//! this process, so that a burst of sign-ins costs a known amount of memory (argon2id's memory cost,
//! 19 MiB each, times the bound) instead of 19 MiB per attempt in flight.
//!
//! Every path that hashes or verifies a password (login, password change, user creation, password
//! reset) goes through [`with_password_slot`]. It blocks the calling thread (call it from a
//! blocking thread in async code) for at most [`SLOT_WAIT`]; past that the attempt is refused with
//! [`StateError::Busy`], whose words the portal shows with HTTP 503 and `Retry-After`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::db::StateError;

/// How long an attempt waits for a free slot before it is refused. Long enough that a burst
/// of a few dozen sign-ins on a small appliance is queued rather than refused.
pub const SLOT_WAIT: Duration = Duration::from_secs(10);

/// The words of the refusal when no slot became free in time.
pub const BUSY_WORDS: &str = "too many sign-ins at once; try again in a moment";

/// The `Retry-After` (seconds) that goes with the refusal: about one argon2 verification's time.
pub const BUSY_RETRY_AFTER_SECONDS: u64 = 2;

/// A counting semaphore over argon2 work, and what it has seen. The work runs on the caller's own
/// (blocking) thread; the bound is what keeps memory known. (Keeping glibc from holding on to the
/// freed 19 MiB blocks is the gateway binary's mmap threshold, see its `malloc_tunables`.)
struct PasswordSlots {
    limit: usize,
    running: Mutex<usize>,
    freed: Condvar,
    peak: AtomicUsize,
    refused: AtomicUsize,
}

impl PasswordSlots {
    const fn new(limit: usize) -> PasswordSlots {
        PasswordSlots {
            limit,
            running: Mutex::new(0),
            freed: Condvar::new(),
            peak: AtomicUsize::new(0),
            refused: AtomicUsize::new(0),
        }
    }
}

/// How many argon2 computations may run at once: one per core, but at most two. More would not
/// finish a burst sooner on a small appliance, and each one holds 19 MiB while it runs;
/// two verifications take well under 100 ms in a release build, dozens of sign-ins a second.
fn slot_limit() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(2))
}

fn slots() -> &'static PasswordSlots {
    static SLOTS: std::sync::OnceLock<PasswordSlots> = std::sync::OnceLock::new();
    SLOTS.get_or_init(|| PasswordSlots::new(slot_limit()))
}

/// Frees the slot when the work ends (a panic in the work included).
struct SlotGuard<'a>(&'a PasswordSlots);

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        let mut running = self
            .0
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *running -= 1;
        drop(running);
        self.0.freed.notify_one();
    }
}

/// Runs `work` (an argon2 hash or verification) once a slot is free, waiting at most `wait` for one;
/// refuses with [`StateError::Busy`] when none became free.
fn run_in_slot<T>(
    slots: &PasswordSlots,
    wait: Duration,
    work: impl FnOnce() -> T,
) -> Result<T, StateError> {
    let deadline = Instant::now() + wait;
    let mut running = slots.running.lock().unwrap_or_else(PoisonError::into_inner);
    while *running >= slots.limit {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            slots.refused.fetch_add(1, Ordering::Relaxed);
            return Err(StateError::Busy(BUSY_WORDS.to_owned()));
        }
        running = slots
            .freed
            .wait_timeout(running, left)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
    *running += 1;
    slots.peak.fetch_max(*running, Ordering::Relaxed);
    drop(running);
    let _guard = SlotGuard(slots);
    Ok(work())
}

/// Runs one argon2 hash or verification within the process-wide bound.
pub(crate) fn with_password_slot<T>(work: impl FnOnce() -> T) -> Result<T, StateError> {
    run_in_slot(slots(), SLOT_WAIT, work)
}

/// What the bound has seen in this process, for the metrics page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordWorkFigures {
    /// How many argon2 computations may run at once.
    pub limit: usize,
    /// The most that ran at once since the process started.
    pub peak: usize,
    /// Attempts refused because no slot became free in time.
    pub refused: usize,
}

/// The bound and what it has seen so far.
pub fn password_work_figures() -> PasswordWorkFigures {
    let slots = slots();
    PasswordWorkFigures {
        limit: slots.limit,
        peak: slots.peak.load(Ordering::Relaxed),
        refused: slots.refused.load(Ordering::Relaxed),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use std::sync::{Arc, Barrier};

    fn leaked_slots(limit: usize) -> &'static PasswordSlots {
        Box::leak(Box::new(PasswordSlots::new(limit)))
    }

    #[test]
    fn never_more_than_the_limit_run_at_once() {
        let slots = leaked_slots(2);
        let running = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (running, seen) = (running.clone(), seen.clone());
                std::thread::spawn(move || {
                    run_in_slot(slots, Duration::from_secs(30), move || {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        seen.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(20));
                        running.fetch_sub(1, Ordering::SeqCst);
                    })
                })
            })
            .collect();
        for thread in threads {
            assert!(thread.join().unwrap().is_ok());
        }
        assert_eq!(seen.load(Ordering::SeqCst), 2);
        assert_eq!(slots.peak.load(Ordering::SeqCst), 2);
        assert_eq!(
            *slots.running.lock().unwrap(),
            0,
            "every slot is free again"
        );
    }

    #[test]
    fn refuses_in_words_when_no_slot_frees_in_time() {
        let slots = leaked_slots(1);
        let inside = Arc::new(Barrier::new(2));
        let release = Arc::new(Barrier::new(2));
        let holder = {
            let (inside, release) = (inside.clone(), release.clone());
            std::thread::spawn(move || {
                run_in_slot(slots, Duration::from_secs(30), move || {
                    inside.wait();
                    release.wait();
                })
            })
        };
        inside.wait();
        let refused = run_in_slot(slots, Duration::from_millis(50), || ());
        match refused {
            Err(StateError::Busy(words)) => assert_eq!(words, BUSY_WORDS),
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert_eq!(slots.refused.load(Ordering::SeqCst), 1);
        release.wait();
        assert!(holder.join().unwrap().is_ok());
        // The slot is free again.
        assert!(run_in_slot(slots, Duration::from_millis(50), || ()).is_ok());
    }
}
