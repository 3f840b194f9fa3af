//! The one bound on argon2id work: at most a few password hashes or verifications run at once in
//! this process, so that a burst of sign-ins costs a known amount of memory (argon2id's memory cost,
//! 19 MiB each, times the bound) instead of 19 MiB per attempt in flight.
//!
//! Every path that hashes or verifies a password (login, password change, user creation, password
//! reset) goes through [`with_password_slot`]. It blocks the calling thread (call it from a
//! blocking thread in async code) for at most [`SLOT_WAIT`]; past that the attempt is refused with
//! [`StateError::Busy`], whose words the portal shows with HTTP 503 and `Retry-After`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Condvar, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use crate::db::StateError;

/// How long an attempt waits for a free slot before it is refused. Long enough that a burst
/// of a few dozen sign-ins on a small appliance is queued rather than refused.
pub const SLOT_WAIT: Duration = Duration::from_secs(10);

/// The words of the refusal when no slot became free in time.
pub const BUSY_WORDS: &str = "too many sign-ins at once; try again in a moment";

/// The `Retry-After` (seconds) that goes with the refusal: about one argon2 verification's time.
pub const BUSY_RETRY_AFTER_SECONDS: u64 = 2;

/// A job for an argon2 worker thread.
type Job = Box<dyn FnOnce() + Send>;

/// A few argon2 worker threads, one per slot, and the slots that are free. The work runs on the
/// slot's own thread, so the argon2 work is never on more threads than slots. (That alone did not
/// keep glibc from holding on to the freed 19 MiB blocks; the gateway binary fixes glibc's mmap
/// threshold for that, see its `malloc_tunables`.)
struct PasswordSlots {
    limit: usize,
    free: Mutex<Vec<usize>>,
    freed: Condvar,
    workers: Vec<Sender<Job>>,
    peak: AtomicUsize,
    refused: AtomicUsize,
}

impl PasswordSlots {
    /// Starts `limit` worker threads.
    fn start(limit: usize) -> std::io::Result<PasswordSlots> {
        let workers = (0..limit)
            .map(|index| {
                let (jobs, queue) = channel::<Job>();
                std::thread::Builder::new()
                    .name(format!("argon2-{index}"))
                    .spawn(move || {
                        for job in queue {
                            job();
                        }
                    })
                    .map(|_| jobs)
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(PasswordSlots {
            limit,
            free: Mutex::new((0..limit).collect()),
            freed: Condvar::new(),
            workers,
            peak: AtomicUsize::new(0),
            refused: AtomicUsize::new(0),
        })
    }
}

/// How many argon2 computations may run at once: one per core, but at most two. More would not
/// finish a burst sooner on a small appliance, and each one holds 19 MiB while it runs;
/// two verifications take well under 100 ms in a release build, dozens of sign-ins a second.
fn slot_limit() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(2))
}

fn slots() -> Result<&'static PasswordSlots, StateError> {
    static SLOTS: OnceLock<Result<PasswordSlots, String>> = OnceLock::new();
    SLOTS
        .get_or_init(|| PasswordSlots::start(slot_limit()).map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| StateError::Hash(format!("no argon2 worker thread: {e}")))
}

/// Frees the slot when the work ends.
struct SlotGuard {
    slots: &'static PasswordSlots,
    index: usize,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        let mut free = self
            .slots
            .free
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        free.push(self.index);
        drop(free);
        self.slots.freed.notify_one();
    }
}

/// Runs `work` (an argon2 hash or verification) on the worker of a free slot, waiting at most
/// `wait` for one; refuses with [`StateError::Busy`] when none became free.
fn run_in_slot<T: Send + 'static>(
    slots: &'static PasswordSlots,
    wait: Duration,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, StateError> {
    let deadline = Instant::now() + wait;
    let mut free = slots.free.lock().unwrap_or_else(PoisonError::into_inner);
    let index = loop {
        if let Some(index) = free.pop() {
            break index;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            slots.refused.fetch_add(1, Ordering::Relaxed);
            return Err(StateError::Busy(BUSY_WORDS.to_owned()));
        }
        free = slots
            .freed
            .wait_timeout(free, left)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    };
    slots
        .peak
        .fetch_max(slots.limit - free.len(), Ordering::Relaxed);
    drop(free);
    let _guard = SlotGuard { slots, index };
    let (answer, result) = channel();
    let job: Job = Box::new(move || {
        let _ = answer.send(work());
    });
    let stopped = || StateError::Hash("the argon2 worker thread stopped".into());
    slots.workers[index].send(job).map_err(|_| stopped())?;
    result.recv().map_err(|_| stopped())
}

/// Runs one argon2 hash or verification within the process-wide bound.
pub(crate) fn with_password_slot<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, StateError> {
    run_in_slot(slots()?, SLOT_WAIT, work)
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
    match slots() {
        Ok(slots) => PasswordWorkFigures {
            limit: slots.limit,
            peak: slots.peak.load(Ordering::Relaxed),
            refused: slots.refused.load(Ordering::Relaxed),
        },
        Err(_) => PasswordWorkFigures {
            limit: 0,
            peak: 0,
            refused: 0,
        },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use std::sync::{Arc, Barrier};

    fn leaked_slots(limit: usize) -> &'static PasswordSlots {
        Box::leak(Box::new(PasswordSlots::start(limit).unwrap()))
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
        assert_eq!(slots.free.lock().unwrap().len(), 2);
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
