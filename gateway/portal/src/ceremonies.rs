//! [`Ceremonies`]: sign-in steps in progress (a passkey challenge, a program's browser sign-in, its
//! one-time code), each kept in memory for a short time, at most [`MAX_CEREMONIES`] of a kind at once,
//! and taken once. A restart forgets them, like login sessions.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Bound on ceremonies of one kind kept at once.
pub(crate) const MAX_CEREMONIES: usize = 10_000;

/// Ceremonies in progress, keyed by whatever names them (a user, a cookie's hash).
pub(crate) struct Ceremonies<K, V> {
    entries: Mutex<HashMap<K, (V, Instant)>>,
    ttl: Duration,
}

impl<K: Hash + Eq, V> Ceremonies<K, V> {
    /// Ceremonies that each live `ttl`.
    pub(crate) fn new(ttl: Duration) -> Self {
        Ceremonies {
            entries: Mutex::new(HashMap::new()),
            ttl,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<K, (V, Instant)>> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Keeps `value` under `key` (replacing what was there); false when too many are in progress.
    pub(crate) fn insert(&self, key: K, value: V) -> bool {
        let mut map = self.lock();
        let ttl = self.ttl;
        map.retain(|_, (_, started)| started.elapsed() < ttl);
        if map.len() >= MAX_CEREMONIES {
            return false;
        }
        map.insert(key, (value, Instant::now()));
        true
    }

    /// Takes the ceremony under `key` (once), if it has not expired.
    pub(crate) fn take(&self, key: &K) -> Option<V> {
        let (value, started) = self.lock().remove(key)?;
        (started.elapsed() < self.ttl).then_some(value)
    }

    /// Reads the ceremony under `key` without taking it, if it has not expired.
    pub(crate) fn peek<R>(&self, key: &K, read: impl FnOnce(&V) -> R) -> Option<R> {
        let map = self.lock();
        let (value, started) = map.get(key)?;
        (started.elapsed() < self.ttl).then(|| read(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ceremony_is_taken_once_and_expires() {
        let ceremonies: Ceremonies<u8, &str> = Ceremonies::new(Duration::from_secs(60));
        assert!(ceremonies.insert(1, "state"));
        assert_eq!(ceremonies.peek(&1, |v| *v), Some("state"));
        assert_eq!(ceremonies.take(&1), Some("state"));
        assert_eq!(ceremonies.take(&1), None);
        let expired: Ceremonies<u8, &str> = Ceremonies::new(Duration::ZERO);
        assert!(expired.insert(1, "state"));
        assert_eq!(expired.take(&1), None);
    }

    #[test]
    fn the_number_kept_is_bounded() {
        let ceremonies: Ceremonies<usize, ()> = Ceremonies::new(Duration::from_secs(60));
        for key in 0..MAX_CEREMONIES {
            assert!(ceremonies.insert(key, ()));
        }
        assert!(!ceremonies.insert(MAX_CEREMONIES, ()));
    }
}
