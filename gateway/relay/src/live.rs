//! The registry of live sessions: who is connected to what, since when, from where, bytes each way;
//! and the two handles admins use on a session, terminate and watch.
//!
//! Watching is a bounded broadcast of terminal output: a watcher that falls behind skips ahead instead
//! of growing a queue, and watching never slows the session itself.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{broadcast, watch};

/// Output chunks a watcher may lag behind before it skips ahead.
const WATCH_BUFFER: usize = 256;

/// What the live sessions page shows of one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveInfo {
    /// The recording's session id.
    pub session_id: String,
    /// Portal user id.
    pub user_id: i64,
    /// Portal user name.
    pub username: String,
    /// Target name.
    pub target: String,
    /// The client's address.
    pub client_addr: SocketAddr,
    /// What the session carries: `ssh`, `rdp` or `ssh-proxy`.
    pub protocol: String,
    /// When it started (unix ms).
    pub started_at_ms: u64,
    /// Bytes from the user to the target so far.
    pub bytes_up: u64,
    /// Bytes from the target to the user so far.
    pub bytes_down: u64,
}

struct Entry {
    info: LiveInfo,
    counters: Arc<Counters>,
    terminate: watch::Sender<Option<String>>,
    output: broadcast::Sender<Vec<u8>>,
}

/// Byte counters a session updates as it relays.
#[derive(Debug, Default)]
pub struct Counters {
    up: AtomicU64,
    down: AtomicU64,
}

impl Counters {
    /// Counts bytes sent to the target.
    pub fn add_up(&self, n: usize) {
        self.up.fetch_add(n as u64, Ordering::Relaxed);
    }
    /// Counts bytes sent to the user.
    pub fn add_down(&self, n: usize) {
        self.down.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// All live sessions of this gateway.
#[derive(Clone, Default)]
pub struct LiveSessions {
    inner: Arc<Mutex<HashMap<String, Entry>>>,
    slots: Arc<Mutex<Slots>>,
}

/// Sessions held open (connecting or live), in total and per user.
#[derive(Default)]
struct Slots {
    total: usize,
    per_user: HashMap<i64, usize>,
}

/// A concurrent-session limit that was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LimitHit {
    /// The gateway's total.
    #[error("the gateway already has its maximum of {0} sessions open")]
    Total(usize),
    /// The user's own limit.
    #[error("you already have your maximum of {0} sessions open")]
    PerUser(usize),
}

/// A claimed session slot; released when dropped.
pub struct SessionSlot {
    slots: Arc<Mutex<Slots>>,
    user_id: i64,
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        let mut slots = self
            .slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        slots.total = slots.total.saturating_sub(1);
        if let Some(count) = slots.per_user.get_mut(&self.user_id) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                slots.per_user.remove(&self.user_id);
            }
        }
    }
}

/// A session's side of its registry entry; removes the entry when dropped.
pub struct LiveHandle {
    registry: LiveSessions,
    session_id: String,
    /// Counters to update.
    pub counters: Arc<Counters>,
    /// Fires with a reason when an admin (or a revocation) ends the session.
    pub terminated: watch::Receiver<Option<String>>,
    output: broadcast::Sender<Vec<u8>>,
}

impl LiveHandle {
    /// Offers output to watchers (dropped when nobody watches).
    pub fn publish(&self, data: &[u8]) {
        if self.output.receiver_count() > 0 {
            let _ = self.output.send(data.to_vec());
        }
    }

    /// A handle that offers output to watchers from another task (a proxied session's channels).
    pub fn publisher(&self) -> LivePublisher {
        LivePublisher {
            output: self.output.clone(),
        }
    }
}

/// Offers a session's terminal output to watchers; made by [`LiveHandle::publisher`], cheap to clone.
#[derive(Clone)]
pub struct LivePublisher {
    output: broadcast::Sender<Vec<u8>>,
}

impl LivePublisher {
    /// Offers output to watchers (dropped when nobody watches).
    pub fn publish(&self, data: &[u8]) {
        if self.output.receiver_count() > 0 {
            let _ = self.output.send(data.to_vec());
        }
    }
}

impl Drop for LiveHandle {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.session_id);
    }
}

impl LiveSessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Claims a slot for a new session of `user_id`, or says which limit is reached.
    pub fn claim_slot(
        &self,
        user_id: i64,
        max_total: usize,
        max_per_user: usize,
    ) -> Result<SessionSlot, LimitHit> {
        let mut slots = self
            .slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if slots.total >= max_total {
            return Err(LimitHit::Total(max_total));
        }
        let mine = slots.per_user.get(&user_id).copied().unwrap_or(0);
        if mine >= max_per_user {
            return Err(LimitHit::PerUser(max_per_user));
        }
        slots.total += 1;
        slots.per_user.insert(user_id, mine + 1);
        Ok(SessionSlot {
            slots: self.slots.clone(),
            user_id,
        })
    }

    /// Registers a session; it stays listed until the handle is dropped.
    pub fn register(&self, info: LiveInfo) -> LiveHandle {
        let counters = Arc::new(Counters::default());
        let (terminate, terminated) = watch::channel(None);
        let (output, _) = broadcast::channel(WATCH_BUFFER);
        let session_id = info.session_id.clone();
        self.lock().insert(
            session_id.clone(),
            Entry {
                info,
                counters: counters.clone(),
                terminate,
                output: output.clone(),
            },
        );
        LiveHandle {
            registry: self.clone(),
            session_id,
            counters,
            terminated,
            output,
        }
    }

    /// Every live session, oldest first.
    pub fn list(&self) -> Vec<LiveInfo> {
        let mut list: Vec<LiveInfo> = self
            .lock()
            .values()
            .map(|entry| LiveInfo {
                bytes_up: entry.counters.up.load(Ordering::Relaxed),
                bytes_down: entry.counters.down.load(Ordering::Relaxed),
                ..entry.info.clone()
            })
            .collect();
        list.sort_by_key(|info| info.started_at_ms);
        list
    }

    /// Ends one session, telling its user `reason`. Returns whether it was live.
    pub fn terminate(&self, session_id: &str, reason: &str) -> bool {
        match self.lock().get(session_id) {
            Some(entry) => {
                let _ = entry.terminate.send(Some(reason.to_owned()));
                true
            }
            None => false,
        }
    }

    /// Ends every session of a user; returns how many.
    pub fn terminate_user(&self, user_id: i64, reason: &str) -> usize {
        let sessions = self.lock();
        let mut count = 0;
        for entry in sessions.values().filter(|e| e.info.user_id == user_id) {
            let _ = entry.terminate.send(Some(reason.to_owned()));
            count += 1;
        }
        count
    }

    /// Subscribes to a session's output from now on (read-only watching).
    pub fn watch(&self, session_id: &str) -> Option<(LiveInfo, broadcast::Receiver<Vec<u8>>)> {
        self.lock()
            .get(session_id)
            .map(|entry| (entry.info.clone(), entry.output.subscribe()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    fn info(id: &str, user_id: i64) -> LiveInfo {
        LiveInfo {
            session_id: id.into(),
            user_id,
            username: format!("u{user_id}"),
            target: "t".into(),
            client_addr: "127.0.0.1:1".parse().unwrap(),
            protocol: "ssh".into(),
            started_at_ms: 1,
            bytes_up: 0,
            bytes_down: 0,
        }
    }

    #[test]
    fn register_count_terminate_and_drop() {
        let live = LiveSessions::default();
        let a = live.register(info("a", 1));
        let b = live.register(info("b", 1));
        let c = live.register(info("c", 2));
        a.counters.add_down(10);
        a.counters.add_up(3);
        let listed = live.list();
        assert_eq!(listed.len(), 3);
        let first = listed.iter().find(|i| i.session_id == "a").unwrap();
        assert_eq!((first.bytes_up, first.bytes_down), (3, 10));
        assert_eq!(live.terminate_user(1, "password changed"), 2);
        assert_eq!(a.terminated.borrow().as_deref(), Some("password changed"));
        assert_eq!(b.terminated.borrow().as_deref(), Some("password changed"));
        assert_eq!(*c.terminated.borrow(), None);
        assert!(live.terminate("c", "admin"));
        drop((a, b, c));
        assert!(live.list().is_empty());
        assert!(!live.terminate("c", "admin"));
    }

    #[test]
    fn slots_are_capped_in_total_and_per_user_and_released() {
        let live = LiveSessions::default();
        let a1 = live.claim_slot(1, 3, 2).unwrap();
        let _a2 = live.claim_slot(1, 3, 2).unwrap();
        assert_eq!(live.claim_slot(1, 3, 2).err(), Some(LimitHit::PerUser(2)));
        let _b1 = live.claim_slot(2, 3, 2).unwrap();
        assert_eq!(live.claim_slot(3, 3, 2).err(), Some(LimitHit::Total(3)));
        drop(a1);
        assert!(live.claim_slot(1, 3, 2).is_ok());
    }

    #[test]
    fn watchers_are_bounded_and_skip_ahead() {
        let live = LiveSessions::default();
        let handle = live.register(info("a", 1));
        handle.publish(b"before anyone watches");
        let (_, mut rx) = live.watch("a").unwrap();
        for i in 0..(WATCH_BUFFER + 10) {
            handle.publish(format!("{i}").as_bytes());
        }
        assert!(matches!(
            rx.try_recv(),
            Err(broadcast::error::TryRecvError::Lagged(_))
        ));
        assert!(rx.try_recv().is_ok());
    }
}
